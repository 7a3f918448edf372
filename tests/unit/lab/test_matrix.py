"""The fault matrix's judging and reporting, on made-up client records (the lab runs are in
tests/lab/pair/test_fault_matrix.py)."""

from __future__ import annotations

import json

import pytest

from lab.matrix import report, run
from lab.pair.client import Write, longest_gap, two_writer_events


def w(seq, t0, t1, server, ok=True):
    return Write(seq, t0, t1, ok, server if ok else "", "" if ok else "timeout")


def test_writes_moving_once_from_one_server_to_the_other_are_no_two_writer_event():
    writes = [w(1, 0, 1, "pg1"), w(2, 1, 2, "pg1"), w(3, 2, 9, "", ok=False), w(4, 9, 10, "pg2"), w(5, 10, 11, "pg2")]
    assert two_writer_events(writes) == 0


def test_a_write_acknowledged_by_the_old_primary_after_the_new_one_took_writes_is_counted():
    writes = [w(1, 0, 1, "pg1"), w(2, 2, 3, "pg2"), w(3, 3, 4, "pg1"), w(4, 4, 5, "pg2")]
    assert two_writer_events(writes) == 2      # seq 2 inside pg1's span [0, 4], seq 3 inside pg2's [2, 5]


def test_failed_writes_are_no_writer():
    assert two_writer_events([w(1, 0, 1, "pg1"), w(2, 1, 2, "pg2", ok=False), w(3, 2, 3, "pg1")]) == 0


def test_the_longest_gap_counts_only_gaps_ending_after_the_fault():
    writes = [w(1, 0, 1, "pg1"), w(2, 1, 6, "pg1"), w(3, 6, 7, "pg1"), w(4, 7, 9.5, "", ok=False), w(5, 9.5, 10, "pg2")]
    assert longest_gap(writes, since=6.5) == 3.0
    assert longest_gap(writes, since=0) == 5.0
    assert longest_gap([w(1, 0, 1, "pg1")], since=0) is None


def outcome(fault, number, passed=True, outage=1.5, lost=0, events=0, violations=()):
    return {"fault": fault, "run": number, "passed": passed, "outage": outage, "acknowledged": 10,
            "rows_lost": lost, "two_writer_events": events, "violations": list(violations), "figures": {}}


def test_the_summary_has_a_row_per_fault_with_its_worst_figures(tmp_path):
    runs = [outcome("partition", 1, outage=7.25), outcome("partition", 2, outage=9.5),
            outcome("drift_vip_route", 1, passed=False, outage=None, lost=2, events=1, violations=["2 acknowledged rows lost"])]
    rows = report.summary(runs)
    assert [(r["fault"], r["runs"], r["passed"], r["worst_outage_s"], r["rows_lost"], r["two_writer_events"])
            for r in rows] == [("partition", 2, 2, 9.5, 0, 0), ("drift_vip_route", 1, 0, None, 2, 1)]
    table = report.markdown(rows)
    assert table.splitlines()[0] == ("| fault | runs | passed | worst client outage (s) | rows lost | "
                                     "two-writer events |")
    assert "| partition | 2 | 2 | 9.5 | 0 | 0 |" in table
    assert "- drift_vip_route run 1: 2 acknowledged rows lost" in table
    as_json, as_md = report.write(rows, runs, tmp_path)
    assert json.loads(as_json.read_text())["faults"] == rows
    assert as_md.read_text().startswith("| fault |")


def test_the_runner_reads_runs_and_a_subset():
    assert run.parse([]) == (10, list(run.catalogue.BY_NAME))
    assert run.parse(["3", "--only", "partition,imds_down"]) == (3, ["partition", "imds_down"])


@pytest.mark.parametrize("argv, message", [
    (["--only", "power_cut"], "Unknown faults ['power_cut']: expected some of"),
    (["--only"], "--only needs a comma-separated list of faults."),
    (["0"], "Expected [RUNS] [--only NAME,...], got 0."),
    (["3", "4"], "Expected [RUNS] [--only NAME,...], got 3 4."),
])
def test_bad_runner_input_gets_one_sentence(argv, message, capsys):
    assert run.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lab.matrix: {message}") and err.count("\n") == 1


def test_a_refusal_is_read_from_the_first_failed_task():
    from lab.matrix.switchover_faults import REFUSALS, failure_message
    from lab.pair.cluster import PlaybookRun
    output = ('TASK [Move the primary and its endpoints] ***\n'
              'fatal: [pg1 -> pg1]: FAILED! => {"changed": false, "gates": [{"name": "member"}], '
              '"msg": "Switchover refused, gate one switchover at a time: another switchover runs on this node: '
              'a switchover to \\"pg2\\", pid 42."}\n'
              'fatal: [pg2]: FAILED! => {"msg": "a later one"}\n')
    message = failure_message(PlaybookRun(2, 1.0, {}, output))
    assert message == ('Switchover refused, gate one switchover at a time: another switchover runs on this node: '
                       'a switchover to "pg2", pid 42.')
    assert message.startswith(REFUSALS)
    assert failure_message(PlaybookRun(0, 1.0, {}, "PLAY RECAP\n")) == ""
