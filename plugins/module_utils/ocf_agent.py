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

import dataclasses
import datetime
import http.client
import json
import os
import subprocess
import sys
import syslog
import urllib.parse
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, TypeVar

from ansible_collections.ec2ha.cluster.plugins.module_utils import dns_record, elastic_ip, vip_route
from ansible_collections.ec2ha.cluster.plugins.module_utils.aws import (
    AwsCallError,
    AwsSession,
    ConnectionSettings,
    Ec2haError,
    InputError,
)
from ansible_collections.ec2ha.cluster.plugins.module_utils.scenario import Deadline, Status, retry_transient

OCF_SUCCESS = 0
OCF_ERR_GENERIC = 1
OCF_ERR_ARGS = 2
OCF_ERR_UNIMPLEMENTED = 3
OCF_ERR_INSTALLED = 5
OCF_ERR_CONFIGURED = 6
OCF_NOT_RUNNING = 7

RUN_DIR = "/run/ec2ha"
IMDS_URL = "http://169.254.169.254"
# Seconds each action may take when Pacemaker does not say (a manual run); the meta-data
# advertises the same, and the recovery_kit role configures them.
ACTION_TIMEOUTS = {"start": 60, "stop": 15, "monitor": 30, "validate-all": 10, "meta-data": 5}
# An action answers this much before Pacemaker would kill it: the larger of 2 s and 10 %.
MARGIN_SECONDS = 2.0
MARGIN_SHARE = 0.10
# crm_attribute talks to the local attribute daemon: seconds, never the monitor's whole budget.
ATTRIBUTE_TIMEOUT = 5.0
# An exit reason (or a node attribute) is one line crm_mon shows: whitespace folded, this long at most.
ONE_LINE_MAX_CHARS = 300
T = TypeVar("T")


@dataclasses.dataclass
class Param:
    name: str
    description: str
    required: bool = False
    default: str = ""


COMMON_PARAMS = [
    Param("region", "AWS region; default: this instance's region from IMDSv2."),
    Param("endpoint_url", "AWS API endpoint URL, for a test control plane; default: AWS's own."),
    Param("api_timeout", "Seconds one AWS call may take (connect and read), per attempt.", default="4"),
    Param("max_attempts", "Attempts per AWS call, first try included.", default="3"),
    Param("imds_url", "Instance metadata service base URL.", default=IMDS_URL),
    Param("unknown_limit", "Monitors in a row the AWS API may leave unanswered before this node's attribute "
          "named after the resource plus -aws (crm_mon -A) reports it; the monitor still succeeds. 0: never.",
          default="6"),
]


def action_seconds(action: str, env: Dict[str, str]) -> float:
    """The action's timeout: Pacemaker passes it in ms (OCF_RESKEY_CRM_meta_timeout), else the
    meta-data's default."""
    try:
        seconds = int(env.get("OCF_RESKEY_CRM_meta_timeout", "").strip()) / 1000
    except ValueError:
        seconds = 0
    return seconds if seconds > 0 else float(ACTION_TIMEOUTS.get(action, ACTION_TIMEOUTS["monitor"]))


def action_deadline(action: str, env: Dict[str, str]) -> Deadline:
    """When the action must be done: its timeout less the margin (at most half of it), so the agent
    answers, with its reason, before Pacemaker kills it."""
    seconds = action_seconds(action, env)
    margin = min(max(MARGIN_SECONDS, MARGIN_SHARE * seconds), seconds / 2)
    return Deadline.after(seconds - margin)


@dataclasses.dataclass
class UnknownStreak:
    """Monitors in a row the API left unanswered, kept in /run beside the target (a file of its
    own: a monitor killed while writing it cannot damage the target)."""

    count: int = 0
    since: str = ""         # UTC, when the first of them ran
    reported: bool = False  # the node attribute is (or may be) set


class Identity:
    """Who this node is, from IMDSv2 (a token first, then the reads)."""

    def __init__(self, base_url: str, timeout: float = 2.0):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._token: Optional[str] = None

    def get(self, path: str) -> str:
        if self._token is None:
            self._token = self._request("PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "300"})
        return self._request("GET", f"/latest/meta-data/{path}", {"X-aws-ec2-metadata-token": self._token}).strip()

    def _request(self, method: str, path: str, headers: Dict[str, str]) -> str:
        # Plain http.client: the agent runs on the node without Ansible, and IMDS is plain HTTP.
        url = urllib.parse.urlsplit(self.base_url)
        connection = http.client.HTTPConnection(url.hostname or "", url.port or 80, timeout=self.timeout)
        try:
            connection.request(method, path, headers=headers)
            answer = connection.getresponse()
            body = answer.read().decode()
        finally:
            connection.close()
        if answer.status != 200:
            raise OSError(f"IMDS {method} {path} answered HTTP {answer.status}")
        return body


class Agent:
    """One resource instance: its parameters, its AWS session, its state file."""

    scenario = ""
    params: List[Param] = []

    def __init__(self, env: Dict[str, str]):
        self.env = env
        self.resource = env.get("OCF_RESOURCE_INSTANCE", self.scenario)
        self.state_file = Path(env.get("EC2HA_RUN_DIR", RUN_DIR)) / f"{self.resource}.json"
        self.streak_file = self.state_file.with_suffix(".unknown.json")
        self.identity = Identity(self.param("imds_url") or IMDS_URL)
        self._aws: Optional[AwsSession] = None

    # -- parameters and session ---------------------------------------------------------------
    def param(self, name: str) -> str:
        default = next((p.default for p in COMMON_PARAMS + self.params if p.name == name), "")
        return self.env.get(f"OCF_RESKEY_{name}", default).strip()

    def instance_id(self) -> str:
        return self.identity.get("instance-id")

    @property
    def aws(self) -> AwsSession:
        if self._aws is None:
            timeout = float(self.param("api_timeout"))
            region = self.param("region") or self.identity.get("placement/region")
            self._aws = AwsSession(ConnectionSettings(
                region=region, endpoint_url=self.param("endpoint_url") or None,
                max_attempts=int(self.param("max_attempts")), connect_timeout=timeout, read_timeout=timeout))
        return self._aws

    def call_seconds(self) -> float:
        """What one AWS call may take (one attempt): the room a step after a wait needs."""
        return float(self.param("api_timeout"))

    def validate(self) -> None:
        missing = [p.name for p in self.params if p.required and not self.param(p.name)]
        if missing:
            raise InputError(f"{self.scenario}: parameter {', '.join(missing)} is required.")
        if not self.param("unknown_limit").isdigit():
            raise InputError(f"{self.scenario}: unknown_limit '{self.param('unknown_limit')}' must be a whole "
                             "number of monitors (0: never report).")

    # -- what each scenario provides ------------------------------------------------------------
    def resolve(self) -> Any:
        """Validate against AWS and return the target (this node)."""
        raise NotImplementedError

    def converge(self, target: Any, deadline: Deadline) -> bool:
        """Put the endpoint on the target; every wait in it bounded by ``deadline``."""
        raise NotImplementedError

    def check(self, target: Any) -> Any:
        raise NotImplementedError

    def dump(self, target: Any) -> Dict[str, Any]:
        return dataclasses.asdict(target)

    def load(self, data: Dict[str, Any]) -> Any:
        raise NotImplementedError

    def local_up(self, target: Any) -> None:
        """Local state a started endpoint needs on this node (the VIP address)."""

    def local_down(self) -> None:
        """Undo local_up; must not call AWS."""

    def local_ok(self, target: Any) -> bool:
        return True

    # -- OCF actions ------------------------------------------------------------------------------
    def start(self, deadline: Deadline) -> int:
        # A throttled or unanswered call used to fail the start at once, and Pacemaker's
        # start-failure-is-fatal then banned the endpoint from the only node it may run on,
        # half-moved. A converge re-reads and writes only what is still different, so trying
        # again within the start's own timeout finishes the move.
        def attempt() -> Any:
            target = self.resolve()
            return target, self.converge(target, deadline)

        target, changed = self.retrying(attempt, deadline)
        self.local_up(target)
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(self.dump(target)))
        log(f"{self.resource}: started on {self.instance_id()} ({'moved' if changed else 'already here'})")
        return OCF_SUCCESS

    def stop(self, deadline: Deadline) -> int:
        self.local_down()
        if self.read_streak().reported:
            self.set_attribute(None, deadline)     # no stale report once the endpoint left
        self.streak_file.unlink(missing_ok=True)
        self.state_file.unlink(missing_ok=True)
        return OCF_SUCCESS

    def monitor(self, deadline: Deadline) -> int:
        if not self.state_file.exists():
            return OCF_NOT_RUNNING
        target = self.load(json.loads(self.state_file.read_text()))
        if not self.local_ok(target):
            log(f"{self.resource}: local address missing, restoring it", syslog.LOG_WARNING)
            self.local_up(target)
        status = self.check(target)
        if status.status == "unknown":
            log(f"{self.resource}: state unknown ({'; '.join(status.details)}); not a failure, "
                "checking again next interval", syslog.LOG_WARNING)
            self.note_unknown(status, deadline)
            return OCF_SUCCESS
        self.note_answer(deadline)
        if status.ok:
            return OCF_SUCCESS
        log(f"{self.resource}: wrong ({'; '.join(status.details)}); repairing", syslog.LOG_WARNING)
        try:
            self.retrying(lambda: self.converge(target, deadline), deadline)
        except InputError as exc:
            # The configuration held at start; what changed since is the world (a CNAME took the
            # name, the EIP was released). OCF_ERR_CONFIGURED would stop the endpoint on every
            # node for good; a soft failure makes Pacemaker recover it here, and that start then
            # says whether the configuration still holds.
            fail(f"{self.resource}: monitor: cannot repair: {exc}", str(exc))
            return OCF_ERR_GENERIC
        return OCF_SUCCESS

    def retrying(self, attempt: Callable[[], T], deadline: Deadline) -> T:
        def logged(exc: AwsCallError, pause: float) -> None:
            log(f"{self.resource}: {exc} Trying again in {pause:g} s.", syslog.LOG_WARNING)
        return retry_transient(attempt, deadline, on_retry=logged)

    # -- monitors the API left unanswered -----------------------------------------------------------
    def read_streak(self) -> UnknownStreak:
        try:
            return UnknownStreak(**json.loads(self.streak_file.read_text()))
        except (OSError, ValueError, TypeError):
            return UnknownStreak()      # none yet, or torn by a monitor killed while writing it

    def write_streak(self, streak: UnknownStreak) -> None:
        if streak == UnknownStreak():
            self.streak_file.unlink(missing_ok=True)
            return
        partial = self.streak_file.with_suffix(".tmp")
        partial.write_text(json.dumps(dataclasses.asdict(streak)))
        partial.replace(self.streak_file)

    def note_unknown(self, status: Status, deadline: Deadline) -> None:
        """Count it; from unknown_limit on, report it where operators look (crm_mon -A), again
        every unknown_limit monitors (a fresh count, not one CIB write per monitor)."""
        streak = self.read_streak()
        streak.count += 1
        streak.since = streak.since or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        limit = int(self.param("unknown_limit"))
        if limit and streak.count >= limit and (not streak.reported or streak.count % limit == 0):
            value = f"{streak.count} unanswered monitors since {streak.since}: {'; '.join(status.details)}"
            streak.reported = self.set_attribute(value, deadline) or streak.reported
        self.write_streak(streak)

    def note_answer(self, deadline: Deadline) -> None:
        """The API answered: the streak ends, and its report goes (kept for the next monitor to
        remove if crm_attribute failed now)."""
        streak = self.read_streak()
        reported = streak.reported and not self.set_attribute(None, deadline)
        self.write_streak(UnknownStreak(reported=reported))

    def set_attribute(self, value: Optional[str], deadline: Deadline) -> bool:
        """Set (or with None delete) this node's transient attribute <resource>-aws. Bounded in
        time, and a failure only logged: a report must never fail the monitor it reports on."""
        command = ["crm_attribute", "--name", f"{self.resource}-aws", "--lifetime", "reboot"]
        node = self.env.get("OCF_RESKEY_CRM_meta_on_node", "").strip()
        if node:
            command += ["--node", node]
        command += ["--delete"] if value is None else ["--update", one_line(value)]
        timeout = min(ATTRIBUTE_TIMEOUT, deadline.left())
        try:
            subprocess.run(command, check=True, capture_output=True, text=True, timeout=max(timeout, 0.1))
        except (OSError, subprocess.SubprocessError) as exc:
            log(f"{self.resource}: could not {'delete' if value is None else 'set'} node attribute "
                f"{self.resource}-aws: {exc}", syslog.LOG_WARNING)
            return False
        return True

    def metadata(self) -> str:
        params = "\n".join(
            f'  <parameter name="{p.name}" unique="0" required="{int(p.required)}">\n'
            f'   <longdesc lang="en">{p.description}</longdesc>\n'
            f'   <shortdesc lang="en">{p.name}</shortdesc>\n'
            f'   <content type="string" default="{p.default}"/>\n  </parameter>'
            for p in self.params + COMMON_PARAMS)
        return f"""<?xml version="1.0"?>
<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">
<resource-agent name="{self.scenario}" version="1.0">
 <version>1.0</version>
 <longdesc lang="en">ec2ha.cluster {self.scenario}: moves the client endpoint onto this node with the
collection's own scenario core; monitor repairs a wrong state and treats an unanswered API as unknown.</longdesc>
 <shortdesc lang="en">ec2ha {self.scenario} endpoint</shortdesc>
 <parameters>
{params}
 </parameters>
 <actions>
  <action name="start" timeout="{ACTION_TIMEOUTS['start']}s"/>
  <action name="stop" timeout="{ACTION_TIMEOUTS['stop']}s"/>
  <action name="monitor" timeout="{ACTION_TIMEOUTS['monitor']}s" interval="10s" depth="0"/>
  <action name="validate-all" timeout="{ACTION_TIMEOUTS['validate-all']}s"/>
  <action name="meta-data" timeout="{ACTION_TIMEOUTS['meta-data']}s"/>
 </actions>
</resource-agent>
"""


class VipRouteAgent(Agent):
    scenario = "vip_route"
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

    def converge(self, target: vip_route.Target, deadline: Deadline) -> bool:
        verify = min(vip_route.DEFAULT_VERIFY_TIMEOUT, deadline.left())
        return vip_route.converge(self.aws, target, verify_timeout=verify).changed

    def check(self, target: vip_route.Target) -> Any:
        return vip_route.monitor(self.aws, target)

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

    def converge(self, target: elastic_ip.EipTarget, deadline: Deadline) -> bool:
        verify = min(elastic_ip.DEFAULT_VERIFY_TIMEOUT, deadline.left())
        return elastic_ip.converge(self.aws, target, verify_timeout=verify).changed

    def check(self, target: elastic_ip.EipTarget) -> Any:
        return elastic_ip.monitor(self.aws, target)

    def load(self, data: Dict[str, Any]) -> elastic_ip.EipTarget:
        return elastic_ip.EipTarget(**data)


class DnsRecordAgent(Agent):
    scenario = "dns_record"
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

    def check(self, target: dns_record.DnsTarget) -> Any:
        return dns_record.monitor(self.aws, target)

    def load(self, data: Dict[str, Any]) -> dns_record.DnsTarget:
        zone = dns_record.Zone(**data.pop("zone"))
        return dns_record.DnsTarget(zone=zone, **data)


AGENTS = {a.scenario: a for a in (VipRouteAgent, ElasticIpAgent, DnsRecordAgent)}


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10).stdout


def log(message: str, priority: int = syslog.LOG_INFO) -> None:
    syslog.openlog("ec2ha", syslog.LOG_PID, syslog.LOG_DAEMON)
    syslog.syslog(priority, message)
    sys.stderr.write(message + "\n")


def one_line(text: str, limit: int = ONE_LINE_MAX_CHARS) -> str:
    return " ".join(text.split())[:limit]


def fail(message: str, reason: str) -> None:
    """Log a failed action and tell Pacemaker why: the last ``ocf-exit-reason:`` line on stderr is
    what crm_mon shows beside the failed action."""
    log(message, syslog.LOG_ERR)
    sys.stderr.write(f"ocf-exit-reason:{one_line(reason)}\n")


def run_action(agent: Agent, action: str) -> int:
    """One OCF action -> its exit code; typed errors become the OCF code that fits them."""
    handlers: Dict[str, Callable[[Deadline], int]] = {
        "start": agent.start, "stop": agent.stop, "monitor": agent.monitor, "status": agent.monitor,
        "validate-all": lambda deadline: OCF_SUCCESS,
    }
    if action == "meta-data":
        sys.stdout.write(agent.metadata())
        return OCF_SUCCESS
    if action not in handlers:
        return OCF_ERR_UNIMPLEMENTED
    deadline = action_deadline("monitor" if action == "status" else action, agent.env)
    try:
        if action != "stop":
            agent.validate()
        return handlers[action](deadline)
    except InputError as exc:
        fail(f"{agent.resource}: {action}: {exc}", str(exc))
        return OCF_ERR_CONFIGURED
    except (Ec2haError, OSError, http.client.HTTPException, subprocess.SubprocessError, ValueError) as exc:
        fail(f"{agent.resource}: {action}: {exc}", str(exc))
        return OCF_ERR_GENERIC


def main(scenario: str, argv: Optional[List[str]] = None, env: Optional[Dict[str, str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write(f"usage: {scenario} start|stop|monitor|validate-all|meta-data\n")
        return OCF_ERR_ARGS
    return run_action(AGENTS[scenario](dict(os.environ if env is None else env)), args[0])
