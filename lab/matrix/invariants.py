"""What must hold after every fault run, read back from the client's own records, crm_mon,
EC2 and the hypervisor, never from what a playbook or an agent said of itself.

    one_writer(writes)              # two-writer events: acknowledged writes of two servers overlapping
    longest_gap(writes, since)      # the client's worst wait between two acknowledged writes
    settled(settings, ...)          # the pair's state once the fault is over: the violations found
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional

from lab import helpers
from lab.emulator import hosts
from lab.pair import client, cluster, cluster_state, health


def acknowledged(writes: Iterable[client.Write]) -> List[client.Write]:
    return sorted((w for w in writes if w.ok), key=lambda w: w.t0)


def two_writer_events(writes: Iterable[client.Write]) -> int:
    """Acknowledged writes that one server took while another server's acknowledged writes were
    still going on: each server's writes span [its first start, its last end]; every write of a
    server that falls inside another's span counts once. 0 when writes moved at most once and
    cleanly from one server to the other."""
    acked = acknowledged(writes)
    spans: Dict[str, tuple] = {}
    for w in acked:
        first, last = spans.get(w.server, (w.t0, w.t1))
        spans[w.server] = (min(first, w.t0), max(last, w.t1))
    return sum(1 for w in acked for server, (first, last) in spans.items()
               if server != w.server and first < w.t1 and w.t0 < last)


def longest_gap(writes: Iterable[client.Write], since: float) -> Optional[float]:
    """The longest time between two consecutive acknowledged writes, counting gaps that end
    after `since`: the client's worst outage from the fault on (None: fewer than two acks)."""
    ends = sorted(w.t1 for w in writes if w.ok)
    gaps = [b - a for a, b in zip(ends, ends[1:]) if b >= since]
    return max(gaps) if gaps else None


def failed_actions(s: cluster.Settings, node: str) -> List[str]:
    """op_key of every failed action crm_mon shows (a run starts with none: cleaned up)."""
    status = cluster_state.run(s, node, "crm_mon -1 --output-as=xml")
    return [f"{op} on {where}" for op, where in re.findall(r'<failure op_key="([^"]+)"[^>]*node="([^"]+)"', status)]


def power_generations(s: cluster.Settings) -> Dict[str, Optional[int]]:
    """How often the hypervisor has powered each node on: a fence (or any power cycle) moves it."""
    generations = {}
    for name, instance in cluster.node_instances(s).items():
        mark = hosts.read_mark(instance["InstanceId"])
        generations[name] = mark[2] if mark else None
    return generations


@dataclass
class Before:
    """The pair as a run found it, for the expectations that say "nothing changed"."""

    primary: str
    standby: str
    generations: Dict[str, Optional[int]] = field(default_factory=dict)

    @classmethod
    def read(cls, s: cluster.Settings) -> "Before":
        primary, standby = cluster.primary_and_standby(s)
        return cls(primary, standby, power_generations(s))


def settled(s: cluster.Settings, before: Before, writes: List[client.Write], *, failover: Optional[bool],
            quiet: bool, timeout: float = 60) -> List[str]:
    """Every invariant, checked once the fault is over; the violations as sentences.
    failover: True (the standby must now be primary), False (the primary must still be), None
    (either). quiet: nothing may have failed or been fenced (no failed action, no power cycle)."""
    violations = []
    events = two_writer_events(writes)
    if events:
        violations.append(f"{events} acknowledged writes overlapped another server's")
    acked = {w.seq for w in writes if w.ok}
    lost = acked - client.rows_present(s)
    if lost:
        violations.append(f"{len(lost)} acknowledged rows lost")
    roles = health.pair_roles(s)
    promoted = [n for n, r in roles.items() if r in ("Promoted", "Master")]
    if len(promoted) != 1:
        violations.append(f"{len(promoted)} nodes promoted once settled: {roles}")
        return violations
    primary = promoted[0]
    expected = {True: before.standby, False: before.primary}.get(failover, primary)
    if primary != expected:
        violations.append(f"{primary} is primary, expected {expected}")
    helpers.poll(lambda: set(cluster.endpoint_holders(s).values()) == {primary}, timeout, 1)
    holders = cluster.endpoint_holders(s)
    if set(holders.values()) != {primary}:
        violations.append(f"endpoints not all on the primary {primary}: {holders}")
    if quiet:
        failures = failed_actions(s, primary)
        if failures:
            violations.append(f"failed actions: {', '.join(failures)}")
        generations = power_generations(s)
        if generations != before.generations:
            violations.append(f"a node was power-cycled (fenced): generations {before.generations} -> {generations}")
    return violations


def wait_repaired(check, timeout: float) -> Optional[float]:
    """Seconds until check() holds (polled every 0.2 s), None if it did not within timeout."""
    start = time.monotonic()
    return (time.monotonic() - start) if helpers.poll(check, timeout, 0.2) else None
