# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A planned switchover of the promoted PostgreSQL and every endpoint that follows it, run on the
current primary's node.

1. Gates, all read before any change (crm_mon, the CIB's constraints, pg_stat_replication here on
   the primary). A failed gate is one sentence naming the gate and the value; nothing is written.
2. Already there (the target is Promoted and every endpoint runs on it): nothing to do.
3. The move: the switchover's own location constraint with a lifetime (pacemaker.constraints),
   a bounded wait until the target is Promoted and every endpoint started on it, the constraint
   removed whatever happened (a crashed run leaves one that expires by itself). Then a bounded wait
   until this node, the old primary, streams again and, in sync mode, is marked in sync.

One switchover at a time: the whole run holds this node's run lock (run_lock, under /run), so a
second one started meanwhile (two AWX jobs) is refused before it reads a gate, naming the one that
runs. A second one that runs on the other node meets the move constraint: the gate "no leftover
move constraint" before the move, cibadmin's unique id at the move (refused, the other's kept).

Every step is timestamped in the returned timeline. No Ansible import.
"""

from __future__ import annotations

import dataclasses
import datetime
import subprocess
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from ansible_collections.ec2ha.cluster.plugins.module_utils.local_postgres import LocalPostgres
from ansible_collections.ec2ha.cluster.plugins.module_utils.pacemaker.constraints import (
    MOVE_PREFIX,
    Constraints,
    Location,
    leftover_moves,
    move_constraint,
)
from ansible_collections.ec2ha.cluster.plugins.module_utils.pacemaker.runner import PacemakerError, Runner
from ansible_collections.ec2ha.cluster.plugins.module_utils.run_lock import RunLock, RunLockHeld
from ansible_collections.ec2ha.cluster.plugins.module_utils.pacemaker.state import ClusterState, read_state

POLL_SECONDS = 0.25
LAG_READINGS = 10             # the lag gate's readings of pg_stat_replication (Node.replication)
LAG_INTERVAL = 0.1
ENDPOINT_AGENT_PREFIX = "ocf:ec2ha:"
Replication = Dict[str, Tuple[str, str, int]]      # application_name -> (state, sync_state, replay lag bytes)


class SwitchoverError(Exception):
    """A refused or failed switchover, in one sentence (the state it left is in the message);
    ``gates`` holds what the gates read when one refused."""

    def __init__(self, message: str, gates: Optional[List["Gate"]] = None) -> None:
        super().__init__(message)
        self.gates = gates or []


@dataclasses.dataclass(frozen=True)
class SwitchoverSpec:
    target: str
    clone: str = "pgsqld-clone"
    endpoints: Tuple[str, ...] = ()        # endpoint resource ids; empty: every ocf:ec2ha:* resource
    max_lag_bytes: int = 0
    force: bool = False                    # skips the lag gate only
    timeout: float = 120.0                 # the move, constraint placed to every endpoint started
    standby_timeout: float = 120.0         # the old primary streaming (and in sync) again
    mode: str = "sync"
    sync_attribute: str = "ec2ha-pgsql-sync"
    pghost: str = "/run/postgresql"
    pgport: int = 5432
    lock_path: str = "/run/ec2ha/switchover.lock"


@dataclasses.dataclass(frozen=True)
class Gate:
    name: str
    ok: bool
    value: str
    message: str = ""

    def as_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Placement:
    """Who is primary and where each endpoint runs."""

    primary: List[str]
    endpoints: Dict[str, List[str]]

    def as_dict(self) -> Dict[str, Any]:
        return {"primary": self.primary[0] if len(self.primary) == 1 else self.primary, "endpoints": {
            e: nodes[0] if len(nodes) == 1 else nodes for e, nodes in self.endpoints.items()}}


@dataclasses.dataclass
class Outcome:
    changed: bool
    gates: List[Gate]
    before: Placement
    after: Placement
    timeline: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
    planned: List[str] = dataclasses.field(default_factory=list)     # crm_simulate's plan (check mode)

    def as_dict(self) -> Dict[str, Any]:
        return {"changed": self.changed, "gates": [g.as_dict() for g in self.gates],
                "before": self.before.as_dict(), "after": self.after.as_dict(), "timeline": self.timeline,
                "planned": self.planned}


def endpoint_ids(state: ClusterState, spec: SwitchoverSpec) -> List[str]:
    if spec.endpoints:
        return list(spec.endpoints)
    return sorted({r.id for r in state.resources if r.agent.startswith(ENDPOINT_AGENT_PREFIX)})


def placement(state: ClusterState, spec: SwitchoverSpec) -> Placement:
    return Placement(state.promoted(spec.clone), {e: state.started_on(e) for e in endpoint_ids(state, spec)})


def already_there(state: ClusterState, spec: SwitchoverSpec) -> bool:
    where = placement(state, spec)
    return where.primary == [spec.target] and all(nodes == [spec.target] for nodes in where.endpoints.values())


def evaluate_gates(state: ClusterState, leftovers: List[Location], replication: Replication, spec: SwitchoverSpec,
                   local_node: str) -> List[Gate]:
    """Every gate, in order, each with the value it read. Pure: reads nothing itself."""
    names = sorted(state.nodes)
    primary = state.promoted(spec.clone)
    gates = [Gate("member", spec.target in state.nodes, f"target {spec.target}, nodes {', '.join(names)}",
                  f"target {spec.target} is not a member of the cluster (nodes: {', '.join(names)})")]
    offline = [n for n in names if not state.nodes[n].online]
    gates.append(Gate("online and quorate", not offline and state.quorate,
                      f"offline: {', '.join(offline) or 'none'}; quorate: {str(state.quorate).lower()}",
                      f"the cluster is not whole: offline {', '.join(offline) or 'none'}, "
                      f"quorate {str(state.quorate).lower()}"))
    held = [f"{n} ({'standby' if state.nodes[n].standby else 'maintenance'})" for n in names
            if state.nodes[n].standby or state.nodes[n].maintenance]
    gates.append(Gate("no node in standby or maintenance", not held, ", ".join(held) or "none",
                      f"nodes held back: {', '.join(held)}"))
    gates.append(Gate("cluster not in maintenance-mode", not state.maintenance_mode,
                      f"maintenance-mode={str(state.maintenance_mode).lower()}",
                      "the cluster is in maintenance-mode: Pacemaker would not move anything"))
    devices = state.fencing_devices()
    stopped = [d.id for d in devices if not state.started_on(d.id)]
    fencing_ok = state.stonith_enabled and bool(devices) and not stopped
    gates.append(Gate("fencing", fencing_ok,
                      f"stonith-enabled={str(state.stonith_enabled).lower()}; devices: "
                      f"{', '.join(d.id for d in devices) or 'none'}; stopped: {', '.join(stopped) or 'none'}",
                      "fencing is not ready (stonith-enabled "
                      f"{str(state.stonith_enabled).lower()}, devices {', '.join(d.id for d in devices) or 'none'}, "
                      f"stopped {', '.join(stopped) or 'none'}): a failed demote could not be fenced"))
    gates.append(Gate("one primary, on this node", primary == [local_node], f"promoted: {', '.join(primary) or 'none'}",
                      f"the switchover runs on the primary's node: promoted on {', '.join(primary) or 'no node'}, "
                      f"this is {local_node}"))
    row = replication.get(spec.target)
    if row is None:
        value, lag_ok = f"{spec.target} not in pg_stat_replication", False
    else:
        value = f"{spec.target} {row[0]}, {row[1]}, replay lag {row[2]} bytes (limit {spec.max_lag_bytes})"
        lag_ok = row[0] == "streaming" and row[2] <= spec.max_lag_bytes
    if spec.force and row is not None and row[0] == "streaming":
        lag_ok, value = True, value + "; force: lag not checked"
    gates.append(Gate("target streaming within the lag", lag_ok, value,
                      f"the target does not stream within the lag limit: {value}"))
    watched = {r.id for r in state.instances(spec.clone)} | {spec.clone} | set(endpoint_ids(state, spec))
    failed = [f"{f.resource} {f.operation} on {f.node}" for f in state.failed_actions if f.resource in watched]
    gates.append(Gate("no failed actions", not failed, ", ".join(failed) or "none",
                      f"failed actions to clean up first: {', '.join(failed)}"))
    left = [f"{c.id} ({c.resource} on {c.node or 'a rule'})" for c in leftovers]
    ours = [c for c in leftovers if c.id.startswith(MOVE_PREFIX)]
    if ours:
        why = (f"a switchover is under way from the other node, or one was cut off and left {ours[0].id} "
               f"(it expires by itself at {ours[0].until or 'no set time'})")
    else:
        why = "a move constraint is left from an earlier move"
    gates.append(Gate("no leftover move constraint", not left, ", ".join(left) or "none",
                      f"{why}: {', '.join(left)} (crm_resource --clear, or remove it)"))
    return gates


def refusal(gates: List[Gate]) -> Optional[str]:
    failed = [g for g in gates if not g.ok]
    if not failed:
        return None
    return f"Switchover refused, gate {failed[0].name}: {failed[0].message}."


class Node:
    """What the switchover reads and changes from the primary's node."""

    def __init__(self, spec: SwitchoverSpec, runner: Runner, postgres: Optional[LocalPostgres] = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.spec, self.runner, self.sleep = spec, runner, sleep
        self.constraints = Constraints(runner)
        self.postgres = postgres or LocalPostgres(spec.pghost, spec.pgport)

    def name(self) -> str:
        return self.runner.run(["crm_node", "--name"]).stdout.strip()

    def state(self) -> ClusterState:
        return read_state(self.runner)

    def replication(self) -> Replication:
        """pg_stat_replication, each standby at its least lag over up to LAG_READINGS readings
        LAG_INTERVAL s apart, stopping once the target is within max_lag_bytes. Under a steady stream
        of commits the standby is a few bytes behind at any single instant (seen in the lab: replay
        lag 56 bytes under one insert per 50 ms, sync mode), so one reading refused every switchover
        of a busy database; a standby that is really behind stays behind in every reading. A target
        that is not a standby of this node at all (already the primary, unknown) is read once."""
        best: Replication = {}
        for reading in range(LAG_READINGS):
            for name, row in self.replication_reading().items():
                if name not in best or row[2] < best[name][2]:
                    best[name] = row
            target = best.get(self.spec.target)
            if target is None or target[2] <= self.spec.max_lag_bytes:
                break
            if reading + 1 < LAG_READINGS:
                self.sleep(LAG_INTERVAL)
        return best

    def replication_reading(self) -> Replication:
        try:
            rows = self.postgres.rows("SELECT application_name, state, sync_state, "
                                      "coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), -1)::bigint "
                                      "FROM pg_stat_replication")
        except (subprocess.SubprocessError, OSError):
            return {}                      # not a primary, or PostgreSQL down: the gates say so
        return {r[0]: (r[1], r[2], int(r[3]) if int(r[3]) >= 0 else 2 ** 62) for r in rows}

    def receiving(self) -> bool:
        try:
            return self.postgres.run("SELECT status FROM pg_stat_wal_receiver").strip() == "streaming"
        except (subprocess.SubprocessError, OSError):
            return False

    def simulate(self) -> List[str]:
        """crm_simulate of the move constraint on a copy of the live CIB: the actions it plans."""
        with tempfile.TemporaryDirectory(prefix="ec2ha-switchover-") as scratch:
            shadow = f"{scratch}/cib.xml"
            with open(shadow, "w", encoding="utf-8") as handle:
                handle.write(self.runner.run(["cibadmin", "--query"]).stdout)
            copy = Runner(self.runner.timeout, cib_file=shadow)
            until = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=self.spec.timeout)
            copy.run(["cibadmin", "--create", "--scope", "constraints", "--xml-text",
                      move_constraint(self.spec.clone, self.spec.target, until)])
            out = copy.run(["crm_simulate", "--xml-file", shadow, "--simulate"]).stdout
        summary = out.split("Transition Summary:", 1)[-1].split("Executing", 1)[0]
        return [" ".join(line.split()) for line in summary.splitlines() if line.strip().startswith("*")]


class Timeline:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock, self.start, self.events = clock, clock(), []  # type: ignore[var-annotated]

    def mark(self, event: str) -> None:
        self.events.append({"event": event, "t": round(self.clock() - self.start, 3),
                            "at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")})


ONE_AT_A_TIME = "one switchover at a time"


def run(node: Node, check_mode: bool, clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep) -> Outcome:
    """Under this node's run lock: gates, then (unless already there or check mode) the move;
    SwitchoverError says why not."""
    what = f"{'a check-mode ' if check_mode else 'a '}switchover to {node.spec.target}"
    try:
        with RunLock(node.spec.lock_path, what):
            return _run(node, check_mode, clock, sleep)
    except RunLockHeld as held:
        gate = Gate(ONE_AT_A_TIME, False, str(held), f"another switchover runs on this node: {held}")
        raise SwitchoverError(refusal([gate]) or "", [gate]) from None
    except OSError as exc:
        raise SwitchoverError(f"The switchover lock {node.spec.lock_path} cannot be taken ({exc.strerror}): "
                              "run the switchover as root (become: true); nothing was changed.") from None


def _run(node: Node, check_mode: bool, clock: Callable[[], float], sleep: Callable[[float], None]) -> Outcome:
    spec = node.spec
    state = node.state()
    before = placement(state, spec)
    leftovers = leftover_moves(node.constraints.query())
    gates = evaluate_gates(state, leftovers, node.replication(), spec, node.name())
    if spec.target in state.nodes and already_there(state, spec):
        return Outcome(False, gates, before, before)
    reason = refusal(gates)
    if reason:
        raise SwitchoverError(reason, gates)
    if check_mode:
        return Outcome(True, gates, before, Placement([spec.target], {e: [spec.target] for e in before.endpoints}),
                       planned=node.simulate())
    timeline = Timeline(clock)
    old = before.primary[0]
    _place_move(node, spec, gates)
    timeline.mark("constraint placed")
    try:
        after = _wait_moved(node, spec, old, before, timeline, clock, sleep)
    finally:
        node.constraints.clear_move(spec.clone)
        timeline.mark("constraint cleared")
    _wait_standby(node, spec, old, timeline, clock, sleep)
    return Outcome(True, gates, before, after, timeline.events)


def _place_move(node: Node, spec: SwitchoverSpec, gates: List[Gate]) -> None:
    """The move constraint; one placed since the gates read (a switchover run from the other node)
    refuses this one and is left alone: cibadmin --create refuses an id that exists."""
    try:
        node.constraints.place_move(spec.clone, spec.target, spec.timeout + 60)
    except PacemakerError:
        found = [c for c in leftover_moves(node.constraints.query()) if c.resource == spec.clone]
        if not found:
            raise
        left = ", ".join(f"{c.id} ({c.resource} on {c.node or 'a rule'})" for c in found)
        gate = Gate("no leftover move constraint", False, left,
                    f"another move placed {left} after the gates read; it is left as it is")
        raise SwitchoverError(refusal([gate]) or "", gates + [gate]) from None


def _wait_moved(node: Node, spec: SwitchoverSpec, old: str, before: Placement, timeline: Timeline,
                clock: Callable[[], float], sleep: Callable[[float], None]) -> Placement:
    deadline = clock() + spec.timeout
    seen = set()
    while True:
        state = node.state()
        where = placement(state, spec)
        if len(where.primary) > 1:
            raise SwitchoverError(f"Two instances are Promoted ({', '.join(where.primary)}): the move stopped there.")
        steps = [("demoted " + old, old not in where.primary), ("promoted " + spec.target, where.primary == [spec.target])]
        steps += [(f"{e} started on {spec.target}", nodes == [spec.target]) for e, nodes in where.endpoints.items()]
        for event, done in steps:
            if done and event not in seen:
                seen.add(event)
                timeline.mark(event)
        if all(done for _event, done in steps):
            return where
        if clock() + POLL_SECONDS > deadline:
            raise SwitchoverError(
                f"The switchover to {spec.target} did not finish within {spec.timeout:g} s: promoted on "
                f"{', '.join(where.primary) or 'no node'}, endpoints {where.as_dict()['endpoints']}; the move "
                "constraint is removed and Pacemaker decides from here.")
        sleep(POLL_SECONDS)


def _wait_standby(node: Node, spec: SwitchoverSpec, old: str, timeline: Timeline,
                  clock: Callable[[], float], sleep: Callable[[float], None]) -> None:
    deadline = clock() + spec.standby_timeout
    streaming = False
    while True:
        if not streaming and node.receiving():
            streaming = True
            timeline.mark(f"{old} streaming")
        in_sync = spec.mode != "sync" or node.state().attributes.get(old, {}).get(spec.sync_attribute) == "1"
        if streaming and in_sync:
            if spec.mode == "sync":
                timeline.mark(f"{old} in sync")
            return
        if clock() + POLL_SECONDS > deadline:
            raise SwitchoverError(
                f"{spec.target} is the primary, but {old} did not stream "
                f"{'and get in sync ' if spec.mode == 'sync' else ''}within {spec.standby_timeout:g} s "
                f"(streaming: {str(streaming).lower()}): see crm_mon -A and its PostgreSQL log.")
        sleep(POLL_SECONDS)


def session(spec: SwitchoverSpec, command_timeout: float = 30.0) -> Node:
    return Node(spec, Runner(timeout=command_timeout))
