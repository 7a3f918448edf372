"""IMDSv2 for each lab host, at 169.254.169.254:80 inside the host's network namespace.

One listening socket per host namespace: the socket's namespace says which host asks, so the
answers are that instance's, read from moto's backends when the request arrives (a VIP moved
or an EIP re-associated shows at once). Every metadata request needs a token from
`PUT /latest/api/token`, as on an instance with HttpTokens=required; without one: 401.

A host's IMDS obeys the lab's fault rules (lab/emulator/faults.py) for service "imds", matched
on the instance (`params: {"InstanceId": ...}`) and the method as action ("PUT": the token,
"GET": a read): `faults.inject(url, {"service": "imds", "params": {"InstanceId": iid}, "drop": True})`
makes one host's IMDS unreachable until the rule is removed.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, ContextManager

from lab import helpers, topology
from lab.emulator import faults, hosts

TOKEN_TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
MAX_TTL = 21600


def _tags(resource) -> dict[str, str]:
    return {t["key"]: t["value"] for t in resource.get_tags()}


def _public_ip(backend, eni) -> str | None:
    # moto: after a re-association only the address list is reliable, not eni.public_ip.
    for address in list(backend.addresses):
        if address.eni is not None and address.eni.id == eni.id:
            return address.public_ip
    return None


def metadata_tree(instance, backend) -> dict:
    """The instance's metadata as nested dicts; leaves are strings."""
    nics = sorted(instance.nics.items())
    primary = nics[0][1]
    macs = {}
    for index, eni in nics:
        subnet = eni.subnet
        vpc = backend.get_vpc(subnet.vpc_id)
        entry = {
            "device-number": str(index),
            "interface-id": eni.id,
            "local-ipv4s": "\n".join(a["PrivateIpAddress"] for a in eni.private_ip_addresses),
            "mac": eni.mac_address,
            "owner-id": backend.account_id,
            "security-group-ids": "\n".join(g.id for g in eni.group_set),
            "subnet-id": subnet.id,
            "subnet-ipv4-cidr-block": subnet.cidr_block,
            "vpc-id": subnet.vpc_id,
            "vpc-ipv4-cidr-block": vpc.cidr_block,
            "vpc-ipv4-cidr-blocks": vpc.cidr_block,
        }
        public = _public_ip(backend, eni)
        if public:
            entry["public-ipv4s"] = public
        macs[eni.mac_address] = entry
    az = instance.placement.zone
    region = backend.region_name
    name = host_name(instance)
    tree = {
        "ami-id": instance.image_id,
        "hostname": name,
        "instance-id": instance.id,
        "instance-type": instance.instance_type,
        "local-hostname": name,
        "local-ipv4": primary.private_ip_address,
        "mac": primary.mac_address,
        "network": {"interfaces": {"macs": macs}},
        "placement": {"availability-zone": az, "region": region},
        "security-groups": "\n".join(g.name for g in primary.group_set),
    }
    public = _public_ip(backend, primary)
    if public:
        tree["public-ipv4"] = public
    return tree


def host_name(instance) -> str:
    """The instance's Name tag, else EC2's ip-a-b-c-d form."""
    name = _tags(instance).get("Name")
    return name or "ip-" + instance.private_ip.replace(".", "-")


def identity_document(instance, backend) -> dict:
    return {
        "accountId": backend.account_id, "architecture": "x86_64",
        "availabilityZone": instance.placement.zone, "imageId": instance.image_id,
        "instanceId": instance.id, "instanceType": instance.instance_type,
        "privateIp": instance.private_ip, "region": backend.region_name, "version": "2017-09-30",
    }


def lookup(tree: dict, path: str) -> str | None:
    """A leaf's value, or a directory listing (sub-directories end in '/'), or None."""
    node: object = tree
    for part in [p for p in path.split("/") if p]:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    if isinstance(node, dict):
        return "\n".join(k + "/" if isinstance(v, dict) else k for k, v in node.items())
    return str(node)


class TokenStore:
    """Tokens handed out by one host's IMDS, with their expiry (monotonic clock)."""

    def __init__(self) -> None:
        self._tokens: dict[str, float] = {}
        self._lock = threading.Lock()

    def issue(self, ttl: int) -> str:
        token = secrets.token_urlsafe(32)
        now = time.monotonic()
        with self._lock:
            self._tokens = {t: e for t, e in self._tokens.items() if e > now}
            self._tokens[token] = now + ttl
        return token

    def valid(self, token: str | None) -> bool:
        with self._lock:
            return token is not None and self._tokens.get(token, 0) > time.monotonic()


def make_handler(instance_id: str, find: Callable[[str], tuple | None], tokens: TokenStore,
                 reading: ContextManager = contextlib.nullcontext(),
                 fault_table: faults.FaultTable | None = None) -> type[BaseHTTPRequestHandler]:
    """A request handler bound to one instance; `find(id)` -> (instance, backend) or None.
    `reading` is held while moto's backends are read (the lab passes moto's request lock);
    `fault_table`'s "imds" rules apply to its requests."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "EC2ws"
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:   # the lab daemon's output stays readable
            pass

        def _reply(self, code: int, body: str = "", ctype: str = "text/plain") -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _faulted(self) -> bool:
            """Apply a matching fault rule; True when it answered (or dropped) the request."""
            if fault_table is None or not fault_table.active():
                return False
            rule = fault_table.take(faults.Request("imds", self.command, {"InstanceId": instance_id},
                                                   self.client_address[0]))
            if rule is None:
                return False
            if rule.delay:
                time.sleep(rule.delay)
            if rule.drop:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return True
            if rule.error is not None:
                self._reply(rule.error.status, rule.error.message)
                return True
            return False

        def do_PUT(self) -> None:
            if self._faulted():
                return
            if self.path.rstrip("/") != "/latest/api/token":
                return self._reply(404, "Not Found")
            if self.headers.get("X-Forwarded-For"):
                return self._reply(403, "Forbidden")
            try:
                ttl = int(self.headers.get(TOKEN_TTL_HEADER, ""))
            except ValueError:
                return self._reply(400, "Bad Request")
            if not 1 <= ttl <= MAX_TTL:
                return self._reply(400, "Bad Request")
            self._reply(200, tokens.issue(ttl))

        def do_GET(self) -> None:
            if self._faulted():
                return
            if not tokens.valid(self.headers.get(TOKEN_HEADER)):
                return self._reply(401, "Unauthorized")
            with reading:
                answer = self._answer(self.path.split("?", 1)[0])
            self._reply(*answer)

        def _answer(self, path: str) -> tuple:
            """(code, body[, content type]) for a metadata path, read from moto's backends."""
            found = find(instance_id)
            if found is None:
                return 404, "Not Found"
            instance, backend = found
            if path.rstrip("/") == "/latest/dynamic/instance-identity/document":
                return 200, json.dumps(identity_document(instance, backend), indent=2), "application/json"
            prefix = "/latest/meta-data"
            if not path.startswith(prefix):
                return 404, "Not Found"
            value = lookup(metadata_tree(instance, backend), path[len(prefix):])
            return (404, "Not Found") if value is None else (200, value)

    return Handler


class ImdsServer:
    """IMDS of one host: a threaded HTTP server on a socket inside the host's namespace."""

    def __init__(self, instance_id: str, find: Callable[[str], tuple | None],
                 reading: ContextManager = contextlib.nullcontext(),
                 fault_table: faults.FaultTable | None = None) -> None:
        netns = topology.host_netns(instance_id)
        helpers.run(["ip", "-n", netns, "addr", "replace", f"{topology.IMDS_ADDRESS}/32",
                     "dev", "lo"])
        sock = hosts.listen_in_netns(netns, topology.IMDS_ADDRESS, 80)
        handler = make_handler(instance_id, find, TokenStore(), reading, fault_table)
        self.server = ThreadingHTTPServer((topology.IMDS_ADDRESS, 80), handler,
                                          bind_and_activate=False)
        self.server.socket.close()
        self.server.socket = sock
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       name=f"imds-{instance_id}", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
