# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cluster pair build-out: two instances in two AZs, their security group, role and instance profile.

Pure boto3 through :class:`AwsSession` (no Ansible import), like the scenario cores:

    pair = resolve(aws, PairSpec(...))        # validates the input and reads everything; no write
    result = converge(aws, pair, check_mode)  # security group -> role, policy, profile -> instances,
                                              # each step writes only its difference; then re-read

Every resource made or adopted carries the tag ec2ha:cluster=<name>; instances also carry
ec2ha:node=<node name>, which is how a re-run finds the instances it launched (no ClientToken:
a token would keep answering with a terminated instance long after it was replaced).
A failure midway leaves tagged, findable resources, so the next run finishes the job.
Every node gets IMDSv2 only with a hop limit of 1, and a launched node an encrypted root volume
(node_security).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import math
import re
import time
import urllib.parse
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ansible_collections.ec2ha.cluster.plugins.module_utils import dns_record, iam_policy, node_security
from ansible_collections.ec2ha.cluster.plugins.module_utils.aws import (
    AwsCallError,
    AwsSession,
    InputError,
    VerifyError,
    tag_value,
)
from ansible_collections.ec2ha.cluster.plugins.module_utils.nodes import INSTANCE_ID, Node, node_from_instance

CLUSTER_TAG = iam_policy.CLUSTER_TAG
NODE_TAG = "ec2ha:node"
LAB_HOST_TAG = "ec2ha:lab-host"
POLICY_NAME = "ec2ha-node"
CLUSTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+=,.@_-]{0,57}$")   # "<name>-node" fits IAM's 64
SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{8,17}$")
ROUTE_TABLE_ID = re.compile(r"^rtb-[0-9a-f]{8,17}$")
ALLOCATION_ID = re.compile(r"^eipalloc-[0-9a-f]{8,17}$")
ZONE_ID = re.compile(r"^(?:/hostedzone/)?([A-Z0-9]{6,32})$")
NEW = "(new)"     # placeholder for an id check mode cannot know yet
LIVE = ("pending", "running", "stopping", "stopped")
DEFAULT_WAIT_TIMEOUT = 300.0
# A just-created instance profile takes a few seconds to be usable by RunInstances (IAM is
# eventually consistent); RunInstances answers this code meanwhile.
PROFILE_NOT_READY = "InvalidParameterValue"
PROFILE_WAIT = 60.0


# ---------------------------------------------------------------------------------------------
# What the caller asks for


@dataclasses.dataclass(frozen=True)
class NodeSpec:
    name: str
    subnet_id: str
    private_ip: Optional[str] = None
    instance_id: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class PairSpec:
    name: str
    nodes: Tuple[NodeSpec, ...]
    image_id: Optional[str] = None
    instance_type: Optional[str] = None
    key_name: Optional[str] = None
    user_data: Optional[str] = None
    admin_cidrs: Tuple[str, ...] = ()
    client_cidrs: Tuple[str, ...] = ()
    corosync_port: int = 5405
    scenarios: Tuple[str, ...] = ()
    route_table_ids: Tuple[str, ...] = ()
    allocation_id: Optional[str] = None
    hosted_zone_id: Optional[str] = None
    record_name: Optional[str] = None
    encrypt_root_volume: bool = True
    kms_key_id: Optional[str] = None
    lab_host: bool = False
    wait_timeout: float = DEFAULT_WAIT_TIMEOUT

    @property
    def group_name(self) -> str:
        return f"{self.name}-cluster"

    @property
    def role_name(self) -> str:
        return f"{self.name}-node"

    def validate(self) -> None:
        """Checks that need no AWS call."""
        if not CLUSTER_NAME.match(self.name or ""):
            raise InputError(f"name '{self.name}' must be 1-58 letters, digits or +=,.@_- starting with a letter "
                             "or digit (it names the IAM role <name>-node).")
        if len(self.nodes) != 2:
            raise InputError(f"nodes lists {len(self.nodes)} nodes: a cluster pair needs exactly two.")
        names = [n.name for n in self.nodes]
        if not all(names) or names[0] == names[1]:
            raise InputError(f"Node names {names} must be two different, non-empty names.")
        for node in self.nodes:
            _check_node(node)
        ids = [n.instance_id for n in self.nodes if n.instance_id]
        if len(ids) == 2 and ids[0] == ids[1]:
            raise InputError(f"Both nodes adopt instance {ids[0]}: a pair needs two instances.")
        unknown = [s for s in self.scenarios if s not in iam_policy.SCENARIOS]
        if unknown:
            raise InputError(f"scenarios {unknown} are not among {', '.join(iam_policy.SCENARIOS)}.")
        self._check_scenario_resources()
        node_security.check_kms_key_id(self.kms_key_id, bool(self.encrypt_root_volume))
        for option in ("admin_cidrs", "client_cidrs"):
            for cidr in getattr(self, option):
                _check_cidr(option, cidr)
        if not 1 <= int(self.corosync_port) <= 65535:
            raise InputError(f"corosync_port {self.corosync_port} is not a port number (1-65535).")
        seconds = float(self.wait_timeout)
        if math.isnan(seconds) or seconds <= 0:
            raise InputError(f"wait_timeout {self.wait_timeout} must be a positive number of seconds.")

    def _check_scenario_resources(self) -> None:
        for rtb in self.route_table_ids:
            if not ROUTE_TABLE_ID.match(rtb):
                raise InputError(f"Route table '{rtb}' is not a route table id (rtb-...).")
        if self.allocation_id and not ALLOCATION_ID.match(self.allocation_id):
            raise InputError(f"allocation_id '{self.allocation_id}' is not an allocation id (eipalloc-...).")
        if self.hosted_zone_id and not ZONE_ID.match(self.hosted_zone_id):
            raise InputError(f"hosted_zone_id '{self.hosted_zone_id}' is not a hosted zone id (Z...).")
        needs = (("route_table", "route_table_ids", bool(self.route_table_ids)),
                 ("elastic_ip", "allocation_id", bool(self.allocation_id)),
                 ("route53", "hosted_zone_id", bool(self.hosted_zone_id)),
                 ("route53", "record_name", bool(self.record_name)))
        for scenario, option, given in needs:
            if scenario in self.scenarios and not given:
                raise InputError(f"Scenario {scenario} needs {option}: the node policy is scoped to it.")
            if given and scenario not in self.scenarios:
                raise InputError(f"{option} is set but {scenario} is not in scenarios.")

    @property
    def zone_id(self) -> Optional[str]:
        match = ZONE_ID.match(self.hosted_zone_id or "")
        return match.group(1) if match else None


def _check_node(node: NodeSpec) -> None:
    if not SUBNET_ID.match(node.subnet_id or ""):
        raise InputError(f"Node {node.name}: subnet_id '{node.subnet_id}' is not a subnet id (subnet-...).")
    if node.private_ip:
        try:
            ipaddress.IPv4Address(node.private_ip)
        except ValueError:
            raise InputError(f"Node {node.name}: private_ip '{node.private_ip}' is not an IPv4 address.") from None
    if node.instance_id and not INSTANCE_ID.match(node.instance_id):
        raise InputError(f"Node {node.name}: instance_id '{node.instance_id}' is not an instance id (i-...).")


def _check_cidr(option: str, cidr: str) -> None:
    try:
        ipaddress.ip_network(cidr, strict=True)
    except ValueError as exc:
        raise InputError(f"{option} entry '{cidr}' is not a CIDR block ({exc}).") from None


# ---------------------------------------------------------------------------------------------
# Security group rules


@dataclasses.dataclass(frozen=True, order=True)
class Rule:
    """One ingress permission: protocol, port range, and one source (the group itself or a CIDR)."""

    protocol: str
    from_port: int
    to_port: int
    source: str        # "self", or a CIDR
    description: str = dataclasses.field(default="", compare=False)

    def __str__(self) -> str:
        ports = str(self.from_port) if self.from_port == self.to_port else f"{self.from_port}-{self.to_port}"
        return f"{self.protocol} {ports} from {self.source}"

    def permission(self, group_id: str) -> Dict[str, Any]:
        item: Dict[str, Any] = {"IpProtocol": self.protocol, "FromPort": self.from_port, "ToPort": self.to_port}
        described = {"Description": self.description} if self.description else {}
        if self.source == "self" or self.source.startswith("sg-"):
            source = group_id if self.source == "self" else self.source
            item["UserIdGroupPairs"] = [{"GroupId": source, **described}]
        elif ":" in self.source:
            item["Ipv6Ranges"] = [{"CidrIpv6": self.source, **described}]
        else:
            item["IpRanges"] = [{"CidrIp": self.source, **described}]
        return item


def wanted_rules(spec: PairSpec) -> List[Rule]:
    """Only the ports the roles use: corosync and PostgreSQL between the two nodes (the group
    references itself), SSH from admins, PostgreSQL from clients.

    corosync: the heartbeat role runs one knet link on one UDP port (5405 by default); the 5404-5406
    range of older guides is for corosync 2's udp/udpu transports, which knet does not use.
    PostgreSQL between the nodes carries streaming replication and pg_rewind. Nothing runs pcsd
    (TCP 2224: the roles drive crmsh and the CIB directly), and no role has the nodes SSH to each
    other (Ansible reaches each node from the controller), so neither is opened.
    """
    port = int(spec.corosync_port)
    rules = [Rule("udp", port, port, "self", "corosync knet"),
             Rule("tcp", 5432, 5432, "self", "PostgreSQL replication")]
    rules += [Rule("tcp", 22, 22, str(ipaddress.ip_network(c)), "SSH from admins") for c in spec.admin_cidrs]
    rules += [Rule("tcp", 5432, 5432, str(ipaddress.ip_network(c)), "PostgreSQL clients") for c in spec.client_cidrs]
    return sorted(set(rules))


PROTOCOLS = {"6": "tcp", "17": "udp", "1": "icmp"}


def rules_of(group: Dict[str, Any]) -> List[Rule]:
    """The group's ingress rules, one per source; a reference to another group keeps its id."""
    found = []
    for perm in group.get("IpPermissions", []):
        proto = str(perm.get("IpProtocol", "-1")).lower()
        proto = PROTOCOLS.get(proto, proto)
        low, high = int(perm.get("FromPort", -1)), int(perm.get("ToPort", -1))
        for pair in perm.get("UserIdGroupPairs", []):
            source = "self" if pair.get("GroupId") == group["GroupId"] else pair.get("GroupId", "?")
            found.append(Rule(proto, low, high, source, pair.get("Description", "")))
        for rng in perm.get("IpRanges", []):
            found.append(Rule(proto, low, high, rng["CidrIp"], rng.get("Description", "")))
        for rng in perm.get("Ipv6Ranges", []):
            found.append(Rule(proto, low, high, rng["CidrIpv6"], rng.get("Description", "")))
    return sorted(set(found))


# ---------------------------------------------------------------------------------------------
# What exists (read once by resolve; every write is planned against it)


@dataclasses.dataclass
class NodeState:
    spec: NodeSpec
    availability_zone: str
    adopted: bool = False
    instance: Optional[Dict[str, Any]] = None     # as described by EC2; None: to launch
    eni: Optional[Dict[str, Any]] = None          # its primary network interface, as described
    root_volume: Optional[Dict[str, Any]] = None  # its root EBS volume, as described
    launched: bool = False                        # launched by this run

    @property
    def node(self) -> Optional[Node]:
        return node_from_instance(self.instance) if self.instance else None


@dataclasses.dataclass
class Pair:
    spec: PairSpec
    region: str
    account_id: str
    partition: str
    vpc_id: str
    nodes: List[NodeState]
    group: Optional[Dict[str, Any]] = None
    role: Optional[Dict[str, Any]] = None
    role_policy: Optional[str] = None            # normalized JSON of the inline policy, if any
    profile: Optional[Dict[str, Any]] = None
    image: Optional[Dict[str, Any]] = None               # the image to launch from, as described
    record_fqdn: Optional[str] = None                    # record_name inside the hosted zone

    @property
    def policy(self) -> Dict[str, Any]:
        s = self.spec
        return iam_policy.node_policy(s.name, self.region, self.account_id, s.scenarios, s.route_table_ids,
                                      s.allocation_id, s.zone_id, self.record_fqdn)

    @property
    def role_arn(self) -> str:
        return (self.role or {}).get("Arn") or f"arn:{self.partition}:iam::{self.account_id}:role/{self.spec.role_name}"

    @property
    def profile_arn(self) -> str:
        default = f"arn:{self.partition}:iam::{self.account_id}:instance-profile/{self.spec.role_name}"
        return (self.profile or {}).get("Arn") or default

    @property
    def group_id(self) -> str:
        return (self.group or {}).get("GroupId") or NEW

    def tags(self, node: Optional[NodeSpec] = None, name: bool = False) -> List[Dict[str, str]]:
        tags = [{"Key": CLUSTER_TAG, "Value": self.spec.name}]
        if node is not None:
            tags.append({"Key": NODE_TAG, "Value": node.name})
            if name:
                tags.append({"Key": "Name", "Value": node.name})
            if self.spec.lab_host:
                tags.append({"Key": LAB_HOST_TAG, "Value": "true"})
        return tags


def _owned_elsewhere(kind: str, label: str, tags: Optional[List[Dict[str, str]]], cluster: str) -> None:
    owner = tag_value(tags, CLUSTER_TAG)
    if owner not in (None, cluster):
        raise InputError(f"{kind} {label} belongs to cluster '{owner}' (tag {CLUSTER_TAG}), not to '{cluster}'.")


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
    _owned_elsewhere("Instance", instance["InstanceId"], instance.get("Tags"), spec.name)
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


def check_image(aws: AwsSession, spec: PairSpec) -> Dict[str, Any]:
    """A node to launch needs an existing image and an instance type (and the key pair, if named);
    with encryption on, the image must have an EBS root volume. Returns the image."""
    if not spec.image_id or not spec.instance_type:
        raise InputError("image_id and instance_type are required to launch a node (a node without instance_id "
                         "that this cluster has not launched yet).")
    images = _read_or_none(aws, "describe_images", spec.image_id, "Images", ("InvalidAMIID.NotFound",
                           "InvalidAMIID.Malformed", "InvalidAMIID.Unavailable"), ImageIds=[spec.image_id])
    if not images:
        raise InputError(f"image_id {spec.image_id} is not an image this account can launch in this region.")
    if spec.key_name:
        keys = _read_or_none(aws, "describe_key_pairs", spec.key_name, "KeyPairs", ("InvalidKeyPair.NotFound",),
                             KeyNames=[spec.key_name])
        if not keys:
            raise InputError(f"key_name '{spec.key_name}' is not a key pair in this region.")
    if spec.encrypt_root_volume:
        node_security.root_device_mapping(images[0], spec.kms_key_id)
    return images[0]


def _read_or_none(aws: AwsSession, operation: str, resource: str, key: str, missing: Sequence[str],
                  service: str = "ec2", **params: Any) -> Any:
    try:
        return aws.call(service, operation, resource, **params).get(key)
    except AwsCallError as exc:
        if exc.code in missing:
            return None
        raise


def check_scenario_resources(aws: AwsSession, spec: PairSpec, vpc_id: str) -> Optional[str]:
    """The route tables, Elastic IP and hosted zone the policy is scoped to exist (and fit the VPC);
    returns the record's FQDN inside the zone (route53), as the agent writes it."""
    if spec.route_table_ids:
        ids = list(spec.route_table_ids)
        tables = aws.paginate("ec2", "describe_route_tables", "RouteTables", ", ".join(ids),
                              Filters=[{"Name": "route-table-id", "Values": ids}])
        by_id = {t["RouteTableId"]: t for t in tables}
        for rtb in ids:
            if rtb not in by_id:
                raise InputError(f"Route table '{rtb}' does not exist: expected a route table of {vpc_id}.")
            if by_id[rtb].get("VpcId") != vpc_id:
                raise InputError(f"Route table {rtb} belongs to {by_id[rtb].get('VpcId')}, not to the pair's {vpc_id}.")
    if spec.allocation_id:
        found = _read_or_none(aws, "describe_addresses", spec.allocation_id, "Addresses",
                              ("InvalidAllocationID.NotFound", "InvalidAllocationID.Malformed",
                               "InvalidAddress.NotFound"), AllocationIds=[spec.allocation_id])
        if not found:
            raise InputError(f"Elastic IP {spec.allocation_id} is not allocated in this account and region.")
    if spec.zone_id:
        zone = _read_or_none(aws, "get_hosted_zone", spec.zone_id, "HostedZone", ("NoSuchHostedZone", "InvalidInput"),
                             service="route53", Id=spec.zone_id)
        if not zone:
            raise InputError(f"Hosted zone id {spec.zone_id} does not exist in this account.")
        if spec.record_name:
            return dns_record.record_fqdn(spec.record_name, dns_record.normalize_name(zone["Name"]))
    return None


def read_group(aws: AwsSession, spec: PairSpec, vpc_id: str) -> Optional[Dict[str, Any]]:
    groups = aws.paginate("ec2", "describe_security_groups", "SecurityGroups", spec.group_name,
                          Filters=[{"Name": "vpc-id", "Values": [vpc_id]},
                                   {"Name": "group-name", "Values": [spec.group_name]}])
    # The name cannot hold a wildcard today (CLUSTER_NAME), but the filter is not what decides.
    groups = [g for g in groups if g.get("GroupName") == spec.group_name]
    return groups[0] if groups else None


def read_iam(aws: AwsSession, pair: Pair) -> None:
    name = pair.spec.role_name
    pair.role = _read_or_none(aws, "get_role", name, "Role", ("NoSuchEntity",), service="iam", RoleName=name)
    if pair.role:
        _owned_elsewhere("IAM role", name, pair.role.get("Tags"), pair.spec.name)
        answer = _read_or_none(aws, "get_role_policy", name, "PolicyDocument", ("NoSuchEntity",), service="iam",
                               RoleName=name, PolicyName=POLICY_NAME)
        pair.role_policy = _normalized(answer) if answer else None
    pair.profile = _read_or_none(aws, "get_instance_profile", name, "InstanceProfile", ("NoSuchEntity",),
                                 service="iam", InstanceProfileName=name)
    if pair.profile:
        _owned_elsewhere("Instance profile", name, pair.profile.get("Tags"), pair.spec.name)
        others = [r["RoleName"] for r in pair.profile.get("Roles", []) if r["RoleName"] != name]
        if others:
            raise InputError(f"Instance profile {name} holds role {others[0]}: it can hold one role only, "
                             f"and it must be {name}.")


def _normalized(document: Any) -> str:
    # botocore decodes IAM's URL-encoded JSON; a raw answer (some stubs) is decoded here.
    if isinstance(document, str) and document.startswith("%"):
        document = urllib.parse.unquote(document)
    return iam_policy.normalized(document)


def resolve(aws: AwsSession, spec: PairSpec) -> Pair:
    """Validate the input against AWS and read what exists; raises InputError before any write."""
    spec.validate()
    vpc_id, account_id, subnets = read_subnets(aws, spec)
    for node in spec.nodes:
        check_private_ip(node, subnets[node.subnet_id])
    states = [find_instance(aws, spec, node, subnets[node.subnet_id]) for node in spec.nodes]
    ids = [s.instance["InstanceId"] for s in states if s.instance]
    if len(ids) == 2 and ids[0] == ids[1]:
        raise InputError(f"Both nodes resolve to instance {ids[0]}: a pair needs two instances.")
    read_enis(aws, states)
    read_root_volumes(aws, states)
    image = check_image(aws, spec) if any(s.instance is None for s in states) else None
    record_fqdn = check_scenario_resources(aws, spec, vpc_id)
    region = aws.settings.region or aws.client("ec2").meta.region_name
    pair = Pair(spec, region, account_id, iam_policy.partition_of(region), vpc_id, states, image=image,
                record_fqdn=record_fqdn)
    pair.group = read_group(aws, spec, vpc_id)
    if pair.group:
        _owned_elsewhere("Security group", pair.group["GroupId"], pair.group.get("Tags"), spec.name)
    read_iam(aws, pair)
    return pair


# ---------------------------------------------------------------------------------------------
# Converging, step by step; each step plans against what resolve read


class Writer:
    """Makes a write (or, in check mode, records it) and keeps a one-line summary of each."""

    def __init__(self, aws: AwsSession, check_mode: bool):
        self.aws = aws
        self.check_mode = check_mode
        self.actions: List[str] = []

    def write(self, service: str, operation: str, resource: str, summary: str, **params: Any) -> Dict[str, Any]:
        self.actions.append(summary)
        if self.check_mode:
            self.aws.plan(service, operation, resource, **params)
            return {}
        return self.aws.call(service, operation, resource, **params)


def ensure_group(w: Writer, pair: Pair) -> None:
    """The security group exists, is tagged, and holds exactly the wanted ingress rules."""
    spec = pair.spec
    if pair.group is None:
        try:
            made = w.write("ec2", "create_security_group", spec.group_name, f"create security group {spec.group_name}",
                           GroupName=spec.group_name, VpcId=pair.vpc_id,
                           Description=f"ec2ha.cluster {spec.name}: traffic between the two nodes",
                           TagSpecifications=[{"ResourceType": "security-group",
                                               "Tags": pair.tags() + [{"Key": "Name", "Value": spec.group_name}]}])
        except AwsCallError as exc:
            if exc.code != "InvalidGroup.Duplicate":
                raise
            # Another run made it between our read and our create: take it and reconcile its rules.
            pair.group = read_group(w.aws, spec, pair.vpc_id)
            if pair.group is None:
                raise
            _owned_elsewhere("Security group", pair.group["GroupId"], pair.group.get("Tags"), spec.name)
        else:
            # A new group: AWS adds an allow-all egress rule and no ingress rule.
            pair.group = {"GroupId": made.get("GroupId", NEW), "IpPermissions": [], "Tags": pair.tags()}
    elif tag_value(pair.group.get("Tags"), CLUSTER_TAG) is None:
        w.write("ec2", "create_tags", pair.group_id, f"tag security group {pair.group_id}",
                Resources=[pair.group_id], Tags=pair.tags())
    have, want = set(rules_of(pair.group)), set(wanted_rules(spec))
    missing, extra = sorted(want - have), sorted(have - want)
    if missing:
        try:
            w.write("ec2", "authorize_security_group_ingress", pair.group_id,
                    "allow " + "; ".join(str(r) for r in missing), GroupId=pair.group_id,
                    IpPermissions=[r.permission(pair.group_id) for r in missing])
        except AwsCallError as exc:
            # Another run added one of them first; the final re-read shows whether all are there.
            if exc.code != "InvalidPermission.Duplicate":
                raise
    if extra:
        w.write("ec2", "revoke_security_group_ingress", pair.group_id,
                "remove " + "; ".join(str(r) for r in extra), GroupId=pair.group_id,
                # As read, description included: moto 5.2.5 matches a rule only with it (EC2 ignores it).
                IpPermissions=[r.permission(pair.group_id) for r in extra])


def ensure_role(w: Writer, pair: Pair) -> None:
    """Role (EC2 trust), its one inline policy, the instance profile holding it; all tagged."""
    name = pair.spec.role_name
    trust = iam_policy.trust_policy()
    if pair.role is None:
        made = w.write("iam", "create_role", name, f"create IAM role {name}", RoleName=name,
                       AssumeRolePolicyDocument=json.dumps(trust), Tags=pair.tags(),
                       Description=f"ec2ha.cluster {pair.spec.name}: fencing and endpoint moves")
        pair.role = made.get("Role") or {"RoleName": name}
    else:
        if _normalized(pair.role.get("AssumeRolePolicyDocument") or "{}") != iam_policy.normalized(trust):
            w.write("iam", "update_assume_role_policy", name, f"let only EC2 assume {name}", RoleName=name,
                    PolicyDocument=json.dumps(trust))
        if tag_value(pair.role.get("Tags"), CLUSTER_TAG) is None:
            w.write("iam", "tag_role", name, f"tag IAM role {name}", RoleName=name, Tags=pair.tags())
    policy = pair.policy
    if pair.role_policy != iam_policy.normalized(policy):
        w.write("iam", "put_role_policy", name, f"put policy {POLICY_NAME} on {name}", RoleName=name,
                PolicyName=POLICY_NAME, PolicyDocument=json.dumps(policy))
    if pair.profile is None:
        made = w.write("iam", "create_instance_profile", name, f"create instance profile {name}",
                       InstanceProfileName=name, Tags=pair.tags())
        pair.profile = made.get("InstanceProfile") or {"InstanceProfileName": name, "Roles": []}
    if not any(r["RoleName"] == name for r in pair.profile.get("Roles", [])):
        w.write("iam", "add_role_to_instance_profile", name, f"put role {name} in instance profile {name}",
                InstanceProfileName=name, RoleName=name)


def launch(w: Writer, pair: Pair, state: NodeState, clock: Callable[[], float],
           sleep: Callable[[float], None]) -> None:
    """RunInstances for a node that has no instance yet; retries while a new profile is not usable."""
    spec, node = pair.spec, state.spec
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
    deadline = clock() + PROFILE_WAIT
    delay = 1.0
    while True:
        try:
            answer = w.write("ec2", "run_instances", node.name, f"launch node {node.name} in {node.subnet_id}", **params)
            break
        except AwsCallError as exc:
            if exc.code != PROFILE_NOT_READY or "profile" not in str(exc).lower() or clock() + delay > deadline:
                raise
            w.actions.pop()
            sleep(delay)
            delay = min(delay * 2, 8.0)
    state.launched = True
    if answer:
        state.instance = answer["Instances"][0]


def ensure_node(w: Writer, pair: Pair, state: NodeState) -> List[str]:
    """Tags, the cluster's security group, the instance profile, the metadata options and (route
    table scenario) the source/destination check on an existing node; returns warnings for what is
    left as found (another instance profile, a stopped node, an unencrypted root volume)."""
    instance, eni = state.instance or {}, state.eni or {}
    iid, eni_id, node = instance.get("InstanceId", NEW), eni.get("NetworkInterfaceId", NEW), state.spec
    warnings: List[str] = []
    if instance.get("State", {}).get("Name") not in ("pending", "running"):
        warnings.append(f"Node {node.name} ({iid}) is {instance.get('State', {}).get('Name')}: left as it is "
                        "(start it, or let the cluster do it).")
    wanted = pair.tags(node, name=tag_value(instance.get("Tags"), "Name") is None)
    missing = [t for t in wanted if tag_value(instance.get("Tags"), t["Key"]) != t["Value"]]
    if missing:
        w.write("ec2", "create_tags", iid, f"tag instance {iid} ({node.name})", Resources=[iid], Tags=missing)
    eni_missing = [t for t in pair.tags(node) if tag_value(eni.get("TagSet"), t["Key"]) != t["Value"]]
    if eni_missing:
        # The node policy allows ModifyNetworkInterfaceAttribute / AssociateAddress on tagged ENIs only.
        w.write("ec2", "create_tags", eni_id, f"tag network interface {eni_id} ({node.name})",
                Resources=[eni_id], Tags=eni_missing)
    groups = [g["GroupId"] for g in eni.get("Groups", [])]
    if pair.group_id not in groups:
        w.write("ec2", "modify_network_interface_attribute", eni_id,
                f"add security group {pair.group_id} to {eni_id} ({node.name})",
                NetworkInterfaceId=eni_id, Groups=groups + [pair.group_id])
    profile = (instance.get("IamInstanceProfile") or {}).get("Arn")
    if profile is None:
        w.write("ec2", "associate_iam_instance_profile", iid, f"give {iid} ({node.name}) instance profile "
                f"{pair.spec.role_name}", InstanceId=iid, IamInstanceProfile={"Arn": pair.profile_arn})
    elif profile != pair.profile_arn:
        warnings.append(f"Node {node.name} ({iid}) keeps its instance profile {profile}: give its role the "
                        f"policy {POLICY_NAME} or replace the profile with {pair.profile_arn}.")
    if "route_table" in pair.spec.scenarios and eni.get("SourceDestCheck", True):
        # The VIP's packets reach the node with a destination that is not its own address.
        w.write("ec2", "modify_network_interface_attribute", eni_id,
                f"turn the source/destination check off on {eni_id} ({node.name})",
                NetworkInterfaceId=eni_id, SourceDestCheck={"Value": False})
    ensure_metadata_options(w, iid, node.name, instance)
    if pair.spec.encrypt_root_volume:
        warning = node_security.unencrypted_warning(f"{node.name} ({iid})", state.root_volume)
        warnings += [warning] if warning else []
    return warnings


def ensure_metadata_options(w: Writer, iid: str, name: str, instance: Dict[str, Any]) -> None:
    """IMDSv2 only, hop limit 1, endpoint on: one write when any of the three differs."""
    differ = node_security.metadata_difference(instance)
    if differ:
        wanted = node_security.METADATA_OPTIONS
        # All three are sent, not only those that differ: moto 5.2.5 resets what a call leaves out,
        # and the call then says the whole wanted state (EC2 keeps what is already so).
        w.write("ec2", "modify_instance_metadata_options", iid,
                f"set {', '.join(f'{k}={wanted[k]}' for k in differ)} on the metadata options of {iid} ({name})",
                InstanceId=iid, **wanted)


def wait_running(aws: AwsSession, instance_ids: Sequence[str], timeout: float,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> Dict[str, Dict[str, Any]]:
    """Re-read until every instance is running (bounded); VerifyError naming the late ones."""
    deadline = clock() + timeout
    delay = 1.0
    while True:
        found = {i["InstanceId"]: i for i in read_instances(
            aws, [{"Name": "instance-id", "Values": list(instance_ids)}], ", ".join(instance_ids))}
        late = {i: (found.get(i) or {}).get("State", {}).get("Name", "missing") for i in instance_ids
                if (found.get(i) or {}).get("State", {}).get("Name") != "running"}
        if not late:
            return found
        if clock() + delay > deadline:
            states = ", ".join(f"{i} is {s}" for i, s in late.items())
            raise VerifyError(f"After {timeout:g} s, {states}: the pair's instances did not reach running.")
        sleep(delay)
        delay = min(delay * 1.5, 10.0)


@dataclasses.dataclass
class ConvergeResult:
    changed: bool
    actions: List[str]
    warnings: List[str]
    before: Dict[str, Any]
    after: Dict[str, Any]
    pair: Pair

    def as_dict(self) -> Dict[str, Any]:
        p = self.pair
        return {"changed": self.changed, "actions": list(self.actions), "vpc_id": p.vpc_id,
                "nodes": self.after["nodes"], "security_group_id": self.after["security_group"]["id"],
                "role_arn": p.role_arn, "instance_profile_arn": p.profile_arn, "policy": p.policy,
                "before": self.before, "after": self.after}


def summary(pair: Pair) -> Dict[str, Any]:
    """What the pair looks like (for before/after, --diff, and the inventory-facing result)."""
    nodes = {}
    for state in pair.nodes:
        node, eni = state.node, state.eni or {}
        nodes[state.spec.name] = {
            "instance_id": node.instance_id if node else None,
            "state": node.state if node else None,
            "private_ip": node.private_ip if node else state.spec.private_ip,
            "public_ip": node.public_ip if node else None,
            "network_interface_id": eni.get("NetworkInterfaceId") or (primary_eni_id(state.instance)
                                                                      if state.instance else None),
            "availability_zone": state.availability_zone,
            "subnet_id": state.spec.subnet_id,
            "source_dest_check": eni.get("SourceDestCheck") if eni else None,
            "metadata_options": node_security.metadata_summary(state.instance),
            "root_volume_encrypted": state.root_volume.get("Encrypted") if state.root_volume else None,
            "adopted": state.adopted,
        }
    group = pair.group or {}
    return {"security_group": {"id": group.get("GroupId"), "ingress": [str(r) for r in rules_of(group)]
                               if group else []},
            "role": pair.spec.role_name if pair.role else None,
            "policy": json.loads(pair.role_policy) if pair.role_policy else None,
            "instance_profile": pair.spec.role_name if pair.profile else None,
            "nodes": nodes}


def predicted(pair: Pair) -> Dict[str, Any]:
    """Check mode's "after": the state the planned writes would give."""
    after = summary(pair)
    after["security_group"] = {"id": pair.group_id, "ingress": [str(r) for r in wanted_rules(pair.spec)]}
    after["role"] = after["instance_profile"] = pair.spec.role_name
    after["policy"] = json.loads(iam_policy.normalized(pair.policy))
    for state in pair.nodes:
        node = after["nodes"][state.spec.name]
        if node["instance_id"] is None:
            node.update(instance_id=NEW, state="running", network_interface_id=NEW)
            if pair.spec.encrypt_root_volume:
                node["root_volume_encrypted"] = True
        node["metadata_options"] = node_security.wanted_metadata_summary()
        if "route_table" in pair.spec.scenarios:
            node["source_dest_check"] = False
    return after


def reread(aws: AwsSession, pair: Pair) -> None:
    """Read back everything the run touched, for the result and to verify it."""
    ids = [s.instance["InstanceId"] for s in pair.nodes if s.instance]
    found = {i["InstanceId"]: i for i in read_instances(
        aws, [{"Name": "instance-id", "Values": ids}], ", ".join(ids))} if ids else {}
    for state in pair.nodes:
        if state.instance:
            state.instance = found.get(state.instance["InstanceId"], state.instance)
    read_enis(aws, pair.nodes)
    read_root_volumes(aws, pair.nodes)
    pair.group = read_group(aws, pair.spec, pair.vpc_id)
    read_iam(aws, pair)


def verify(pair: Pair) -> None:
    problems = []
    if pair.group is None or set(rules_of(pair.group)) != set(wanted_rules(pair.spec)):
        problems.append(f"security group {pair.spec.group_name} does not hold exactly the wanted rules")
    if pair.role_policy != iam_policy.normalized(pair.policy):
        problems.append(f"role {pair.spec.role_name} does not hold policy {POLICY_NAME}")
    for state in pair.nodes:
        eni = state.eni or {}
        if pair.group_id not in [g["GroupId"] for g in eni.get("Groups", [])]:
            problems.append(f"node {state.spec.name} is not in security group {pair.group_id}")
        if "route_table" in pair.spec.scenarios and eni.get("SourceDestCheck", True):
            problems.append(f"node {state.spec.name} has its source/destination check on")
        if state.instance and node_security.metadata_difference(state.instance):
            problems.append(f"node {state.spec.name} does not require IMDSv2 tokens with hop limit 1")
        if state.launched and pair.spec.encrypt_root_volume and not (state.root_volume or {}).get("Encrypted"):
            problems.append(f"node {state.spec.name} was launched without an encrypted root volume")
    if problems:
        raise VerifyError(f"After the writes, {'; '.join(problems)}.")


def converge(aws: AwsSession, pair: Pair, check_mode: bool = False,
             clock: Callable[[], float] = time.monotonic,
             sleep: Callable[[float], None] = time.sleep) -> ConvergeResult:
    """Security group, then role/policy/profile, then instances; each writes only its difference.

    Check mode records the planned writes (``aws.plan``) and predicts "after". A real run waits
    for launched instances to run (bounded by wait_timeout), re-reads all, and verifies.
    """
    before = summary(pair)
    w = Writer(aws, check_mode)
    ensure_group(w, pair)
    ensure_role(w, pair)
    warnings: List[str] = []
    launched = []
    for state in pair.nodes:
        if state.instance is None:
            launch(w, pair, state, clock, sleep)
            if state.instance:
                launched.append(state.instance["InstanceId"])
    if launched:
        running = wait_running(aws, launched, float(pair.spec.wait_timeout), clock, sleep)
        for state in pair.nodes:
            if state.instance and state.instance["InstanceId"] in running:
                state.instance = running[state.instance["InstanceId"]]
        read_enis(aws, pair.nodes)
    for state in pair.nodes:
        warnings += ensure_node(w, pair, state) if (state.instance or not check_mode) else []
        if state.instance is None and check_mode and "route_table" in pair.spec.scenarios:
            w.write("ec2", "modify_network_interface_attribute", NEW,
                    f"turn the source/destination check off on the new interface of {state.spec.name}",
                    NetworkInterfaceId=NEW, SourceDestCheck={"Value": False})
    changed = bool(w.actions)
    if check_mode:
        return ConvergeResult(changed, w.actions, warnings, before, predicted(pair), pair)
    if changed:
        reread(aws, pair)
        verify(pair)
    return ConvergeResult(changed, w.actions, warnings, before, summary(pair), pair)
