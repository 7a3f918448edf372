# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a cluster pair is asked to be (:class:`PairSpec`, checked without an AWS call) and what of
it exists (:class:`Pair`, read once by ``cluster_pair.resolve``; every write is planned against it).

Pure Python (no boto3 import, no Ansible): the security group, role and node steps share it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ansible_collections.ec2ha.cluster.plugins.module_utils import iam_policy, node_security
from ansible_collections.ec2ha.cluster.plugins.module_utils.aws import InputError, tag_value
from ansible_collections.ec2ha.cluster.plugins.module_utils.ids import (
    ALLOCATION_ID,
    CLUSTER_TAG,
    INSTANCE_ID,
    NAME_TAG,
    NODE_TAG,
    OWN_TAGS,
    ROUTE_TABLE_ID,
    SCENARIOS,
    SUBNET_ID,
    ZONE_ID,
    scenario_names,
)
from ansible_collections.ec2ha.cluster.plugins.module_utils.nodes import Node, node_from_instance, require_ipv4

POLICY_NAME = "ec2ha-node"
CLUSTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+=,.@_-]{0,57}$")   # "<name>-node" fits IAM's 64
NEW = "(new)"     # placeholder for an id check mode cannot know yet
DEFAULT_WAIT_TIMEOUT = 300.0


@dataclasses.dataclass(frozen=True)
class NodeSpec:
    """One node: its name in the pair, its subnet (its AZ), and optionally its address or the
    instance to adopt."""

    name: str
    subnet_id: str
    private_ip: Optional[str] = None
    instance_id: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class PairSpec:
    """The pair: its name, its two nodes, how to launch them, who may reach them, and the scenario
    resources the node policy is scoped to."""

    name: str
    nodes: Tuple[NodeSpec, ...]
    image_id: Optional[str] = None
    instance_type: Optional[str] = None
    key_name: Optional[str] = None
    user_data: Optional[str] = None
    admin_cidrs: Tuple[str, ...] = ()
    client_cidrs: Tuple[str, ...] = ()
    corosync_port: int = 5405
    scenarios: Tuple[str, ...] = ()     # SCENARIOS; the deprecated aliases are normalized on creation
    route_table_ids: Tuple[str, ...] = ()
    allocation_id: Optional[str] = None
    hosted_zone_id: Optional[str] = None
    record_name: Optional[str] = None
    encrypt_root_volume: bool = True
    kms_key_id: Optional[str] = None
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict)   # extra tags on the nodes
    wait_timeout: float = DEFAULT_WAIT_TIMEOUT

    def __post_init__(self) -> None:
        object.__setattr__(self, "scenarios", scenario_names(self.scenarios))

    @property
    def group_name(self) -> str:
        return f"{self.name}-cluster"

    @property
    def role_name(self) -> str:
        return f"{self.name}-node"

    @property
    def zone_id(self) -> Optional[str]:
        match = ZONE_ID.match(self.hosted_zone_id or "")
        return match.group(1) if match else None

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
        unknown = [s for s in self.scenarios if s not in SCENARIOS]
        if unknown:
            raise InputError(f"scenarios {unknown} are not among {', '.join(SCENARIOS)}.")
        self._check_scenario_resources()
        node_security.check_kms_key_id(self.kms_key_id, bool(self.encrypt_root_volume))
        for option in ("admin_cidrs", "client_cidrs"):
            for cidr in getattr(self, option):
                _check_cidr(option, cidr)
        if not 1 <= int(self.corosync_port) <= 65535:
            raise InputError(f"corosync_port {self.corosync_port} is not a port number (1-65535).")
        _check_tags(self.tags)
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
        needs = (("vip_route", "route_table_ids", bool(self.route_table_ids)),
                 ("elastic_ip", "allocation_id", bool(self.allocation_id)),
                 ("dns_record", "hosted_zone_id", bool(self.hosted_zone_id)),
                 ("dns_record", "record_name", bool(self.record_name)))
        for scenario, option, given in needs:
            if scenario in self.scenarios and not given:
                raise InputError(f"Scenario {scenario} needs {option}: the node policy is scoped to it.")
            if given and scenario not in self.scenarios:
                raise InputError(f"{option} is set but {scenario} is not in scenarios.")


def _check_node(node: NodeSpec) -> None:
    if not SUBNET_ID.match(node.subnet_id or ""):
        raise InputError(f"Node {node.name}: subnet_id '{node.subnet_id}' is not a subnet id (subnet-...).")
    if node.private_ip:
        require_ipv4(f"Node {node.name}: private_ip", node.private_ip)
    if node.instance_id and not INSTANCE_ID.match(node.instance_id):
        raise InputError(f"Node {node.name}: instance_id '{node.instance_id}' is not an instance id (i-...).")


def _check_cidr(option: str, cidr: str) -> None:
    try:
        ipaddress.ip_network(cidr, strict=True)
    except ValueError as exc:
        raise InputError(f"{option} entry '{cidr}' is not a CIDR block ({exc}).") from None


def _check_tags(tags: Mapping[str, str]) -> None:
    for key, value in tags.items():
        if key in OWN_TAGS or key == NAME_TAG:
            raise InputError(f"tags sets '{key}', which the module sets itself: leave it out of tags.")
        if not key or key.lower().startswith("aws:") or len(key) > 128 or len(str(value)) > 256:
            raise InputError(f"tags key '{key}' is not a tag AWS accepts (1-128 characters, not starting with "
                             "aws:, a value of at most 256).")


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

    @property
    def routes_vip(self) -> bool:
        """The vip_route scenario: the nodes' primary ENIs need their source/destination check off."""
        return "vip_route" in self.spec.scenarios

    def tags(self, node: Optional[NodeSpec] = None, name: bool = False) -> List[Dict[str, str]]:
        tags = [{"Key": CLUSTER_TAG, "Value": self.spec.name}]
        if node is not None:
            tags.append({"Key": NODE_TAG, "Value": node.name})
            if name:
                tags.append({"Key": NAME_TAG, "Value": node.name})
            tags += [{"Key": key, "Value": str(value)} for key, value in sorted(self.spec.tags.items())]
        return tags


def owned_elsewhere(kind: str, label: str, tags: Optional[List[Dict[str, str]]], cluster: str) -> None:
    """InputError when the resource carries another cluster's tag."""
    owner = tag_value(tags, CLUSTER_TAG)
    if owner not in (None, cluster):
        raise InputError(f"{kind} {label} belongs to cluster '{owner}' (tag {CLUSTER_TAG}), not to '{cluster}'.")
