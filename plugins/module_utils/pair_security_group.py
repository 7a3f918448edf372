# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cluster pair's security group ``<name>-cluster``: the ingress rules the roles need, read and
reconciled exactly (the group is the cluster's own). Pure boto3 through :class:`AwsSession`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any, Dict, List, Optional

from ansible_collections.ec2ha.cluster.plugins.module_utils.aws import AwsCallError, AwsSession, tag_value
from ansible_collections.ec2ha.cluster.plugins.module_utils.ids import CLUSTER_TAG, NAME_TAG
from ansible_collections.ec2ha.cluster.plugins.module_utils.pair_spec import NEW, Pair, PairSpec, owned_elsewhere
from ansible_collections.ec2ha.cluster.plugins.module_utils.scenario import Action, apply

PROTOCOLS = {"6": "tcp", "17": "udp", "1": "icmp"}


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


def read_group(aws: AwsSession, spec: PairSpec, vpc_id: str) -> Optional[Dict[str, Any]]:
    groups = aws.paginate("ec2", "describe_security_groups", "SecurityGroups", spec.group_name,
                          Filters=[{"Name": "vpc-id", "Values": [vpc_id]},
                                   {"Name": "group-name", "Values": [spec.group_name]}])
    # The name cannot hold a wildcard today (CLUSTER_NAME), but the filter is not what decides.
    groups = [g for g in groups if g.get("GroupName") == spec.group_name]
    return groups[0] if groups else None


def create_action(pair: Pair) -> Action:
    spec = pair.spec
    params = {"GroupName": spec.group_name, "VpcId": pair.vpc_id,
              "Description": f"ec2ha.cluster {spec.name}: traffic between the two nodes",
              "TagSpecifications": [{"ResourceType": "security-group",
                                     "Tags": pair.tags() + [{"Key": NAME_TAG, "Value": spec.group_name}]}]}
    return Action("create_security_group", spec.group_name, params, f"create security group {spec.group_name}")


def plan_rules(pair: Pair) -> List[Action]:
    """Authorize the missing rules, revoke the others: the group holds exactly the wanted ones."""
    have, want = set(rules_of(pair.group or {})), set(wanted_rules(pair.spec))
    missing, extra = sorted(want - have), sorted(have - want)
    actions = []
    if missing:
        actions.append(Action("authorize_security_group_ingress", pair.group_id, {
            "GroupId": pair.group_id, "IpPermissions": [r.permission(pair.group_id) for r in missing]},
            "allow " + "; ".join(str(r) for r in missing)))
    if extra:
        # As read, description included: moto 5.2.5 matches a rule only with it (EC2 ignores it).
        actions.append(Action("revoke_security_group_ingress", pair.group_id, {
            "GroupId": pair.group_id, "IpPermissions": [r.permission(pair.group_id) for r in extra]},
            "remove " + "; ".join(str(r) for r in extra)))
    return actions


def ensure_group(aws: AwsSession, pair: Pair, check_mode: bool = False) -> List[Action]:
    """The security group exists, is tagged, and holds exactly the wanted ingress rules; returns
    the writes made (or, in check mode, planned)."""
    done: List[Action] = []
    if pair.group is None:
        create = create_action(pair)
        done.append(create)
        try:
            made = apply(aws, [create], check_mode)[0]
        except AwsCallError as exc:
            if exc.code != "InvalidGroup.Duplicate":
                raise
            # Another run made it between our read and our create: take it and reconcile its rules.
            pair.group = read_group(aws, pair.spec, pair.vpc_id)
            if pair.group is None:
                raise
            owned_elsewhere("Security group", pair.group["GroupId"], pair.group.get("Tags"), pair.spec.name)
        else:
            # A new group: AWS adds an allow-all egress rule and no ingress rule.
            pair.group = {"GroupId": made.get("GroupId", NEW), "IpPermissions": [], "Tags": pair.tags()}
    elif tag_value(pair.group.get("Tags"), CLUSTER_TAG) is None:
        done.append(Action("create_tags", pair.group_id, {"Resources": [pair.group_id], "Tags": pair.tags()},
                           f"tag security group {pair.group_id}"))
        apply(aws, done[-1:], check_mode)
    for action in plan_rules(pair):
        done.append(action)
        try:
            apply(aws, [action], check_mode)
        except AwsCallError as exc:
            # Another run added one of them first; the final re-read shows whether all are there.
            if exc.code != "InvalidPermission.Duplicate":
                raise
    return done
