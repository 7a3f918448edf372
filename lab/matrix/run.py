"""The fault matrix: `python -m lab.matrix [RUNS] [--only NAME,NAME]` (make faults: 10 runs each).

Every run starts from a whole pair (health.make_whole: each node in, the standby in sync, no
failed action), injects one fault of lab/matrix/catalogue.py under client writes, checks every
invariant of lab/matrix/invariants.py on what was seen, and puts the pair back together. The
summary (fault, runs, passed, worst client outage, rows lost, two-writer events) is printed and
written to .build/faults/faults.json (every run in full) and faults.md.
"""

from __future__ import annotations

import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

from lab import helpers
from lab.emulator import faults, lifecycle
from lab.matrix import catalogue, invariants, report
from lab.pair import cluster, health


@dataclass
class Outcome:
    """One run of one fault, judged."""

    fault: str
    run: int
    passed: bool
    outage: Optional[float] = None            # the client's longest wait between two acknowledged writes
    acknowledged: int = 0
    rows_lost: int = 0
    two_writer_events: int = 0
    violations: List[str] = field(default_factory=list)
    figures: Dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0                      # the run's wall time, the pair's repair included

    def line(self) -> str:
        verdict = "passed" if self.passed else "FAILED: " + "; ".join(self.violations)
        return (f"{self.fault} run {self.run}: outage {helpers.fmt(self.outage)} s, rows {self.acknowledged} "
                f"acknowledged / {self.rows_lost} lost, two-writer events {self.two_writer_events}, "
                f"{self.figures} -> {verdict}")


def judge(s: cluster.Settings, fault: catalogue.Fault, index: int) -> Outcome:
    """One run: the fault, then every invariant on what it left behind."""
    started = time.monotonic()
    outcome = Outcome(fault.name, index + 1, passed=False)
    try:
        trial = fault.run(s, index)
        outcome.figures = trial.figures
        seen = invariants.ClientView.read(s, trial.writes, trial.at)
        outcome.outage, outcome.acknowledged = seen.outage, seen.acknowledged
        outcome.rows_lost, outcome.two_writer_events = seen.rows_lost, seen.two_writer_events
        outcome.violations = trial.violations + invariants.settled(
            s, trial.before, seen, failover=trial.failover, quiet=trial.quiet)
    except Exception as exc:                  # a run that broke is a failed run, said why
        outcome.violations.append(f"the run broke: {type(exc).__name__}: {exc}")
        traceback.print_exc()
    finally:
        faults.clear(s.info["endpoint_url"])
    outcome.passed = not outcome.violations
    outcome.seconds = time.monotonic() - started
    return outcome


def run_matrix(s: cluster.Settings, names: List[str], runs: int) -> List[Outcome]:
    outcomes = []
    for name in names:
        fault = catalogue.BY_NAME[name]
        for index in range(runs):
            health.make_whole(s)
            outcome = judge(s, fault, index)
            print(outcome.line(), flush=True)
            outcomes.append(outcome)
            save(outcomes)            # a matrix stopped half-way still leaves its table
    health.make_whole(s)
    return outcomes


def save(outcomes: List[Outcome]) -> tuple:
    """The summary rows, and the files they were written to."""
    runs = [asdict(o) for o in outcomes]
    rows = report.summary(runs)
    return rows, report.write(rows, runs)


def parse(argv: List[str]) -> tuple:
    """(runs, fault names); ValueError (one sentence) for anything else."""
    runs, names = 10, [f.name for f in catalogue.FAULTS]
    args = list(argv)
    if "--only" in args:
        at = args.index("--only")
        if at + 1 >= len(args):
            raise ValueError("--only needs a comma-separated list of faults.")
        names = [n for n in args.pop(at + 1).split(",") if n]
        args.pop(at)
        unknown = [n for n in names if n not in catalogue.BY_NAME]
        if unknown:
            raise ValueError(f"Unknown faults {unknown}: expected some of {list(catalogue.BY_NAME)}.")
    if args:
        if len(args) != 1 or not args[0].isdigit() or int(args[0]) < 1:
            raise ValueError(f"Expected [RUNS] [--only NAME,...], got {' '.join(argv)}.")
        runs = int(args[0])
    return runs, names


def main(argv: List[str]) -> int:
    try:
        runs, names = parse(argv)
    except ValueError as exc:
        print(f"lab.matrix: {exc}", file=sys.stderr)
        return 2
    brought_up = not lifecycle.lab_info()
    try:
        s = health.ensure_cluster()
        outcomes = run_matrix(s, names, runs)
    finally:
        if brought_up:
            health.cli_command("down")
    rows, paths = save(outcomes)
    print(report.markdown(rows))
    print(f"written: {', '.join(str(p) for p in paths)}")
    return 0 if all(o.passed for o in outcomes) else 1
