# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The sync guard (plugins/module_utils/sync_guard.py): its policy (decide) case by case, its
readers of corosync and Pacemaker output, its settings file, the process as the node runs it
(the program the recovery_kit role's node_code entry point installs), and the role contracts:
every public variable has a default, is declared, and carries the role prefix."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import yaml

from ansible_collections.ec2ha.cluster.plugins.module_utils import sync_guard as GUARD
from ansible_collections.ec2ha.cluster.plugins.module_utils.sync_guard import SetStandbyNames, SetSyncAttribute
from node_programs import guard_command
from roletools import ROLES, defaults, require

SYNC = 'ANY 1 ("bravo")'
SETTINGS = GUARD.Settings(mode="sync", nodes=("alpha", "bravo"), self_name="alpha")


def attr(node, value):
    return SetSyncAttribute(node, value)


def ssn(value):
    return SetStandbyNames(value)


def decide(mode="sync", membership="member", row=("streaming", "quorum"), ssn=SYNC, attrs=None, fencing=True):
    rows = {"bravo": row} if row else {}
    return GUARD.decide(mode, "alpha", ["bravo"], {"bravo": membership}, rows, ssn,
                        {"alpha": "1", "bravo": "1"} if attrs is None else attrs, fencing)


def test_in_sync_standby_changes_nothing():
    plan = decide()
    assert plan.status == "sync" and plan.actions == []


def test_returning_standby_gets_sync_back_but_is_promotable_only_once_in_sync():
    plan = decide(ssn="", row=("streaming", "async"), attrs={"alpha": "1", "bravo": "0"})
    assert plan.status == "catching-up"
    assert plan.actions == [ssn(SYNC)]
    plan = decide(row=("streaming", "quorum"), attrs={"alpha": "1", "bravo": "0"})
    assert plan.actions == [attr("bravo", "1")]


def test_catchup_state_is_not_streaming_so_the_primary_does_not_block():
    plan = decide(row=("catchup", "potential"))
    assert plan.status == "degraded"
    assert plan.actions == [attr("bravo", "0"), ssn("")]


@pytest.mark.parametrize("membership", ["member", "clean"])
def test_gone_standby_loses_promotion_before_commits_stop_waiting(membership):
    plan = decide(membership=membership, row=None)
    assert plan.status == "degraded"
    assert plan.actions == [attr("bravo", "0"), ssn("")]


def test_lost_unfenced_standby_keeps_commits_waiting():
    plan = decide(membership="unclean", row=None)
    assert plan.status == "waiting-for-fencing"
    assert plan.actions == [attr("bravo", "0")]
    assert decide(membership=None, row=None).status == "waiting-for-fencing"


@pytest.mark.parametrize("membership", ["clean", "unclean", None])
def test_without_fencing_an_offline_standby_never_degrades(membership):
    # stonith-enabled=false: Pacemaker calls a partitioned peer "clean", and that peer promotes
    # itself on its side. Degrading here would give two writable primaries.
    plan = decide(membership=membership, row=None, fencing=False)
    assert plan.status == "no-fencing"
    assert plan.actions == [attr("bravo", "0")]       # no ssn(""): commits keep waiting


def test_without_fencing_a_standby_in_our_ring_may_still_degrade():
    # Its node is up in our ring (no partition), only its PostgreSQL is gone.
    plan = decide(membership="member", row=None, fencing=False)
    assert plan.status == "degraded" and plan.actions == [attr("bravo", "0"), ssn("")]


RING = ("1.2d", frozenset({"alpha", "bravo"}))


@pytest.mark.parametrize("membership, after, safe", [
    ("member", RING, True),                                      # same ring, bravo in it: it got the 0
    ("member", ("1.2e", frozenset({"alpha"})), False),           # re-formed without bravo under the write
    ("member", ("1.2e", frozenset({"alpha", "bravo"})), False),  # re-formed: bravo may have missed it
    ("member", ("1.2d", frozenset({"alpha"})), False),           # bravo not listed by corosync
    ("clean", ("1.2e", frozenset({"alpha"})), True),             # stopped or fenced: nothing to tell it
])
def test_degrade_is_confirmed_only_when_the_peer_got_its_zero(membership, after, safe):
    assert GUARD.confirm_degrade(["bravo"], {"bravo": membership}, RING, after) is safe


QUORUMTOOL = """Quorum information
------------------
Date:             Fri Nov 27 12:16:44 2026
Quorum provider:  corosync_votequorum
Nodes:            2
Node ID:          1
Ring ID:          1.2d
Quorate:          Yes

Votequorum information
----------------------
Expected votes:   2
Highest expected: 2
Total votes:      2
Quorum:           1
Flags:            2Node Quorate WaitForAll

Membership information
----------------------
    Nodeid      Votes Name
         1          1 pg1 (local)
         2          1 pg2
"""


@pytest.mark.parametrize("output, status, expected", [
    (QUORUMTOOL, 0, ("1.2d", frozenset({"pg1", "pg2"}))),       # corosync 3.1's own words, from a lab node
    (QUORUMTOOL.replace("Quorate:          Yes", "Quorate:          No").replace("         2          1 pg2\n", ""),
     2, ("1.2d", frozenset({"pg1"}))),                          # the exit status tells quorum, not failure
])
def test_ring_reads_corosync_quorumtool(tmp_path, monkeypatch, output, status, expected):
    tool = tmp_path / "corosync-quorumtool"
    tool.write_text(f"#!/bin/sh\ncat <<'EOF'\n{output}EOF\nexit {status}\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    assert GUARD.NodeIO(SETTINGS).ring() == expected


def test_ring_without_corosync_is_no_decision(tmp_path, monkeypatch):
    tool = tmp_path / "corosync-quorumtool"
    tool.write_text("#!/bin/sh\necho 'Cannot initialize QUORUM service' >&2\nexit 1\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    with pytest.raises(ValueError, match="Cannot initialize QUORUM service"):
        GUARD.NodeIO(SETTINGS).ring()


def test_async_never_waits_and_reports_streaming():
    assert decide(mode="async", ssn=SYNC).actions == [ssn("")]
    plan = decide(mode="async", ssn="", row=None)
    assert plan.status == "async" and plan.actions == [attr("bravo", "0")]


def test_primary_marks_itself_promotable():
    assert decide(attrs={"bravo": "1"}).actions == [attr("alpha", "1")]


def test_names_are_quoted_for_synchronous_standby_names():
    assert GUARD.wanted_ssn(['b"x', "a"]) == 'ANY 1 ("a", "b""x")'


@pytest.mark.parametrize("role", ["heartbeat", "replication"])
def test_public_variables_are_prefixed_defaulted_and_declared(role):
    public = set(defaults(role))
    assert all(name.startswith(role + "_") for name in public), sorted(public)
    spec = yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]
    assert set(spec["options"]) == public


@pytest.mark.parametrize("bravo_state, expected", [
    ('in_ccm="true" crmd="online" join="member" expected="member"', "member"),
    ('in_ccm="false" crmd="offline" join="down" expected="member"', "unclean"),  # lost, not fenced yet
    ('in_ccm="false" crmd="offline" join="down" expected="down"', "clean"),  # fenced or shut down
])
def test_membership_reads_real_crm_mon_output(tmp_path, monkeypatch, bravo_state, expected):
    require("crm_mon", "cibadmin")
    blank = subprocess.run(["cibadmin", "--empty"], capture_output=True, text=True, check=True).stdout
    status = ('<status><node_state id="1" uname="alpha" in_ccm="true" crmd="online" join="member" '
              f'expected="member"/><node_state id="2" uname="bravo" {bravo_state}/></status>')
    cib = tmp_path / "cib.xml"
    cib.write_text(blank.replace("<cib ", '<cib have-quorum="1" ', 1)
                   .replace("<nodes/>", '<nodes><node id="1" uname="alpha"/><node id="2" uname="bravo"/></nodes>')
                   .replace("<status/>", status))
    monkeypatch.setenv("CIB_file", str(cib))
    assert GUARD.NodeIO(SETTINGS).read_status(["bravo"]) == ({"bravo": expected}, True)


@pytest.mark.parametrize("value, fencing", [("false", False), ("true", True)])
def test_fencing_is_read_from_the_cib(tmp_path, monkeypatch, value, fencing):
    require("crm_mon", "cibadmin", "crm_attribute")
    blank = subprocess.run(["cibadmin", "--empty"], capture_output=True, text=True, check=True).stdout
    cib = tmp_path / "cib.xml"
    cib.write_text(blank.replace("<cib ", '<cib have-quorum="1" ', 1)
                   .replace("<nodes/>", '<nodes><node id="1" uname="alpha"/><node id="2" uname="bravo"/></nodes>'))
    monkeypatch.setenv("CIB_file", str(cib))
    subprocess.run(["crm_attribute", "--type", "crm_config", "--name", "stonith-enabled", "--update", value],
                   check=True, capture_output=True)
    assert GUARD.NodeIO(SETTINGS).read_status(["bravo"])[1] is fencing


@pytest.fixture
def failing_cluster(tmp_path):
    """PATH stand-ins for a node where every read fails (PostgreSQL down, the CIB busy) except
    crm_attribute, whose calls are logged: what the guard publishes when it cannot decide."""
    log = tmp_path / "attr.log"
    for tool in ("psql", "crm_mon", "corosync-quorumtool", "runuser"):
        (tmp_path / tool).write_text("#!/bin/sh\necho 'could not connect' >&2\nexit 2\n")
    (tmp_path / "crm_attribute").write_text(f"#!/bin/sh\necho \"$*\" >> {log}\n")
    for f in tmp_path.iterdir():
        f.chmod(0o755)
    return tmp_path, log


def _settings_file(tmp_path, **values):
    path = tmp_path / "guard.json"
    path.write_text(json.dumps({"mode": "sync", "nodes": ["alpha", "bravo"], "self_name": "alpha", **values}))
    return path


def _guard_process(bin_dir, settings, *extra):
    return subprocess.Popen(guard_command(settings, *extra), env=dict(os.environ, PATH=f"{bin_dir}:/usr/bin:/bin"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _published(log) -> list:
    if not log.exists():
        return []
    return [line.split("--update ")[-1] for line in log.read_text().splitlines()
            if "--name ec2ha-pgsql-replication" in line]


def test_a_pass_that_cannot_decide_publishes_unknown_and_stop_publishes_stopped(failing_cluster, tmp_path):
    # Before: a skipped pass left the last state ("sync") on display, and so did a stopped guard.
    bin_dir, log = failing_cluster
    guard = _guard_process(bin_dir, _settings_file(tmp_path, interval=0.2))
    deadline = time.monotonic() + 20
    while "unknown" not in _published(log) and time.monotonic() < deadline:
        time.sleep(0.1)
    guard.send_signal(signal.SIGTERM)
    assert guard.wait(timeout=20) == 0, guard.stderr.read()
    assert _published(log) == ["unknown", "stopped"]


def test_check_fails_and_publishes_unknown_when_passes_stop_deciding(failing_cluster, tmp_path):
    bin_dir, log = failing_cluster
    pass_file, pid_file = tmp_path / "guard.pass", tmp_path / "guard.pid"
    run = guard_command(_settings_file(tmp_path, pass_file=str(pass_file), pid_file=str(pid_file), stale_after=30),
                        "--check")
    env = dict(os.environ, PATH=f"{bin_dir}:/usr/bin:/bin")
    # The agent's start runs the hook right after it spawned the guard (its pid file is new):
    # that guard has not decided yet and must not fail its start (seen in the lab: it did).
    pid_file.write_text("4242\n")
    assert subprocess.run(run, env=env, capture_output=True, text=True, check=False).returncode == 0
    old = time.time() - 31
    os.utime(pid_file, (old, old))
    never = subprocess.run(run, env=env, capture_output=True, text=True, check=False)
    assert never.returncode == 1 and "no decided pass yet" in never.stderr
    pass_file.touch()
    assert subprocess.run(run, env=env, capture_output=True, text=True, check=False).returncode == 0
    old = time.time() - 31
    os.utime(pass_file, (old, old))
    stale = subprocess.run(run, env=env, capture_output=True, text=True, check=False)
    assert stale.returncode == 1 and "last decided pass 31 s ago" in stale.stderr
    assert _published(log) == ["unknown", "unknown"]


@pytest.mark.parametrize("settings, message", [
    ({"nodes": ["alpha", "bravo"]}, "settings ['mode'] are required"),
    ({"mode": "semi", "nodes": ["alpha", "bravo"]}, "mode is 'semi'; expected sync or async"),
    ({"mode": "sync", "nodes": ["alpha"]}, "nodes is ['alpha']; expected the Pacemaker names"),
    ({"mode": "sync", "nodes": ["alpha", "bravo"], "interval_s": 2}, "unknown settings ['interval_s']"),
])
def test_bad_settings_are_one_sentence_and_nothing_runs(failing_cluster, tmp_path, settings, message):
    bin_dir, log = failing_cluster
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(settings))
    done = subprocess.run(guard_command(path, "--once"), env=dict(os.environ, PATH=f"{bin_dir}:/usr/bin:/bin"),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert _published(log) == []


def test_a_node_outside_the_settings_nodes_refuses_to_run(failing_cluster, tmp_path):
    bin_dir, log = failing_cluster
    done = subprocess.run(guard_command(_settings_file(tmp_path, self_name="charlie"), "--once"),
                          env=dict(os.environ, PATH=f"{bin_dir}:/usr/bin:/bin"), capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2 and "self_name 'charlie' is not one of nodes ['alpha', 'bravo']" in done.stderr
    assert _published(log) == []


def test_stale_reason_counts_a_fresh_start_as_deciding():
    assert GUARD.stale_reason(100.0, None, 80.0, 30) == ""
    assert GUARD.stale_reason(100.0, None, 60.0, 30) == "sync guard stale: no decided pass yet (limit 30 s)"
    assert GUARD.stale_reason(100.0, 69.0, 60.0, 30) == "sync guard stale: last decided pass 31 s ago (limit 30 s)"
