# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Who holds each client endpoint of a cluster now, and which states are split or dangling.

Read-only and pure boto3: it reuses the readers of the three scenario cores, so the report
says exactly what a converge or a monitor would see.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Sequence

from ansible_collections.ec2ha.cluster.plugins.module_utils import dns_record, elastic_ip, vip_route
from ansible_collections.ec2ha.cluster.plugins.module_utils.aws import AwsSession, InputError
from ansible_collections.ec2ha.cluster.plugins.module_utils.ids import CLUSTER_TAG
from ansible_collections.ec2ha.cluster.plugins.module_utils.nodes import Node, describe_tagged, find_node


@dataclasses.dataclass
class Endpoints:
    """What to look at; every part is optional."""

    nodes: Optional[Sequence[str]] = None
    cluster: Optional[str] = None
    vip: Optional[str] = None
    route_tables: Optional[Sequence[str]] = None
    public_ip: Optional[str] = None
    allocation_id: Optional[str] = None
    zone: Optional[str] = None
    record: Optional[str] = None
    private_zone: Optional[bool] = None

    def validate(self) -> None:
        if bool(self.nodes) == bool(self.cluster):
            raise InputError("Give exactly one of nodes (instance ids or Name tags) and cluster "
                             f"(the value of the {CLUSTER_TAG} tag).")
        if self.route_tables and not self.vip:
            raise InputError("route_tables needs vip: the route tables are read for the VIP's route.")
        if bool(self.zone) != bool(self.record):
            raise InputError("Give zone and record together to report the DNS endpoint.")
        if self.public_ip and self.allocation_id:
            raise InputError("Give at most one of public_ip and allocation_id to name the Elastic IP.")


class Holders:
    """Maps ENIs and IP addresses of the cluster's nodes back to the node."""

    def __init__(self, nodes: Sequence[Node]):
        self.by_eni: Dict[str, Node] = {}
        self.by_ip: Dict[str, Node] = {}
        for node in nodes:
            for iface in node.interfaces:
                self.by_eni[iface.eni_id] = node
                for ip in iface.private_ips + ([iface.public_ip] if iface.public_ip else []):
                    self.by_ip[ip] = node
            for ip in (node.private_ip, node.public_ip):
                if ip:
                    self.by_ip[ip] = node

    def eni(self, eni_id: Optional[str]) -> Optional[str]:
        node = self.by_eni.get(eni_id or "")
        return node.instance_id if node else None

    def ip(self, address: Optional[str]) -> Optional[str]:
        node = self.by_ip.get(address or "")
        return node.instance_id if node else None


def cluster_nodes(aws: AwsSession, spec: Endpoints) -> List[Node]:
    if spec.cluster:
        found = describe_tagged(aws, CLUSTER_TAG, spec.cluster)
        if not found:
            raise InputError(f"No live instance carries the tag {CLUSTER_TAG}={spec.cluster}.")
        return sorted(found, key=lambda n: n.instance_id)
    return [find_node(aws, name, require_running=False) for name in spec.nodes or []]


def node_summary(node: Node) -> Dict[str, Any]:
    return {"instance_id": node.instance_id, "name": node.name, "state": node.state,
            "availability_zone": node.availability_zone, "private_ip": node.private_ip,
            "public_ip": node.public_ip,
            "interfaces": [{"network_interface_id": i.eni_id, "device_index": i.device_index,
                            "private_ips": i.private_ips, "source_dest_check": i.source_dest_check}
                           for i in node.interfaces]}


def vip_report(aws: AwsSession, vip: str, route_tables: Optional[Sequence[str]], nodes: Sequence[Node],
               holders: Holders) -> Dict[str, Any]:
    address = vip_route.parse_vip(vip)
    wanted = vip_route.check_route_table_ids(route_tables)
    vpcs = sorted({n.vpc_id for n in nodes if n.vpc_id})
    tables = []
    for vpc in vpcs if wanted is None else [None]:
        tables += vip_route.describe_tables(aws, wanted, vpc)
    ids = wanted or sorted(t["RouteTableId"] for t in tables if vip_route.find_route(t, f"{address}/32"))
    report = vip_route.read_routes(aws, address, ids, sorted(holders.by_eni), tables)
    flags, per_table, holding = [], {}, set()
    for rtb, route in report.routes.items():
        holder = holders.eni(route.network_interface_id)
        per_table[rtb] = dict(route.holder(), holder=holder)
        if route.state == vip_route.MISSING:
            flags.append(f"{rtb} has no route for {address}/32")
        elif route.state != vip_route.ACTIVE:
            flags.append(f"{rtb} routes {address}/32 to a {route.state} target")
        elif holder is None:
            flags.append(f"{rtb} routes {address}/32 to {route.describe()}, which is no node of the cluster")
        if holder:
            holding.add(holder)
    if not ids:
        flags.append(f"no route table routes {address}/32")
    if len(holding) > 1:
        flags.append(f"routes for {address}/32 are split across nodes {', '.join(sorted(holding))}")
    routed = unique([r.network_interface_id for r in report.routes.values() if r.network_interface_id])
    for eni in routed:
        if holders.eni(eni) and report.source_dest_check.get(eni, True):
            flags.append(f"{eni} of {holders.eni(eni)} is a VIP route target with its source/destination check on")
    table_holders = {entry["holder"] for entry in per_table.values()}
    holder = table_holders.pop() if len(table_holders) == 1 else None
    return {"vip": address, "holder": holder, "holders": sorted(holding), "route_tables": per_table,
            "source_dest_check": report.source_dest_check, "flags": unique(flags)}


def eip_report(aws: AwsSession, public_ip: Optional[str], allocation_id: Optional[str],
               holders: Holders) -> Dict[str, Any]:
    address = elastic_ip.read_address(aws, public_ip, allocation_id)
    flags = []
    holder = None
    if address.holder is None:
        flags.append(f"Elastic IP {address.public_ip} is not associated")
    else:
        holder = holders.eni(address.holder.eni_id)
        if holder is None:
            flags.append(f"Elastic IP {address.public_ip} is associated with {address.holder}, "
                         "which is no node of the cluster")
    return dict(address.as_dict(), holder=holder, flags=flags)


def dns_report(aws: AwsSession, zone_name: str, record: str, private_zone: Optional[bool],
               holders: Holders) -> Dict[str, Any]:
    zone = dns_record.find_zone(aws, zone_name, private_zone)
    fqdn = dns_record.record_fqdn(record, zone.name)
    current = dns_record.read_record(aws, zone, fqdn)
    flags = []
    values = list(current.values) if current else []
    held = sorted({h for h in (holders.ip(v) for v in values) if h})
    if current is None:
        flags.append(f"{fqdn} has no A record in {zone.zone_id}")
    elif not held:
        flags.append(f"{fqdn} points at {', '.join(values)}, neither node of the cluster")
    elif len(held) > 1 or len(values) > len(held):
        flags.append(f"{fqdn} points at several addresses ({', '.join(values)})")
    holder = held[0] if len(values) == 1 and held else None
    return {"zone": zone.as_dict(), "name": fqdn, "ttl": current.ttl if current else None,
            "values": values, "holder": holder, "flags": flags}


def unique(items: Sequence[str]) -> List[str]:
    return list(dict.fromkeys(items))


def report(aws: AwsSession, spec: Endpoints) -> Dict[str, Any]:
    """The whole picture: nodes, each requested endpoint's holder, and every flag raised."""
    spec.validate()
    nodes = cluster_nodes(aws, spec)
    holders = Holders(nodes)
    result: Dict[str, Any] = {"nodes": [node_summary(n) for n in nodes]}
    if spec.vip:
        result["vip_route"] = vip_report(aws, spec.vip, spec.route_tables, nodes, holders)
    if spec.public_ip or spec.allocation_id:
        result["elastic_ip"] = eip_report(aws, spec.public_ip, spec.allocation_id, holders)
    if spec.zone and spec.record:
        result["dns_record"] = dns_report(aws, spec.zone, spec.record, spec.private_zone, holders)
    endpoints = [k for k in ("vip_route", "elastic_ip", "dns_record") if k in result]
    result["holders"] = {k: result[k]["holder"] for k in endpoints}
    result["flags"] = [f for k in endpoints for f in result[k]["flags"]]
    distinct = {h for h in result["holders"].values() if h}
    if len(distinct) > 1:
        result["flags"].append("the endpoints are held by different nodes: " + ", ".join(
            f"{k} on {h}" for k, h in result["holders"].items()))
    result["healthy"] = not result["flags"] and all(result["holders"].values())
    return result
