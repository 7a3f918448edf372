# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Route-table recovery scenario: a VIP outside the VPC, routed by a /32 route to one node's ENI.

Pure boto3 through :class:`AwsSession` (no Ansible import): the module ``vip_route`` and the
Pacemaker OCF agent on the nodes run this very code.

    target, tables = resolve_target(aws, vip, node, route_tables, interface, create)  # validates, reads
    result = converge(aws, target, check_mode, tables)   # plan -> apply (or record) -> re-read, verify
    status = monitor(aws, target)                         # ok / wrong / unknown, read-only

An agent resolves the target once at start (node = its own instance id) and then monitors
with two reads per interval (route tables, network interfaces).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ansible_collections.ec2ha.cluster.plugins.module_utils.aws import (
    AwsCallError,
    AwsSession,
    InputError,
    VerifyError,
)
from ansible_collections.ec2ha.cluster.plugins.module_utils.nodes import find_node
from ansible_collections.ec2ha.cluster.plugins.module_utils.ids import ROUTE_TABLE_ID
from ansible_collections.ec2ha.cluster.plugins.module_utils.scenario import Action, Status, monitor_reading, reread_until
from ansible_collections.ec2ha.cluster.plugins.module_utils.scenario import apply as apply_actions

MISSING = "missing"
ACTIVE = "active"
BLACKHOLE = "blackhole"
# Route targets other than an ENI or an instance, reported so "wrong" can say where the VIP goes.
OTHER_TARGET_KEYS = ("GatewayId", "NatGatewayId", "TransitGatewayId", "VpcPeeringConnectionId",
                     "LocalGatewayId", "CarrierGatewayId", "EgressOnlyInternetGatewayId",
                     "CoreNetworkArn", "VpcEndpointId")
# CIDR association states that still make an address "inside the VPC".
LIVE_CIDR_STATES = ("associating", "associated", "disassociating")
DEFAULT_VERIFY_TIMEOUT = 10.0


@dataclasses.dataclass
class Target:
    """Where the VIP must go: validated once, then planned against as often as needed."""

    vip: str
    vpc_id: str
    eni_id: str
    instance_id: str
    node_label: str
    route_table_ids: List[str]
    create: bool = False

    @property
    def destination(self) -> str:
        return f"{self.vip}/32"


@dataclasses.dataclass
class Route:
    """The VIP's route in one route table, as read."""

    route_table_id: str
    state: str  # active, blackhole, or missing
    network_interface_id: Optional[str] = None
    instance_id: Optional[str] = None
    other_target: Optional[str] = None

    def holder(self) -> Dict[str, Optional[str]]:
        return {"state": self.state, "network_interface_id": self.network_interface_id,
                "instance_id": self.instance_id, "other_target": self.other_target}

    def describe(self) -> str:
        if self.state == MISSING:
            return "no route"
        where = self.network_interface_id or self.other_target or "no target"
        if self.instance_id:
            where += f" ({self.instance_id})"
        article = "an" if self.state == ACTIVE else "a"
        return f"{article} {self.state} route to {where}"


@dataclasses.dataclass
class RouteReport:
    """For one VIP: its route in each route table and the src/dst check of the ENIs involved."""

    vip: str
    routes: Dict[str, Route]
    source_dest_check: Dict[str, bool]

    def as_dict(self) -> Dict[str, Any]:
        return {"route_tables": {rtb: r.holder() for rtb, r in self.routes.items()},
                "source_dest_check": dict(self.source_dest_check)}


@dataclasses.dataclass
class ConvergeResult:
    changed: bool
    actions: List[Action]
    before: RouteReport
    after: RouteReport
    status: Status

    def as_dict(self) -> Dict[str, Any]:
        return {"changed": self.changed, "before": self.before.as_dict(), "after": self.after.as_dict(),
                "status": self.status.status, "details": list(self.status.details)}


# ---------------------------------------------------------------------------------------------
# Input validation (everything here runs before any write)


def parse_vip(vip: Any) -> str:
    """The VIP as a plain dotted IPv4 address; a trailing /32 is accepted."""
    text = str(vip or "").strip()
    if text.endswith("/32"):
        text = text[:-3]
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise InputError(f"vip '{vip}' is not an IPv4 address: expected a single address such as 192.168.10.10.") from None


def vpc_cidrs(aws: AwsSession, vpc_id: str) -> List[str]:
    """Every IPv4 CIDR associated with the VPC, not only the primary one."""
    vpcs = aws.paginate("ec2", "describe_vpcs", "Vpcs", vpc_id, VpcIds=[vpc_id])
    cidrs: List[str] = []
    for vpc in vpcs:
        for assoc in vpc.get("CidrBlockAssociationSet") or []:
            if (assoc.get("CidrBlockState") or {}).get("State", "associated") in LIVE_CIDR_STATES:
                cidrs.append(assoc["CidrBlock"])
        if vpc.get("CidrBlock") and vpc["CidrBlock"] not in cidrs:
            cidrs.append(vpc["CidrBlock"])
    return cidrs


def check_vip_outside(vip: str, vpc_id: str, cidrs: Sequence[str]) -> None:
    address = ipaddress.IPv4Address(vip)
    for cidr in cidrs:
        if address in ipaddress.IPv4Network(cidr, strict=False):
            raise InputError(f"vip {vip} is inside {cidr} of {vpc_id}: a route-table VIP must be outside "
                             "every CIDR of the VPC.")


def unique(items: Sequence[str]) -> List[str]:
    return list(dict.fromkeys(items))


def describe_tables(aws: AwsSession, route_table_ids: Optional[Sequence[str]] = None,
                    vpc_id: Optional[str] = None) -> List[Dict[str, Any]]:
    """Route tables by id or by VPC. A filter (not RouteTableIds) so unknown ids are simply absent."""
    if route_table_ids is not None:
        filters = [{"Name": "route-table-id", "Values": list(route_table_ids)}]
        resource = ", ".join(route_table_ids)
    else:
        filters = [{"Name": "vpc-id", "Values": [vpc_id]}]
        resource = str(vpc_id)
    return aws.paginate("ec2", "describe_route_tables", "RouteTables", resource, Filters=filters)


def pick_tables(tables: List[Dict[str, Any]], wanted: Optional[Sequence[str]], vpc_id: str,
                vip: str, owner: str = "the node's") -> List[str]:
    """The route table ids to manage, checked against what exists in the VPC (``owner``'s, for the message)."""
    destination = f"{vip}/32"
    if wanted is None:
        found = [t["RouteTableId"] for t in tables
                 if t.get("VpcId") == vpc_id and find_route(t, destination) is not None]
        if not found:
            raise InputError(f"No route table of {vpc_id} has a route for {destination}: list route_tables "
                             "and set create=true to create the route.")
        return sorted(found)
    by_id = {t["RouteTableId"]: t for t in tables}
    for rtb in wanted:
        table = by_id.get(rtb)
        if table is None:
            raise InputError(f"Route table '{rtb}' does not exist: expected a route table of {vpc_id}.")
        if table.get("VpcId") != vpc_id:
            raise InputError(f"Route table {rtb} belongs to {table.get('VpcId')}, not to {owner} {vpc_id}.")
    return list(wanted)


def check_route_table_ids(route_tables: Optional[Sequence[str]]) -> Optional[List[str]]:
    if route_tables is None:
        return None
    wanted = unique([str(r).strip() for r in route_tables])
    if not wanted:
        raise InputError("route_tables is empty: list route table ids (rtb-...) or omit it to manage every "
                         "route table that has a route for the VIP.")
    for rtb in wanted:
        if not ROUTE_TABLE_ID.match(rtb):
            raise InputError(f"Route table '{rtb}' is not a route table id: expected rtb- followed by hex digits.")
    return wanted


def resolve_target(aws: AwsSession, vip: Any, node: str, route_tables: Optional[Sequence[str]] = None,
                   interface: Any = None, create: bool = False) -> Tuple[Target, List[Dict[str, Any]]]:
    """Validate the input against AWS; returns the target and the route tables as read.

    Raises InputError (one sentence) for a bad VIP, node, interface or route table.
    """
    address = parse_vip(vip)
    wanted = check_route_table_ids(route_tables)
    found = find_node(aws, node)
    eni = found.interface(interface)
    check_vip_outside(address, found.vpc_id, vpc_cidrs(aws, found.vpc_id))
    tables = describe_tables(aws, wanted, found.vpc_id)
    target = Target(vip=address, vpc_id=found.vpc_id, eni_id=eni.eni_id, instance_id=found.instance_id,
                    node_label=found.label, route_table_ids=pick_tables(tables, wanted, found.vpc_id, address),
                    create=bool(create))
    return target, tables


# ---------------------------------------------------------------------------------------------
# Reading


def find_route(table: Dict[str, Any], destination: str) -> Optional[Dict[str, Any]]:
    # Client-side on purpose: moto 5.2.5 answers route.* filters with HTTP 500.
    return next((r for r in table.get("Routes", []) if r.get("DestinationCidrBlock") == destination), None)


def route_from(rtb: str, raw: Optional[Dict[str, Any]], eni_instances: Dict[str, Optional[str]]) -> Route:
    if raw is None:
        return Route(rtb, MISSING)
    eni = raw.get("NetworkInterfaceId")
    # moto 5.2.5 omits InstanceId when the target is an ENI: take it from the ENI's attachment.
    instance = raw.get("InstanceId") or (eni_instances.get(eni) if eni else None)
    other = next((raw[k] for k in OTHER_TARGET_KEYS if raw.get(k)), None)
    state = raw.get("State", ACTIVE)
    if eni and eni not in eni_instances:
        # The ENI is gone: AWS reports blackhole; moto keeps saying active.
        state = BLACKHOLE
    return Route(rtb, state, eni, instance, other)


def describe_interfaces(aws: AwsSession, eni_ids: Sequence[str]) -> List[Dict[str, Any]]:
    if not eni_ids:
        return []
    # A filter, not NetworkInterfaceIds: an ENI deleted under a blackhole route must not fail the read.
    return aws.paginate("ec2", "describe_network_interfaces", "NetworkInterfaces", ", ".join(eni_ids),
                        Filters=[{"Name": "network-interface-id", "Values": list(eni_ids)}])


def read_routes(aws: AwsSession, vip: str, route_table_ids: Sequence[str], eni_ids: Sequence[str] = (),
                tables: Optional[List[Dict[str, Any]]] = None) -> RouteReport:
    """The VIP's route in each table and the src/dst check of ``eni_ids`` and of every routed ENI.

    ``tables`` (already described) saves a read; a table absent from them reads as missing.
    """
    if tables is None:
        tables = describe_tables(aws, route_table_ids)
    by_id = {t["RouteTableId"]: t for t in tables}
    destination = f"{vip}/32"
    raw_routes = {rtb: find_route(by_id.get(rtb, {}), destination) for rtb in route_table_ids}
    routed = [r["NetworkInterfaceId"] for r in raw_routes.values() if r and r.get("NetworkInterfaceId")]
    interfaces = describe_interfaces(aws, unique(list(eni_ids) + routed))
    eni_instances = {i["NetworkInterfaceId"]: (i.get("Attachment") or {}).get("InstanceId") for i in interfaces}
    flags = {i["NetworkInterfaceId"]: bool(i.get("SourceDestCheck", True)) for i in interfaces}
    routes = {rtb: route_from(rtb, raw, eni_instances) for rtb, raw in raw_routes.items()}
    return RouteReport(vip, routes, flags)


# ---------------------------------------------------------------------------------------------
# Classifying, planning, applying


def classify(report: RouteReport, target: Target) -> Status:
    """ok when every table routes the VIP to the target ENI (active) and its src/dst check is off."""
    details = []
    for rtb in target.route_table_ids:
        route = report.routes.get(rtb) or Route(rtb, MISSING)
        if route.state != ACTIVE or route.network_interface_id != target.eni_id:
            details.append(f"{rtb} has {route.describe()} for {target.destination}, expected {target.eni_id} "
                           f"of {target.node_label}")
    if report.source_dest_check.get(target.eni_id, True):
        details.append(f"{target.eni_id} has its source/destination check on")
    return Status("wrong" if details else "ok", details)


def route_params(target: Target, rtb: str) -> Dict[str, Any]:
    return {"RouteTableId": rtb, "DestinationCidrBlock": target.destination, "NetworkInterfaceId": target.eni_id}


def plan(report: RouteReport, target: Target) -> List[Action]:
    """The writes that take ``report`` to ``target``; empty when it is there already."""
    actions = []
    # The ENI first: a route to an ENI whose src/dst check is on drops the VIP's packets.
    if report.source_dest_check.get(target.eni_id, True):
        actions.append(Action("modify_network_interface_attribute", target.eni_id,
                              {"NetworkInterfaceId": target.eni_id, "SourceDestCheck": {"Value": False}}))
    for rtb in target.route_table_ids:
        route = report.routes.get(rtb) or Route(rtb, MISSING)
        if route.state == MISSING:
            if not target.create:
                raise InputError(f"Route table {rtb} has no route for {target.destination}: set create=true to "
                                 "create it, or leave the table out of route_tables.")
            actions.append(Action("create_route", rtb, route_params(target, rtb)))
        elif route.state != ACTIVE or route.network_interface_id != target.eni_id:
            actions.append(Action("replace_route", rtb, route_params(target, rtb)))
    return actions


def predict(report: RouteReport, target: Target, actions: Sequence[Action]) -> RouteReport:
    """The report as it would read after ``actions`` (check mode's "after")."""
    routes = dict(report.routes)
    flags = dict(report.source_dest_check)
    for action in actions:
        if action.operation == "modify_network_interface_attribute":
            flags[target.eni_id] = False
        else:
            routes[action.resource] = Route(action.resource, ACTIVE, target.eni_id, target.instance_id)
    return RouteReport(report.vip, routes, flags)


def create_route(aws: AwsSession, target: Target, action: Action) -> None:
    """CreateRoute; if the route appeared meanwhile (RouteAlreadyExists), replace it unless it is right."""
    try:
        aws.call("ec2", "create_route", action.resource, **action.params)
    except AwsCallError as exc:
        if exc.code != "RouteAlreadyExists":
            raise
        route = read_routes(aws, target.vip, [action.resource]).routes[action.resource]
        if route.state != ACTIVE or route.network_interface_id != target.eni_id:
            aws.call("ec2", "replace_route", action.resource, **action.params)


def apply(aws: AwsSession, target: Target, actions: Sequence[Action]) -> None:
    """Make the writes in order; the first failure raises (the next converge finishes the job)."""
    for action in actions:
        if action.operation == "create_route":
            create_route(aws, target, action)
        else:
            apply_actions(aws, [action])


def verify(aws: AwsSession, target: Target, timeout: float = DEFAULT_VERIFY_TIMEOUT,
           clock: Callable[[], float] = time.monotonic,
           sleep: Callable[[float], None] = time.sleep, eni_ids: Sequence[str] = ()) -> RouteReport:
    """Re-read until the target state shows (bounded: EC2 reads are eventually consistent).

    ``eni_ids``: more ENIs to report the src/dst check of (those "before" showed, for a like-for-like diff).
    """
    enis = unique([target.eni_id] + list(eni_ids))
    report, status = reread_until(lambda: read_routes(aws, target.vip, target.route_table_ids, enis),
                                  lambda r: classify(r, target), timeout, clock, sleep)
    if not status.ok:
        raise VerifyError(f"After the writes, {'; '.join(status.details)} (re-read for {timeout:g} s).")
    return report


def converge(aws: AwsSession, target: Target, check_mode: bool = False,
             tables: Optional[List[Dict[str, Any]]] = None,
             verify_timeout: float = DEFAULT_VERIFY_TIMEOUT) -> ConvergeResult:
    """Put the VIP on the target ENI in every route table; write only the difference.

    Check mode records the planned writes (``aws.plan``) and predicts "after"; its status is that of
    the state as read. A real run re-reads and raises VerifyError if the state is not the target.
    """
    before = read_routes(aws, target.vip, target.route_table_ids, [target.eni_id], tables)
    actions = plan(before, target)
    if not actions:
        return ConvergeResult(False, [], before, before, classify(before, target))
    if check_mode:
        apply_actions(aws, actions, check_mode=True)
        return ConvergeResult(True, actions, before, predict(before, target, actions), classify(before, target))
    apply(aws, target, actions)
    after = verify(aws, target, verify_timeout, eni_ids=list(before.source_dest_check))
    return ConvergeResult(True, actions, before, after, classify(after, target))


def monitor(aws: AwsSession, target: Target) -> Status:
    """Read-only check for an agent: ok, wrong, or unknown when the API did not answer (throttling...)."""
    return monitor_reading(lambda: read_routes(aws, target.vip, target.route_table_ids, [target.eni_id]),
                           lambda report: classify(report, target))
