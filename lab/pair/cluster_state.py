"""What a node of the lab cluster says about itself, read over SSH for tests and benches.

    sql(s, "pg1", "SELECT 1")          # psql as postgres on the node's own socket -> stdout
    pids(s, "pg1")                     # {"corosync": 123, "pacemakerd": 456, "postmaster": 789}
    ring_id(s, "pg1")                  # corosync's ring id ("1.2d")
    runtime_token(s, "pg1")            # the token timeout corosync runs with (ms)
    cib_epoch(s, "pg1")                # the CIB configuration's (admin_epoch, epoch)
    cib_written_by_us(s, "pg1")        # the configuration the roles and modules write (no nodes section)
    timeline(s, "pg2")                 # the timeline the node writes (primary) or receives (standby)
    replay_lag(s, "pg1", "pg2")        # bytes pg2's replay is behind pg1
    move_constraints(s, "pg1")         # ids of the cli- and ec2ha-move- constraints in the CIB
"""

from __future__ import annotations

import re
import shlex
from typing import Dict, List, Optional, Tuple

from lab.pair import cluster

PGDATA = "/var/lib/postgresql/15/main"      # the replication role's default for PostgreSQL 15


def run(s: cluster.Settings, node: str, command: str, timeout: float = 30) -> str:
    """The command's stdout on the node; RuntimeError (with its stderr) when it fails."""
    done = cluster.ssh(s, cluster.node_address(node), command, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{node}: {command}: {done.stderr.strip()[-300:]}")
    return done.stdout


def sql(s: cluster.Settings, node: str, query: str, timeout: float = 30) -> str:
    """One query as the postgres superuser on the node's own socket; its unaligned output."""
    return run(s, node, "cd /tmp && runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -d postgres -c "
               + shlex.quote(query), timeout=timeout).strip()


def pids(s: cluster.Settings, node: str) -> Dict[str, Optional[int]]:
    """The process ids that a restart of the cluster stack or of PostgreSQL would change."""
    out = run(s, node, f"pidof corosync; pidof pacemakerd; head -1 {PGDATA}/postmaster.pid 2>/dev/null; true")
    values = [int(v.split()[0]) if v.strip() else None for v in out.splitlines()] + [None] * 3
    return dict(zip(("corosync", "pacemakerd", "postmaster"), values[:3]))


def ring_id(s: cluster.Settings, node: str) -> str:
    match = re.search(r"^Ring ID:\s*(\S+)", run(s, node, "corosync-quorumtool -s; true"), re.M)
    return match.group(1) if match else ""


def runtime_token(s: cluster.Settings, node: str) -> int:
    return int(run(s, node, "corosync-cmapctl -g runtime.config.totem.token").split("=")[-1])


def cib_epoch(s: cluster.Settings, node: str) -> Tuple[int, int]:
    """(admin_epoch, epoch) of the CIB: any change of its configuration raises epoch."""
    head = run(s, node, "cibadmin --query | head -1")
    return tuple(int(re.search(rf'\b{name}="(\d+)"', head).group(1)) for name in ("admin_epoch", "epoch"))


def cib_written_by_us(s: cluster.Settings, node: str) -> str:
    """The CIB configuration without its nodes section: what the roles and modules write. The sync
    guard keeps its permanent attribute (ec2ha-pgsql-sync, lifetime forever) in the nodes section,
    so a standby getting in sync raises the epoch by itself (seen in CI: +2 while site.yml only read)."""
    configuration = run(s, node, "cibadmin --query --scope configuration")
    return re.sub(r"<nodes>.*?</nodes>", "", configuration, flags=re.DOTALL)


def timeline(s: cluster.Settings, node: str) -> int:
    """The timeline a primary writes, or a standby's walreceiver receives (0: not receiving)."""
    if sql(s, node, "SELECT pg_is_in_recovery()") == "f":
        return int(sql(s, node, "SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int"))
    received = sql(s, node, "SELECT received_tli FROM pg_stat_wal_receiver")
    return int(received) if received else 0


def replication_state(s: cluster.Settings, primary: str, standby: str) -> str:
    """The standby's state as the primary's pg_stat_replication shows it ("" when absent)."""
    return sql(s, primary, f"SELECT state FROM pg_stat_replication WHERE application_name = '{standby}'")


def replay_lag(s: cluster.Settings, primary: str, standby: str) -> int:
    """Bytes the standby's replay is behind the primary's WAL (-1: not in pg_stat_replication)."""
    out = sql(s, primary, "SELECT coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), -1)"
                          f"::bigint FROM pg_stat_replication WHERE application_name = '{standby}'")
    return int(out or -1)


def move_constraints(s: cluster.Settings, node: str) -> List[str]:
    """The ids of the move constraints in the CIB: crm_resource's (cli-) and the switchover's."""
    return re.findall(r'<rsc_location id="((?:cli-|ec2ha-move-)[^"]+)"',
                      run(s, node, "cibadmin --query --scope constraints"))
