"""The data plane's kernel plumbing: `ip` and `nft` run inside ROUTER_NS, the router's
current state read back (RouterState), and the commands that turn it into a plan
(lab/emulator/dataplane/plan.py).

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

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Set, Tuple

from lab import helpers
from lab.emulator.dataplane.plan import (BRIDGE_PREFIX, CLIENT_LINK, HOST_LINK_PREFIX, RULE_PRIORITY,
                                         TABLE_BASE, HostLink, KernelRoute, RouterPlan, cidr,
                                         table_number)

NETNS_DIR = Path("/run/netns")


class NetworkError(Exception):
    """A data-plane command failed; the message names the command and the kernel's answer."""


# ---------------------------------------------------------------------------------------------
# Running commands


def run(cmd: List[str], stdin: Optional[str] = None, check: bool = True) -> subprocess.CompletedProcess:
    return helpers.run(cmd, stdin=stdin, check=check, error=NetworkError)


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
    dst = "0.0.0.0/0" if dst == "default" else cidr(dst if "/" in dst else dst + "/32")
    kind = entry.get("type", "unicast")
    if kind == "blackhole":
        return KernelRoute(int(table), dst, "blackhole")
    return KernelRoute(int(table), dst, kind, entry.get("gateway"), entry.get("dev"))


def kernel_route(router_ns: str, route_table_id: str, destination: str) -> Optional[KernelRoute]:
    """The route ROUTER_NS holds for a moto route table and destination (None: no route)."""
    table, dest = table_number(route_table_id), cidr(destination)
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
