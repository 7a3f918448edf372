"""The fault matrix (lab/matrix), each fault that no other module of this package makes run
once, judged by the matrix's own invariants: never two writers, no acknowledged row lost, one
promoted node, the endpoints on it; the quiet faults (the AWS API or IMDS unreachable, drift, a
refused switchover) also with no failover, no failed action and no node power-cycled; a refused
switchover with the CIB and AWS as they were. The power-offs and the
partition run through the same code in test_build_and_failover.py and test_fence_race.py;
`make faults` runs every fault ten times."""

from __future__ import annotations

import pytest

from lab.matrix import catalogue, run
from lab.pair import health

ELSEWHERE = {"primary_powered_off", "standby_powered_off", "partition"}


@pytest.mark.parametrize("name", [f.name for f in catalogue.FAULTS if f.name not in ELSEWHERE])
def test_fault(name, healthy_pair, capsys):
    health.make_whole(healthy_pair)
    outcome = run.judge(healthy_pair, catalogue.BY_NAME[name], 0)
    with capsys.disabled():                    # the figures show without -s
        print("\n" + outcome.line())
    assert outcome.acknowledged > 20, outcome.line()
    assert outcome.passed, outcome.line()
