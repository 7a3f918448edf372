# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The IAM policy a cluster node needs: fencing plus the chosen recovery scenarios, nothing more.

Pure Python (no boto3, no Ansible): ``cluster_pair`` puts the document on the nodes' role, and the
tests replay the agents' calls against it. The actions listed are exactly the calls made on a node:

- fencing (stock ``fence_aws``): DescribeInstances (status, list, its own state before it fences),
  StopInstances (off, ``Force=True``), StartInstances (on). Its reboot is off + on through the fencing
  library, so ec2:RebootInstances is never called and not granted.
- vip_route agent (``vip_route.resolve_target`` / ``converge`` / ``monitor``): DescribeInstances,
  DescribeVpcs, DescribeRouteTables, DescribeNetworkInterfaces, ModifyNetworkInterfaceAttribute (only
  when the ENI's source/destination check is on), ReplaceRoute, and CreateRoute: the monitor
  re-creates the VIP route when it was deleted by hand from one of the listed route tables.
- elastic_ip agent: DescribeAddresses, DescribeInstances, AssociateAddress.
- dns_record agent: ListHostedZonesByName (zone given by name) or GetHostedZone (by id),
  ListResourceRecordSets, ChangeResourceRecordSets (UPSERT of the one A record), GetChange;
  DescribeInstances.

Scoping: Describe* and ListHostedZonesByName support no resource-level permissions, so they are on
"*". Every write is on the resources it may touch: instances and ENIs carrying the tag
ec2ha:cluster=<name>, the listed route tables, the Elastic IP's allocation, the hosted zone and,
inside it, the one record name. What IAM cannot scope (docs/security.md): CreateRoute and
ReplaceRoute are authorized against the route table only; AWS defines no condition key for a
route's destination or target, so a node may write any route (0.0.0.0/0 too) in the listed tables.
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Optional, Sequence

from ansible_collections.ec2ha.cluster.plugins.module_utils.ids import CLUSTER_TAG, SCENARIOS, scenario_names


POLICY_VERSION = "2012-10-17"
# Route 53's normalized record names keep these characters as they are; any other is \ddd (octal).
PLAIN_NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")
OCTAL_ESCAPE = re.compile(r"\\(\d{3})")


def partition_of(region: str) -> str:
    """The ARN partition of a region (aws, aws-cn, aws-us-gov)."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def normalized_record_name(name: str) -> str:
    """A record name as route53:ChangeResourceRecordSetsNormalizedRecordNames compares it: lower case,
    no trailing dot, every character other than a-z 0-9 - _ . as a \\ddd octal escape (``*`` is \\052)."""
    text = OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), str(name).strip()).lower()
    text = text[:-1] if text.endswith(".") else text
    return "".join(c if c in PLAIN_NAME_CHARACTERS else f"\\{ord(c):03o}" for c in text)


def trust_policy() -> Dict[str, Any]:
    """Only EC2 may assume the node role (through the instance profile)."""
    return {"Version": POLICY_VERSION, "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


def _statement(sid: str, actions: Sequence[str], resources: Any,
               condition: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    statement: Dict[str, Any] = {"Sid": sid, "Effect": "Allow", "Action": sorted(actions), "Resource": resources}
    if condition:
        statement["Condition"] = condition
    return statement


def node_policy(cluster: str, region: str, account_id: str, scenarios: Sequence[str],
                route_table_ids: Sequence[str] = (), allocation_id: Optional[str] = None,
                hosted_zone_id: Optional[str] = None, record_name: Optional[str] = None) -> Dict[str, Any]:
    """The inline policy of the node role for ``scenarios`` (a subset of SCENARIOS, or their
    deprecated aliases route_table and route53) plus fencing.

    The scenario resources must be given for each chosen scenario (route tables, allocation id,
    zone id and record name): the policy grants writes on those only.
    """
    scenarios = scenario_names(scenarios)
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenarios {unknown}")
    ec2 = f"arn:{partition_of(region)}:ec2:{region}:{account_id}"
    tagged = {"StringEquals": {f"ec2:ResourceTag/{CLUSTER_TAG}": cluster}}
    describe = ["ec2:DescribeInstances"]
    statements: List[Dict[str, Any]] = [
        _statement("FenceClusterNodes", ["ec2:StartInstances", "ec2:StopInstances"], f"{ec2}:instance/*", tagged),
    ]
    if "vip_route" in scenarios:
        if not route_table_ids:
            raise ValueError("vip_route needs route_table_ids")
        describe += ["ec2:DescribeRouteTables", "ec2:DescribeNetworkInterfaces", "ec2:DescribeVpcs"]
        # The route table is all IAM can scope these two by: no condition key names the destination
        # or the target. ec2:Vpc would add nothing, as the tables are listed one by one.
        statements.append(_statement("MoveVipRoute", ["ec2:CreateRoute", "ec2:ReplaceRoute"],
                                     [f"{ec2}:route-table/{rtb}" for rtb in sorted(set(route_table_ids))]))
        statements.append(_statement("SourceDestCheckOff", ["ec2:ModifyNetworkInterfaceAttribute"],
                                     f"{ec2}:network-interface/*", tagged))
    if "elastic_ip" in scenarios:
        if not allocation_id:
            raise ValueError("elastic_ip needs allocation_id")
        describe.append("ec2:DescribeAddresses")
        # AssociateAddress is authorized against the address and the ENI / instance it goes to.
        statements.append(_statement("MoveElasticIp", ["ec2:AssociateAddress"], f"{ec2}:elastic-ip/{allocation_id}"))
        statements.append(_statement("MoveElasticIpToNode", ["ec2:AssociateAddress"],
                                     [f"{ec2}:instance/*", f"{ec2}:network-interface/*"], tagged))
    if "dns_record" in scenarios:
        if not hosted_zone_id or not record_name:
            raise ValueError("dns_record needs hosted_zone_id and record_name")
        zone = f"arn:{partition_of(region)}:route53:::hostedzone/{hosted_zone_id}"
        statements.append(_statement("FindZone", ["route53:ListHostedZonesByName"], "*"))
        statements.append(_statement("MoveRecord", ["route53:GetHostedZone", "route53:ListResourceRecordSets"], zone))
        # The core only UPSERTs the one A record: the condition keys say so. ForAllValues holds for
        # every change of the batch, and a batch always has at least one.
        statements.append(_statement(
            "UpsertRecord", ["route53:ChangeResourceRecordSets"], zone,
            {"ForAllValues:StringEquals": {
                "route53:ChangeResourceRecordSetsActions": ["UPSERT"],
                "route53:ChangeResourceRecordSetsRecordTypes": ["A"],
                "route53:ChangeResourceRecordSetsNormalizedRecordNames": [normalized_record_name(record_name)]}}))
        statements.append(_statement("WaitChange", ["route53:GetChange"],
                                     f"arn:{partition_of(region)}:route53:::change/*"))
    # Describe* calls support no resource-level permissions: "*" is the only choice AWS offers.
    statements.insert(0, _statement("Describe", describe, "*"))
    return {"Version": POLICY_VERSION, "Statement": statements}


def actions_of(policy: Dict[str, Any]) -> List[str]:
    """Every action a policy document allows, sorted."""
    found = set()
    for statement in policy.get("Statement", []):
        listed = statement.get("Action", [])
        found.update([listed] if isinstance(listed, str) else listed)
    return sorted(found)


def normalized(document: Any) -> str:
    """A policy document as canonical JSON, so a read-back (dict or string) compares with the wanted one."""
    if isinstance(document, str):
        document = json.loads(document)
    return json.dumps(_canonical(document), sort_keys=True, separators=(",", ":"))


def _canonical(value: Any) -> Any:
    # IAM may return a one-element list as a string and reorder lists; neither changes the meaning.
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [_canonical(v) for v in value]
        if len(items) == 1 and not isinstance(items[0], (dict, list)):
            return items[0]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    return value
