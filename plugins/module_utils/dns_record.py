# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Route 53 recovery scenario: an A record in a hosted zone names the active node's IP.

Pure boto3 through :class:`AwsSession` (no Ansible import): the module ``dns_record`` and the
OCF agent on the nodes run this same code.

    target = resolve_target(aws, DnsSpec(...))    # validates; reads the zone and the node
    result = converge(aws, target, check_mode)     # read the record -> plan -> UPSERT (or record it)
                                                   # -> wait for INSYNC (bounded) -> re-read, verify
    status = monitor(aws, target)                  # ok / wrong / unknown, one read

Only a simple A record is managed. What cannot live beside it at the name (a CNAME, an alias A,
an A set with a routing policy) is an input error, because an UPSERT would fail or leave clients
split; other types (TXT, AAAA, MX...) coexist with an A record and are left alone.

The clock and the sleep function are parameters so tests (and agents with their own
deadline) control the wait; nothing here sleeps a fixed time.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from ansible_collections.ec2ha.cluster.plugins.module_utils.aws import (
    AwsCallError,
    AwsSession,
    Ec2haError,
    InputError,
    VerifyError,
)
from ansible_collections.ec2ha.cluster.plugins.module_utils.nodes import find_node, require_ipv4
from ansible_collections.ec2ha.cluster.plugins.module_utils.ids import ZONE_ID, ZONE_NOT_FOUND
from ansible_collections.ec2ha.cluster.plugins.module_utils.scenario import Action, Status, apply, backoff, monitor_reading

LABEL = re.compile(r"^(?:\*|[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)$")
ESCAPE = re.compile(r"\\(\d{3})")
# Record types that decide the A record: a CNAME excludes every other record at its name; an A
# set with an alias or a routing policy excludes a simple A. Any other type coexists with it.
CONFLICT_TYPES = frozenset(("A", "CNAME"))
ADDRESS_KINDS = ("private", "public")
DEFAULT_TTL = 60
DEFAULT_WAIT_TIMEOUT = 300.0
FIRST_POLL = 1.0        # Route 53 is often INSYNC within seconds ...
POLL_GROWTH = 1.5       # ... and sometimes after a minute: back off instead of hammering GetChange
MAX_POLL = 10.0


@dataclasses.dataclass(frozen=True)
class DnsSpec:
    """What the caller asks for: this name in this zone, an A record with the node's IP."""

    zone: str
    record: str
    node: Optional[str] = None
    address: str = "private"
    value: Optional[str] = None
    ttl: int = DEFAULT_TTL
    private_zone: Optional[bool] = None
    wait: bool = True
    wait_timeout: float = DEFAULT_WAIT_TIMEOUT

    def validate(self) -> None:
        """Checks that need no AWS call."""
        if not str(self.zone or "").strip():
            raise InputError("zone is empty: give a hosted zone name (example.com) or id (Z123...).")
        if not str(self.record or "").strip():
            raise InputError("record is empty: give a name inside the zone (db or db.example.com).")
        if bool(self.node) == bool(self.value):
            raise InputError("Give exactly one of node and value for the record's address.")
        if self.address not in ADDRESS_KINDS:
            raise InputError(f"address '{self.address}' is not one of private, public.")
        if self.value:
            require_ipv4("value", self.value)
        if not 0 <= int(self.ttl) <= 2147483647:
            raise InputError(f"ttl {self.ttl} must be between 0 and 2147483647 seconds.")
        seconds = float(self.wait_timeout)
        if math.isnan(seconds) or seconds <= 0:
            raise InputError(f"wait_timeout {self.wait_timeout} must be a positive number of seconds.")


@dataclasses.dataclass(frozen=True)
class Zone:
    zone_id: str
    name: str           # fully qualified, lower case, with the trailing dot
    private: bool

    def as_dict(self) -> Dict[str, Any]:
        return {"id": self.zone_id, "name": self.name, "private": self.private}


@dataclasses.dataclass(frozen=True)
class RecordSet:
    """The simple A record this scenario manages (or wants)."""

    name: str
    ttl: int
    values: Tuple[str, ...]

    def as_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "type": "A", "ttl": self.ttl, "values": list(self.values)}


@dataclasses.dataclass(frozen=True)
class DnsTarget:
    """What the record must be: validated once, then planned against (or monitored) as often as needed."""

    zone: Zone
    name: str
    ttl: int
    value: str
    node_id: Optional[str] = None
    node_name: Optional[str] = None

    @property
    def record(self) -> RecordSet:
        return RecordSet(self.name, self.ttl, (self.value,))


@dataclasses.dataclass
class ConvergeResult:
    changed: bool
    actions: List[Action]
    before: Optional[RecordSet]
    after: RecordSet
    target: DnsTarget
    change_id: Optional[str] = None
    change_status: Optional[str] = None

    def as_dict(self) -> Dict[str, Any]:
        """The module's result keys (without aws_calls, which the shell adds)."""
        t = self.target
        return {
            "changed": self.changed,
            "zone": t.zone.as_dict(),
            "record": t.name,
            "value": t.value,
            "node": {"instance_id": t.node_id, "name": t.node_name} if t.node_id else None,
            "before": self.before.as_dict() if self.before else {},
            "after": self.after.as_dict(),
            "change_id": self.change_id,
            "change_status": self.change_status,
            "actions": [a.summary for a in self.actions],
        }


class WaitTimeout(Ec2haError):
    """The change was written but Route 53 did not report INSYNC before wait_timeout."""

    def __init__(self, message: str, change_id: str):
        super().__init__(message)
        self.change_id = change_id


# ---- names ---------------------------------------------------------------------------------

def normalize_name(name: str) -> str:
    """Lower case, trailing dot, Route 53's \\ddd escapes decoded (\\052 is '*')."""
    text = ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), str(name).strip()).lower()
    return text if text.endswith(".") else text + "."


def record_fqdn(record: str, zone_name: str) -> str:
    """The record's FQDN: absolute (trailing dot, or ending in the zone) or one label relative to
    the zone; anything else would silently land somewhere unintended, so it is an error."""
    text = str(record).strip().lower()
    zone = zone_name.lower()
    bare_zone = zone.rstrip(".")
    if text.endswith(".") or text == bare_zone or text.endswith("." + bare_zone):
        fqdn = normalize_name(text)
    elif "." not in text:
        fqdn = f"{text}.{zone}"
    else:
        raise InputError(f"Record '{record}' does not lie inside zone {bare_zone}: give a name ending "
                         f"in {bare_zone} or a single label relative to it.")
    if fqdn != zone and not fqdn.endswith("." + zone):
        raise InputError(f"Record '{record}' does not lie inside zone {bare_zone}.")
    labels = fqdn.rstrip(".").split(".")
    if len(fqdn) > 254 or not all(LABEL.match(label) for label in labels) or "*" in labels[1:]:
        raise InputError(f"Record '{record}' is not a valid DNS name.")
    return fqdn


# ---- reads ---------------------------------------------------------------------------------

def find_zone(aws: AwsSession, zone: str, private_zone: Optional[bool] = None) -> Zone:
    """The hosted zone named by id or name; a name shared by several zones needs private_zone
    (private vs public) or the zone id to pick one."""
    text = str(zone).strip()
    match = ZONE_ID.match(text)
    if match:
        found = _zone_by_id(aws, match.group(1))
        if private_zone is not None and found.private != private_zone:
            raise InputError(f"Hosted zone {found.zone_id} ({found.name}) is {_kind(found.private)}, "
                             f"but private_zone is {private_zone}.")
        return found
    name = normalize_name(text)
    zones = [z for z in _zones_by_name(aws, name) if private_zone is None or z.private == private_zone]
    wanted = "" if private_zone is None else _kind(private_zone) + " "
    if not zones:
        raise InputError(f"No {wanted}hosted zone is named {name.rstrip('.')} in this account.")
    if len(zones) == 1:
        return zones[0]
    ids = ", ".join(f"{z.zone_id} ({_kind(z.private)})" for z in zones)
    if private_zone is None and len({z.private for z in zones}) == 2:
        raise InputError(f"Zone name {name.rstrip('.')} matches a private and a public hosted zone ({ids}): "
                         "set private_zone to true or false to pick one.")
    raise InputError(f"Zone name {name.rstrip('.')} matches {len(zones)} {wanted}hosted zones ({ids}): "
                     "give the zone id instead.")


def _zone_by_id(aws: AwsSession, zone_id: str) -> Zone:
    try:
        found = aws.call("route53", "get_hosted_zone", zone_id, Id=zone_id)["HostedZone"]
    except AwsCallError as exc:
        if exc.code in ZONE_NOT_FOUND:
            raise InputError(f"Hosted zone id {zone_id} does not exist in this account.") from None
        raise
    return _zone(found)


def _zones_by_name(aws: AwsSession, name: str) -> List[Zone]:
    """Zones with exactly this name. ListHostedZonesByName starts at the name and runs on in
    name order, so reading stops at the first other name."""
    zones: List[Zone] = []
    params: Dict[str, Any] = {"DNSName": name}
    while True:
        page = aws.call("route53", "list_hosted_zones_by_name", name, **params)
        for item in page.get("HostedZones", []):
            if normalize_name(item["Name"]) != name:
                return zones
            zones.append(_zone(item))
        if not page.get("IsTruncated") or not page.get("NextHostedZoneId"):
            return zones
        params = {"DNSName": page.get("NextDNSName", name), "HostedZoneId": page["NextHostedZoneId"]}


def _zone(item: Dict[str, Any]) -> Zone:
    return Zone(item["Id"].split("/")[-1], normalize_name(item["Name"]),
                bool(item.get("Config", {}).get("PrivateZone", False)))


def _kind(private: bool) -> str:
    return "private" if private else "public"


def read_record(aws: AwsSession, zone: Zone, fqdn: str) -> Optional[RecordSet]:
    """The simple A record at the name, or None; InputError if a record that excludes it lives
    there (a CNAME, an alias A, weighted/failover A sets): UPSERTing over it would be wrong.
    Other types coexist with an A record in Route 53 (a TXT or an AAAA beside it is common) and
    are skipped: they neither block the write nor make the endpoint read as gone."""
    sets = _record_sets_at(aws, zone, fqdn)
    current = None
    for item in sets:
        kind = item.get("Type")
        if kind not in CONFLICT_TYPES:
            continue
        if kind == "CNAME" or item.get("AliasTarget") or item.get("SetIdentifier"):
            raise InputError(_conflict_message(fqdn, zone, item))
        current = RecordSet(fqdn, int(item.get("TTL", 0)),
                            tuple(sorted(r["Value"] for r in item.get("ResourceRecords", []))))
    return current


def _record_sets_at(aws: AwsSession, zone: Zone, fqdn: str) -> List[Dict[str, Any]]:
    """Every record set named fqdn. Listing starts at the name; the first other name ends it."""
    found: List[Dict[str, Any]] = []
    params: Dict[str, Any] = {"HostedZoneId": zone.zone_id, "StartRecordName": fqdn, "MaxItems": "100"}
    while True:
        page = aws.call("route53", "list_resource_record_sets", fqdn, **params)
        for item in page.get("ResourceRecordSets", []):
            if normalize_name(item["Name"]) != fqdn:
                return found
            found.append(item)
        if not page.get("IsTruncated"):
            return found
        params = {"HostedZoneId": zone.zone_id, "StartRecordName": page["NextRecordName"],
                  "StartRecordType": page["NextRecordType"], "MaxItems": "100"}
        if page.get("NextRecordIdentifier"):
            params["StartRecordIdentifier"] = page["NextRecordIdentifier"]


def _conflict_message(fqdn: str, zone: Zone, item: Dict[str, Any]) -> str:
    kind = str(item.get("Type"))
    # Record types are read letter by letter: "an A", "an MX", "a CNAME".
    article = "an" if kind[:1] in "AEFHILMNORSX" else "a"
    if item.get("AliasTarget"):
        what = f"an alias {kind} record (to {item['AliasTarget'].get('DNSName', '?')})"
    elif item.get("SetIdentifier"):
        what = f"{article} {kind} record with a routing policy (set identifier {item['SetIdentifier']})"
    else:
        values = ", ".join(r["Value"] for r in item.get("ResourceRecords", []))
        what = f"{article} {kind} record ({values})"
    return (f"Record {fqdn.rstrip('.')} in zone {zone.name.rstrip('.')} ({zone.zone_id}) already holds {what}: "
            "this module manages only a simple A record there; remove it or choose another name.")


def resolve_target(aws: AwsSession, spec: DnsSpec) -> DnsTarget:
    """Validate the input against AWS (the record itself is read, and checked, by converge).

    Raises InputError (one sentence) for an unknown or ambiguous zone, a record outside the zone,
    an unknown or stopped node, or a node without the requested address.
    """
    spec.validate()
    zone = find_zone(aws, spec.zone, spec.private_zone)
    fqdn = record_fqdn(spec.record, zone.name)
    if spec.value:
        return DnsTarget(zone, fqdn, int(spec.ttl), spec.value)

    node = find_node(aws, str(spec.node))
    ip = node.private_ip if spec.address == "private" else node.public_ip
    if not ip:
        other = "private" if spec.address == "public" else "public"
        raise InputError(f"Node {node.label} has no {spec.address} IP address: use address: {other} "
                         "or give value.")
    return DnsTarget(zone, fqdn, int(spec.ttl), ip, node.instance_id, node.name)


# ---- classify, plan, converge, verify ------------------------------------------------------

def describe(record: Optional[RecordSet]) -> str:
    return f"A {', '.join(record.values)} TTL {record.ttl}" if record else "absent"


def classify(current: Optional[RecordSet], target: DnsTarget) -> Status:
    """ok when the record is exactly what converge would write (type A, TTL, the one value)."""
    if current == target.record:
        return Status("ok", [])
    return Status("wrong", [f"Record {target.name.rstrip('.')} is {describe(current)}, "
                            f"expected {describe(target.record)}"])


def plan(current: Optional[RecordSet], target: DnsTarget) -> List[Action]:
    """Nothing when type, TTL and values already match; else one UPSERT of the whole record."""
    wanted = target.record
    if current == wanted:
        return []
    change = {"Action": "UPSERT", "ResourceRecordSet": {
        "Name": wanted.name, "Type": "A", "TTL": wanted.ttl,
        "ResourceRecords": [{"Value": v} for v in wanted.values]}}
    return [Action(
        "change_resource_record_sets", f"{wanted.name} in {target.zone.zone_id}",
        {"HostedZoneId": target.zone.zone_id,
         "ChangeBatch": {"Comment": "ec2ha.cluster dns_record", "Changes": [change]}},
        f"upsert {wanted.name} {describe(wanted)} (was {describe(current)})", "route53",
    )]


def converge(aws: AwsSession, target: DnsTarget, check_mode: bool = False, wait: bool = True,
             wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
             clock: Callable[[], float] = time.monotonic,
             sleep: Callable[[float], None] = time.sleep) -> ConvergeResult:
    """Point the record at the target; write only the difference.

    The record is read first (InputError, before any write, if another record type holds the
    name). Check mode records the planned UPSERT (``aws.plan``) and predicts "after". A real run
    writes, waits for INSYNC if ``wait``, re-reads and raises VerifyError on a mismatch, or
    WaitTimeout after ``wait_timeout`` seconds.
    """
    before = read_record(aws, target.zone, target.name)
    actions = plan(before, target)
    if not actions:
        return ConvergeResult(False, [], before, target.record, target)
    answers = apply(aws, actions, check_mode)
    if check_mode:
        return ConvergeResult(True, actions, before, target.record, target)
    result = ConvergeResult(True, actions, before, target.record, target)
    for answer in answers:
        info = answer["ChangeInfo"]
        result.change_id = info["Id"].split("/")[-1]
        result.change_status = info.get("Status")
    if wait and result.change_status != "INSYNC":
        result.change_status = wait_insync(aws, str(result.change_id), float(wait_timeout), clock, sleep)
    result.after = verify(aws, target)
    return result


def wait_insync(aws: AwsSession, change_id: str, timeout: float,
                clock: Callable[[], float] = time.monotonic,
                sleep: Callable[[float], None] = time.sleep) -> str:
    """Poll GetChange until INSYNC or the deadline. The interval grows (1 s, 1.5 s, ... 10 s) and
    never overshoots the deadline; a transient API error counts as "not yet", not as a failure."""
    start = clock()
    deadline = start + timeout
    for interval in backoff(FIRST_POLL, POLL_GROWTH, MAX_POLL):
        try:
            last = aws.call("route53", "get_change", change_id, Id=change_id)["ChangeInfo"]["Status"]
        except AwsCallError as exc:
            if not exc.transient:
                raise
            last = f"unknown ({exc.code})"
        if last == "INSYNC":
            return last
        left = deadline - clock()
        if left <= 0:
            raise WaitTimeout(f"Route 53 change {change_id} is still {last} after {clock() - start:.1f} s "
                              f"(wait_timeout {timeout:g} s): the record is written but not yet in sync "
                              "on every Route 53 DNS server.", change_id)
        sleep(min(interval, left))
    raise AssertionError("unreachable: backoff never ends")


def verify(aws: AwsSession, target: DnsTarget) -> RecordSet:
    """Re-read the record after the write; VerifyError if it is not what was written.

    One read: Route 53's API shows an accepted change at once (INSYNC is about its DNS servers).
    """
    after = read_record(aws, target.zone, target.name)
    status = classify(after, target)
    if not status.ok or after is None:
        raise VerifyError(f"After ChangeResourceRecordSets in zone {target.zone.zone_id}, {status.details[0]}.")
    return after


def monitor(aws: AwsSession, target: DnsTarget) -> Status:
    """Read-only check for an agent (one list_resource_record_sets): ok, wrong, or unknown when the
    API did not answer (throttling, timeout: not a failure, check again next interval)."""
    # Another record type taking the name (a CNAME, an alias) reads as InputError: wrong.
    return monitor_reading(lambda: read_record(aws, target.zone, target.name),
                           lambda current: classify(current, target))
