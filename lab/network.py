"""The lab's network data plane: one router namespace that follows moto's EC2 state.

Interface (used by the lab daemon):

    net = Network(aws_endpoint_url, state_dir)      # names=Namespaces.scratch("t") in tests
    net.setup()      # ROUTER_NS, client namespaces CLIENT_NS / INTERNET_NS / ONPREM_NS and their
                     # links, AWS_API_ADDRESS (on ROUTER_NS's lo: this kernel has no dummy links),
                     # and the lab resolver (lab/dns.py, a process tracked by PID in state_dir;
                     # setup() returns once it answers). Starts from scratch: whatever an
                     # earlier run left is torn down first.
    net.tick()       # read moto once (both lab regions, calls in parallel), apply only the
                     # differences; returns the list of changes made ([] when none).
                     # Call it every 0.2-0.25 s, start to start. Route tables, lab-host
                     # instances and their ENIs, EIPs (and peerings, when a route uses one) are
                     # read on every tick; VPCs, subnets and IGW attachments every 5th. When the
                     # plan and the host namespaces are unchanged the kernel is not even read,
                     # except every HOST_CHECK_EVERY ticks (drift, host side, nft re-applied).
                     # Raises NetworkError when ROUTER_NS is gone (setup() again).
    net.teardown()   # stop the resolver by PID, delete the four namespaces and /etc/netns files.
    net.close()      # release the reader threads (teardown() does it too).
    measure_latencies(endpoint_url, names, samples)  # {kind: [seconds]}, API write -> data plane
    format_latencies(results)                         # one printable line per kind
    kernel_route(router_ns, route_table_id, cidr)     # what the router holds for a moto route

Client probes are in lab/probe.py: probe(ns, host, port) (a banner: which node answered),
http_get(ns, url), resolve(ns, name) (one DNS question to the namespace's resolver).
Client namespaces get /etc/netns/<ns>/resolv.conf: CLIENT_NS and ONPREM_NS use the primary VPC's
resolver (10.0.0.2), INTERNET_NS the router's internet side (203.0.113.1, public zones only).
Hosts must point their resolv.conf at their own VPC's resolver (VPC base + 2).

What tick() maps (all inside ROUTER_NS, never in the machine's root namespace):
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

Netfilter tool: `nft`. Inside a network namespace on this kernel nft, iptables-legacy and
iptables-nft all work for nat and filter (probed in a scratch namespace; no module can be
loaded, these are built in); nft is used because a whole table is replaced in one atomic
transaction. There is no `dummy` link type, so AWS_API_ADDRESS lives on ROUTER_NS's lo.

moto hands out Elastic IPs in 127.0.0.0/8. INTERNET_NS therefore routes 127.0.0.0/8 (all but
127.0.0.1) to the router, and route_localnet is on for the router's internet link and for
INTERNET_NS's eth0; the packets never leave the lab's namespaces.

Sysctls in ROUTER_NS: ip_forward on, ICMP redirects off (a client told to reach a VIP directly
would keep going to the old node after a failover), rp_filter off, bridge netfilter off.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Mapping, Optional, Set, Tuple

from lab import dns, topology
from lab.snapshot import Ec2Snapshot, Eni, RouteTable, read_ec2

NETNS_DIR = Path("/run/netns")
ETC_NETNS = Path("/etc/netns")
REGIONS = (topology.PRIMARY_REGION, topology.DR_REGION)

RULE_PRIORITY = 1000
TABLE_BASE = 10000
HOST_CHECK_EVERY = 25                       # ticks between full checks of the host side
STRUCTURE_EVERY = 5                         # ticks between reads of VPCs, subnets, IGW attachments

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


class NetworkError(Exception):
    """A data-plane command failed; the message names the command and the kernel's answer."""


# ---------------------------------------------------------------------------------------------
# Running commands


def run(cmd: List[str], stdin: Optional[str] = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise NetworkError(f"{' '.join(cmd)} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def ip_json(ns: str, *args: str) -> Any:
    out = run(["ip", "-j", "-n", ns, *args]).stdout
    return json.loads(out) if out.strip() else []


def ip_batch(ns: str, commands: List[str]) -> List[str]:
    """Run `ip` commands in one process; returns the error lines (the batch goes on past them)."""
    if not commands:
        return []
    proc = run(["ip", "-n", ns, "-force", "-batch", "-"], stdin="\n".join(commands) + "\n", check=False)
    return [line for line in proc.stderr.splitlines() if line.strip()]


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def sysctl(ns: str, settings: Mapping[str, str]) -> None:
    # -e: keys this kernel lacks (bridge netfilter) are not errors.
    run(["ip", "netns", "exec", ns, "sysctl", "-q", "-e", "-w",
         *(f"{key}={value}" for key, value in settings.items())])


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


def _cidr(value: str) -> str:
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
    own = destination == _cidr(eni.private_ip + "/32")
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
        dest = _cidr(route.destination)
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
            found[_cidr(subnet.cidr)] = [KernelRoute(table, _cidr(subnet.cidr), "unicast", None,
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


# ---------------------------------------------------------------------------------------------
# Current state of ROUTER_NS


@dataclass
class RouterState:
    links: Dict[str, Dict[str, Any]]            # ifname -> ip -j -d addr entry
    rules: Set[Tuple[str, int]]
    routes: Set[KernelRoute]

    def addresses(self, ifname: str) -> Set[str]:
        entry = self.links.get(ifname) or {}
        return {f"{a['local']}/{a['prefixlen']}" for a in entry.get("addr_info", []) if a.get("family") == "inet"}


def _kernel_route(entry: Mapping[str, Any]) -> Optional[KernelRoute]:
    table = entry.get("table", "main")
    if not str(table).isdigit() or int(table) < TABLE_BASE:
        return None
    dst = entry["dst"]
    dst = "0.0.0.0/0" if dst == "default" else _cidr(dst if "/" in dst else dst + "/32")
    kind = entry.get("type", "unicast")
    if kind == "blackhole":
        return KernelRoute(int(table), dst, "blackhole")
    return KernelRoute(int(table), dst, kind, entry.get("gateway"), entry.get("dev"))


def kernel_route(router_ns: str, route_table_id: str, destination: str) -> Optional[KernelRoute]:
    """The route ROUTER_NS holds for a moto route table and destination (None: no route)."""
    table, dest = table_number(route_table_id), _cidr(destination)
    # Filtered listings (`show table N PREFIX`) leave the table and dst out of the JSON.
    found = [r for r in map(_kernel_route, ip_json(router_ns, "route", "show", "table", "all"))
             if r is not None and r.table == table and r.destination == dest]
    return found[0] if found else None


def read_router(router_ns: str) -> RouterState:
    links = {entry["ifname"]: entry for entry in ip_json(router_ns, "-d", "addr", "show")}
    rules = {(r["iif"], int(r["table"])) for r in ip_json(router_ns, "rule", "show")
             if r.get("priority") == RULE_PRIORITY and "iif" in r and str(r.get("table", "")).isdigit()}
    routes = {r for r in map(_kernel_route, ip_json(router_ns, "route", "show", "table", "all"))
              if r is not None}
    return RouterState(links=links, rules=rules, routes=routes)


def _kind(entry: Mapping[str, Any]) -> str:
    return (entry.get("linkinfo") or {}).get("info_kind", "")


# ---------------------------------------------------------------------------------------------
# Differences -> commands


def bridge_commands(plan: RouterPlan, state: RouterState) -> List[str]:
    cmds = []
    for name, entry in state.links.items():
        if name.startswith(BRIDGE_PREFIX) and _kind(entry) == "bridge" and name not in plan.bridges:
            cmds.append(f"link del {name}")
    for name, address in sorted(plan.bridges.items()):
        if name not in state.links:
            cmds += [f"link add {name} type bridge", f"link set {name} up", f"addr add {address} dev {name}"]
        elif state.addresses(name) != {address}:
            cmds += [f"addr flush dev {name}", f"addr add {address} dev {name}", f"link set {name} up"]
    return cmds


def port_commands(plan: RouterPlan, state: RouterState) -> List[str]:
    """Attach existing host veths and the client link to their bridges; drop stale host veths."""
    cmds = []
    for name, entry in state.links.items():
        if name.startswith(HOST_LINK_PREFIX) and name not in plan.hosts:
            cmds.append(f"link del {name}")
    for name, link in sorted(plan.hosts.items()):
        entry = state.links.get(name)
        if entry is not None and (entry.get("master") != link.bridge or "UP" not in entry.get("flags", [])):
            cmds.append(f"link set {name} master {link.bridge} up")
    client = state.links.get(CLIENT_LINK)
    if client is not None and plan.client_bridge and client.get("master") != plan.client_bridge:
        cmds.append(f"link set {CLIENT_LINK} master {plan.client_bridge} up")
    return cmds


def address_commands(plan: RouterPlan, state: RouterState) -> List[str]:
    current = state.addresses("lo") - {"127.0.0.1/8"}
    return ([f"addr del {a} dev lo" for a in sorted(current - plan.lo_addresses)]
            + [f"addr add {a} dev lo" for a in sorted(plan.lo_addresses - current)])


def rule_commands(plan: RouterPlan, state: RouterState) -> List[str]:
    return ([f"rule del pref {RULE_PRIORITY} iif {iif} table {t}" for iif, t in sorted(state.rules - plan.rules)]
            + [f"rule add pref {RULE_PRIORITY} iif {iif} table {t}" for iif, t in sorted(plan.rules - state.rules)])


def route_commands(plan: RouterPlan, state: RouterState) -> List[str]:
    stale = state.routes - plan.routes
    missing = plan.routes - state.routes
    replaced = {(r.table, r.destination) for r in missing}
    # A changed route is one `replace`; a deleted destination is one `del`.
    return ([r.command("del") for r in sorted(stale) if (r.table, r.destination) not in replaced]
            + [r.command("replace") for r in sorted(missing)])


def host_side_commands(link: HostLink) -> List[str]:
    """Idempotent commands that give a host its ENI address and default route."""
    cmds = ["link set lo up", f"addr replace {link.address} dev {link.host_if}", f"link set {link.host_if} up"]
    if link.gateway:
        cmds.append(f"route replace default via {link.gateway} dev {link.host_if}")
    return cmds


# ---------------------------------------------------------------------------------------------
# The data plane


@dataclass(frozen=True)
class Namespaces:
    """The namespaces the data plane makes. The defaults are the lab's (lab/topology.py); tests
    use `Namespaces.scratch(tag)` so they never touch a lab that is up on the same machine."""

    router: str = topology.ROUTER_NS
    client: str = topology.CLIENT_NS
    internet: str = topology.INTERNET_NS
    onprem: str = topology.ONPREM_NS

    @classmethod
    def scratch(cls, tag: str) -> "Namespaces":
        return cls(*(f"{topology.PREFIX}{tag}-{role}" for role in ("router", "client", "internet", "onprem")))

    def all(self) -> List[str]:
        return [self.router, self.client, self.internet, self.onprem]


def _client_links(names: Namespaces) -> List[Tuple[str, str, str, str, str, str]]:
    """(namespace, router link, router address, client address, gateway, resolver)."""
    subnet_a = ipaddress.ip_network(topology.PRIMARY_SUBNETS["a"])
    primary_resolver = str(ipaddress.ip_network(topology.PRIMARY_VPC_CIDR)[2])
    return [
        (names.client, CLIENT_LINK, "", f"{topology.CLIENT_ADDRESS}/{subnet_a.prefixlen}",
         str(subnet_a[1]), primary_resolver),
        (names.internet, INTERNET_LINK, f"{INTERNET_ROUTER}/{INTERNET_NET.prefixlen}",
         f"{INTERNET_CLIENT}/{INTERNET_NET.prefixlen}", INTERNET_ROUTER, INTERNET_ROUTER),
        (names.onprem, ONPREM_LINK, f"{ONPREM_ROUTER}/{ONPREM_NET.prefixlen}",
         f"{ONPREM_CLIENT}/{ONPREM_NET.prefixlen}", ONPREM_ROUTER, primary_resolver),
    ]


def _namespace_inodes() -> Dict[str, int]:
    """Every named network namespace with the inode of its /run/netns entry (a namespace
    deleted and made again under the same name gets a new one)."""
    found = {}
    for name in os.listdir(NETNS_DIR) if NETNS_DIR.exists() else []:
        try:
            found[name] = (NETNS_DIR / name).stat().st_ino
        except OSError:
            pass                                # deleted while listing
    return found


class Network:
    """The lab's data plane; see the module docstring for what setup/tick/teardown do."""

    def __init__(self, aws_endpoint_url: str, state_dir: Path, regions: Tuple[str, ...] = REGIONS,
                 names: Namespaces = Namespaces()) -> None:
        import boto3  # the lab runs from the venv; imported here so planning stays boto3-free

        self.endpoint_url = aws_endpoint_url
        self.names = names
        self.state_dir = Path(state_dir)
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="lab-net")
        session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing")
        self.clients = {region: session.client("ec2", region_name=region, endpoint_url=aws_endpoint_url)
                        for region in regions}
        self.applied_nft = ""
        self.applied: Optional[Tuple[RouterPlan, Tuple[Tuple[str, int], ...]]] = None
        self.errors = 0
        self.ticks = 0
        self.last_snapshot: Optional[Ec2Snapshot] = None

    # -- lifecycle ------------------------------------------------------------------------------

    def setup(self) -> None:
        """Create ROUTER_NS, the client namespaces and the resolver (after clearing old ones)."""
        self.teardown(close=False)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        router = self.names.router
        run(["ip", "netns", "add", router])
        # Defaults first, so every link made later inherits them.
        sysctl(router, {"net.ipv4.ip_forward": "1",
                        "net.ipv4.conf.all.send_redirects": "0", "net.ipv4.conf.default.send_redirects": "0",
                        "net.ipv4.conf.all.rp_filter": "0", "net.ipv4.conf.default.rp_filter": "0",
                        "net.bridge.bridge-nf-call-iptables": "0"})
        ip_batch(router, ["link set lo up", f"addr add {topology.AWS_API_ADDRESS}/32 dev lo"])
        for ns, link, router_addr, client_addr, gateway, resolver in _client_links(self.names):
            self._make_client(ns, link, router_addr, client_addr, gateway, resolver)
        self._route_eips_from_internet()
        self.applied_nft = ""
        self.applied = None
        dns.start(self.endpoint_url, self.state_dir, self.names.router)

    def _make_client(self, ns: str, link: str, router_addr: str, client_addr: str,
                     gateway: str, resolver: str) -> None:
        run(["ip", "netns", "add", ns])
        sysctl(ns, {"net.ipv4.conf.all.accept_redirects": "0", "net.ipv4.conf.default.accept_redirects": "0"})
        run(["ip", "-n", self.names.router, "link", "add", link, "type", "veth",
             "peer", "name", "eth0", "netns", ns])
        router_cmds = [f"link set {link} up"] + ([f"addr add {router_addr} dev {link}"] if router_addr else [])
        errors = ip_batch(self.names.router, router_cmds)
        errors += ip_batch(ns, ["link set lo up", f"addr add {client_addr} dev eth0", "link set eth0 up",
                                f"route add default via {gateway} dev eth0"])
        if errors:
            raise NetworkError(f"setting up {ns} failed: {'; '.join(errors)}")
        etc = ETC_NETNS / ns
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text(f"nameserver {resolver}\noptions timeout:1 attempts:2\n")

    def _route_eips_from_internet(self) -> None:
        """moto's EIPs are 127.x.y.z: let INTERNET_NS send those to the router (see docstring)."""
        ns = self.names.internet
        errors = ip_batch(ns, ["route del local 127.0.0.0/8 dev lo table local",
                               "route replace local 127.0.0.1 dev lo table local",
                               f"route add 127.0.0.0/8 via {INTERNET_ROUTER} dev eth0"])
        if errors:
            raise NetworkError(f"routing Elastic IPs from {ns} failed: {'; '.join(errors)}")
        sysctl(ns, {"net.ipv4.conf.eth0.route_localnet": "1"})
        sysctl(self.names.router, {f"net.ipv4.conf.{INTERNET_LINK}.route_localnet": "1"})

    def teardown(self, close: bool = True) -> None:
        """Stop the resolver (by PID) and delete every namespace and file setup() made."""
        dns.stop(self.state_dir)
        for ns in self.names.all()[1:]:
            shutil.rmtree(ETC_NETNS / ns, ignore_errors=True)
        for ns in self.names.all():
            if netns_exists(ns):
                run(["ip", "netns", "delete", ns], check=False)
        self.applied_nft = ""
        self.applied = None
        if close:
            self.close()

    def close(self) -> None:
        self.pool.shutdown(wait=False)

    # -- reconcile ------------------------------------------------------------------------------

    def tick(self) -> List[str]:
        """Read moto once and make ROUTER_NS and the host links match; returns what changed."""
        if not netns_exists(self.names.router):
            raise NetworkError(f"{self.names.router} does not exist: run Network.setup() first")
        previous = self.last_snapshot if self.ticks % STRUCTURE_EVERY else None
        snap = read_ec2(self.clients, self.pool, previous)
        self.last_snapshot = snap
        host_namespaces = _namespace_inodes()
        plan = plan_router(snap, set(host_namespaces))
        full_check = self.ticks % HOST_CHECK_EVERY == 0
        self.ticks += 1
        # Same plan, same host namespaces (a re-made one has a new inode), last pass clean: the
        # kernel already holds it. Every HOST_CHECK_EVERY ticks it is read anyway (drift).
        fingerprint = (plan, tuple(sorted(host_namespaces.items())))
        if fingerprint == self.applied and not full_check:
            return []
        self.errors = 0
        if full_check:
            self.applied_nft = ""               # re-applied too, in case someone flushed it
        state = read_router(self.names.router)
        changes: List[str] = []
        changes += self._apply(bridge_commands(plan, state))
        changes += self._create_host_links(plan, state, full_check)
        # Deleting a bridge took its routes and rules with it: do not delete them again.
        gone = {name for name in state.links if name.startswith(BRIDGE_PREFIX) and name not in plan.bridges}
        state.rules = {r for r in state.rules if r[0] not in gone}
        state.routes = {r for r in state.routes if r.dev not in gone}
        changes += self._apply(port_commands(plan, state) + address_commands(plan, state)
                               + rule_commands(plan, state) + route_commands(plan, state))
        changes += self._apply_nft(plan.nft)
        self.applied = fingerprint if self.errors == 0 else None
        return changes

    def _apply(self, cmds: List[str]) -> List[str]:
        for error in ip_batch(self.names.router, cmds):
            self.errors += 1
            print(f"lab network: {error}", file=sys.stderr)
        return cmds

    def _create_host_links(self, plan: RouterPlan, state: RouterState, full_check: bool) -> List[str]:
        changes = []
        for name, link in sorted(plan.hosts.items()):
            if name in state.links and not full_check:
                continue
            if name not in state.links:
                proc = run(["ip", "-n", self.names.router, "link", "add", name, "type", "veth", "peer",
                            "name", link.host_if, "address", link.mac, "netns", link.netns], check=False)
                if proc.returncode != 0:
                    self.errors += 1
                    print(f"lab network: veth for {link.netns} not made: {proc.stderr.strip()}", file=sys.stderr)
                    continue
                self._apply([f"link set {name} master {link.bridge} up"])
                changes.append(f"host {link.netns} {link.host_if} {link.address}")
            # Re-asserted now and then: the commands are idempotent, so only errors are news.
            for error in ip_batch(link.netns, host_side_commands(link)):
                self.errors += 1
                print(f"lab network: {link.netns}: {error}", file=sys.stderr)
        return changes

    def _apply_nft(self, ruleset: str) -> List[str]:
        if ruleset == self.applied_nft:
            return []
        # Declaring then deleting the table makes the replacement one transaction even when
        # the table does not exist yet.
        script = f"table ip {NFT_TABLE}\ndelete table ip {NFT_TABLE}\n{ruleset}"
        run(["ip", "netns", "exec", self.names.router, "nft", "-f", "-"], stdin=script)
        self.applied_nft = ruleset
        return ["nft ruleset replaced"]


# ---------------------------------------------------------------------------------------------
# Reconcile latency: API write -> data-plane change


def _poll_change(observe: Callable[[], Any], before: Any, timeout: float) -> float:
    """Seconds until observe() differs from `before` (counting from this call)."""
    started = time.monotonic()
    while observe() == before:
        if time.monotonic() - started > timeout:
            raise NetworkError(f"the data plane did not follow within {timeout} s (still {before!r})")
        time.sleep(0.01)
    return time.monotonic() - started


def _points_at(route: Optional[KernelRoute], address: str) -> bool:
    return route is not None and (route.via == address or route.kind == "blackhole")


def _timed(write: Callable[[], Any], observe: Callable[[], Any], timeout: float) -> float:
    before = observe()
    write()
    return _poll_change(observe, before, timeout)


def measure_latencies(aws_endpoint_url: str, names: Namespaces = Namespaces(), samples: int = 5,
                      timeout: float = 5.0) -> Dict[str, List[float]]:
    """Time, per kind of change, from an API write's return to the data plane showing it.

    Needs a data plane that is being ticked (the lab daemon, or a test's ticker) and a running
    lab host in the primary lab VPC. Uses scratch objects it removes afterwards: a /32 route
    to 198.51.100.77 in the primary VPC's main table, an Elastic IP, a public hosted zone
    latency.lab.test. Observed: the kernel route (route, src/dst check), the nft DNAT rule
    (EIP), and the resolver's answer to the internet client (DNS). With two or more running
    lab hosts a sample moves the route / EIP from one to the next, as a failover does.
    """
    bench = _LatencyBench(aws_endpoint_url, names, timeout)
    try:
        return {"route": [bench.route_sample(i) for i in range(samples)],
                "src/dst check": [bench.check_sample(i) for i in range(samples)],
                "eip": [bench.eip_sample(i) for i in range(samples)],
                "dns": [bench.dns_sample(i) for i in range(samples)]}
    finally:
        bench.cleanup()


class _LatencyBench:
    """The scratch objects and observers behind measure_latencies."""

    DESTINATION = "198.51.100.77/32"
    ZONE = "latency.lab.test"
    NAME = "probe.latency.lab.test"

    def __init__(self, endpoint_url: str, names: Namespaces, timeout: float) -> None:
        import boto3

        session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing")
        self.ec2 = session.client("ec2", region_name=topology.PRIMARY_REGION, endpoint_url=endpoint_url)
        self.route53 = session.client("route53", region_name=topology.PRIMARY_REGION, endpoint_url=endpoint_url)
        self.names, self.timeout = names, timeout
        with ThreadPoolExecutor(max_workers=4) as pool:
            snap = read_ec2({topology.PRIMARY_REGION: self.ec2}, pool)
        primary = snap.primary_vpc()
        self.enis = [e for e in snap.enis if primary is not None and e.vpc_id == primary.id
                     and e.device_index == 0 and getattr(snap.instance(e.instance_id), "state", "") == "running"]
        self.table = next((t.id for t in snap.route_tables
                           if primary is not None and t.vpc_id == primary.id and t.main), None)
        if not self.enis or self.table is None:
            raise NetworkError("measuring needs a lab VPC with a running lab host (run `lab up` first)")
        self.eni = self.enis[0]
        self.flag = self.eni.source_dest_check
        self.routed = False
        self.allocation: Optional[str] = None
        self.public: Optional[str] = None
        self.zone_id: Optional[str] = None

    # -- observers -----------------------------------------------------------------------------

    def kernel(self) -> Optional[KernelRoute]:
        return kernel_route(self.names.router, self.table or "", self.DESTINATION)

    def dnat_target(self) -> Optional[str]:
        ruleset = run(["ip", "netns", "exec", self.names.router, "nft", "list", "table", "ip", NFT_TABLE]).stdout
        for line in ruleset.splitlines():
            if f"ip daddr {self.public} dnat to " in line:
                return line.split("dnat to ")[1].strip()
        return None

    def answer(self) -> Tuple[str, ...]:
        from lab.probe import ProbeError, resolve

        for _attempt in range(int(self.timeout)):
            try:   # a 1 s timeout, as the lab's resolv.conf gives glibc
                return resolve(self.names.internet, self.NAME, server=INTERNET_ROUTER, timeout=1.0).addresses
            except ProbeError:
                continue                      # lost under load: ask again
        raise NetworkError(f"the lab resolver did not answer within {self.timeout} s")

    # -- samples -------------------------------------------------------------------------------

    def _route_to(self, eni_id: str) -> None:
        # moto's create_route overwrites an existing destination (AWS would want replace_route).
        self.ec2.create_route(RouteTableId=self.table, DestinationCidrBlock=self.DESTINATION,
                              NetworkInterfaceId=eni_id)
        self.routed = True

    def _unroute(self) -> None:
        self.ec2.delete_route(RouteTableId=self.table, DestinationCidrBlock=self.DESTINATION)
        self.routed = False

    def route_sample(self, i: int) -> float:
        if i == 0:
            _timed(lambda: self._route_to(self.eni.id), self.kernel, self.timeout)
        if len(self.enis) > 1:
            target = self.enis[(i + 1) % len(self.enis)].id
            return _timed(lambda: self._route_to(target), self.kernel, self.timeout)
        return _timed(self._unroute if self.routed else lambda: self._route_to(self.eni.id),
                      self.kernel, self.timeout)

    def check_sample(self, i: int) -> float:
        if i == 0:                              # back onto the first ENI, then flip its check
            self._route_to(self.eni.id)
            _poll_change(lambda: _points_at(self.kernel(), self.eni.private_ip), False, self.timeout)
        value = (not self.flag) if i % 2 == 0 else self.flag
        return _timed(lambda: self.ec2.modify_network_interface_attribute(
            NetworkInterfaceId=self.eni.id, SourceDestCheck={"Value": value}), self.kernel, self.timeout)

    def _associate(self, eni_id: str) -> None:
        self.ec2.associate_address(AllocationId=self.allocation, NetworkInterfaceId=eni_id,
                                   AllowReassociation=True)

    def _disassociate(self) -> None:
        found = self.ec2.describe_addresses(AllocationIds=[self.allocation])["Addresses"]
        if found and found[0].get("AssociationId"):
            self.ec2.disassociate_address(AssociationId=found[0]["AssociationId"])

    def eip_sample(self, i: int) -> float:
        if self.allocation is None:
            allocation = self.ec2.allocate_address(Domain="vpc")
            self.allocation, self.public = allocation["AllocationId"], allocation["PublicIp"]
        if len(self.enis) > 1:
            target = self.enis[i % len(self.enis)].id
            return _timed(lambda: self._associate(target), self.dnat_target, self.timeout)
        associated = self.dnat_target() is not None
        return _timed(self._disassociate if associated else lambda: self._associate(self.eni.id),
                      self.dnat_target, self.timeout)

    def dns_sample(self, i: int) -> float:
        if self.zone_id is None:
            self.zone_id = self.route53.create_hosted_zone(
                Name=self.ZONE, CallerReference=f"latency-{time.time()}")["HostedZone"]["Id"]
        change = {"Action": "UPSERT", "ResourceRecordSet": {
            "Name": self.NAME, "Type": "A", "TTL": 1, "ResourceRecords": [{"Value": f"192.0.2.{i + 1}"}]}}
        return _timed(lambda: self.route53.change_resource_record_sets(
            HostedZoneId=self.zone_id, ChangeBatch={"Changes": [change]}), self.answer, self.timeout)

    # -- cleanup -------------------------------------------------------------------------------

    def _drop_zone(self) -> None:
        for record in self.route53.list_resource_record_sets(HostedZoneId=self.zone_id)["ResourceRecordSets"]:
            if record["Type"] not in ("NS", "SOA"):
                self.route53.change_resource_record_sets(HostedZoneId=self.zone_id, ChangeBatch={
                    "Changes": [{"Action": "DELETE", "ResourceRecordSet": record}]})
        self.route53.delete_hosted_zone(Id=self.zone_id)

    def _drop_address(self) -> None:
        self._disassociate()
        self.ec2.release_address(AllocationId=self.allocation)

    def cleanup(self) -> None:
        """Remove every scratch object; a failure is named and the rest still goes."""
        steps: List[Callable[[], Any]] = [
            lambda: self.ec2.modify_network_interface_attribute(
                NetworkInterfaceId=self.eni.id, SourceDestCheck={"Value": self.flag})]
        if self.routed:
            steps.append(self._unroute)
        if self.allocation is not None:
            steps.append(self._drop_address)
        if self.zone_id is not None:
            steps.append(self._drop_zone)
        for step in steps:
            try:
                step()
            except Exception as exc:  # cleanup goes on; the leftover is named
                print(f"lab network: cleanup after measuring: {exc}", file=sys.stderr)


def format_latencies(results: Mapping[str, List[float]]) -> str:
    """One line per kind: median and max in seconds."""
    lines = []
    for kind, values in results.items():
        if values:
            lines.append(f"{kind:>14}: median {statistics.median(values):.3f} s, max {max(values):.3f} s"
                         f" (n={len(values)})")
    return "\n".join(lines)
