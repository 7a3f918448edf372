"""The faults of the matrix, each a function `(settings, index) -> Trial` that injects one fault
under client writes, waits for the cluster's answer and hands back what was seen; the runner
(lab/matrix/run.py) checks the invariants on it (lab/matrix/invariants.py) and puts the pair
back together before the next run.

The faults that existing measurements already make (power-offs, the partition) run through
them (lab/bench/failover_bench.py, lab/pair/fence_race.py): one implementation per behaviour.
AWS API and IMDS faults are switched in the lab's control plane (lab/emulator/faults.py), never
in the product code. The faults that meet a planned switchover are in switchover_faults.py, those
that end with the old primary rejoining under writes in rejoin_faults.py; FAULTS lists them all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

from lab import helpers
from lab.bench import failover_bench
from lab.emulator import faults
from lab.matrix import rejoin_faults, switchover_faults
from lab.matrix.invariants import Before
from lab.matrix.trial import Trial, more_writes
from lab.pair import client, cluster, cluster_state, fence_race

MONITOR_INTERVAL = 10        # recovery_kit_monitor_interval: drift must be repaired within it...
MONITOR_RUN = 10             # ...plus the time one monitor takes to converge (bounded AWS calls)
API_DOWN = 30                # seconds the AWS API (or a node's IMDS) stays unreachable


@dataclass(frozen=True)
class Fault:
    name: str
    what: str
    run: Callable[[cluster.Settings, int], Trial]


# ---------------------------------------------------------------- nodes and processes

def primary_powered_off(s: cluster.Settings, index: int) -> Trial:
    before = Before.read(s)
    t = failover_bench.failover_once(s)
    return Trial(before, t.at, t.writes, failover=True, quiet=False,
                 figures={"events": t.events, "outage_client": t.outage})


def standby_powered_off(s: cluster.Settings, index: int) -> Trial:
    before = Before.read(s)
    loss = failover_bench.standby_loss_once(s)          # rejoins the standby itself
    trial = Trial(before, loss.at, loss.writes, failover=False, quiet=False,
                  figures={"events": loss.events, "status": loss.status})
    if loss.status != "degraded":
        trial.violations.append(f"replication status {loss.status} with the standby down, expected degraded")
    return trial


def partition(s: cluster.Settings, index: int) -> Trial:
    before = Before.read(s)
    race = fence_race.partition_once(s)                 # rejoins the fenced node itself
    trial = Trial(before, race.at, race.writes, failover=False, quiet=False,
                  figures={"events": race.events, "fenced": race.fenced})
    if race.fenced != before.standby:
        trial.violations.append(f"{race.fenced} was fenced, expected the standby {before.standby}")
    return trial


def _kill_on_primary(s: cluster.Settings, command: str, failover: Optional[bool]) -> Trial:
    """Run `command` on the primary under writes; wait until writes are acknowledged again (by
    the standby, when a failover is the answer)."""
    before = Before.read(s)
    with client.writing(s, before.primary) as writer:
        at = time.time()
        cluster_state.run(s, before.primary, command)
        if failover:
            helpers.wait_for(lambda: writer.ok_after(at, before.standby), 240, 0.5,
                             f"writes acknowledged by {before.standby}")
        else:
            helpers.wait_for(lambda: writer.outage(at), 240, 0.5, "writes acknowledged again after the kill")
        more_writes(writer)
    return Trial(before, at, writer.snapshot(), failover=failover, quiet=False)


def postmaster_killed(s: cluster.Settings, index: int) -> Trial:
    # The postmaster's PID is the first line of postmaster.pid in the data directory.
    return _kill_on_primary(s, f"kill -KILL $(head -1 {cluster_state.PGDATA}/postmaster.pid)", failover=None)


def cluster_stack_killed(s: cluster.Settings, index: int) -> Trial:
    # PostgreSQL keeps running as primary with no cluster stack under it: the standby must fence
    # it before promoting, and no write may be acknowledged by both.
    return _kill_on_primary(s, "pkill -KILL -x corosync; pkill -KILL -x pacemakerd; "
                            "pkill -KILL -f ^/usr/lib/pacemaker/; true",
                            failover=True)


# ---------------------------------------------------------------- the AWS API and IMDS

def _switched_off(s: cluster.Settings, rules_for: Callable[[Before], List[Dict[str, Any]]], seconds: float) -> Trial:
    """The rules (made from the pair as found) injected for `seconds` under writes, then cleared;
    one more monitor round after. A switch no call met is a fault that never happened."""
    url = s.info["endpoint_url"]
    before = Before.read(s)
    with client.writing(s, before.primary) as writer:
        at = time.time()
        ids = [faults.inject(url, rule)["id"] for rule in rules_for(before)]
        try:
            time.sleep(seconds)
            hits = sum(r["hits"] for r in faults.rules(url) if r["id"] in ids)
        finally:
            for rule_id in ids:
                faults.remove(url, rule_id)
        time.sleep(MONITOR_INTERVAL + 5)
        more_writes(writer)
    trial = Trial(before, at, writer.snapshot(), failover=False, quiet=True, figures={"calls_refused": hits})
    if not hits:
        trial.violations.append("no call reached the switched-off service: the fault never happened")
    return trial


def aws_api_unreachable(s: cluster.Settings, index: int) -> Trial:
    # Both nodes' calls to the API are held past the agents' read timeout, then cut.
    return _switched_off(s, lambda before: [{"client": address, "delay": 5, "drop": True}
                                            for _name, _subnet, address in cluster.NODES], API_DOWN)


def imds_down(s: cluster.Settings, index: int) -> Trial:
    # The primary's metadata service unreachable, nothing else failing: its agents' monitors
    # still ask it (the region), and must fall back on what they read at start.
    def rules(before: Before) -> List[Dict[str, Any]]:
        instance = cluster.node_instances(s)[before.primary]["InstanceId"]
        return [{"service": "imds", "params": {"InstanceId": instance}, "drop": True}]
    return _switched_off(s, rules, API_DOWN)


# ---------------------------------------------------------------- drift

def _drift_vip_route(s: cluster.Settings, standby: str, to_standby: bool) -> None:
    ec2 = s.client("ec2")
    for table in s.route_tables:
        if to_standby:
            ec2.replace_route(RouteTableId=table, DestinationCidrBlock=f"{cluster.VIP}/32",
                              NetworkInterfaceId=cluster.node_eni(s, standby))
        else:
            ec2.delete_route(RouteTableId=table, DestinationCidrBlock=f"{cluster.VIP}/32")


def _drift_elastic_ip(s: cluster.Settings, standby: str, to_standby: bool) -> None:
    ec2 = s.client("ec2")
    if to_standby:
        ec2.associate_address(AllocationId=s.allocation_id, NetworkInterfaceId=cluster.node_eni(s, standby),
                              AllowReassociation=True)
    else:
        address = ec2.describe_addresses(AllocationIds=[s.allocation_id])["Addresses"][0]
        ec2.disassociate_address(AssociationId=address["AssociationId"])


def _drift_dns_record(s: cluster.Settings, standby: str, to_standby: bool) -> None:
    route53 = s.client("route53")
    found = route53.list_resource_record_sets(HostedZoneId=s.zone_id, StartRecordName=cluster.RECORD,
                                              StartRecordType="A", MaxItems="1")["ResourceRecordSets"][0]
    if to_standby:
        change = {"Action": "UPSERT", "ResourceRecordSet": dict(
            found, ResourceRecords=[{"Value": cluster.node_address(standby)}])}
    else:
        change = {"Action": "DELETE", "ResourceRecordSet": found}
    route53.change_resource_record_sets(HostedZoneId=s.zone_id, ChangeBatch={"Changes": [change]})


def _seconds_until(check: Callable[[], bool], timeout: float) -> Optional[float]:
    """Seconds until check() holds (polled every 0.2 s), None if it did not within timeout."""
    start = time.monotonic()
    return (time.monotonic() - start) if helpers.poll(check, timeout, 0.2) else None


DRIFTS = {"vip": _drift_vip_route, "eip": _drift_elastic_ip, "dns": _drift_dns_record}


def drift(kind: str) -> Callable[[cluster.Settings, int], Trial]:
    """The endpoint changed by hand, to the standby on even runs, to nothing on odd ones: the
    primary's monitor must put it back within one interval, with no failover and no failure."""
    def run(s: cluster.Settings, index: int) -> Trial:
        before = Before.read(s)
        to_standby = index % 2 == 0
        with client.writing(s, before.primary) as writer:
            at = time.time()
            DRIFTS[kind](s, before.standby, to_standby)
            repaired = _seconds_until(lambda: cluster.endpoint_holders(s)[kind] == before.primary, 60)
            more_writes(writer)
        trial = Trial(before, at, writer.snapshot(), failover=False, quiet=True,
                      figures={"drifted_to": "standby" if to_standby else "nothing", "repaired_s": repaired})
        bound = MONITOR_INTERVAL + MONITOR_RUN
        if repaired is None or repaired > bound:
            trial.violations.append(f"{cluster.SCENARIOS[kind]} drifted to {trial.figures['drifted_to']}: "
                                    f"repaired after {helpers.fmt(repaired)} s, bound {bound} s")
        return trial
    return run


FAULTS = (
    Fault("primary_powered_off", "the primary powered off (StopInstances Force)", primary_powered_off),
    Fault("standby_powered_off", "the standby powered off", standby_powered_off),
    Fault("postmaster_killed", "the primary's postmaster killed (kill -9)", postmaster_killed),
    Fault("cluster_stack_killed", "the primary's Corosync and Pacemaker killed (kill -9)", cluster_stack_killed),
    Fault("partition", "the link between the nodes cut, both up (a fence race)", partition),
    Fault("aws_api_unreachable", f"the AWS API unreachable from both nodes for {API_DOWN} s", aws_api_unreachable),
    Fault("imds_down", f"the primary's IMDS unreachable for {API_DOWN} s", imds_down),
    Fault("drift_vip_route", "the VIP's route changed by hand (to the standby, to nothing)", drift("vip")),
    Fault("drift_elastic_ip", "the EIP's association changed by hand (to the standby, to nothing)", drift("eip")),
    Fault("drift_dns_record", "the record changed by hand (to the standby's address, deleted)", drift("dns")),
    Fault("aws_throttled_during_move", "the AWS API throttling, then 503s, on every call moving an endpoint "
          "during a switchover", switchover_faults.aws_throttled_during_move),
    Fault("two_switchovers_at_once", "two switchovers to the standby started at once (two AWX jobs)",
          switchover_faults.two_at_once),
    Fault("switchover_to_lagging_standby", "a switchover to a standby whose replay is paused (lagging)",
          switchover_faults.to_lagging_standby),
    Fault("switchover_to_stopped_standby", "a switchover to a standby powered off",
          switchover_faults.to_stopped_standby),
    Fault("rejoin_rewind_under_writes", "the old primary rejoining by pg_rewind while the new one takes writes",
          rejoin_faults.rewind_under_writes),
    Fault("rejoin_copy_under_writes", "the old primary, its WAL lost, rejoining by a full copy under writes",
          rejoin_faults.copy_under_writes),
)
BY_NAME = {fault.name: fault for fault in FAULTS}
