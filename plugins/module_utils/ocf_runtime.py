# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every ec2ha OCF agent shares: the OCF exit codes, the parameters common to all, the action
deadline, the node's identity from IMDSv2, the Agent base class (start, monitor with repair and
the unknown streak, stop), and run_action, which turns one OCF action into its exit code.

Pure Python + boto3, no Ansible import: the nodes run it (the scenario agents are in ocf_agent.py).
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
    """Who this node is, from IMDSv2 (a token first, then the reads). Every answer is kept in
    ``cache`` (the agents' run directory); when IMDS does not answer, the kept one is used: an
    instance's id and region never change, and a monitor must not fail (and move the primary)
    because the node's metadata service is down while AWS and the endpoint are fine."""

    def __init__(self, base_url: str, timeout: float = 2.0, cache: Optional[Path] = None):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.cache = cache
        self._token: Optional[str] = None
        self._cached: Optional[Dict[str, str]] = None     # the cache file, read once per process

    def get(self, path: str) -> str:
        try:
            if self._token is None:
                self._token = self._request("PUT", "/latest/api/token",
                                            {"X-aws-ec2-metadata-token-ttl-seconds": "300"})
            value = self._request("GET", f"/latest/meta-data/{path}", {"X-aws-ec2-metadata-token": self._token}).strip()
        except (OSError, http.client.HTTPException):
            kept = self._kept().get(path)
            if kept is None:
                raise
            return kept
        self._keep(path, value)
        return value

    def _kept(self) -> Dict[str, str]:
        if self._cached is None:
            try:
                self._cached = json.loads(self.cache.read_text()) if self.cache else {}
            except (OSError, ValueError):
                self._cached = {}
        return self._cached

    def _keep(self, path: str, value: str) -> None:
        if self.cache is None:
            return
        kept = self._kept()
        if kept.get(path) == value:      # the usual case: no write
            return
        kept[path] = value
        try:
            self.cache.parent.mkdir(parents=True, exist_ok=True)
            partial = self.cache.with_suffix(f".{os.getpid()}.tmp")     # agents run side by side
            partial.write_text(json.dumps(kept))
            partial.replace(self.cache)
        except OSError:
            pass                     # a cache only: IMDS answered, the action goes on

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
    core: Any = None             # the scenario's core module (vip_route, elastic_ip, dns_record)
    target_type: Any = None      # its target dataclass, as the state file keeps it (or override load)

    def __init__(self, env: Dict[str, str]):
        self.env = env
        self.resource = env.get("OCF_RESOURCE_INSTANCE", self.scenario)
        self.state_file = Path(env.get("EC2HA_RUN_DIR", RUN_DIR)) / f"{self.resource}.json"
        self.streak_file = self.state_file.with_suffix(".unknown.json")
        self.identity = Identity(self.param("imds_url") or IMDS_URL, cache=self.state_file.parent / "identity.json")
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
        """Put the endpoint on the target; the re-read after the write bounded by ``deadline``."""
        verify = min(self.core.DEFAULT_VERIFY_TIMEOUT, deadline.left())
        return self.core.converge(self.aws, target, verify_timeout=verify).changed

    def check(self, target: Any) -> Any:
        return self.core.monitor(self.aws, target)

    def dump(self, target: Any) -> Dict[str, Any]:
        return dataclasses.asdict(target)

    def load(self, data: Dict[str, Any]) -> Any:
        return self.target_type(**data)

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
