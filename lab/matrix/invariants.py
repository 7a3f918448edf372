"""What must hold after every fault run, read back from the client's own records, crm_mon,
EC2 and the hypervisor, never from what a playbook or an agent said of itself.

    seen = ClientView.read(settings, writes)   # acknowledged, lost, two-writer events, worst outage
    settled(settings, before, seen, ...)       # the pair's state once the fault is over: the violations
    untouched = Untouched.read(settings, node) # before an action that must be refused...
    untouched.changes(settings, node)          # ...and after it: what it changed all the same
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

from lab import helpers
from lab.emulator import hosts
from lab.pair import client, cluster, cluster_state, health


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


@dataclass
class Untouched:
    """What a refused action must leave as it found: the CIB as the roles and modules write it
    (its nodes section aside: the sync guard's attribute lives there) and where AWS sends each
    endpoint, as endpoint_info reads it."""

    cib: str
    holders: Dict[str, Optional[str]]

    @classmethod
    def read(cls, s: cluster.Settings, node: str) -> "Untouched":
        return cls(cluster_state.cib_written_by_us(s, node), cluster.endpoint_holders(s))

    def changes(self, s: cluster.Settings, node: str) -> List[str]:
        after = Untouched.read(s, node)
        found = []
        if after.cib != self.cib:
            found.append("the refused action changed the CIB's configuration")
        if after.holders != self.holders:
            found.append(f"the refused action moved endpoints in AWS: {self.holders} -> {after.holders}")
        return found


@dataclass
class ClientView:
    """What the client's records and the table say, read once per run."""

    acknowledged: int
    rows_lost: int
    two_writer_events: int
    outage: Optional[float]       # the longest wait between two acknowledged writes, from the fault on

    @classmethod
    def read(cls, s: cluster.Settings, writes: List[client.Write], since: float) -> "ClientView":
        acked = {w.seq for w in writes if w.ok}
        return cls(len(acked), len(acked - client.rows_present(s)), client.two_writer_events(writes),
                   client.longest_gap(writes, since))


def settled(s: cluster.Settings, before: Before, seen: ClientView, *, failover: Optional[bool],
            quiet: bool, timeout: float = 60) -> List[str]:
    """Every invariant, checked once the fault is over; the violations as sentences.
    failover: True (the standby must now be primary), False (the primary must still be), None
    (either). quiet: nothing may have failed or been fenced (no failed action, no power cycle)."""
    violations = []
    if seen.two_writer_events:
        violations.append(f"{seen.two_writer_events} acknowledged writes overlapped another server's")
    if seen.rows_lost:
        violations.append(f"{seen.rows_lost} acknowledged rows lost")
    roles = health.pair_roles(s)
    promoted = [n for n, r in roles.items() if r in ("Promoted", "Master")]
    if len(promoted) != 1:
        violations.append(f"{len(promoted)} nodes promoted once settled: {roles}")
        return violations
    primary = promoted[0]
    expected = {True: before.standby, False: before.primary}.get(failover, primary)
    if primary != expected:
        violations.append(f"{primary} is primary, expected {expected}")
    holders: Dict[str, Optional[str]] = {}

    def all_on_primary() -> bool:
        holders.update(cluster.endpoint_holders(s))
        return set(holders.values()) == {primary}
    if not helpers.poll(all_on_primary, timeout, 1):
        violations.append(f"endpoints not all on the primary {primary}: {holders}")
    if quiet:
        failures = health.failed_actions(s)
        if failures:
            violations.append(f"failed actions: {', '.join(failures)}")
        generations = power_generations(s)
        if generations != before.generations:
            violations.append(f"a node was power-cycled (fenced): generations {before.generations} -> {generations}")
    return violations
