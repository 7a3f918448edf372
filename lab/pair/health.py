"""The pair's health as Pacemaker reports it, its log's events, and putting it back together.

    settings = ensure_cluster()          # the lab up (`python -m lab up`) and site.yml run
    healthy(settings)                    # a promoted and an in-sync, promotable standby
    pair_roles(settings)                 # {node: Promoted | Unpromoted | ...}
    log_events(settings, survivor, failed, since)   # epoch of lost/fenced/promoted/endpoints moved
    rejoin(settings, node)               # playbooks/rejoin.yml, then a healthy pair again
    make_whole(settings)                 # every node back in, standby in sync, no failed action
    failed_actions(settings)             # ["<op_key> on <node>", ...] as crm_mon shows them
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET  # nosec B405 - crm_mon's own output
from typing import Dict, List, Optional

from lab import helpers, topology
from lab.emulator import lifecycle
from lab.emulator.dataplane import probe
from lab.pair import client, cluster, pacemaker_log


def ensure_cluster(log_name: str = "site.log") -> cluster.Settings:
    """The lab up and the pair built by playbooks/site.yml (a no-op run when it is)."""
    info = lifecycle.lab_info()
    if not info:
        result = cli_command("up")
        if result.returncode != 0:
            raise RuntimeError("lab up failed: " + result.stderr.strip()[-300:])
        info = lifecycle.lab_info()
    settings = cluster.prepare(info)
    run = cluster.run_playbook("playbooks/site.yml", settings, log=cluster.WORK_DIR / log_name)
    if run.rc != 0:
        raise RuntimeError(f"site.yml failed (rc {run.rc}); see {cluster.WORK_DIR / log_name}")
    return settings


def cli_command(*args: str):
    env = dict(os.environ, PYTHONPATH=str(topology.REPO))
    return subprocess.run([sys.executable, "-m", "lab", *args], cwd=topology.REPO, env=env,
                          capture_output=True, text=True, timeout=180, check=False)


def _crm_mon(s: cluster.Settings) -> Optional[ET.Element]:
    """crm_mon's XML status from any reachable node (an unreachable one just means: ask the other)."""
    for address in (node[2] for node in cluster.NODES):
        try:
            out = cluster.ssh(s, address, "crm_mon -1 --include=attributes --output-as=xml", timeout=15)
        except subprocess.TimeoutExpired:
            continue
        if out.returncode == 0:
            try:
                return ET.fromstring(out.stdout)
            except ET.ParseError:
                continue
    return None


def _roles(status: Optional[ET.Element]) -> Dict[str, str]:
    """{node: Promoted|Unpromoted|Stopped...} of the pgsqld clone in crm_mon's XML."""
    if status is None:
        return {}
    return {node.get("name"): resource.get("role")
            for resource in status.iter("resource") if resource.get("id") == "pgsqld"
            for node in resource.findall("node")}


def pair_roles(s: cluster.Settings) -> Dict[str, str]:
    """The pgsqld clone's roles, as crm_mon on a reachable node reports them."""
    return _roles(_crm_mon(s))


def failed_actions(s: cluster.Settings) -> List[str]:
    """"<op_key> on <node>" for every failed action crm_mon shows."""
    status = _crm_mon(s)
    return [] if status is None else [f"{f.get('op_key')} on {f.get('node')}" for f in status.iter("failure")]


def healthy(s: cluster.Settings) -> bool:
    """A promoted and an unpromoted PostgreSQL, the standby in sync and promotable: only then
    does a failover promote it (the sync guard and PAF's score gate promotion, by design).
    Roles and node attributes come from one crm_mon call."""
    status = _crm_mon(s)
    roles = _roles(status)
    if sorted(roles.values()) not in (["Promoted", "Unpromoted"], ["Master", "Slave"]):
        return False
    standby = next(n for n, r in roles.items() if r in ("Unpromoted", "Slave"))
    node = status.find(f"node_attributes/node[@name='{standby}']")
    attrs = {a.get("name"): a.get("value") for a in node.findall("attribute")} if node is not None else {}
    return attrs.get("ec2ha-pgsql-sync") == "1" and int(attrs.get("master-pgsqld", "-1")) >= 0


def run_rejoin(s: cluster.Settings, node: str, extra: Optional[List[str]] = None) -> cluster.PlaybookRun:
    """playbooks/rejoin.yml for the node (started first if its instance is stopped), as it ran."""
    cluster.ensure_running(s, node)
    return cluster.run_playbook("playbooks/rejoin.yml", s, log=cluster.WORK_DIR / "rejoin.log",
                                extra=["-e", f"ec2ha_rejoin_node={node}", *(extra or [])])


def rejoin(s: cluster.Settings, node: str, timeout: float = 240, extra: Optional[List[str]] = None) -> str:
    """Rejoin the node (playbooks/rejoin.yml) and wait for a healthy pair; returns its role."""
    run = run_rejoin(s, node, extra)
    if run.rc != 0:
        raise RuntimeError(f"rejoin.yml failed (rc {run.rc}); see {cluster.WORK_DIR / 'rejoin.log'}")
    helpers.wait_for(lambda: pair_roles(s).get(node) in ("Unpromoted", "Slave"), timeout, 2,
                     f"{node} to run as a standby")
    helpers.wait_for(lambda: healthy(s), 180, 1, "a healthy pair (standby in sync)")
    return pair_roles(s)[node]


def make_whole(s: cluster.Settings, cleanup: bool = True, timeout: float = 180) -> None:
    """The pair as a fault run or a test module starts from: a node left out (fenced, powered off,
    or back but not streaming in sync) rejoined, the standby in sync; with cleanup, no failed
    action left (crm_resource --cleanup), as an operator leaves it."""
    roles = pair_roles(s)
    if list(roles.values()).count("Promoted") == 1:
        for name, _subnet, _address in cluster.NODES:
            if roles.get(name) not in ("Promoted", "Unpromoted"):
                rejoin(s, name)
    if not helpers.poll(lambda: healthy(s), timeout, 1):
        roles = pair_roles(s)
        stray = [n for n, r in roles.items() if r not in ("Promoted", "Master")]
        if list(roles.values()).count("Promoted") != 1 or len(stray) != 1:
            raise RuntimeError(f"the pair cannot be made whole by a rejoin: roles {roles}")
        rejoin(s, stray[0])           # up but not in sync (say, restarted on a diverged timeline)
    if cleanup:
        primary = cluster.promoted_node(s)
        cluster.ssh(s, cluster.node_address(primary), "crm_resource --cleanup", timeout=60)
        helpers.wait_for(lambda: not failed_actions(s), 60, 1, "no failed action left")
        helpers.wait_for(lambda: healthy(s), timeout, 1, "a healthy pair after the cleanup")


def log_events(s: cluster.Settings, survivor: str, failed: str, since: float) -> Dict[str, Optional[float]]:
    """Event times (epoch) from the survivor's pacemaker.log, first occurrence after `since`."""
    patterns = {
        "lost": rf"Node {failed} state is now lost",
        "fenced": rf"Operation '\w+' .*targeting {failed} .*(OK|ok)",
        "promoted": pacemaker_log.succeeded("promote", "pgsqld", survivor),
        **{kind: pacemaker_log.succeeded("start", resource, survivor) for kind, resource in cluster.RESOURCES.items()},
    }
    return pacemaker_log.first_events(s, survivor, patterns, since)


def resolves(ns: str, name: str) -> tuple:
    """The addresses a client in `ns` gets for `name` from its resolver; () when it gets none."""
    try:
        return tuple(probe.resolve(ns, name.rstrip(".")).addresses)
    except probe.ProbeError:
        return ()


def who_serves(ns: str, host: str) -> Optional[str]:
    out = client.psql_in(ns, "SELECT lab_node()", host=host)
    return out.stdout.strip() if out.returncode == 0 else None


def node_attribute(s: cluster.Settings, on: str, node: str, name: str, lifetime: str) -> Optional[str]:
    """A node attribute as Pacemaker stores it (crm_attribute, asked on node `on`); None if unset."""
    out = cluster.ssh(s, cluster.node_address(on),
                      f"crm_attribute -N {node} -n {name} -l {lifetime} -G -q", timeout=15)
    return (out.stdout.strip() or None) if out.returncode == 0 else None
