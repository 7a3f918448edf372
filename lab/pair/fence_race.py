"""A partition between the two nodes under client writes: who wins the fence race.

    race = partition_once(settings)   # cut, wait until one node is fenced, heal, rejoin the loser
    race.primary_survived             # the node that ran the primary is the one left standing

Both nodes stay up and keep reaching AWS; only the link between them is cut
(lab/emulator/dataplane/partition.py).
Each side loses the other after the token timeout and tries to fence it. The heartbeat role sets
priority-fencing-delay and the replication role gives the PostgreSQL clone a priority, so fencing
that targets the primary waits and the primary fences the standby first. Observed from outside:
which node Pacemaker still promotes, which instance fence_aws restarted, and the client's rows
(who acknowledged each write, none missing). `python -m lab.pair.fence_race [RUNS]` prints each run.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from lab import helpers
from lab.emulator.dataplane import partition
from lab.pair import client, cluster, health


@dataclass
class Race:
    """One partition: seconds after the cut, who was fenced, what the client saw."""

    primary: str
    standby: str
    fenced: Optional[str] = None              # the node fence_aws restarted (from the survivor's log)
    promoted_after: Optional[str] = None      # the node Pacemaker promotes once fencing settled
    servers: List[str] = field(default_factory=list)   # who acknowledged writes after the cut
    acknowledged: int = 0
    missing: List[int] = field(default_factory=list)
    stall: Optional[float] = None             # longest wait for one commit after the cut
    events: Dict[str, Optional[float]] = field(default_factory=dict)
    at: float = 0.0                                               # the cut, epoch s
    writes: List[client.Write] = field(default_factory=list)      # everything the client saw

    @property
    def primary_survived(self) -> bool:
        return self.fenced == self.standby and self.promoted_after == self.primary

    def lines(self) -> List[str]:
        ev = " / ".join(f"{k} {v:.1f}" if v is not None else f"{k} ?" for k, v in self.events.items())
        return [
            f"partitioned: {self.primary} (primary) | {self.standby} (standby)",
            f"after the cut (s): {ev}",
            f"fenced: {self.fenced}; promoted after: {self.promoted_after}; "
            f"primary survived: {'yes' if self.primary_survived else 'NO'}",
            f"writes after the cut acknowledged by: {', '.join(self.servers) or '-'}; "
            f"longest commit wait {helpers.fmt(self.stall)} s",
            f"rows acknowledged {self.acknowledged}, acknowledged but missing {len(self.missing)}",
        ]


def _fenced(s: cluster.Settings, survivor: str, loser: str, since: float) -> Optional[float]:
    """When `survivor`'s log says it fenced `loser`; None while not (or while `survivor`, being
    fenced itself and rebooting, cannot be asked)."""
    try:
        return health.log_events(s, survivor, loser, since)["fenced"]
    except subprocess.TimeoutExpired:
        return None


def partition_once(s: cluster.Settings, warmup: int = 20, settle: float = 120) -> Race:
    """Cut the link between the nodes under writes; heal once a node is fenced; rejoin it."""
    primary, standby = cluster.primary_and_standby(s)
    race = Race(primary=primary, standby=standby)
    links = [cluster.node_eni(s, n) for n in (primary, standby)]
    with client.writing(s, primary, warmup) as writer:
        at = race.at = time.time()
        partition.cut(links)
        try:
            # Whichever node fenced the other says so in its own log; ask both.
            def fenced_node() -> Optional[str]:
                for survivor, loser in ((primary, standby), (standby, primary)):
                    if _fenced(s, survivor, loser, at):
                        return loser
                return None
            race.fenced = helpers.wait_for(fenced_node, settle, 1, "one node of the partition to be fenced")
        finally:
            partition.heal()
        survivor = primary if race.fenced == standby else standby
        helpers.wait_for(lambda: len([w for w in writer.snapshot() if w.ok and w.t0 > time.time() - 1
                                      and w.server == survivor]) > 0,
                         settle, 0.5, f"writes served by {survivor} after the partition")
        healed = time.time()
        helpers.wait_for(lambda: len([w for w in writer.snapshot() if w.ok and w.t0 > healed]) >= 5,
                         30, 0.2, "writes after the partition")
    race.promoted_after = cluster.promoted_node(s, via=[cluster.node_address(survivor)])
    race.writes = writer.snapshot()
    after = [w for w in race.writes if w.t1 >= at]
    race.servers = sorted({w.server for w in after if w.ok})
    race.stall = client.longest_gap(race.writes, at)
    acked = writer.acknowledged()
    race.acknowledged = len(acked)
    race.missing = sorted(set(acked) - client.rows_present(s))
    seen = health.log_events(s, survivor, race.fenced, at)
    race.events = {k: (seen[k] - at if seen[k] else None) for k in ("lost", "fenced")}
    if race.fenced == standby:
        restart_standby(s, standby)
    else:
        health.rejoin(s, race.fenced)      # a fenced primary must be rewound first
    return race


def restart_standby(s: cluster.Settings, node: str, timeout: float = 180) -> None:
    """A fenced standby boots without its cluster stack (it is not started at boot, for the sake of
    fenced primaries); its data is a standby's, so starting the stack is all its rejoin needs."""
    cluster.wait_for_ssh(s, node)
    done = cluster.ssh(s, cluster.node_address(node), "service corosync start && service pacemaker start", timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"starting the cluster stack on {node} failed: {done.stderr.strip()[-300:]}")
    helpers.wait_for(lambda: health.healthy(s), timeout, 1, f"{node} back as a standby in sync")


def main(argv: List[str]) -> int:
    """[RUNS] partitions (default 10); each loser is rejoined before the next run."""
    runs = int(argv[0]) if argv and argv[0].isdigit() else 10
    s = health.ensure_cluster()
    races = []
    for index in range(runs):
        helpers.wait_for(lambda: health.healthy(s), 300, 1, f"a healthy pair before partition {index + 1}")
        race = partition_once(s)
        races.append(race)
        print(f"--- partition {index + 1}/{runs}")
        print("\n".join(race.lines()), flush=True)
    won = sum(r.primary_survived for r in races)
    print(f"primary survived {won} of {runs} partitions; rows acknowledged {sum(r.acknowledged for r in races)}, "
          f"missing {sum(len(r.missing) for r in races)}")
    return 0 if won == runs else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
