# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The two instances of a cluster pair: where they go (subnets), finding the ones a previous run
launched or the caller adopts, launching the missing ones, and converging an existing one (tags,
security group, instance profile, metadata options, source/destination check).

Pure boto3 through :class:`AwsSession`; writes are :class:`Action` s applied with ``scenario.apply``.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ansible_collections.ec2ha.cluster.plugins.module_utils import node_security
from ansible_collections.ec2ha.cluster.plugins.module_utils.aws import (
    AwsCallError,
    AwsSession,
    InputError,
    VerifyError,
    tag_value,
)
from ansible_collections.ec2ha.cluster.plugins.module_utils.ids import CLUSTER_TAG, NAME_TAG, NODE_TAG
from ansible_collections.ec2ha.cluster.plugins.module_utils.pair_spec import (
    NEW,
    POLICY_NAME,
    NodeSpec,
    NodeState,
    Pair,
    PairSpec,
    owned_elsewhere,
)
from ansible_collections.ec2ha.cluster.plugins.module_utils.scenario import Action, apply, backoff

LIVE = ("pending", "running", "stopping", "stopped")
# A just-created instance profile takes a few seconds to be usable by RunInstances (IAM is
# eventually consistent); RunInstances answers this code meanwhile.
PROFILE_NOT_READY = "InvalidParameterValue"
PROFILE_WAIT = 60.0


def read_subnets(aws: AwsSession, spec: PairSpec) -> Tuple[str, str, Dict[str, Dict[str, Any]]]:
    """(vpc id, account id, subnets by id); the two subnets must exist, share a VPC, differ in AZ."""
    ids = sorted({n.subnet_id for n in spec.nodes})
    # A filter, not SubnetIds: an unknown id is simply absent, so the message can name it.
    found = aws.paginate("ec2", "describe_subnets", "Subnets", ", ".join(ids),
                         Filters=[{"Name": "subnet-id", "Values": ids}])
    subnets = {s["SubnetId"]: s for s in found}
    for node in spec.nodes:
        if node.subnet_id not in subnets:
            raise InputError(f"Node {node.name}: subnet {node.subnet_id} does not exist in this account and region.")
    first, second = (subnets[n.subnet_id] for n in spec.nodes)
    if first["VpcId"] != second["VpcId"]:
        raise InputError(f"Subnets {first['SubnetId']} ({first['VpcId']}) and {second['SubnetId']} "
                         f"({second['VpcId']}) are in different VPCs: the pair must share one VPC.")
    if first["AvailabilityZone"] == second["AvailabilityZone"]:
        raise InputError(f"Subnets {first['SubnetId']} and {second['SubnetId']} are both in "
                         f"{first['AvailabilityZone']}: put the two nodes in different availability zones.")
    return first["VpcId"], str(first.get("OwnerId", "")), subnets


def check_private_ip(node: NodeSpec, subnet: Dict[str, Any]) -> None:
    if not node.private_ip:
        return
    network = ipaddress.IPv4Network(subnet["CidrBlock"])
    address = ipaddress.IPv4Address(node.private_ip)
    if address not in network:
        raise InputError(f"Node {node.name}: private_ip {address} is outside {subnet['SubnetId']} ({network}).")
    # AWS keeps the first four addresses and the last one of every subnet.
    if int(address) - int(network.network_address) < 4 or address == network.broadcast_address:
        raise InputError(f"Node {node.name}: private_ip {address} is reserved by AWS in {network} "
                         "(the first four and the last address).")


def read_instances(aws: AwsSession, filters: List[Dict[str, Any]], resource: str) -> List[Dict[str, Any]]:
    reservations = aws.paginate("ec2", "describe_instances", "Reservations", resource, Filters=filters)
    return [i for r in reservations for i in r.get("Instances", [])
            if i.get("State", {}).get("Name") in LIVE]


def read_by_ids(aws: AwsSession, ids: Sequence[str]) -> Dict[str, Dict[str, Any]]:
    """The live instances among ``ids``, by id."""
    return {i["InstanceId"]: i for i in read_instances(
        aws, [{"Name": "instance-id", "Values": list(ids)}], ", ".join(ids))} if ids else {}


def find_instance(aws: AwsSession, spec: PairSpec, node: NodeSpec, subnet: Dict[str, Any]) -> NodeState:
    """The node's instance: the adopted one, or the one a previous run launched (found by its tags)."""
    state = NodeState(node, subnet["AvailabilityZone"], adopted=bool(node.instance_id))
    if node.instance_id:
        found = read_instances(aws, [{"Name": "instance-id", "Values": [node.instance_id]}], node.instance_id)
        if not found:
            raise InputError(f"Node {node.name}: instance {node.instance_id} does not exist (or is terminated).")
    else:
        found = read_instances(aws, [{"Name": f"tag:{CLUSTER_TAG}", "Values": [spec.name]},
                                     {"Name": f"tag:{NODE_TAG}", "Values": [node.name]}], f"{spec.name}/{node.name}")
        # The filters only narrow the read (* and ? are wildcards there): a node "n?" is not n1.
        found = [i for i in found
                 if (tag_value(i.get("Tags"), CLUSTER_TAG), tag_value(i.get("Tags"), NODE_TAG)) == (spec.name, node.name)]
        if len(found) > 1:
            ids = ", ".join(i["InstanceId"] for i in found)
            raise InputError(f"Node {node.name} of cluster {spec.name} matches {len(found)} instances ({ids}): "
                             "terminate the extra ones or adopt one with instance_id.")
        if not found:
            return state
    instance = found[0]
    label = f"Node {node.name}: instance {instance['InstanceId']}"
    owned_elsewhere("Instance", instance["InstanceId"], instance.get("Tags"), spec.name)
    if node.instance_id and tag_value(instance.get("Tags"), NODE_TAG) not in (None, node.name):
        raise InputError(f"{label} is node '{tag_value(instance.get('Tags'), NODE_TAG)}' of the cluster, "
                         f"not {node.name}.")
    if instance.get("SubnetId") != node.subnet_id:
        raise InputError(f"{label} is in subnet {instance.get('SubnetId')}, not {node.subnet_id}: an instance "
                         "cannot move between subnets.")
    if node.private_ip and instance.get("PrivateIpAddress") != node.private_ip:
        raise InputError(f"{label} has private IP {instance.get('PrivateIpAddress')}, not {node.private_ip}.")
    state.instance = instance
    return state


def primary_eni_id(instance: Dict[str, Any]) -> Optional[str]:
    for eni in instance.get("NetworkInterfaces", []):
        if int(eni.get("Attachment", {}).get("DeviceIndex", 0)) == 0:
            return eni["NetworkInterfaceId"]
    return None


def read_enis(aws: AwsSession, states: Sequence[NodeState]) -> None:
    """Each existing node's primary ENI (tags, groups, source/destination check), in one read."""
    ids = [e for e in (primary_eni_id(s.instance) for s in states if s.instance) if e]
    if not ids:
        return
    found = aws.paginate("ec2", "describe_network_interfaces", "NetworkInterfaces", ", ".join(ids),
                         Filters=[{"Name": "network-interface-id", "Values": ids}])
    by_id = {e["NetworkInterfaceId"]: e for e in found}
    for state in states:
        if state.instance:
            state.eni = by_id.get(primary_eni_id(state.instance) or "")


def read_root_volumes(aws: AwsSession, states: Sequence[NodeState]) -> None:
    """Each existing node's root volume (for its encryption), in one read."""
    volumes = node_security.read_root_volumes(aws, [s.instance for s in states if s.instance])
    for state in states:
        if state.instance:
            state.root_volume = volumes.get(state.instance["InstanceId"])


def launch_action(pair: Pair, node: NodeSpec) -> Action:
    spec = pair.spec
    params: Dict[str, Any] = {
        "ImageId": spec.image_id, "InstanceType": spec.instance_type, "MinCount": 1, "MaxCount": 1,
        "SubnetId": node.subnet_id, "SecurityGroupIds": [pair.group_id],
        "IamInstanceProfile": {"Arn": pair.profile_arn},
        "TagSpecifications": [{"ResourceType": "instance", "Tags": pair.tags(node, name=True)},
                              {"ResourceType": "network-interface", "Tags": pair.tags(node)}],
        "MetadataOptions": dict(node_security.METADATA_OPTIONS),
    }
    if spec.encrypt_root_volume:
        params["BlockDeviceMappings"] = [node_security.root_device_mapping(pair.image or {}, spec.kms_key_id)]
    for key, value in (("PrivateIpAddress", node.private_ip), ("KeyName", spec.key_name),
                       ("UserData", spec.user_data)):
        if value:
            params[key] = value
    return Action("run_instances", node.name, params, f"launch node {node.name} in {node.subnet_id}")


def launch(aws: AwsSession, pair: Pair, state: NodeState, check_mode: bool = False,
           clock: Callable[[], float] = time.monotonic,
           sleep: Callable[[float], None] = time.sleep) -> List[Action]:
    """RunInstances for a node that has no instance yet; retries while a new profile is not usable."""
    action = launch_action(pair, state.spec)
    deadline = clock() + PROFILE_WAIT
    for delay in backoff(1.0, 2, 8.0):
        try:
            answer = apply(aws, [action], check_mode)[0]
            break
        except AwsCallError as exc:
            if exc.code != PROFILE_NOT_READY or "profile" not in str(exc).lower() or clock() + delay > deadline:
                raise
            sleep(delay)
    state.launched = True
    if answer:
        state.instance = answer["Instances"][0]
    return [action]


def plan_node(pair: Pair, state: NodeState) -> List[Action]:
    """The writes an existing node needs: tags, the cluster's security group, the instance profile,
    (vip_route) the source/destination check off, the metadata options."""
    instance, eni = state.instance or {}, state.eni or {}
    iid, eni_id, node = instance.get("InstanceId", NEW), eni.get("NetworkInterfaceId", NEW), state.spec
    actions = []
    wanted = pair.tags(node, name=tag_value(instance.get("Tags"), NAME_TAG) is None)
    missing = [t for t in wanted if tag_value(instance.get("Tags"), t["Key"]) != t["Value"]]
    if missing:
        actions.append(Action("create_tags", iid, {"Resources": [iid], "Tags": missing},
                              f"tag instance {iid} ({node.name})"))
    eni_missing = [t for t in pair.tags(node) if tag_value(eni.get("TagSet"), t["Key"]) != t["Value"]]
    if eni_missing:
        # The node policy allows ModifyNetworkInterfaceAttribute / AssociateAddress on tagged ENIs only.
        actions.append(Action("create_tags", eni_id, {"Resources": [eni_id], "Tags": eni_missing},
                              f"tag network interface {eni_id} ({node.name})"))
    groups = [g["GroupId"] for g in eni.get("Groups", [])]
    if pair.group_id not in groups:
        actions.append(Action("modify_network_interface_attribute", eni_id,
                              {"NetworkInterfaceId": eni_id, "Groups": groups + [pair.group_id]},
                              f"add security group {pair.group_id} to {eni_id} ({node.name})"))
    if (instance.get("IamInstanceProfile") or {}).get("Arn") is None:
        actions.append(Action("associate_iam_instance_profile", iid,
                              {"InstanceId": iid, "IamInstanceProfile": {"Arn": pair.profile_arn}},
                              f"give {iid} ({node.name}) instance profile {pair.spec.role_name}"))
    if pair.routes_vip and eni.get("SourceDestCheck", True):
        actions.append(source_dest_check_off(eni_id, f"{eni_id} ({node.name})"))
    actions += plan_metadata_options(iid, node.name, instance)
    return actions


def source_dest_check_off(eni_id: str, label: str) -> Action:
    # The VIP's packets reach the node with a destination that is not its own address.
    return Action("modify_network_interface_attribute", eni_id,
                  {"NetworkInterfaceId": eni_id, "SourceDestCheck": {"Value": False}},
                  f"turn the source/destination check off on {label}")


def plan_metadata_options(iid: str, name: str, instance: Dict[str, Any]) -> List[Action]:
    """IMDSv2 only, hop limit 1, endpoint on: one write when any of the three differs."""
    differ = node_security.metadata_difference(instance)
    if not differ:
        return []
    wanted = node_security.METADATA_OPTIONS
    # All three are sent, not only those that differ: moto 5.2.5 resets what a call leaves out,
    # and the call then says the whole wanted state (EC2 keeps what is already so).
    return [Action("modify_instance_metadata_options", iid, {"InstanceId": iid, **wanted},
                   f"set {', '.join(f'{k}={wanted[k]}' for k in differ)} on the metadata options of {iid} ({name})")]


def node_warnings(pair: Pair, state: NodeState) -> List[str]:
    """What is left as found on an existing node: a stopped node, another instance profile, an
    unencrypted root volume."""
    instance, node = state.instance or {}, state.spec
    iid = instance.get("InstanceId", NEW)
    warnings: List[str] = []
    if instance.get("State", {}).get("Name") not in ("pending", "running"):
        warnings.append(f"Node {node.name} ({iid}) is {instance.get('State', {}).get('Name')}: left as it is "
                        "(start it, or let the cluster do it).")
    profile = (instance.get("IamInstanceProfile") or {}).get("Arn")
    if profile not in (None, pair.profile_arn):
        warnings.append(f"Node {node.name} ({iid}) keeps its instance profile {profile}: give its role the "
                        f"policy {POLICY_NAME} or replace the profile with {pair.profile_arn}.")
    if pair.spec.encrypt_root_volume:
        warning = node_security.unencrypted_warning(f"{node.name} ({iid})", state.root_volume)
        warnings += [warning] if warning else []
    return warnings


def wait_running(aws: AwsSession, instance_ids: Sequence[str], timeout: float,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> Dict[str, Dict[str, Any]]:
    """Re-read until every instance is running (bounded); VerifyError naming the late ones."""
    deadline = clock() + timeout
    for delay in backoff(1.0, 1.5, 10.0):
        found = read_by_ids(aws, instance_ids)
        late = {i: (found.get(i) or {}).get("State", {}).get("Name", "missing") for i in instance_ids
                if (found.get(i) or {}).get("State", {}).get("Name") != "running"}
        if not late:
            return found
        if clock() + delay > deadline:
            states = ", ".join(f"{i} is {s}" for i, s in late.items())
            raise VerifyError(f"After {timeout:g} s, {states}: the pair's instances did not reach running.")
        sleep(delay)
    raise AssertionError("unreachable: backoff never ends")
