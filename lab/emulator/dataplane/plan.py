"""The data plane's plan: what ROUTER_NS should hold, a pure function of a moto snapshot
(lab/emulator/dataplane/snapshot.py) and the host namespaces that exist. No kernel call here.

What the plan maps (all inside ROUTER_NS, never in the machine's root namespace):
- every subnet of a VPC tagged ec2ha:lab=true -> bridge `br-<12 hex of the subnet id>` holding the
  subnet's gateway (.1); each lab VPC's resolver address (base + 2) on ROUTER_NS's lo.
- every ENI attached to an instance tagged ec2ha:lab-host=true whose namespace
  topology.host_netns(instance id) exists -> veth `ve-<12 hex of the ENI id>` on the subnet's bridge;
  its peer `eth<device index>` in the host namespace with moto's MAC address, the ENI's primary
  private IP/prefix and, for device index 0, the default route via the gateway. Only that address
  and that route are managed there: addresses the host adds itself (a VIP) are left alone.
- every moto route table -> Linux table 10000 + (last 6 hex of its id), selected by
  `ip rule iif <subnet bridge>` for each subnet it serves (explicitly associated, else the VPC's
  main table). Rules match the incoming bridge, not the source address, because a node replies
  to VIP clients from the VIP, which lies in no subnet. The table holds: the VPC's subnets (local
  route), ONPREM_CIDR for the primary VPC (Direct Connect, as a propagated VGW route would), and
  moto's routes: ENI/instance -> via the ENI's primary private IP, or blackhole when the ENI
  does not forward (source/dest check on and the destination is not its own address), is not
  attached, or its instance is not running; pcx- -> the peer VPC's subnet bridges while the
  peering is active, blackhole otherwise; igw- -> INTERNET_NS while the gateway is attached;
  vgw- -> ONPREM_NS; anything else -> blackhole. Whatever matches no route is dropped
  (blackhole default), as in a VPC.
- nftables (table `ip e2h` in ROUTER_NS): INTERNET_NS reaches only associated Elastic IPs of
  running instances (DNAT to the private IP; SNAT back to the EIP on the way out); instances
  without an EIP cannot send to INTERNET_NS; ONPREM_NS reaches only the primary VPC's CIDR;
  a VPC's resolver answers its own VPC (and on premises for the primary VPC).

Not modelled: security groups and network ACLs (everything a route allows passes), NAT
gateways, transit gateways and IPv6 (their routes are dropped), secondary private IPs (a host
adds them itself, as on EC2 without ec2-net-utils).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Dict, FrozenSet, Iterable, List, Mapping, Optional, Set, Tuple

from lab import topology
from lab.emulator.dataplane.snapshot import Ec2Snapshot, Eni, RouteTable

RULE_PRIORITY = 1000
TABLE_BASE = 10000

CLIENT_LINK = "to-client"
INTERNET_LINK = "to-internet"
ONPREM_LINK = "to-onprem"
BRIDGE_PREFIX = "br-"
HOST_LINK_PREFIX = "ve-"

INTERNET_NET = ipaddress.ip_network(topology.INTERNET_CIDR)
ONPREM_NET = ipaddress.ip_network(topology.ONPREM_CIDR)
INTERNET_ROUTER = str(INTERNET_NET[1])
INTERNET_CLIENT = str(INTERNET_NET[10])
ONPREM_ROUTER = str(ONPREM_NET[1])
ONPREM_CLIENT = str(ONPREM_NET[10])

NFT_TABLE = "e2h"


# ---------------------------------------------------------------------------------------------
# Names


def bridge_name(subnet_id: str) -> str:
    return BRIDGE_PREFIX + subnet_id[-12:]


def host_link_name(eni_id: str) -> str:
    return HOST_LINK_PREFIX + eni_id[-12:]


def table_number(route_table_id: str) -> int:
    return TABLE_BASE + int(route_table_id[-6:], 16)


# ---------------------------------------------------------------------------------------------
# Desired state: a pure function of a moto snapshot and the host namespaces that exist


@dataclass(frozen=True, order=True)
class KernelRoute:
    table: int
    destination: str                         # normalised CIDR
    kind: str                                # "unicast" | "blackhole"
    via: Optional[str] = None
    dev: Optional[str] = None

    def command(self, verb: str) -> str:
        if self.kind == "blackhole":
            return f"route {verb} blackhole {self.destination} table {self.table}"
        spec = f"route {verb} {self.destination}"
        spec += f" via {self.via}" if self.via else ""
        spec += f" dev {self.dev}" if self.dev else ""
        return spec + f" table {self.table}"


@dataclass(frozen=True)
class HostLink:
    netns: str
    router_if: str
    host_if: str
    mac: str
    address: str                             # ip/prefix
    gateway: Optional[str]                   # default route (device index 0 only)
    bridge: str


@dataclass(frozen=True)
class RouterPlan:
    bridges: Mapping[str, str] = field(default_factory=dict)           # name -> gateway/prefix
    hosts: Mapping[str, HostLink] = field(default_factory=dict)        # router_if -> link
    client_bridge: Optional[str] = None
    lo_addresses: FrozenSet[str] = frozenset()                         # "a.b.c.d/32"
    rules: FrozenSet[Tuple[str, int]] = frozenset()                    # (iif, table)
    routes: FrozenSet[KernelRoute] = frozenset()
    nft: str = ""


def cidr(value: str) -> str:
    return str(ipaddress.ip_network(value, strict=False))


def _served_subnets(snap: Ec2Snapshot, table: RouteTable) -> List[str]:
    """Subnets whose traffic this route table routes: explicit associations, or the VPC's
    subnets without one when it is the main table."""
    if not table.main:
        return list(table.subnet_ids)
    explicit = {s for t in snap.route_tables for s in t.subnet_ids}
    return sorted(set(table.subnet_ids) | {s.id for s in snap.subnets_of(table.vpc_id) if s.id not in explicit})


def _eni_route(snap: Ec2Snapshot, table: int, destination: str, eni: Optional[Eni],
               lab_subnets: Set[str]) -> KernelRoute:
    blackhole = KernelRoute(table, destination, "blackhole")
    if eni is None or eni.subnet_id not in lab_subnets or eni.instance_id is None:
        return blackhole
    instance = snap.instance(eni.instance_id)
    if instance is None or instance.state != "running":
        return blackhole
    own = destination == cidr(eni.private_ip + "/32")
    if not own and not snap.eni_forwards(eni):
        return blackhole
    return KernelRoute(table, destination, "unicast", eni.private_ip, bridge_name(eni.subnet_id))


def _peer_routes(snap: Ec2Snapshot, table: int, destination: str, vpc_id: str,
                 peering_id: str, lab_subnets: Set[str]) -> List[KernelRoute]:
    peering = next((p for p in snap.peerings if p.id == peering_id), None)
    if peering is None or peering.status != "active" or vpc_id not in (
            peering.requester_vpc_id, peering.accepter_vpc_id):
        return [KernelRoute(table, destination, "blackhole")]
    peer = peering.accepter_vpc_id if vpc_id == peering.requester_vpc_id else peering.requester_vpc_id
    wanted = ipaddress.ip_network(destination)
    routes = []
    for subnet in snap.subnets_of(peer):
        net = ipaddress.ip_network(subnet.cidr)
        if subnet.id not in lab_subnets or not net.overlaps(wanted):
            continue
        narrower = net if net.subnet_of(wanted) else wanted
        routes.append(KernelRoute(table, str(narrower), "unicast", None, bridge_name(subnet.id)))
    return routes or [KernelRoute(table, destination, "blackhole")]


def _table_routes(snap: Ec2Snapshot, rt: RouteTable, lab_subnets: Set[str]) -> List[KernelRoute]:
    table = table_number(rt.id)
    primary = snap.primary_vpc()
    found: Dict[str, List[KernelRoute]] = {"0.0.0.0/0": [KernelRoute(table, "0.0.0.0/0", "blackhole")]}
    if primary is not None and rt.vpc_id == primary.id:
        found[str(ONPREM_NET)] = [KernelRoute(table, str(ONPREM_NET), "unicast", None, ONPREM_LINK)]
    igws = {igw for igw, vpc in snap.attached_igws if vpc == rt.vpc_id}
    for route in rt.routes:
        dest = cidr(route.destination)
        if route.gateway_id == "local":
            continue                          # the subnet routes below
        if route.eni_id or route.instance_id:
            eni = snap.eni(route.eni_id) if route.eni_id else snap.primary_eni(route.instance_id or "")
            found[dest] = [_eni_route(snap, table, dest, eni, lab_subnets)]
        elif route.peering_id:
            found[dest] = _peer_routes(snap, table, dest, rt.vpc_id, route.peering_id, lab_subnets)
        elif route.gateway_id and route.gateway_id.startswith("igw-") and route.gateway_id in igws:
            found[dest] = [KernelRoute(table, dest, "unicast", INTERNET_CLIENT, INTERNET_LINK)]
        elif route.gateway_id and route.gateway_id.startswith("vgw-") and rt.vpc_id == getattr(primary, "id", None):
            found[dest] = [KernelRoute(table, dest, "unicast", None, ONPREM_LINK)]
        else:
            found[dest] = [KernelRoute(table, dest, "blackhole")]
    for subnet in snap.subnets_of(rt.vpc_id):
        if subnet.id in lab_subnets:
            found[cidr(subnet.cidr)] = [KernelRoute(table, cidr(subnet.cidr), "unicast", None,
                                                    bridge_name(subnet.id))]
    return [r for routes in found.values() for r in routes]


def _host_links(snap: Ec2Snapshot, host_namespaces: Set[str], lab_subnets: Set[str]) -> Dict[str, HostLink]:
    links = {}
    for eni in snap.enis:
        instance = snap.instance(eni.instance_id)
        if instance is None or not instance.lab_host or eni.subnet_id not in lab_subnets:
            continue
        netns = topology.host_netns(instance.id)
        if netns not in host_namespaces or instance.state in ("terminated", "shutting-down"):
            continue
        subnet = next(s for s in snap.subnets if s.id == eni.subnet_id)
        index = eni.device_index or 0
        link = HostLink(netns=netns, router_if=host_link_name(eni.id), host_if=f"eth{index}",
                        mac=eni.mac, address=f"{eni.private_ip}/{subnet.prefixlen}",
                        gateway=subnet.gateway if index == 0 else None, bridge=bridge_name(subnet.id))
        links[link.router_if] = link
    return links


def _elastic_ips(snap: Ec2Snapshot, lab_vpcs: Set[str]) -> List[Tuple[str, str]]:
    """(public, private) for every EIP associated with a running instance in a lab VPC."""
    pairs = []
    for address in snap.addresses:
        eni = snap.eni(address.eni_id)
        if eni is None or not address.private_ip or eni.vpc_id not in lab_vpcs:
            continue
        instance = snap.instance(eni.instance_id)
        if instance is not None and instance.state == "running":
            pairs.append((address.public_ip, address.private_ip))
    return sorted(pairs)


def _nft_set(values: Iterable[str]) -> str:
    return "{ " + ", ".join(values) + " }"


def nft_ruleset(snap: Ec2Snapshot) -> str:
    """The whole `ip e2h` table for a snapshot (replaced atomically when it changes)."""
    lab_vpcs = snap.lab_vpcs()
    eips = _elastic_ips(snap, {v.id for v in lab_vpcs})
    primary = snap.primary_vpc()
    inet = f'iifname "{INTERNET_LINK}"'
    pre = [f"{inet} ip daddr != {_nft_set([INTERNET_ROUTER] + [public for public, _private in eips])} drop"]
    if primary is not None:
        pre.append(f'iifname "{ONPREM_LINK}" ip daddr != {primary.cidr} drop')
    else:
        pre.append(f'iifname "{ONPREM_LINK}" drop')
    dnat = [f"{inet} ip daddr {public} dnat to {private}" for public, private in eips]
    snat = [f'oifname "{INTERNET_LINK}" ip saddr {private} snat to {public}'
            for public, private in {priv: (pub, priv) for pub, priv in eips}.values()]
    with_eip = sorted({private for _public, private in eips})
    forward = ([f'oifname "{INTERNET_LINK}" ip saddr != {_nft_set(with_eip)} drop'] if with_eip
               else [f'oifname "{INTERNET_LINK}" drop'])
    forward.append(f'iifname "{INTERNET_LINK}" ct status & dnat == 0 drop')
    inp = []
    for vpc in lab_vpcs:
        allowed = [vpc.cidr] + ([str(ONPREM_NET)] if primary is not None and vpc.id == primary.id else [])
        inp.append(f"ip daddr {vpc.resolver} ip saddr != {_nft_set(allowed)} drop")
    inp.append(f"{inet} ip daddr != {INTERNET_ROUTER} drop")

    def chain(name: str, hook: str, priority: int, kind: str, rules: List[str]) -> str:
        body = "".join(f"\t\t{r}\n" for r in rules)
        return (f"\tchain {name} {{\n\t\ttype {kind} hook {hook} priority {priority}; policy accept;\n"
                f"{body}\t}}\n")

    return (f"table ip {NFT_TABLE} {{\n"
            + chain("pre_filter", "prerouting", -150, "filter", pre)
            + chain("pre_nat", "prerouting", -100, "nat", dnat)
            + chain("forward_filter", "forward", 0, "filter", forward)
            + chain("input_filter", "input", 0, "filter", inp)
            + chain("post_nat", "postrouting", 100, "nat", snat)
            + "}\n")


def plan_router(snap: Ec2Snapshot, host_namespaces: Set[str]) -> RouterPlan:
    """What ROUTER_NS should hold for this snapshot."""
    lab_vpcs = {v.id for v in snap.lab_vpcs()}
    lab_subnets = {s.id: s for s in snap.subnets if s.vpc_id in lab_vpcs}
    bridges = {bridge_name(s.id): f"{s.gateway}/{s.prefixlen}" for s in lab_subnets.values()}
    client_ip = ipaddress.ip_address(topology.CLIENT_ADDRESS)
    client_subnet = next((s for s in lab_subnets.values() if client_ip in ipaddress.ip_network(s.cidr)), None)
    rules: Set[Tuple[str, int]] = set()
    routes: Set[KernelRoute] = set()
    for rt in snap.route_tables:
        if rt.vpc_id not in lab_vpcs:
            continue
        for subnet_id in _served_subnets(snap, rt):
            if subnet_id in lab_subnets:
                rules.add((bridge_name(subnet_id), table_number(rt.id)))
        routes.update(_table_routes(snap, rt, set(lab_subnets)))
    lo = {f"{topology.AWS_API_ADDRESS}/32"} | {f"{v.resolver}/32" for v in snap.lab_vpcs()}
    return RouterPlan(bridges=bridges, hosts=_host_links(snap, host_namespaces, set(lab_subnets)),
                      client_bridge=bridge_name(client_subnet.id) if client_subnet else None,
                      lo_addresses=frozenset(lo), rules=frozenset(rules), routes=frozenset(routes),
                      nft=nft_ruleset(snap))
