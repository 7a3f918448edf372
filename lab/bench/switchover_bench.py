"""Planned switchover of the lab pair, measured: `python -m lab.bench.switchover_bench [RUNS]`.

RUNS switchovers (default 6, at least 5 make a median; the direction alternates, pg1 -> pg2 and
back) through playbooks/switchover.yml, as an operator or AWX runs it, while a client in
CLIENT_NS writes numbered rows through the VIP. Per run: the client-observed write outage (last
acknowledged write before the first failed one -> first acknowledged after), and where the time
went, from the two nodes' pacemaker.log (one clock: the lab's hosts are namespaces of this
machine): the demote on the old primary, the hand-over until the promote starts on the target
(PAF's notify actions on both nodes, the transition), the promote, and each endpoint's start after
it. Rows acknowledged and missing are counted over all runs. Target: a median write outage of
2 s or less (the stock Pacemaker + PAF + aws-vpc-move-ip stack measured 6.4 s on this kind of
machine); the figure is printed whether or not it meets it.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from lab import helpers
from lab.emulator import lifecycle
from lab.pair import client, cluster, health, pacemaker_log

TARGET_OUTAGE_S = 2.0
PHASES = (("demote", "demote requested", "demoted"),
          ("hand-over", "demoted", "promote requested"),
          ("promote", "promote requested", "promoted"),
          *((f"{kind} start", "promoted", kind) for kind in cluster.RESOURCES))


@dataclass
class Switchover:
    source: str
    target: str
    rc: int = 0
    outage: Optional[float] = None
    events: Dict[str, Optional[float]] = field(default_factory=dict)   # epoch seconds
    acknowledged: int = 0
    missing: List[int] = field(default_factory=list)

    def span(self, since: str, until: str) -> Optional[float]:
        start, end = self.events.get(since), self.events.get(until)
        return end - start if start is not None and end is not None else None

    def line(self) -> str:
        phases = " / ".join(f"{name} {helpers.fmt(self.span(a, b))}" for name, a, b in PHASES)
        return (f"{self.source} -> {self.target}: write outage {helpers.fmt(self.outage)} s; {phases}; "
                f"rows acknowledged {self.acknowledged}, missing {len(self.missing)}")


def _events(s: cluster.Settings, source: str, target: str, since: float) -> Dict[str, Optional[float]]:
    on_source = pacemaker_log.first_events(s, source, {
        "demote requested": pacemaker_log.requested("demote", "pgsqld", source),
        "demoted": pacemaker_log.succeeded("demote", "pgsqld", source)}, since)
    on_target = pacemaker_log.first_events(s, target, {
        "promote requested": pacemaker_log.requested("promote", "pgsqld", target),
        "promoted": pacemaker_log.succeeded("promote", "pgsqld", target),
        **{kind: pacemaker_log.succeeded("start", resource, target) for kind, resource in cluster.RESOURCES.items()}},
        since)
    return {**on_source, **on_target}


def switchover_once(s: cluster.Settings, target: str, index: int = 0) -> Switchover:
    source = cluster.promoted_node(s)
    result = Switchover(source=source, target=target)
    with client.writing(s, source) as writer:
        at = time.time()
        run = cluster.run_playbook("playbooks/switchover.yml", s, log=cluster.WORK_DIR / f"bench-switchover-{index}.log",
                                   extra=["-e", f"ec2ha_switchover_target={target}"])
        result.rc = run.rc
        if run.rc == 0:
            helpers.wait_for(lambda: writer.ok_after(at, target), 30, 0.2, f"a write acknowledged by {target}")
            first = writer.ok_after(at, target)
            helpers.wait_for(lambda: len([w for w in writer.snapshot() if w.ok and w.t0 > first.t1]) >= 5,
                             30, 0.2, f"writes on {target}")
    window = writer.outage(at)
    result.outage = window[1] - window[0] if window else None
    acknowledged = writer.acknowledged()
    result.acknowledged = len(acknowledged)
    result.missing = sorted(set(acknowledged) - client.rows_present(s))
    result.events = _events(s, source, target, at)
    return result


def print_summary(runs: List[Switchover]) -> None:
    outage = helpers.median([r.outage for r in runs])
    print(f"planned switchover, median of {len(runs)} (seconds; both directions):")
    print(f"  {'client':<16} {helpers.fmt(outage):>6}   write outage seen by the client "
          f"(target {TARGET_OUTAGE_S:g} s: {'met' if outage is not None and outage <= TARGET_OUTAGE_S else 'NOT met'})")
    for name, since, until in PHASES:
        print(f"  {name:<16} {helpers.fmt(helpers.median([r.span(since, until) for r in runs])):>6}   {since} -> {until}")
    print(f"  rows acknowledged {sum(r.acknowledged for r in runs)}, acknowledged but missing "
          f"{sum(len(r.missing) for r in runs)}; failed runs {sum(1 for r in runs if r.rc != 0)}")


def run(s: cluster.Settings, count: int) -> List[Switchover]:
    runs = []
    for index in range(count):
        helpers.wait_for(lambda: health.healthy(s), 300, 1, f"a healthy pair before switchover {index + 1}")
        _primary, standby = cluster.primary_and_standby(s)
        runs.append(switchover_once(s, standby, index))
        print(f"--- switchover {index + 1}/{count}: {runs[-1].line()}", flush=True)
    return runs


def main(argv: List[str]) -> int:
    count = int(argv[0]) if argv and argv[0].isdigit() else 6
    brought_up = not lifecycle.lab_info()
    try:
        s = health.ensure_cluster("bench-site.log")
        runs = run(s, count)
        print_summary(runs)
        return 0 if all(r.rc == 0 and not r.missing for r in runs) else 1
    finally:
        if brought_up:
            health.cli_command("down")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
