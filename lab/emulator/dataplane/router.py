"""The lab's network data plane: one router namespace that follows moto's EC2 state.

Interface (used by the lab daemon):
Interface (used by the lab daemon):

    net = Network(aws_endpoint_url, state_dir)      # names=Namespaces.scratch("t") in tests
    net.setup()      # ROUTER_NS, client namespaces CLIENT_NS / INTERNET_NS / ONPREM_NS and their
                     # links, AWS_API_ADDRESS (on ROUTER_NS's lo: this kernel has no dummy links),
                     # and the lab resolver (lab/emulator/dataplane/dns.py, a process tracked
                     # by PID in state_dir; setup() returns once it answers). Starts from scratch: whatever an
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
Client probes are in lab/emulator/dataplane/probe.py: probe(ns, host, port) (a banner: which node answered),
http_get(ns, url), resolve(ns, name) (one DNS question to the namespace's resolver).
Client namespaces get /etc/netns/<ns>/resolv.conf: CLIENT_NS and ONPREM_NS use the primary VPC's
resolver (10.0.0.2), INTERNET_NS the router's internet side (203.0.113.1, public zones only).
Hosts must point their resolv.conf at their own VPC's resolver (VPC base + 2).

The plan (what the router should hold) is lab/emulator/dataplane/plan.py, the kernel plumbing
(ip, nft, reading the router back, differences -> commands) kernel.py; this module is the loop.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import boto3

from lab import topology
from lab.emulator.dataplane import dns
from lab.emulator.dataplane.kernel import (NETNS_DIR, NetworkError, RouterState, address_commands,
                                           bridge_commands, host_side_commands, ip_batch,
                                           netns_exists, port_commands, read_router,
                                           route_commands, rule_commands, run, sysctl)
from lab.emulator.dataplane.plan import (BRIDGE_PREFIX, CLIENT_LINK, INTERNET_CLIENT, INTERNET_LINK,
                                         INTERNET_NET, INTERNET_ROUTER, NFT_TABLE, ONPREM_CLIENT,
                                         ONPREM_LINK, ONPREM_NET, ONPREM_ROUTER, RouterPlan,
                                         plan_router)
from lab.emulator.dataplane.snapshot import Ec2Snapshot, read_ec2

ETC_NETNS = Path("/etc/netns")
REGIONS = (topology.PRIMARY_REGION, topology.DR_REGION)
HOST_CHECK_EVERY = 25                       # ticks between full checks of the host side
STRUCTURE_EVERY = 5                         # ticks between reads of VPCs, subnets, IGW attachments


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
