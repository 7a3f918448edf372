# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cluster pair build-out: two instances in two AZs, their security group, role and instance profile.

Pure boto3 through :class:`AwsSession` (no Ansible import), like the scenario cores:

    pair = resolve(aws, PairSpec(...))        # validates the input and reads everything; no write
    result = converge(aws, pair, check_mode)  # security group -> role, policy, profile -> instances,
                                              # each step writes only its difference; then re-read

The parts: ``pair_spec`` (what is asked, what exists), ``pair_security_group``, ``pair_role``,
``pair_nodes``; this file resolves and converges them. Every write is a ``scenario.Action``, made
(or in check mode recorded) by ``scenario.apply``, as in the scenario cores.

Every resource made or adopted carries the tag ec2ha:cluster=<name>; instances also carry
ec2ha:node=<node name>, which is how a re-run finds the instances it launched (no ClientToken:
a token would keep answering with a terminated instance long after it was replaced).
A failure midway leaves tagged, findable resources, so the next run finishes the job.
Every node gets IMDSv2 only with a hop limit of 1, and a launched node an encrypted root volume
(node_security).
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any, Callable, Dict, List, Optional

from ansible_collections.ec2ha.cluster.plugins.module_utils import (
    dns_record,
    elastic_ip,
    iam_policy,
    node_security,
    vip_route,
)
from ansible_collections.ec2ha.cluster.plugins.module_utils.aws import AwsSession, InputError, VerifyError, tag_value
from ansible_collections.ec2ha.cluster.plugins.module_utils.ids import IMAGE_NOT_FOUND, KEY_PAIR_NOT_FOUND
from ansible_collections.ec2ha.cluster.plugins.module_utils.pair_nodes import (
    check_private_ip,
    find_instance,
    launch,
    node_warnings,
    plan_node,
    primary_eni_id,
    read_by_ids,
    read_enis,
    read_root_volumes,
    read_subnets,
    source_dest_check_off,
    wait_running,
)
from ansible_collections.ec2ha.cluster.plugins.module_utils.pair_role import ensure_role, read_iam, read_or_none
from ansible_collections.ec2ha.cluster.plugins.module_utils.pair_security_group import (
    ensure_group,
    read_group,
    rules_of,
    wanted_rules,
)
from ansible_collections.ec2ha.cluster.plugins.module_utils.pair_spec import (NEW, POLICY_NAME, NodeSpec, NodeState,
                                                                              Pair, PairSpec, owned_elsewhere)
from ansible_collections.ec2ha.cluster.plugins.module_utils.scenario import Action, apply

# What callers (the module, the tests) reach through this file.
__all__ = ["ConvergeResult", "NodeSpec", "NodeState", "Pair", "PairSpec", "converge", "ensure_group", "launch",
           "resolve", "rules_of", "tag_value", "wanted_rules"]


def check_image(aws: AwsSession, spec: PairSpec) -> Dict[str, Any]:
    """A node to launch needs an existing image and an instance type (and the key pair, if named);
    with encryption on, the image must have an EBS root volume. Returns the image."""
    if not spec.image_id or not spec.instance_type:
        raise InputError("image_id and instance_type are required to launch a node (a node without instance_id "
                         "that this cluster has not launched yet).")
    images = read_or_none(aws, "describe_images", spec.image_id, "Images", IMAGE_NOT_FOUND, ImageIds=[spec.image_id])
    if not images:
        raise InputError(f"image_id {spec.image_id} is not an image this account can launch in this region.")
    if spec.key_name:
        keys = read_or_none(aws, "describe_key_pairs", spec.key_name, "KeyPairs", KEY_PAIR_NOT_FOUND,
                            KeyNames=[spec.key_name])
        if not keys:
            raise InputError(f"key_name '{spec.key_name}' is not a key pair in this region.")
    if spec.encrypt_root_volume:
        node_security.root_device_mapping(images[0], spec.kms_key_id)
    return images[0]


def check_scenario_resources(aws: AwsSession, spec: PairSpec, vpc_id: str) -> Optional[str]:
    """The route tables, Elastic IP and hosted zone the policy is scoped to exist (and fit the VPC),
    read by the scenario cores' own readers; returns the record's FQDN inside the zone (dns_record),
    as the agent writes it."""
    if spec.route_table_ids:
        tables = vip_route.describe_tables(aws, list(spec.route_table_ids))
        vip_route.pick_tables(tables, list(spec.route_table_ids), vpc_id, "", owner="the pair's")
    if spec.allocation_id:
        elastic_ip.read_address(aws, allocation_id=spec.allocation_id)
    if spec.zone_id:
        zone = dns_record.find_zone(aws, spec.zone_id)
        if spec.record_name:
            return dns_record.record_fqdn(spec.record_name, zone.name)
    return None


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
        owned_elsewhere("Security group", pair.group["GroupId"], pair.group.get("Tags"), spec.name)
    read_iam(aws, pair)
    return pair


@dataclasses.dataclass
class ConvergeResult:
    changed: bool
    actions: List[Action]
    warnings: List[str]
    before: Dict[str, Any]
    after: Dict[str, Any]
    pair: Pair

    def as_dict(self) -> Dict[str, Any]:
        p = self.pair
        return {"changed": self.changed, "actions": [a.summary for a in self.actions], "vpc_id": p.vpc_id,
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
        if pair.routes_vip:
            node["source_dest_check"] = False
    return after


def reread(aws: AwsSession, pair: Pair) -> None:
    """Read back everything the run touched, for the result and to verify it."""
    found = read_by_ids(aws, [s.instance["InstanceId"] for s in pair.nodes if s.instance])
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
        if pair.routes_vip and eni.get("SourceDestCheck", True):
            problems.append(f"node {state.spec.name} has its source/destination check on")
        if state.instance and node_security.metadata_difference(state.instance):
            problems.append(f"node {state.spec.name} does not require IMDSv2 tokens with hop limit 1")
        if state.launched and pair.spec.encrypt_root_volume and not (state.root_volume or {}).get("Encrypted"):
            problems.append(f"node {state.spec.name} was launched without an encrypted root volume")
    if problems:
        raise VerifyError(f"After the writes, {'; '.join(problems)}.")


def launch_missing(aws: AwsSession, pair: Pair, check_mode: bool, clock: Callable[[], float],
                   sleep: Callable[[float], None]) -> List[Action]:
    """Launch the nodes that have no instance; a real run waits for them to run (bounded)."""
    done: List[Action] = []
    launched = []
    for state in pair.nodes:
        if state.instance is None:
            done += launch(aws, pair, state, check_mode, clock, sleep)
            if state.instance:
                launched.append(state.instance["InstanceId"])
    if launched:
        running = wait_running(aws, launched, float(pair.spec.wait_timeout), clock, sleep)
        for state in pair.nodes:
            if state.instance and state.instance["InstanceId"] in running:
                state.instance = running[state.instance["InstanceId"]]
        read_enis(aws, pair.nodes)
    return done


def converge(aws: AwsSession, pair: Pair, check_mode: bool = False,
             clock: Callable[[], float] = time.monotonic,
             sleep: Callable[[float], None] = time.sleep) -> ConvergeResult:
    """Security group, then role/policy/profile, then instances; each writes only its difference.

    Check mode records the planned writes (``aws.plan``) and predicts "after". A real run waits
    for launched instances to run (bounded by wait_timeout), re-reads all, and verifies.
    """
    before = summary(pair)
    done = ensure_group(aws, pair, check_mode)
    done += ensure_role(aws, pair, check_mode)
    done += launch_missing(aws, pair, check_mode, clock, sleep)
    warnings: List[str] = []
    for state in pair.nodes:
        if state.instance or not check_mode:
            warnings += node_warnings(pair, state)
            actions = plan_node(pair, state)
        elif pair.routes_vip:
            actions = [source_dest_check_off(NEW, f"the new interface of {state.spec.name}")]
        else:
            actions = []
        apply(aws, actions, check_mode)
        done += actions
    changed = bool(done)
    if check_mode:
        return ConvergeResult(changed, done, warnings, before, predicted(pair), pair)
    if changed:
        reread(aws, pair)
        verify(pair)
    return ConvergeResult(changed, done, warnings, before, summary(pair), pair)
