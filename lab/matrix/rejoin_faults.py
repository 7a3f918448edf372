"""The matrix's faults that end with the old primary rejoining while the new primary is under
writes (playbooks/rejoin.yml): after the primary was powered off and the standby took over, its
data is rewound onto the new timeline (pg_rewind), or, when the WAL pg_rewind needs is gone from
it, replaced by a full copy (pg_basebackup). Either way it must come back as a standby in sync
holding every acknowledged row, with the client never cut off by the rejoin itself.
"""

from __future__ import annotations

import time

from lab import helpers
from lab.matrix.invariants import Before
from lab.matrix.trial import Trial, more_writes
from lab.pair import client, cluster, cluster_state, health

COPY_SAID = "pg_rewind failed ("          # the play's "Say why a full copy is needed"


def _rejoin_under_writes(s: cluster.Settings, index: int, path: str) -> Trial:
    before = Before.read(s)
    old = before.primary
    with client.writing(s, old) as writer:
        at = time.time()
        cluster.stop_instance(s, old)
        helpers.wait_for(lambda: writer.ok_after(at, before.standby), 240, 0.5,
                         f"writes acknowledged by {before.standby}")
        cluster.ensure_running(s, old)
        if path == "copy":
            # The WAL pg_rewind would read back to the last common checkpoint, gone (a lost disk).
            cluster_state.run(s, old, f"rm -f {cluster_state.PGDATA}/pg_wal/0000*")
        rejoin_at = time.time()
        run = health.run_rejoin(s, old)
        if run.rc == 0:
            helpers.wait_for(lambda: health.healthy(s), 240, 1, f"{old} back as a standby in sync")
        more_writes(writer)
    writes = writer.snapshot()
    taken = "copy" if COPY_SAID in run.output else "rewind"
    trial = Trial(before, at, writes, failover=True, quiet=False,
                  figures={"path": taken, "rejoin_s": round(run.seconds, 1),
                           "outage_during_rejoin": helpers.fmt(client.longest_gap(writes, rejoin_at))})
    if run.rc != 0:
        trial.violations.append(f"rejoin.yml failed (rc {run.rc}); see {cluster.WORK_DIR / 'rejoin.log'}")
        return trial
    if taken != path:
        trial.violations.append(f"the rejoin took the {taken} path, expected {path}")
    acked = {w.seq for w in writes if w.ok}
    held = {int(seq) for seq in cluster_state.sql(s, old, "SELECT seq FROM ticks").split()}
    if acked - held:
        trial.violations.append(f"{len(acked - held)} acknowledged rows missing on the rejoined {old}")
    return trial


def rewind_under_writes(s: cluster.Settings, index: int) -> Trial:
    return _rejoin_under_writes(s, index, "rewind")


def copy_under_writes(s: cluster.Settings, index: int) -> Trial:
    return _rejoin_under_writes(s, index, "copy")
