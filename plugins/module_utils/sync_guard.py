# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The sync guard: keeps a PostgreSQL primary writable when its synchronous standby is gone.

Runs next to the promoted instance (Pacemaker resource ocf:heartbeat:anything, colocated with the
Promoted role of the PAF clone) and, every ``interval`` seconds, compares pg_stat_replication and
the cluster membership with the wanted policy:

* sync mode, standby streaming: synchronous_standby_names = 'ANY 1 (peers)'; the peer's node
  attribute becomes 1 only once pg_stat_replication reports it sync/quorum under that setting.
* sync mode, standby gone: the peer's attribute is set to 0 FIRST, then synchronous_standby_names
  is emptied and reloaded (degraded: writes go on, acknowledged by this node alone). It only
  degrades when the peer is offline and clean (stopped or fenced), or is a cluster member that got
  the 0: the corosync ring (its id and members) is the same before the pass read the membership and
  after the 0 was written, with the peer in it. A peer that vanished without a word (power loss,
  partition) holds the CIB update back until the ring re-forms without it; the update then lands
  in the new ring, which the peer never saw. While the peer is lost but not yet fenced, commits
  wait: the peer might still be promoted with the old attribute, and a write acknowledged now
  would be lost.
* async mode: synchronous_standby_names stays empty; the attribute reports whether the peer streams.
* fencing off (stonith-enabled=false in the CIB): a peer Pacemaker calls offline and "clean" may be
  alive on the other side of a partition, promoting itself; the guard then never degrades for it
  (state no-fencing): commits wait.

A location rule in the CIB forbids the Promoted role where the attribute is not 1, so a standby
that is not in sync is never promoted automatically. The attribute is permanent (lifetime forever)
so a cold start of both nodes still knows who was in sync. This node's own attribute is 1 (it is
the primary), and the state (sync / catching-up / degraded / waiting-for-fencing / no-fencing /
async) is published in a transient attribute for crm_mon -A. A pass that cannot complete
(PostgreSQL restarting, the CIB busy, a command timing out) publishes "unknown": the last decision
is then stale. SIGTERM (the resource stopping) publishes "stopped". Every successful pass touches
the pass file; ``--check`` (the resource's monitor hook) fails, and publishes "unknown", when that
file is older than ``stale_after`` seconds, so a guard that runs but no longer decides is restarted
by Pacemaker instead of showing an old "sync".

Layout: the settings (a JSON file the replication role writes), the typed actions, pure decision
functions (``decide``, ``confirm_degrade``, ``stale_reason``), the node's I/O in one class
(``NodeIO``), and the loop that joins them. Standard library only (and local_postgres.py): the nodes run
it under the system python3, installed by the recovery_kit role's ``node_code`` entry point.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from typing import Callable, Dict, FrozenSet, List, Optional, Sequence, Tuple, Union

from ansible_collections.ec2ha.cluster.plugins.module_utils.local_postgres import LocalPostgres

IN_SYNC_STATES = ("sync", "quorum")
DEFAULT_SETTINGS = "/etc/ec2ha/pgsql-sync-guard.json"
Ring = Tuple[str, FrozenSet[str]]


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the role writes to the settings file (every key but ``mode`` and ``nodes`` optional)."""

    mode: str
    nodes: Tuple[str, ...]
    self_name: str = ""                 # this node's Pacemaker name; empty: crm_node --name
    attribute: str = "ec2ha-pgsql-sync"
    status_attribute: str = "ec2ha-pgsql-replication"
    pghost: str = "/run/postgresql"
    pgport: int = 5432
    pguser: str = "postgres"
    interval: float = 2.0
    command_timeout: float = 10.0
    pass_file: str = ""                 # touched after every pass that decided (read by --check)
    pid_file: str = ""                  # the resource agent's pid file: its age is the guard's uptime
    stale_after: float = 30.0

    @classmethod
    def from_dict(cls, data: Dict[str, object]) -> "Settings":
        """Settings from the file's JSON object; one sentence naming what is wrong otherwise."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown settings {unknown}; known: {sorted(known)}")
        missing = [name for name in ("mode", "nodes") if name not in data]
        if missing:
            raise ValueError(f"settings {missing} are required")
        if data["mode"] not in ("sync", "async"):
            raise ValueError(f"mode is {data['mode']!r}; expected sync or async")
        nodes = data["nodes"]
        if not isinstance(nodes, list) or len(nodes) < 2 or not all(isinstance(n, str) and n for n in nodes):
            raise ValueError(f"nodes is {nodes!r}; expected the Pacemaker names of every PostgreSQL node")
        values = dict(data, nodes=tuple(nodes))
        try:
            for name in ("interval", "command_timeout", "stale_after"):
                if name in values:
                    values[name] = float(values[name])  # type: ignore[arg-type]
            if "pgport" in values:
                values["pgport"] = int(values["pgport"])  # type: ignore[call-overload]
        except (TypeError, ValueError) as exc:
            raise ValueError(f"a number setting is not a number: {exc}") from None
        return cls(**values)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: str) -> "Settings":
        with open(path, encoding="utf-8") as handle:
            return cls.from_dict(json.load(handle))

    def peers(self) -> List[str]:
        return [n for n in self.nodes if n != self.self_name]


@dataclasses.dataclass(frozen=True)
class SetSyncAttribute:
    """Set a node's permanent sync attribute (1: may be promoted; 0: may not)."""

    node: str
    value: str


@dataclasses.dataclass(frozen=True)
class SetStandbyNames:
    """ALTER SYSTEM SET synchronous_standby_names, then reload."""

    value: str


Action = Union[SetSyncAttribute, SetStandbyNames]


@dataclasses.dataclass
class Plan:
    """What one pass decided: ordered actions and the state to publish."""

    status: str
    actions: List[Action] = dataclasses.field(default_factory=list)


def wanted_ssn(peers: Sequence[str]) -> str:
    """synchronous_standby_names that waits for any one of the peers."""
    quoted = ", ".join('"' + p.replace('"', '""') + '"' for p in sorted(peers))
    return f"ANY 1 ({quoted})"


def decide(mode: str, self_name: str, peers: Sequence[str], membership: Dict[str, str],
           rows: Dict[str, Tuple[str, str]], ssn: str, attrs: Dict[str, str], fencing: bool = True) -> Plan:
    """Pure policy: membership maps peer -> member | clean | unclean; rows maps application_name ->
    (state, sync_state); attrs holds the current sync attribute per node (missing = undefined);
    fencing is the cluster's stonith-enabled (without it "clean" proves nothing)."""
    streaming = [p for p in peers if membership.get(p) == "member" and rows.get(p, ("", ""))[0] == "streaming"]
    first: List[Action] = []
    last: List[Action] = []

    def attr(node: str, value: str, bucket: List[Action]) -> None:
        if attrs.get(node) != value:
            bucket.append(SetSyncAttribute(node, value))

    if mode == "async":
        for p in peers:
            attr(p, "1" if p in streaming else "0", first)
        if ssn != "":
            first.append(SetStandbyNames(""))
        status = "async"
    elif streaming:
        desired = wanted_ssn(peers)
        in_sync = [p for p in streaming if ssn == desired and rows[p][1] in IN_SYNC_STATES]
        for p in peers:
            if p not in in_sync:
                attr(p, "0", first)
        if ssn != desired:
            first.append(SetStandbyNames(desired))
        for p in in_sync:
            attr(p, "1", last)
        status = "sync" if in_sync else "catching-up"
    else:
        for p in peers:
            attr(p, "0", first)
        trusted = ("member", "clean") if fencing else ("member",)
        safe = all(membership.get(p) in trusted for p in peers)
        if safe and ssn != "":
            first.append(SetStandbyNames(""))
        status = "degraded" if safe or ssn == "" else "waiting-for-fencing" if fencing else "no-fencing"
    attr(self_name, "1", last)
    return Plan(status=status, actions=first + last)


def confirm_degrade(peers: Sequence[str], membership: Dict[str, str], ring_before: Ring, ring_after: Ring) -> bool:
    """Whether emptying synchronous_standby_names is still safe once the peers' 0 is written: every
    peer clean, or the ring unchanged with each non-clean peer in it (so the update was delivered in
    a ring the peer belongs to)."""
    clean = [p for p in peers if membership.get(p) == "clean"]
    ring_id, members = ring_after
    return len(clean) == len(peers) or (ring_before == ring_after and ring_id != "" and all(
        p in clean or p in members for p in peers))


def stale_reason(now: float, decided: Optional[float], started: Optional[float], stale_after: float) -> str:
    """Why the guard counts as no longer deciding, or "" while it does. A guard started less than
    ``stale_after`` ago counts as deciding: the agent's start runs the monitor hook before the new
    process has made its first pass."""
    if max(decided or 0, started or 0) >= now - stale_after:
        return ""
    reason = "no decided pass yet" if decided is None else f"last decided pass {now - decided:.0f} s ago"
    return f"sync guard stale: {reason} (limit {stale_after:g} s)"


def membership_from_crm_mon(root: ET.Element, peers: Sequence[str]) -> Dict[str, str]:
    """member | unclean | clean per peer, from crm_mon's XML."""
    states = {}
    for node in root.iter("node"):
        name = node.get("name")
        if name not in peers or node.get("online") is None:
            continue
        if node.get("online") == "true":
            states[name] = "member"
        elif node.get("unclean") == "true":
            states[name] = "unclean"
        else:
            states[name] = "clean"
    return states


def ring_from_quorumtool(output: str, errors: str = "") -> Ring:
    """(ring id, member names) from ``corosync-quorumtool -s``; ValueError when it gave none."""
    ring_id, members, listing = "", set(), False
    for line in output.splitlines():
        fields = line.split()
        if line.startswith("Ring ID:"):
            ring_id = line.split(":", 1)[1].strip()
        elif fields[:3] == ["Nodeid", "Votes", "Name"]:
            listing = True
        elif listing and len(fields) >= 3 and fields[0].isdigit():
            members.add(fields[2])
    if not ring_id:
        raise ValueError(f"corosync-quorumtool -s gave no ring id: {errors.strip()[-200:]}")
    return ring_id, frozenset(members)


class NodeIO:
    """Everything the guard reads and writes on the node: PostgreSQL through psql on the local
    socket as the postgres user, Pacemaker and corosync through their CLI tools, the pass file.
    Every command is bounded by ``command_timeout``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _run(self, cmd: List[str], check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, capture_output=True, text=True, check=check,
                              timeout=self.settings.command_timeout)

    def _psql(self, *commands: str) -> str:
        s = self.settings
        return LocalPostgres(s.pghost, s.pgport, s.pguser, s.command_timeout).run(*commands)

    def node_name(self) -> str:
        return self._run(["crm_node", "--name"]).stdout.strip()

    def rows(self) -> Dict[str, Tuple[str, str]]:
        out = self._psql("SELECT application_name, state, sync_state FROM pg_stat_replication")
        rows = {}
        for line in out.splitlines():
            name, state, sync_state = line.split("|")
            rows[name] = (state, sync_state)
        return rows

    def ssn(self) -> str:
        return self._psql("SHOW synchronous_standby_names").strip()

    def set_ssn(self, value: str) -> None:
        literal = "'" + value.replace("'", "''") + "'"
        # ALTER SYSTEM cannot share a transaction: psql runs each -c alone.
        self._psql(f"ALTER SYSTEM SET synchronous_standby_names = {literal}", "SELECT pg_reload_conf()")

    def read_status(self, peers: Sequence[str]) -> Tuple[Dict[str, str], bool]:
        """(peer membership, stonith-enabled) from one crm_mon. Pacemaker's default for
        stonith-enabled is true; crm_mon states it in its summary."""
        root = ET.fromstring(self._run(["crm_mon", "--one-shot", "--output-as=xml"]).stdout)
        options = root.find("summary/cluster_options")
        fencing = options is None or options.get("stonith-enabled", "true") == "true"
        return membership_from_crm_mon(root, peers), fencing

    def ring(self) -> Ring:
        """From corosync itself, which learns of a new ring before Pacemaker's status does. Its
        exit status tells quorum, not success, so the output is what counts."""
        done = self._run(["corosync-quorumtool", "-s"], check=False)
        return ring_from_quorumtool(done.stdout, done.stderr)

    def attr(self, node: str) -> Optional[str]:
        done = self._run(["crm_attribute", "--node", node, "--name", self.settings.attribute, "--lifetime",
                          "forever", "--query", "--quiet"], check=False)
        return done.stdout.strip() if done.returncode == 0 else None

    def set_attr(self, node: str, value: str) -> None:
        self._run(["crm_attribute", "--node", node, "--name", self.settings.attribute, "--lifetime", "forever",
                   "--update", value])

    def publish(self, status: str) -> None:
        self._run(["crm_attribute", "--node", self.settings.self_name, "--name", self.settings.status_attribute,
                   "--lifetime", "reboot", "--update", status])

    def apply(self, action: Action) -> None:
        if isinstance(action, SetSyncAttribute):
            self.set_attr(action.node, action.value)
        else:
            self.set_ssn(action.value)

    def touch_pass_file(self) -> None:
        if self.settings.pass_file:
            with open(self.settings.pass_file, "a", encoding="utf-8"):
                os.utime(self.settings.pass_file)

    @staticmethod
    def mtime(path: str) -> Optional[float]:
        try:
            return os.stat(path).st_mtime if path else None
        except FileNotFoundError:
            return None


def guard_pass(io: NodeIO, settings: Settings) -> Plan:
    """Read, decide, then apply the actions in their safe order."""
    peers = settings.peers()
    ring_before = io.ring()
    membership, fencing = io.read_status(peers)
    attrs = {n: a for n in settings.nodes if (a := io.attr(n)) is not None}
    plan = decide(settings.mode, settings.self_name, peers, membership, io.rows(), io.ssn(), attrs, fencing)
    for done, action in enumerate(plan.actions):
        degrading = isinstance(action, SetStandbyNames) and settings.mode == "sync" and action.value == ""
        if degrading and not confirm_degrade(peers, membership, ring_before, io.ring()):
            # The ring changed under the 0: the peer may not have it. Wait for fencing.
            return Plan(status="waiting-for-fencing", actions=plan.actions[:done])
        io.apply(action)
    return plan


def check(io: NodeIO, settings: Settings, now: Optional[float] = None) -> int:
    """Monitor hook: healthy while passes keep deciding; otherwise say so where operators look."""
    reason = stale_reason(time.time() if now is None else now, io.mtime(settings.pass_file),
                          io.mtime(settings.pid_file), settings.stale_after)
    if not reason:
        return 0
    say(reason)
    try:
        io.publish("unknown")
    except (subprocess.SubprocessError, OSError):
        pass     # the failed monitor itself is the report that matters
    return 1


def say(line: str) -> None:
    """One line to the resource's log (ocf:heartbeat:anything sends stderr to errlogfile)."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def describe(actions: Sequence[Action]) -> str:
    return ", ".join(f"{a.node}={a.value}" if isinstance(a, SetSyncAttribute) else f"ssn={a.value!r}"
                     for a in actions) or "none"


def run(load: Callable[[], Settings], once: bool = False) -> int:
    """Passes every ``interval`` seconds until stopped; the published state follows each pass.
    The settings are read again before each pass: a file the role rewrote applies at the next one."""
    published = None
    settings = load()
    while True:
        try:
            settings = load()
            io = NodeIO(settings)
            plan = guard_pass(io, settings)
            status = plan.status
            io.touch_pass_file()
            if status != published:
                say(f"replication state: {status}; actions: {describe(plan.actions)}")
        except (subprocess.SubprocessError, OSError, ValueError, ET.ParseError) as exc:
            # PostgreSQL restarting, the CIB busy, the settings file half-written: no decision this
            # pass, and the last one may be stale.
            say(f"pass skipped: {exc}")
            status = "unknown"
        if status != published:
            try:
                NodeIO(settings).publish(status)
                published = status
            except (subprocess.SubprocessError, OSError) as exc:
                say(f"publishing {status} failed: {exc}")
        if once:
            return 0 if status != "unknown" else 1
        time.sleep(settings.interval)


class Stopping(Exception):
    """SIGTERM: the resource is being stopped."""


def _stop(signum: int, frame: object) -> None:
    raise Stopping()


def parse_args(name: str, argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=name, description=__doc__.splitlines()[0])
    p.add_argument("--settings", default=DEFAULT_SETTINGS, help=f"the role's JSON settings (default {DEFAULT_SETTINGS})")
    p.add_argument("--once", action="store_true", help="one pass, then exit (tests, diagnosis)")
    p.add_argument("--check", action="store_true",
                   help="monitor hook: exit 1 (and publish unknown) when the guard stopped deciding")
    return p.parse_args(list(argv))


def main(name: str = "ec2ha-pgsql-sync-guard", argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(name, sys.argv[1:] if argv is None else argv)
    node_names: List[str] = []

    def load() -> Settings:
        settings = Settings.load(args.settings)
        if not settings.self_name:
            if not node_names:
                node_names.append(NodeIO(settings).node_name())
            settings = dataclasses.replace(settings, self_name=node_names[0])
        if settings.self_name not in settings.nodes:
            raise ValueError(f"self_name {settings.self_name!r} is not one of nodes {list(settings.nodes)}")
        return settings

    try:
        settings = load()
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        say(f"{name}: {args.settings}: {exc}")
        return 2
    if args.check:
        return check(NodeIO(settings), settings)
    signal.signal(signal.SIGTERM, _stop)
    try:
        return run(load, once=args.once)
    except Stopping:
        # Stopped (moved, banned, demoted): an old "sync" must not stay on display.
        NodeIO(settings).publish("stopped")
        return 0
