# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's OCF resource agents (provider ``ec2ha``): vip_route, elastic_ip, dns_record.

Pure Python + boto3, no Ansible import: the recovery_kit role copies module_utils to the node and
installs a three-line executable per agent that calls :func:`main`. Each agent runs the very
scenario core the modules run:

- start: converge the endpoint onto this node (identity from IMDSv2), then keep the resolved
  target in /run so monitors cost one or two reads; a converge the API left unanswered
  (throttling, 5xx, no connection) is tried again until the action's deadline;
- monitor: ok -> running; wrong -> repair in place (converge, retried like start), fail only if
  the repair fails, and then softly (OCF_ERR_GENERIC: Pacemaker recovers it on this node);
  unknown (API timeout or throttling) -> not a failure, logged, checked again next interval;
  after unknown_limit of them in a row, a node attribute <resource>-aws (crm_mon -A) says so
  until the API answers again;
- stop: local clean-up only (the VIP address leaves the local interface); no AWS call, so a node
  cut off from the API can still stop cleanly and be fenced;
- every AWS call is bounded: short connect/read timeouts and few attempts; every action has one
  deadline, its Pacemaker timeout (OCF_RESKEY_CRM_meta_timeout) less a margin, and every wait in
  it (retries, re-reads, Route 53's INSYNC) gets what is left of it, never more;
- a failed action says why on stderr as ``ocf-exit-reason:``, which crm_mon shows.
"""

from __future__ import annotations

import os
import sys
import syslog
from typing import Any, Dict, List, Optional

from ansible_collections.ec2ha.cluster.plugins.module_utils import dns_record, elastic_ip, vip_route
from ansible_collections.ec2ha.cluster.plugins.module_utils.aws import InputError
from ansible_collections.ec2ha.cluster.plugins.module_utils.ocf_runtime import (
    OCF_ERR_ARGS,
    Agent,
    Param,
    ip,
    log,
    run_action,
)
from ansible_collections.ec2ha.cluster.plugins.module_utils.scenario import Deadline


class VipRouteAgent(Agent):
    scenario = "vip_route"
    core = vip_route
    params = [
        Param("vip", "The virtual IP (outside every VPC CIDR).", required=True),
        Param("route_tables", "Route table ids, comma or space separated; default: every table routing the VIP."),
        Param("interface", "This node's ENI id or device index the route points to; default: its only ENI."),
        Param("local_interface", "Local network interface that carries the VIP.", default="lo"),
    ]

    def resolve(self) -> vip_route.Target:
        # create: a route deleted by hand in one of the target's tables (those listed, or found
        # routing the VIP at start) is created again, not a configuration error that stops the
        # endpoint everywhere; the node role may CreateRoute on those tables only.
        tables = self.param("route_tables").replace(",", " ").split() or None
        return vip_route.resolve_target(self.aws, self.param("vip"), self.instance_id(), tables,
                                        self.param("interface") or None, create=True)[0]

    def load(self, data: Dict[str, Any]) -> vip_route.Target:
        # A target kept by an older agent (create false) gets the same repair.
        return vip_route.Target(**dict(data, create=True))

    def local_up(self, target: vip_route.Target) -> None:
        if not self.local_ok(target):
            ip("addr", "add", f"{target.vip}/32", "dev", self.param("local_interface"))

    def local_down(self) -> None:
        vip = vip_route.parse_vip(self.param("vip"))
        if self._has_address(vip):
            ip("addr", "del", f"{vip}/32", "dev", self.param("local_interface"))

    def local_ok(self, target: vip_route.Target) -> bool:
        return self._has_address(target.vip)

    def _has_address(self, vip: str) -> bool:
        shown = ip("-o", "-4", "addr", "show", "dev", self.param("local_interface"))
        return f" {vip}/32 " in shown


class ElasticIpAgent(Agent):
    scenario = "elastic_ip"
    core = elastic_ip
    target_type = elastic_ip.EipTarget
    params = [
        Param("public_ip", "The Elastic IP address (or give allocation_id)."),
        Param("allocation_id", "The Elastic IP's allocation id (or give public_ip)."),
        Param("interface", "This node's ENI id or device index; default: its only ENI."),
        Param("private_ip", "The private IP of that ENI to associate with; default: its primary."),
    ]

    def validate(self) -> None:
        super().validate()
        if bool(self.param("public_ip")) == bool(self.param("allocation_id")):
            raise InputError("elastic_ip: give exactly one of public_ip and allocation_id.")

    def resolve(self) -> elastic_ip.EipTarget:
        spec = elastic_ip.EipSpec(node=self.instance_id(), public_ip=self.param("public_ip") or None,
                                  allocation_id=self.param("allocation_id") or None,
                                  interface=self.param("interface") or None,
                                  private_ip=self.param("private_ip") or None)
        return elastic_ip.resolve_target(self.aws, spec)[0]


class DnsRecordAgent(Agent):
    scenario = "dns_record"
    core = dns_record
    params = [
        Param("zone", "Hosted zone name or id.", required=True),
        Param("record", "The A record, fully qualified or relative to the zone.", required=True),
        Param("address", "Which address of this node the record holds: private or public.", default="private"),
        Param("ttl", "The record's TTL in seconds.", default="60"),
        Param("private_zone", "true or false, when a private and a public zone share the name."),
        Param("wait_timeout", "Seconds to wait for the change to be INSYNC, at most what is left of the "
              "action's timeout.", default="60"),
    ]

    def spec(self) -> dns_record.DnsSpec:
        private = self.param("private_zone").lower()
        return dns_record.DnsSpec(zone=self.param("zone"), record=self.param("record"), node=self.instance_id(),
                                  address=self.param("address"), ttl=int(self.param("ttl")),
                                  private_zone=None if not private else private in ("1", "true", "yes"),
                                  wait_timeout=float(self.param("wait_timeout")))

    def resolve(self) -> dns_record.DnsTarget:
        return dns_record.resolve_target(self.aws, self.spec())

    def converge(self, target: dns_record.DnsTarget, deadline: Deadline) -> bool:
        # The wait gets what is left of the action's deadline, less one call for the re-read.
        wait = min(float(self.param("wait_timeout")), max(0.0, deadline.left() - self.call_seconds()))
        try:
            return dns_record.converge(self.aws, target, wait_timeout=wait).changed
        except dns_record.WaitTimeout as exc:
            # Written, not yet INSYNC: a success once the record reads back. Route 53's API shows
            # it already and its DNS servers follow on their own (INSYNC is about propagation, not
            # acceptance); failing the start instead would make Pacemaker's start failure fatal on
            # the only node the endpoint may run on, and leave the record pointing here anyway.
            # The next monitors keep reading it.
            dns_record.verify(self.aws, target)
            log(f"{self.resource}: the record is written and reads back, but change {exc.change_id} is not yet "
                f"INSYNC at the action's deadline; going on ({exc})", syslog.LOG_WARNING)
            return True

    def load(self, data: Dict[str, Any]) -> dns_record.DnsTarget:
        zone = dns_record.Zone(**data.pop("zone"))
        return dns_record.DnsTarget(zone=zone, **data)


AGENTS = {a.scenario: a for a in (VipRouteAgent, ElasticIpAgent, DnsRecordAgent)}


def main(scenario: str, argv: Optional[List[str]] = None, env: Optional[Dict[str, str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write(f"usage: {scenario} start|stop|monitor|validate-all|meta-data\n")
        return OCF_ERR_ARGS
    return run_action(AGENTS[scenario](dict(os.environ if env is None else env)), args[0])
