"""Read the parts of moto's state the lab data plane needs into plain, immutable dataclasses.

`read_ec2(clients)` makes one pass over EC2 in every lab region (the calls run in parallel on
the caller's thread pool) and returns an `Ec2Snapshot`; `read_route53(client, ec2_clients)`
returns the hosted zones with their records. Nothing here writes to AWS or to the kernel, so the
translation into Linux state (lab/emulator/dataplane/plan.py) is a pure function of a snapshot.

Instances are read with a filter on the lab-host tag, and their ENIs come from the same
describe_instances answer (one call instead of two; an ENI elsewhere has no host to reach).
moto quirks handled here: a route whose target is an ENI carries no InstanceId; instance and
ENI SourceDestCheck flags are not linked (see `Ec2Snapshot.eni_forwards`).
"""

from __future__ import annotations

import ipaddress
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from lab import topology

LAB_TAG_VALUE = "true"


@dataclass(frozen=True)
class Vpc:
    id: str
    region: str
    cidr: str
    lab: bool

    @property
    def resolver(self) -> str:
        """The Route 53 Resolver address of the VPC: its base address + 2."""
        return str(ipaddress.ip_network(self.cidr)[2])


@dataclass(frozen=True)
class Subnet:
    id: str
    vpc_id: str
    cidr: str

    @property
    def gateway(self) -> str:
        """The VPC router's address in the subnet: its base address + 1."""
        return str(ipaddress.ip_network(self.cidr)[1])

    @property
    def prefixlen(self) -> int:
        return ipaddress.ip_network(self.cidr).prefixlen


@dataclass(frozen=True)
class Instance:
    id: str
    state: str
    lab_host: bool
    source_dest_check: bool


@dataclass(frozen=True)
class Eni:
    id: str
    vpc_id: str
    subnet_id: str
    private_ip: str
    mac: str
    instance_id: Optional[str]
    device_index: Optional[int]
    source_dest_check: bool


@dataclass(frozen=True)
class Route:
    destination: str
    gateway_id: Optional[str] = None          # "local", igw-..., vgw-...
    eni_id: Optional[str] = None
    instance_id: Optional[str] = None
    peering_id: Optional[str] = None
    other_target: Optional[str] = None        # nat-, tgw-, ...: not modelled, dropped


@dataclass(frozen=True)
class RouteTable:
    id: str
    vpc_id: str
    main: bool
    subnet_ids: Tuple[str, ...]
    routes: Tuple[Route, ...]


@dataclass(frozen=True)
class Peering:
    id: str
    status: str
    requester_vpc_id: str
    accepter_vpc_id: str


@dataclass(frozen=True)
class Address:
    public_ip: str
    private_ip: Optional[str]
    eni_id: Optional[str]


@dataclass(frozen=True)
class Ec2Snapshot:
    vpcs: Tuple[Vpc, ...] = ()
    subnets: Tuple[Subnet, ...] = ()
    instances: Tuple[Instance, ...] = ()
    enis: Tuple[Eni, ...] = ()
    route_tables: Tuple[RouteTable, ...] = ()
    peerings: Tuple[Peering, ...] = ()
    addresses: Tuple[Address, ...] = ()
    attached_igws: Tuple[Tuple[str, str], ...] = ()   # (igw id, vpc id)

    def lab_vpcs(self) -> List[Vpc]:
        """Tagged VPCs the one router can serve: one that overlaps an earlier one is left out
        (primary region first, then by id), as peered VPCs may not overlap either."""
        served: List[Vpc] = []
        order = {topology.PRIMARY_REGION: 0, topology.DR_REGION: 1}
        for vpc in sorted((v for v in self.vpcs if v.lab), key=lambda v: (order.get(v.region, 2), v.id)):
            net = ipaddress.ip_network(vpc.cidr)
            if not any(net.overlaps(ipaddress.ip_network(s.cidr)) for s in served):
                served.append(vpc)
        return served

    def vpc(self, vpc_id: str) -> Optional[Vpc]:
        return next((v for v in self.vpcs if v.id == vpc_id), None)

    def subnets_of(self, vpc_id: str) -> List[Subnet]:
        return [s for s in self.subnets if s.vpc_id == vpc_id]

    def instance(self, instance_id: Optional[str]) -> Optional[Instance]:
        return next((i for i in self.instances if i.id == instance_id), None)

    def eni(self, eni_id: Optional[str]) -> Optional[Eni]:
        return next((e for e in self.enis if e.id == eni_id), None)

    def primary_eni(self, instance_id: str) -> Optional[Eni]:
        return next((e for e in self.enis if e.instance_id == instance_id and e.device_index == 0), None)

    def primary_vpc(self) -> Optional[Vpc]:
        """The lab VPC on the Direct Connect side: the one with the plan's primary CIDR."""
        return next((v for v in self.lab_vpcs()
                     if v.cidr == topology.PRIMARY_VPC_CIDR and v.region == topology.PRIMARY_REGION), None)

    def eni_forwards(self, eni: Eni) -> bool:
        """True when the ENI accepts traffic for addresses other than its own.

        moto keeps the instance attribute and the primary ENI's flag apart, while AWS has one
        flag; the check counts as off when either of them was turned off.
        """
        if not eni.source_dest_check:
            return True
        instance = self.instance(eni.instance_id)
        return eni.device_index == 0 and instance is not None and not instance.source_dest_check


@dataclass(frozen=True)
class Zone:
    id: str
    name: str                                   # lower case, with the trailing dot
    private: bool
    vpcs: Tuple[Tuple[str, str], ...]           # (region, vpc id)
    records: Mapping[Tuple[str, str], Tuple[int, Tuple[str, ...]]] = field(default_factory=dict)
    # (name, type) -> (ttl, values)


def _tags(resource: Mapping[str, Any]) -> Dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags") or []}


def _paginate(client: Any, operation: str, key: str, **kwargs: Any) -> List[Dict[str, Any]]:
    items: List[Dict[str, Any]] = []
    for page in client.get_paginator(operation).paginate(**kwargs):
        items.extend(page.get(key, []))
    return items


def _vpcs(client: Any, region: str) -> List[Vpc]:
    return [Vpc(id=v["VpcId"], region=region, cidr=v["CidrBlock"],
                lab=_tags(v).get(topology.LAB_VPC_TAG) == LAB_TAG_VALUE)
            for v in client.describe_vpcs()["Vpcs"]]


def _subnets(client: Any) -> List[Subnet]:
    return [Subnet(id=s["SubnetId"], vpc_id=s["VpcId"], cidr=s["CidrBlock"])
            for s in client.describe_subnets()["Subnets"]]


LIVE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]


def _lab_hosts(client: Any) -> Tuple[List[Instance], List[Eni]]:
    """Lab-host instances and their ENIs, in one call.

    Only lab hosts matter: a route or an EIP pointing anywhere else has no host to reach, so
    it is dropped whether or not the instance is listed (and the listing stays small).
    """
    instances, enis = [], []
    filters = [{"Name": f"tag:{topology.LAB_HOST_TAG}", "Values": [LAB_TAG_VALUE]},
               {"Name": "instance-state-name", "Values": LIVE_STATES}]
    for reservation in _paginate(client, "describe_instances", "Reservations", Filters=filters):
        for i in reservation["Instances"]:
            instances.append(Instance(
                id=i["InstanceId"], state=i["State"]["Name"], lab_host=True,
                source_dest_check=bool(i.get("SourceDestCheck", True))))
            enis.extend(_eni(e, i["InstanceId"]) for e in i.get("NetworkInterfaces") or [])
    return instances, enis


def _eni(e: Mapping[str, Any], instance_id: str) -> Eni:
    attachment = e.get("Attachment") or {}
    return Eni(id=e["NetworkInterfaceId"], vpc_id=e["VpcId"], subnet_id=e["SubnetId"],
               private_ip=e["PrivateIpAddress"], mac=e.get("MacAddress", ""), instance_id=instance_id,
               device_index=attachment.get("DeviceIndex"),
               source_dest_check=bool(e.get("SourceDestCheck", True)))


def _route(r: Mapping[str, Any]) -> Optional[Route]:
    destination = r.get("DestinationCidrBlock")
    if not destination:                        # IPv6 and prefix-list routes are not modelled
        return None
    other = r.get("NatGatewayId") or r.get("TransitGatewayId") or r.get("EgressOnlyInternetGatewayId")
    return Route(destination=destination, gateway_id=r.get("GatewayId"),
                 eni_id=r.get("NetworkInterfaceId"), instance_id=r.get("InstanceId"),
                 peering_id=r.get("VpcPeeringConnectionId"), other_target=other)


def _route_tables(client: Any) -> List[RouteTable]:
    tables = []
    for t in client.describe_route_tables()["RouteTables"]:
        associations = t.get("Associations") or []
        routes = tuple(r for r in map(_route, t.get("Routes") or []) if r is not None)
        tables.append(RouteTable(
            id=t["RouteTableId"], vpc_id=t["VpcId"],
            main=any(a.get("Main") for a in associations),
            subnet_ids=tuple(a["SubnetId"] for a in associations if a.get("SubnetId")),
            routes=routes))
    return tables


def _peerings(client: Any) -> List[Peering]:
    return [Peering(id=p["VpcPeeringConnectionId"], status=p["Status"]["Code"],
                    requester_vpc_id=p["RequesterVpcInfo"]["VpcId"],
                    accepter_vpc_id=p["AccepterVpcInfo"]["VpcId"])
            for p in client.describe_vpc_peering_connections()["VpcPeeringConnections"]]


def _addresses(client: Any) -> List[Address]:
    return [Address(public_ip=a["PublicIp"], private_ip=a.get("PrivateIpAddress") or None,
                    eni_id=a.get("NetworkInterfaceId") or None)
            for a in client.describe_addresses()["Addresses"]]


def _igws(client: Any) -> List[Tuple[str, str]]:
    return [(g["InternetGatewayId"], a["VpcId"])
            for g in client.describe_internet_gateways()["InternetGateways"]
            for a in g.get("Attachments") or [] if a.get("State") in ("available", "attached")]


# What an API write in a failover changes: read on every tick.
_LIVE_READERS = {
    "lab_hosts": lambda c, region: _lab_hosts(c),
    "route_tables": lambda c, region: _route_tables(c),
    "peerings": lambda c, region: _peerings(c),
    "addresses": lambda c, region: _addresses(c),
}
# The lab's structure, built once at `lab up`: re-read less often (see read_ec2).
_STRUCTURE_READERS = {
    "vpcs": _vpcs,
    "subnets": lambda c, region: _subnets(c),
    "attached_igws": lambda c, region: _igws(c),
}


def read_ec2(clients: Mapping[str, Any], pool: Executor, previous: Optional[Ec2Snapshot] = None) -> Ec2Snapshot:
    """One read of EC2 in every region (region -> boto3 EC2 client), the calls in parallel.

    With `previous` (the last snapshot), its VPCs, subnets and gateway attachments are
    reused instead of re-read, and peerings are read only when one of its routes uses one.
    """
    readers = dict(_LIVE_READERS, **({} if previous is not None else _STRUCTURE_READERS))
    if previous is not None and not any(r.peering_id for t in previous.route_tables for r in t.routes):
        # No route uses a peering (as of the previous read): its status cannot matter.
        del readers["peerings"]
    futures = {(name, region): pool.submit(reader, client, region)
               for region, client in clients.items() for name, reader in readers.items()}
    merged: Dict[str, list] = {name: [] for name in list(_LIVE_READERS) + list(_STRUCTURE_READERS)}
    if "peerings" not in readers and previous is not None:
        merged["peerings"] = list(previous.peerings)
    for (name, _region), future in futures.items():
        if name == "lab_hosts":
            instances, enis = future.result()
            merged["instances"] = merged.get("instances", []) + instances
            merged["enis"] = merged.get("enis", []) + enis
        else:
            merged[name].extend(future.result())
    del merged["lab_hosts"]
    if previous is not None:
        merged.update(vpcs=list(previous.vpcs), subnets=list(previous.subnets),
                      attached_igws=list(previous.attached_igws))
    # An inter-region peering shows up in both regions: keep one copy.
    merged["peerings"] = list({p.id: p for p in merged["peerings"]}.values())
    return Ec2Snapshot(**{name: tuple(items) for name, items in merged.items()})


def _fqdn(name: str) -> str:
    name = name.lower()
    return name if name.endswith(".") else name + "."


def _zone_records(client: Any, zone_id: str) -> Dict[Tuple[str, str], Tuple[int, Tuple[str, ...]]]:
    records = {}
    for r in _paginate(client, "list_resource_record_sets", "ResourceRecordSets", HostedZoneId=zone_id):
        values = tuple(v["Value"] for v in r.get("ResourceRecords") or [])
        if values:                              # alias records are not modelled
            records[(_fqdn(r["Name"]), r["Type"])] = (int(r.get("TTL", 300)), values)
    return records


def _zone(client: Any, summary: Mapping[str, Any], known_vpcs: Mapping[str, Tuple[Tuple[str, str], ...]]) -> Zone:
    zone_id = summary["Id"].split("/")[-1]
    private = bool((summary.get("Config") or {}).get("PrivateZone"))
    vpcs: Tuple[Tuple[str, str], ...] = ()
    if private and zone_id in known_vpcs:
        vpcs = known_vpcs[zone_id]
    elif private:
        detail = client.get_hosted_zone(Id=zone_id)
        vpcs = tuple((v["VPCRegion"], v["VPCId"]) for v in detail.get("VPCs") or [])
    return Zone(id=zone_id, name=_fqdn(summary["Name"]), private=private, vpcs=vpcs,
                records=_zone_records(client, zone_id))


def read_route53(client: Any, pool: Executor, previous: Iterable[Zone] = ()) -> Tuple[Zone, ...]:
    """Every hosted zone with its records (zone reads run in parallel).

    The VPC associations of private zones in `previous` are reused (one get_hosted_zone call
    per private zone saved); records are always read.
    """
    known = {z.id: z.vpcs for z in previous if z.private}
    summaries = _paginate(client, "list_hosted_zones", "HostedZones")
    return tuple(pool.map(lambda s: _zone(client, s, known), summaries))


def read_vpcs(clients: Mapping[str, Any], pool: Executor) -> Tuple[Vpc, ...]:
    """Just the VPCs of every region (what the resolver needs to place a client)."""
    found: Iterable[List[Vpc]] = pool.map(lambda item: _vpcs(item[1], item[0]), clients.items())
    return tuple(v for vpcs in found for v in vpcs)
