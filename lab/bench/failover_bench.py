"""Unplanned failover of the lab cluster pair, measured: `python -m lab.bench.failover_bench [RUNS]`.

One run: a client in CLIENT_NS writes numbered rows through the VIP (one INSERT per transaction,
connect_timeout 2); the promoted node is powered off (StopInstances Force: the lab kills its
host's PID 1); Pacemaker on the survivor notices, fences (fence_aws), promotes, and our agents
move the three endpoints. The timeline comes from two clocks that are the same clock (the lab's
hosts are namespaces of this machine): the client's own timestamps, and the survivor's
pacemaker.log. Afterwards the fenced node is started again (if fencing did not already) and
rejoined as a standby (playbooks/rejoin.yml), so the next run starts from a healthy pair.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from lab import helpers, topology
from lab.emulator import lifecycle
from lab.pair import client, cluster, health


@dataclass
class Timeline:
    """Seconds after the power-off, as observed; None where the event was not seen."""

    failed: str
    survivor: str
    events: Dict[str, Optional[float]] = field(default_factory=dict)
    outage: Optional[float] = None
    acknowledged: int = 0
    present: int = 0
    missing: List[int] = field(default_factory=list)
    served_by: Optional[str] = None
    eip_serves: Optional[str] = None
    dns_answer: List[str] = field(default_factory=list)
    failed_state_after: str = ""
    rejoined_as: Optional[str] = None
    at: float = 0.0                                               # the power-off, epoch s
    writes: List[client.Write] = field(default_factory=list)      # everything the client saw

    def lines(self) -> List[str]:
        ev = " / ".join(f"{k} {v:.1f}" if v is not None else f"{k} ?" for k, v in self.events.items())
        return [
            f"powered off: {self.failed}; survivor: {self.survivor}",
            f"after power-off (s): {ev}",
            f"client write outage: {self.outage:.1f} s" if self.outage is not None
            else "client write outage: writes never came back",
            f"writes now served by: {self.served_by}",
            f"rows acknowledged {self.acknowledged}, present {self.present}, "
            f"acknowledged but missing {len(self.missing)}",
            f"e2h-internet via the EIP reaches: {self.eip_serves}",
            f"e2h-onprem resolves {cluster.RECORD} to: {', '.join(self.dns_answer) or '-'}",
            f"fenced node: instance {self.failed_state_after or '?'}"
            + (f", rejoined as {self.rejoined_as}" if self.rejoined_as else ""),
        ]


def failover_once(s: cluster.Settings, warmup: int = 20, settle: float = 90) -> Timeline:
    """Power off the promoted node under client load and observe what follows."""
    failed, survivor = cluster.primary_and_standby(s)
    with client.writing(s, failed, warmup) as writer:
        at = time.time()
        cluster.stop_instance(s, failed)
        helpers.wait_for(lambda: writer.ok_after(at, survivor), settle, 0.2,
                         f"a write through the VIP served by {survivor}")
        # A few more writes on the new primary, then stop the client.
        first = writer.ok_after(at, survivor)
        helpers.wait_for(lambda: len([w for w in writer.snapshot() if w.ok and w.t0 > first.t1]) >= 5,
                         30, 0.2, "writes on the new primary")
    acked = writer.acknowledged()
    present = client.rows_present(s)
    timeline = Timeline(failed=failed, survivor=survivor, at=at, writes=writer.snapshot())
    window = writer.outage(at)
    timeline.outage = window[1] - window[0] if window else None
    timeline.acknowledged = len(acked)
    timeline.present = len([seq for seq in acked if seq in present])
    timeline.missing = sorted(set(acked) - present)
    timeline.served_by = health.who_serves(topology.CLIENT_NS, cluster.VIP)
    timeline.eip_serves = _first(lambda: health.who_serves(topology.INTERNET_NS, s.public_ip), 30)
    survivor_ip = cluster.node_address(survivor)
    timeline.dns_answer = list(_first(
        lambda: health.resolves(topology.ONPREM_NS, cluster.RECORD) == (survivor_ip,)
        and (survivor_ip,), 30) or health.resolves(topology.ONPREM_NS, cluster.RECORD))
    timeline.failed_state_after = cluster.instance_state(s, failed)
    # Last: the endpoints seen from outside above may have moved after the client's writes resumed.
    events = health.log_events(s, survivor, failed, at)
    timeline.events = {k: (v - at if v else None) for k, v in events.items()}
    timeline.events["client"] = window[1] - at if window else None
    return timeline


SYNC_ATTRIBUTE = "ec2ha-pgsql-sync"            # the role's replication_sync_attribute
STATUS_ATTRIBUTE = "ec2ha-pgsql-replication"    # the role's replication_status_attribute


@dataclass
class StandbyLoss:
    """The standby powered off under client writes: the primary stays the only writer, commits
    wait until the lost standby is fenced, then the primary degrades and acknowledges alone."""

    primary: str
    standby: str
    stall: Optional[float] = None        # longest gap between two acknowledged writes after the power-off
    status: Optional[str] = None         # the sync guard's published state while the standby is down
    standby_sync: Optional[str] = None   # the standby's sync attribute then (0: never promoted)
    roles: Dict[str, str] = field(default_factory=dict)
    servers: List[str] = field(default_factory=list)    # who acknowledged the writes after the power-off
    failed_writes: int = 0
    acknowledged: int = 0
    missing: List[int] = field(default_factory=list)
    status_after_rejoin: Optional[str] = None
    events: Dict[str, Optional[float]] = field(default_factory=dict)   # seconds after the power-off
    at: float = 0.0
    writes: List[client.Write] = field(default_factory=list)

    def lines(self) -> List[str]:
        ev = " / ".join(f"{k} {v:.1f}" if v is not None else f"{k} ?" for k, v in self.events.items())
        return [
            f"powered off: {self.standby} (the standby); primary: {self.primary}",
            f"after power-off (s): {ev}",
            f"longest wait for a commit: {helpers.fmt(self.stall)} s",
            f"replication status then: {self.status}; {self.standby} sync attribute {self.standby_sync}",
            f"writes after the power-off acknowledged by: {', '.join(self.servers) or '-'}; "
            f"failed writes {self.failed_writes}",
            f"rows acknowledged {self.acknowledged}, acknowledged but missing {len(self.missing)}",
            f"after {self.standby} rejoined: replication status {self.status_after_rejoin}",
        ]


def standby_loss_once(s: cluster.Settings, warmup: int = 20, settle: float = 90) -> StandbyLoss:
    """Power off the standby under client writes, watch the primary degrade and go on writing,
    then rejoin the standby (playbooks/rejoin.yml) and wait until it is in sync again."""
    primary, standby = cluster.primary_and_standby(s)
    loss = StandbyLoss(primary=primary, standby=standby)
    with client.writing(s, primary, warmup) as writer:
        at = loss.at = time.time()
        cluster.stop_instance(s, standby)
        helpers.wait_for(lambda: health.node_attribute(s, primary, primary, STATUS_ATTRIBUTE, "reboot") == "degraded",
                         settle, 0.5, f"{primary} to report its replication degraded")
        degraded = time.time()
        helpers.wait_for(lambda: len([w for w in writer.snapshot() if w.ok and w.t0 > degraded]) >= 5,
                         30, 0.2, "writes acknowledged by the degraded primary")
        loss.status = health.node_attribute(s, primary, primary, STATUS_ATTRIBUTE, "reboot")
        loss.standby_sync = health.node_attribute(s, primary, standby, SYNC_ATTRIBUTE, "forever")
        loss.roles = health.pair_roles(s)
    loss.writes = writer.snapshot()
    after = [w for w in loss.writes if w.t1 >= at]
    loss.stall, resumed = max(client.gaps(loss.writes, at), default=(None, None))
    seen = dict(health.log_events(s, primary, standby, at), **{"writes resumed": resumed})
    loss.events = {k: (seen[k] - at if seen[k] else None) for k in ("lost", "fenced", "writes resumed")}
    loss.servers = sorted({w.server for w in after if w.ok})
    loss.failed_writes = len([w for w in after if not w.ok])
    acked = writer.acknowledged()
    loss.acknowledged = len(acked)
    loss.missing = sorted(set(acked) - client.rows_present(s))
    health.rejoin(s, standby)
    loss.status_after_rejoin = health.node_attribute(s, primary, primary, STATUS_ATTRIBUTE, "reboot")
    return loss


def _first(predicate, timeout: float):
    """The predicate's first truthy value within timeout, else None (recorded, not raised)."""
    return helpers.poll(predicate, timeout, 0.5) or None


# ---------------------------------------------------------------- agent start: ours vs stock

STOCK = "/usr/lib/ocf/resource.d/heartbeat"


def _timed(s: cluster.Settings, node: str, command: str) -> Optional[float]:
    """Seconds `command` takes on the node (measured there, SSH excluded); None if it failed."""
    script = (f"t0=$(date +%s.%N); {command} >/tmp/agent-bench.out 2>&1; rc=$?; t1=$(date +%s.%N); "
              "echo $rc $t0 $t1")
    out = cluster.ssh(s, cluster.node_address(node), script, timeout=120).stdout.split()
    if len(out) != 3 or out[0] != "0":
        return None
    return float(out[2]) - float(out[1])


def _stock_env(s: cluster.Settings, kind: str) -> str:
    env = {"OCF_ROOT": "/usr/lib/ocf", "OCF_RESOURCE_INSTANCE": f"stock-{kind}",
           "AWS_DEFAULT_REGION": s.info["region"]}
    if kind == "vip":
        env.update(OCF_RESKEY_ip=cluster.VIP, OCF_RESKEY_routing_table=",".join(s.route_tables),
                   OCF_RESKEY_interface="eth0", OCF_RESKEY_region=s.info["region"],  # it finds the ENI by this link's MAC
                   OCF_RESKEY_lookup_type="NetworkInterfaceId")  # our routes name the ENI, not the instance
    elif kind == "eip":
        env.update(OCF_RESKEY_elastic_ip=s.public_ip, OCF_RESKEY_allocation_id=s.allocation_id)
    else:
        env.update(OCF_RESKEY_hostedzoneid=s.zone_id, OCF_RESKEY_fullname=cluster.RECORD,
                   OCF_RESKEY_ttl="5", OCF_RESKEY_ip="local")
    return " ".join(f"{k}={v}" for k, v in env.items())


STOCK_AGENTS = {"vip": "aws-vpc-move-ip", "eip": "awseip", "dns": "aws-vpc-route53"}


def agent_bench(s: cluster.Settings, rounds: int = 3) -> Dict[str, Dict[str, List[Optional[float]]]]:
    """Start time of each endpoint agent, ours and the stock one, each moving the endpoint from
    the primary to the standby, in maintenance mode (Pacemaker neither monitors nor reacts).
    A start counts only if it exits 0 AND AWS then shows the endpoint on the standby; ours
    moves it back to the primary between runs."""
    roles = health.pair_roles(s)
    primary = next(n for n, r in roles.items() if r in ("Promoted", "Master"))
    standby = next(n for n in roles if n != primary)
    # The stock agents read the AWS CLI's profile; aws-vpc-route53 requires text output.
    region_conf = (f"mkdir -p /root/.aws && printf '[default]\\nregion = {s.info['region']}\\noutput = text\\n'"
                   " > /root/.aws/config")
    for node in (primary, standby):
        cluster.ssh(s, cluster.node_address(node), region_conf)
    cluster.ssh(s, cluster.node_address(primary), "crm_attribute -n maintenance-mode -v true")
    results: Dict[str, Dict[str, List[Optional[float]]]] = {k: {"ours": [], "stock": []} for k in STOCK_AGENTS}

    def moved(seconds: Optional[float], kind: str) -> Optional[float]:
        return seconds if seconds is not None and cluster.endpoint_holders(s)[kind] == standby else None

    try:
        for _round in range(rounds):
            for kind, stock in STOCK_AGENTS.items():
                ours = f"crm_resource --force-start --resource {cluster.RESOURCES[kind]}"
                stop = f"crm_resource --force-stop --resource {cluster.RESOURCES[kind]}"
                results[kind]["ours"].append(moved(_timed(s, standby, ours), kind))
                _timed(s, standby, stop)
                _timed(s, primary, ours)
                env = _stock_env(s, kind)
                results[kind]["stock"].append(moved(_timed(s, standby, f"env {env} {STOCK}/{stock} start"), kind))
                _timed(s, standby, f"env {env} {STOCK}/{stock} stop")
                _timed(s, primary, ours)
    finally:
        cluster.ssh(s, cluster.node_address(primary), "crm_attribute -n maintenance-mode -D")
    return results


def print_agent_bench(results: Dict[str, Dict[str, List[Optional[float]]]]) -> None:
    """One line per endpoint: our agent's and the stock agent's start, medians and their ratio."""
    for kind, stock in STOCK_AGENTS.items():
        ours, theirs = results[kind]["ours"], results[kind]["stock"]
        mine, other = helpers.median(ours), helpers.median(theirs)
        ratio = f"{other / mine:.2f}" if mine and other else "n/a"
        print(f"agent start, {kind}: ec2ha:{cluster.SCENARIOS[kind]} median {helpers.fmt(mine)} s {[helpers.fmt(v) for v in ours]}; "
              f"heartbeat:{stock} median {helpers.fmt(other)} s {[helpers.fmt(v) for v in theirs]}; stock/ours {ratio}")


PHASES = (("detection", None, "lost"), ("fencing", "lost", "fenced"), ("promotion", "fenced", "promoted"),
          ("VIP route", "promoted", "vip"), ("Elastic IP", "promoted", "eip"), ("DNS record", "promoted", "dns"))


def _span(t: Timeline, since: Optional[str], until: str) -> Optional[float]:
    """Seconds from event `since` (None: the power-off) to event `until`; None if either was not seen."""
    start = 0.0 if since is None else t.events.get(since)
    end = t.events.get(until)
    return end - start if start is not None and end is not None else None


def print_failover_summary(timelines: List[Timeline]) -> None:
    """Medians over the runs: each phase's own duration, and the client-observed outage."""
    label = f"median of {len(timelines)}" if len(timelines) > 1 else "single run"
    print(f"unplanned failover, {label} (seconds):")
    for name, since, until in PHASES:
        spans = [_span(t, since, until) for t in timelines]
        print(f"  {name:<11} {helpers.fmt(helpers.median(spans)):>6}   {'power-off' if since is None else since} -> {until}")
    print(f"  {'client':<11} {helpers.fmt(helpers.median([t.outage for t in timelines])):>6}   "
          "write outage seen by the client (last acknowledged write before -> first after)")
    print(f"  rows acknowledged {sum(t.acknowledged for t in timelines)}, acknowledged but missing "
          f"{sum(len(t.missing) for t in timelines)}")


def main(argv: List[str]) -> int:
    """[RUNS] unplanned failovers (default 1), then with --standby-loss one loss of the standby,
    then --agents ROUNDS of the agent start bench.
    The lab is taken down at the end if this run brought it up."""
    runs = int(argv[0]) if argv and argv[0].isdigit() else 1
    agent_rounds = int(argv[argv.index("--agents") + 1]) if "--agents" in argv else 0
    standby_loss = "--standby-loss" in argv
    brought_up = not lifecycle.lab_info()
    try:
        s = health.ensure_cluster()
        timelines = []
        for index in range(runs):
            helpers.wait_for(lambda: health.healthy(s), 300, 1, f"a healthy pair before run {index + 1}")
            t = failover_once(s)
            t.rejoined_as = health.rejoin(s, t.failed)
            timelines.append(t)
            print(f"--- run {index + 1}/{runs}")
            print("\n".join(t.lines()), flush=True)
        if timelines:
            print_failover_summary(timelines)
        if standby_loss:
            helpers.wait_for(lambda: health.healthy(s), 300, 1, "a healthy pair before the standby is lost")
            print("--- standby lost under writes")
            print("\n".join(standby_loss_once(s).lines()), flush=True)
        if agent_rounds:
            helpers.wait_for(lambda: health.healthy(s), 300, 1, "a healthy pair before the agent bench")
            print_agent_bench(agent_bench(s, agent_rounds))
    finally:
        if brought_up:
            health.cli_command("down")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
