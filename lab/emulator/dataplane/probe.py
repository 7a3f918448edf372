"""Client probes run from inside a lab namespace, so a test can tell which node answered.

    probe(ns, host, port, timeout) -> str        # TCP connect, return the banner: what arrives
                                                 # until EOF or the first newline (node servers
                                                 # send their hostname; sshd its version line);
                                                 # host may be a DNS name, resolved through the
                                                 # namespace's resolver
    http_get(ns, url, timeout) -> str            # the body of a plain HTTP GET
    resolve(ns, name, qtype="A", server=None) -> Resolution   # one DNS question, no cache

Probes run in a thread that joined the namespace (lab.hosts.in_netns): no process per probe.
A name is resolved with a direct query to the namespace's resolver (the nameserver in
/etc/netns/<ns>/resolv.conf unless `server` is given), not through glibc, whose
/etc/resolv.conf is the root namespace's in this process.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple
from urllib.parse import urlsplit

from lab.emulator.hosts import in_netns

ETC_NETNS = Path("/etc/netns")


class ProbeError(Exception):
    """The probe got no answer (refused, timed out, dropped, or the name did not resolve)."""


@dataclass(frozen=True)
class Resolution:
    rcode: str
    addresses: Tuple[str, ...]
    ttl: Optional[int]


def namespace_resolver(ns: str) -> str:
    path = ETC_NETNS / ns / "resolv.conf"
    try:
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                return parts[1]
    except OSError:
        pass
    raise ProbeError(f"no resolver known for namespace {ns}: {path} names no nameserver")


def resolve(ns: str, name: str, qtype: str = "A", server: Optional[str] = None,
            timeout: float = 1.0) -> Resolution:
    """Ask the namespace's resolver one question; raises ProbeError when nothing answers."""
    from dnslib import QTYPE, RCODE, DNSRecord

    resolver = server or namespace_resolver(ns)
    question = DNSRecord.question(name, qtype)

    def ask() -> bytes:
        return question.send(resolver, 53, timeout=timeout)

    try:
        reply = DNSRecord.parse(in_netns(ns, ask))  # type: ignore[arg-type]
    except OSError as exc:
        raise ProbeError(f"no answer from resolver {resolver} in {ns} for {name}: {exc}") from exc
    answers = [rr for rr in reply.rr if QTYPE[rr.rtype] == qtype]
    return Resolution(rcode=RCODE[reply.header.rcode], addresses=tuple(str(rr.rdata) for rr in answers),
                      ttl=min((rr.ttl for rr in answers), default=None))


def _address(ns: str, host: str, timeout: float) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    found = resolve(ns, host, timeout=timeout)
    if not found.addresses:
        raise ProbeError(f"{host} does not resolve in {ns} ({found.rcode})")
    return found.addresses[0]


def _exchange(ns: str, address: str, port: int, request: bytes, timeout: float, whole: bool) -> bytes:
    """Send `request`, then read until EOF (whole) or until the first complete line: a server
    such as sshd sends its banner line and then waits for the client's."""
    def talk() -> bytes:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            if request:
                sock.sendall(request)
            received = b""
            while whole or b"\n" not in received:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                received += chunk
            return received

    try:
        return in_netns(ns, talk)  # type: ignore[return-value]
    except OSError as exc:
        raise ProbeError(f"{ns} -> {address}:{port}: {exc}") from exc


def probe(ns: str, host: str, port: int, timeout: float = 2.0) -> str:
    """Connect from namespace `ns` to host:port and return what the server sends (stripped)."""
    address = _address(ns, host, timeout)
    return _exchange(ns, address, port, b"", timeout, whole=False).decode(errors="replace").strip()


def http_get(ns: str, url: str, timeout: float = 2.0) -> str:
    """GET `url` (http only) from namespace `ns`; returns the body, raises ProbeError unless 200."""
    parts = urlsplit(url)
    address = _address(ns, parts.hostname or "", timeout)
    request = (f"GET {parts.path or '/'} HTTP/1.0\r\nHost: {parts.hostname}\r\n"
               "Connection: close\r\n\r\n").encode()
    raw = _exchange(ns, address, parts.port or 80, request, timeout, whole=True)
    head, _blank, body = raw.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].decode(errors="replace")
    if " 200 " not in status + " ":
        raise ProbeError(f"GET {url} from {ns}: {status or 'no answer'}")
    return body.decode(errors="replace")
