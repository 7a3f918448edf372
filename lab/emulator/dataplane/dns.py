"""The lab's Route 53 Resolver: answers from moto's hosted zones, inside ROUTER_NS.

    start(endpoint_url, state_dir, router_ns) -> pid   # `python -m lab.emulator.dataplane.dns serve`; PID in
                                                       # state_dir/dns.pid; returns once serving
    stop(state_dir)                                    # SIGTERM (then SIGKILL) that PID

The process runs in the machine's root namespace, where moto listens on loopback; only its
socket is made inside ROUTER_NS (by a thread that joined it). That UDP socket on 0.0.0.0:53
answers on every resolver address the data plane puts on ROUTER_NS's lo (each lab VPC's
base + 2) and on the router's internet-side address, and ignores questions sent to any other
(a gateway); IP_PKTINFO tells which address was asked so the answer leaves from it. The nftables rules of
lab/emulator/dataplane/router.py let a VPC's resolver be reached from that VPC only (and the primary VPC's from on
premises, as through an inbound endpoint).

Answers: public zones to every client; a private zone only to a client whose source address lies
in one of the zone's VPCs, or on premises (ONPREM_CIDR) asking the primary VPC's resolver when
the primary VPC is associated. The most specific visible zone wins (private before public at the
same name). Records come with their TTLs; a name missing from that zone is NXDOMAIN, a name
without the asked type NOERROR with no answer, a name under no visible zone NXDOMAIN too (the
lab has no internet to recurse to) except *.amazonaws.com, which points at AWS_API_ADDRESS.
An answer comes from a read of moto's zones and records that started at most CACHE_SECONDS
before the question arrived (VPC CIDRs and the private zones' VPC associations may be up to
VPC_CACHE_SECONDS old); see ZoneCache. UDP only (answers are small).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence, Set, Tuple

from lab import topology
from lab.emulator.hosts import in_netns
from lab.emulator.dataplane.snapshot import Vpc, Zone, read_route53, read_vpcs

CACHE_SECONDS = 0.2                        # hosted zones and records
VPC_CACHE_SECONDS = 2.0                    # VPC CIDRs and private zones' VPC associations
ACTIVE_SECONDS = 1.0                       # read ahead while questions came this recently
WAIT_SECONDS = 3.0                         # longest a question waits for a fresh read
AWS_API_TTL = 60
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)      # also the SCM type of its message
PID_FILE = "dns.pid"
LOG_FILE = "dns.log"
READY = "lab dns: serving on"
START_TIMEOUT = 30.0

Answer = Tuple[str, List[Tuple[str, str, int, str]]]   # rcode, [(name, type, ttl, value)]


@dataclass(frozen=True)
class View:
    """What the resolver knows at one moment: zones and the VPCs that place clients."""

    zones: Tuple[Zone, ...]
    vpcs: Tuple[Vpc, ...]


def _in(address: str, cidr: str) -> bool:
    return ipaddress.ip_address(address) in ipaddress.ip_network(cidr)


def _primary(vpcs: Sequence[Vpc]) -> Optional[Vpc]:
    return next((v for v in vpcs if v.region == topology.PRIMARY_REGION and v.lab
                 and v.cidr == topology.PRIMARY_VPC_CIDR), None)


def serving_addresses(view: View) -> Set[str]:
    """Where the resolver answers: each lab VPC's base + 2, and the router's internet side
    (the internet client's public resolver, which sees public zones only)."""
    internet_side = str(ipaddress.ip_network(topology.INTERNET_CIDR)[1])
    return {v.resolver for v in view.vpcs if v.lab} | {internet_side}


def zone_visible(zone: Zone, view: View, client: str, resolver: str) -> bool:
    if not zone.private:
        return True
    associated = [v for v in view.vpcs if (v.region, v.id) in zone.vpcs]
    if any(_in(client, v.cidr) for v in associated):
        return True
    primary = _primary(view.vpcs)
    return (primary is not None and primary in associated and _in(client, topology.ONPREM_CIDR)
            and resolver == primary.resolver)


def answer(view: View, qname: str, qtype: str, client: str, resolver: str) -> Answer:
    """The resolver's answer to one question (a pure function of the view)."""
    name = qname.lower() if qname.endswith(".") else qname.lower() + "."
    zones = [z for z in view.zones if (name == z.name or name.endswith("." + z.name))
             and zone_visible(z, view, client, resolver)]
    if not zones:
        if name.endswith(".amazonaws.com.") and qtype == "A":
            return "NOERROR", [(name, "A", AWS_API_TTL, topology.AWS_API_ADDRESS)]
        return "NXDOMAIN", []
    zone = max(zones, key=lambda z: (len(z.name), z.private))
    found = zone.records.get((name, qtype))
    if found:
        ttl, values = found
        return "NOERROR", [(name, qtype, ttl, v) for v in values]
    cname = zone.records.get((name, "CNAME"))
    if cname:
        ttl, (target,) = cname[0], cname[1][:1]
        rcode, rest = answer(view, target, qtype, client, resolver) if target.lower() != name else ("NOERROR", [])
        return rcode, [(name, "CNAME", ttl, target)] + rest
    if any(rname == name for rname, _rtype in zone.records) or name == zone.name:
        return "NOERROR", []
    return "NXDOMAIN", []


class ZoneCache:
    """moto's zones and VPCs as the resolver answers from them.

    A question is answered from a view whose read of moto started at most CACHE_SECONDS before
    the question arrived (the kernel's arrival time). One thread does the reads: while
    questions keep coming (within ACTIVE_SECONDS of the last one) it reads back to back, at
    most every CACHE_SECONDS / 2; when nobody asks, nothing reads moto. Questions wait for the
    read they need on a condition, in their own threads, so a slow read under load delays
    answers by about one read, never one read per queued question.
    """

    def __init__(self, endpoint_url: str) -> None:
        import boto3

        session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing")
        self.route53 = session.client("route53", region_name=topology.PRIMARY_REGION, endpoint_url=endpoint_url)
        self.ec2 = {r: session.client("ec2", region_name=r, endpoint_url=endpoint_url)
                    for r in (topology.PRIMARY_REGION, topology.DR_REGION)}
        self.pool = ThreadPoolExecutor(max_workers=6, thread_name_prefix="lab-dns")
        self.view: Optional[View] = None
        self.error: Optional[Exception] = None
        self.read_at = 0.0
        self.vpcs_read_at = 0.0
        self.asked_at = 0.0
        self.changed = threading.Condition()
        self.wake = threading.Event()
        threading.Thread(target=self._read_ahead, name="lab-dns-read-ahead", daemon=True).start()

    def get(self, asked: float) -> View:
        """A view read at most CACHE_SECONDS before `asked` (time.time() the question arrived);
        raises the last read's error when moto could not be read in time."""
        not_before = asked - CACHE_SECONDS
        with self.changed:
            self.asked_at = time.time()
            self.wake.set()
            self.changed.wait_for(lambda: self.error is not None or (
                self.view is not None and self.read_at >= not_before), timeout=WAIT_SECONDS)
            if self.error is not None or self.view is None:
                raise self.error or TimeoutError("no read of moto in time")
            return self.view

    def read(self) -> None:
        """One read of moto; the view is replaced and every waiting question woken."""
        started = time.time()
        try:
            # VPCs only place clients; they change at `lab up`, so they are re-read less often.
            stale_vpcs = self.view is None or started - self.vpcs_read_at > VPC_CACHE_SECONDS
            vpcs = self.pool.submit(read_vpcs, self.ec2, self.pool) if stale_vpcs else None
            # Zone-VPC associations are re-read with the VPCs; records on every read.
            zones = read_route53(self.route53, self.pool, () if stale_vpcs else self.view.zones)  # type: ignore[union-attr]
            view = View(zones=zones, vpcs=vpcs.result() if vpcs else self.view.vpcs)  # type: ignore[union-attr]
        except Exception as exc:  # moto unreachable: waiting questions get SERVFAIL
            with self.changed:
                self.error = exc
                self.changed.notify_all()
            raise
        with self.changed:
            self.view, self.read_at, self.error = view, started, None
            if stale_vpcs:
                self.vpcs_read_at = started
            self.changed.notify_all()

    def _read_ahead(self) -> None:
        while True:
            self.wake.wait()
            self.wake.clear()
            while time.time() - self.asked_at < ACTIVE_SECONDS:
                try:
                    self.read()
                except Exception as exc:  # reported to the questions waiting; logged once here
                    print(f"lab dns: reading moto failed: {exc}", file=sys.stderr, flush=True)
                    time.sleep(CACHE_SECONDS)
                time.sleep(max(0.0, self.read_at + CACHE_SECONDS / 2 - time.time()))


def _reply(request: Any, rcode: str, records: List[Tuple[str, str, int, str]]) -> bytes:
    from dnslib import RCODE, RR

    reply = request.reply()
    reply.header.rcode = getattr(RCODE, rcode)
    for name, rtype, ttl, value in records:
        reply.add_answer(*RR.fromZone(f"{name} {ttl} IN {rtype} {value}"))
    return reply.pack()


def handle(cache: ZoneCache, data: bytes, client: str, resolver: str, asked: float) -> Optional[bytes]:
    from dnslib import QTYPE, DNSRecord

    try:
        request = DNSRecord.parse(data)
    except Exception:  # not DNS: nothing to answer
        return None
    if not request.questions:
        return _reply(request, "FORMERR", [])
    question = request.questions[0]
    try:
        view = cache.get(asked)
    except Exception as exc:  # moto unreachable: SERVFAIL, as a resolver whose backend failed
        print(f"lab dns: reading moto failed: {exc}", file=sys.stderr, flush=True)
        return _reply(request, "SERVFAIL", [])
    if resolver not in serving_addresses(view):
        return None                           # a gateway (.1) or the API address: not a resolver
    rcode, records = answer(view, str(question.qname), QTYPE[question.qtype], client, resolver)
    return _reply(request, rcode, records)


def serve(endpoint_url: str, router_ns: str = topology.ROUTER_NS, port: int = 53) -> None:
    cache = ZoneCache(endpoint_url)
    try:
        cache.read()                           # warm: the first read builds the boto3 clients
    except Exception as exc:  # moto not up yet: the first question retries
        print(f"lab dns: first read of moto failed: {exc}", file=sys.stderr, flush=True)

    def make_socket() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.bind(("0.0.0.0", port))
        return sock

    # The socket lives in ROUTER_NS; the process stays in the root namespace, where moto is.
    sock: socket.socket = in_netns(router_ns, make_socket)  # type: ignore[assignment]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"{READY} 0.0.0.0:{port}", file=sys.stderr, flush=True)
    answering = ThreadPoolExecutor(max_workers=16, thread_name_prefix="lab-dns-answer")
    while True:
        data, ancillary, _flags, peer = sock.recvmsg(4096, socket.CMSG_SPACE(12) + socket.CMSG_SPACE(16))
        local = next((cdata[8:12] for level, kind, cdata in ancillary
                      if level == socket.IPPROTO_IP and kind == IP_PKTINFO), None)
        stamp = next((struct.unpack("qq", cdata[:16]) for level, kind, cdata in ancillary
                      if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS), None)
        if local is None:
            continue
        # The kernel's arrival time, not ours: how fresh the answer must be is fixed when the
        # question arrives, however long it queued.
        asked = stamp[0] + stamp[1] / 1e9 if stamp else time.time()
        answering.submit(reply, sock, cache, data, peer, local, asked)


def reply(sock: socket.socket, cache: ZoneCache, data: bytes, peer: Tuple[str, int], local: bytes,
          asked: float) -> None:
    """Answer one question (in a worker thread) from the address it was sent to."""
    payload = handle(cache, data, peer[0], socket.inet_ntoa(local), asked)
    if payload is not None:
        # in_pktinfo.ipi_spec_dst = the address asked: the answer leaves from it.
        pktinfo = struct.pack("i4s4s", 0, local, bytes(4))
        sock.sendmsg([payload], [(socket.IPPROTO_IP, IP_PKTINFO, pktinfo)], 0, peer)


def start(endpoint_url: str, state_dir: Path, router_ns: str = topology.ROUTER_NS) -> int:
    """Start the resolver for `router_ns`; returns its PID (also in state_dir/dns.pid)."""
    stop(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(topology.REPO), PYTHONUNBUFFERED="1")
    log_path = state_dir / LOG_FILE
    offset = log_path.stat().st_size if log_path.exists() else 0
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lab.emulator.dataplane.dns", "serve", "--endpoint", endpoint_url,
             "--router-ns", router_ns],
            cwd=str(topology.REPO), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    (state_dir / PID_FILE).write_text(str(proc.pid))
    _wait_ready(proc, log_path, offset)
    return proc.pid


def _wait_ready(proc: subprocess.Popen, log_path: Path, offset: int) -> None:
    """Bounded wait until the resolver has read moto once and bound its socket."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        with open(log_path, "rb") as log:
            log.seek(offset)
            if READY.encode() in log.read():
                return
        if proc.poll() is not None:
            raise RuntimeError(f"the lab resolver exited with {proc.returncode}; see {log_path}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the lab resolver did not start within {START_TIMEOUT} s; see {log_path}")
        time.sleep(0.05)


def stop(state_dir: Path) -> None:
    """Stop the resolver named in state_dir/dns.pid (only if that PID is still the resolver)."""
    pid_file = Path(state_dir) / PID_FILE
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    if _is_resolver(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while not _gone(pid):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 5
            time.sleep(0.02)
    pid_file.unlink(missing_ok=True)


def _is_resolver(pid: int) -> bool:
    try:
        return b"lab.emulator.dataplane.dns" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _gone(pid: int) -> bool:
    try:
        if os.waitpid(pid, os.WNOHANG)[0]:
            return True                       # our child, now reaped
    except ChildProcessError:
        pass                                  # started by another process: watch /proc
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lab.emulator.dataplane.dns",
                                     description="the lab's Route 53 Resolver")
    sub = parser.add_subparsers(dest="command", required=True)
    serve_cmd = sub.add_parser("serve")
    serve_cmd.add_argument("--endpoint", required=True)
    serve_cmd.add_argument("--router-ns", default=topology.ROUTER_NS)
    serve_cmd.add_argument("--port", type=int, default=53)
    args = parser.parse_args(argv)
    serve(args.endpoint, args.router_ns, args.port)


if __name__ == "__main__":
    main()
