"""The matrix's faults that meet a planned switchover (playbooks/switchover.yml, as AWX runs it):
the AWS API throttling and failing with 5xx while it moves the endpoints, two started at once, one
to a standby whose replay lags, one to a standby powered off. Each runs under client writes; the
refused ones must leave the CIB and AWS as they were (invariants.Untouched).
"""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Tuple

from lab import helpers
from lab.emulator import faults
from lab.matrix.invariants import Before, Untouched
from lab.matrix.trial import Trial, more_writes
from lab.pair import client, cluster, cluster_state, health

# The calls that move an endpoint, each answered first with throttling, then with 503s: more
# failures in a row than one converge's attempts (recovery_kit_max_attempts 3), fewer than the
# start's deadline lets the agent try again (its converge retried until the action's timeout).
MOVES = (("ec2", "ReplaceRoute", "RequestLimitExceeded"), ("ec2", "AssociateAddress", "RequestLimitExceeded"),
         ("route53", "ChangeResourceRecordSets", "Throttling"))
BURST = 3                    # throttled answers, then as many 503s, per call that moves an endpoint

# What a refusal looks like: the module's gates, or the playbook's own check of the endpoints.
REFUSALS = ("Switchover refused, gate ", "The endpoints are not all on one node before the switchover")


def switchover(s: cluster.Settings, target: str, log: str) -> cluster.PlaybookRun:
    return cluster.run_playbook("playbooks/switchover.yml", s, log=cluster.WORK_DIR / log,
                                extra=["-e", f"ec2ha_switchover_target={target}"])


def failure_message(run: cluster.PlaybookRun) -> str:
    """The msg of the play's first failed task ("" when none failed)."""
    found = re.search(r'FAILED! => .*?"msg": ("(?:[^"\\]|\\.)*")', run.output, re.DOTALL)
    return json.loads(found.group(1)) if found else ""


def _refused(s: cluster.Settings, before: Before, gate: str, log: str) -> Tuple[List[str], Dict[str, Any]]:
    """A switchover to the standby that must be refused at `gate`, and change nothing."""
    untouched = Untouched.read(s, before.primary)
    run = switchover(s, before.standby, log)
    reason = failure_message(run)
    violations = untouched.changes(s, before.primary)
    if run.rc == 0:
        violations.append(f"the switchover to {before.standby} ran (rc 0), expected refused at gate {gate}")
    elif not reason.startswith(f"Switchover refused, gate {gate}: "):
        violations.append(f"refused, but not at gate {gate}: {reason or 'no message'}")
    return violations, {"refusal": reason}


def to_lagging_standby(s: cluster.Settings, index: int) -> Trial:
    # Replay paused on the standby under writes: it still receives and flushes (commits are
    # acknowledged), but promoting it would wait on replay.
    before = Before.read(s)
    with client.writing(s, before.primary) as writer:
        cluster_state.sql(s, before.standby, "SELECT pg_wal_replay_pause()")
        try:
            helpers.wait_for(lambda: cluster_state.replay_lag(s, before.primary, before.standby) > 0, 30, 0.5,
                             f"{before.standby}'s replay behind")
            at = time.time()
            violations, figures = _refused(s, before, "target streaming within the lag",
                                           f"faults-lagging-{index}.log")
        finally:
            cluster_state.sql(s, before.standby, "SELECT pg_wal_replay_resume()")
        more_writes(writer)
    return Trial(before, at, writer.snapshot(), failover=False, quiet=True, figures=figures, violations=violations)


def to_stopped_standby(s: cluster.Settings, index: int) -> Trial:
    # The standby powered off and fenced: the switchover must not start on a pair of one.
    before = Before.read(s)
    with client.writing(s, before.primary) as writer:
        at = time.time()
        cluster.stop_instance(s, before.standby)
        helpers.wait_for(lambda: health.pair_roles(s).get(before.standby) is None, 120, 1,
                         f"{before.standby} gone from the cluster")
        violations, figures = _refused(s, before, "online and quorate", f"faults-stopped-{index}.log")
        more_writes(writer)
    health.rejoin(s, before.standby)
    return Trial(before, at, writer.snapshot(), failover=False, quiet=False, figures=figures, violations=violations)


def two_at_once(s: cluster.Settings, index: int) -> Trial:
    # Two AWX jobs switching over to the standby at the same moment: one moves the primary, the
    # other is refused with a reason (or, started late, finds it already there: no change).
    before = Before.read(s)
    with client.writing(s, before.primary) as writer:
        at = time.time()
        with ThreadPoolExecutor(2) as pool:
            runs = list(pool.map(lambda job: switchover(s, before.standby, f"faults-two-{index}-{job}.log"), (1, 2)))
        if any(r.rc == 0 for r in runs):
            helpers.wait_for(lambda: writer.ok_after(at, before.standby), 60, 0.2,
                             f"a write acknowledged by {before.standby}")
        more_writes(writer)
    moved = [r for r in runs if r.rc == 0 and r.changed()]
    others = [r for r in runs if r not in moved]
    violations = [] if len(moved) == 1 else [f"{len(moved)} of the two switchovers moved the primary, expected 1"]
    answers = []
    for run in others:
        reason = failure_message(run)
        answers.append(reason if run.rc else "no change (already there)")
        if run.rc and not reason.startswith(REFUSALS):
            violations.append(f"the other switchover failed without a refusal: {reason or 'no message'}")
    left = cluster_state.move_constraints(s, before.standby)
    if left:
        violations.append(f"move constraints left: {', '.join(left)}")
    return Trial(before, at, writer.snapshot(), failover=True, quiet=True,
                 figures={"the other": answers}, violations=violations)


def aws_throttled_during_move(s: cluster.Settings, index: int) -> Trial:
    # The switchover completes through the agents' bounded retries; nothing fails, nothing fenced.
    url = s.info["endpoint_url"]
    before = Before.read(s)
    rules = {}                                   # what each rule stands for -> the rule
    for service, action, throttled in MOVES:
        rules[f"{action} {throttled}"] = {"service": service, "action": action, "error": throttled, "count": BURST}
        rules[f"{action} 503"] = {"service": service, "action": action, "count": BURST,
                                  "error": {"code": "ServiceUnavailable", "status": 503, "message": "burst"}}
    with client.writing(s, before.primary) as writer:
        ids = {faults.inject(url, rule)["id"]: label for label, rule in rules.items()}
        at = time.time()
        run = switchover(s, before.standby, f"faults-throttled-{index}.log")
        hits = {rule["id"]: rule["hits"] for rule in faults.rules(url) if rule["id"] in ids}
        faults.clear(url)
        if run.rc == 0:
            helpers.wait_for(lambda: writer.ok_after(at, before.standby), 60, 0.2,
                             f"a write acknowledged by {before.standby}")
        more_writes(writer)
    refused = sum(hits.values())
    trial = Trial(before, at, writer.snapshot(), failover=True, quiet=True,
                  figures={"calls_refused": refused, "switchover_s": round(run.seconds, 1)})
    if run.rc != 0:
        trial.violations.append(f"the switchover failed: {failure_message(run) or 'rc ' + str(run.rc)}")
    unmet = [label for rule_id, label in ids.items() if not hits.get(rule_id)]
    if unmet:
        trial.violations.append(f"no call met the injected answers of {', '.join(unmet)}: the fault never happened")
    return trial
