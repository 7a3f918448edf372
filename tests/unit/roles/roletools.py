# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers for the offline checks of the heartbeat and replication roles.

Templates are rendered by ansible-core's own Templar (the same filters and
tests a play uses) from the role defaults plus per-test values; the results
are then judged by the real tools: corosync -t, cibadmin / crm_verify /
crm_diff on an offline CIB file, drbdadm, and postgres itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Mapping

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROLES = Path(__file__).resolve().parents[3] / "roles"
HOSTS = ["alpha", "bravo"]


def require(*binaries: str) -> None:
    """Skip (with the reason) when a tool of the cluster stack is not installed."""
    missing = [b for b in binaries if shutil.which(b) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (apt-get install corosync pacemaker-cli-utils drbd-utils ...)")


def _trusted(value: Any) -> Any:
    # Role defaults are trusted templates in a play; mark them the same way here.
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return {k: _trusted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_trusted(v) for v in value]
    return value


def defaults(role: str) -> Dict[str, Any]:
    return yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text())


def set_fact_expr(role: str, task_file: str, fact: str) -> Any:
    """The expression a role's set_fact task uses, so tests evaluate the role's own code."""
    for task in yaml.safe_load((ROLES / role / "tasks" / task_file).read_text()):
        facts = task.get("ansible.builtin.set_fact", {})
        if fact in facts:
            return facts[fact]
    raise AssertionError(f"no set_fact of {fact} in roles/{role}/tasks/{task_file}")


class Inventory:
    """Two hosts with the role defaults, per-host overrides and the facts the
    roles' set_fact tasks would record, exposed as hostvars."""

    def __init__(self, host_vars: Mapping[str, Mapping[str, Any]], common: Mapping[str, Any]) -> None:
        self.host_vars = {h: dict(v) for h, v in host_vars.items()}
        self.common = dict(common)
        self.hostvars: Dict[str, Dict[str, Any]] = {}
        for host in self.host_vars:
            self.hostvars[host] = {}
        for host in self.host_vars:
            hv = self.variables(host)
            templar = Templar(loader=DataLoader(), variables=hv)
            self.hostvars[host]["__heartbeat_node"] = templar.template(
                _trusted(set_fact_expr("heartbeat", "validate.yml", "__heartbeat_node")))
            self.hostvars[host]["__replication_node"] = templar.template(
                _trusted(set_fact_expr("replication", "validate.yml", "__replication_node")))

    def variables(self, host: str) -> Dict[str, Any]:
        v: Dict[str, Any] = {}
        v.update(_trusted(defaults("heartbeat")))
        v.update(_trusted(defaults("replication")))
        v.update({"ansible_play_hosts_all": list(self.host_vars), "inventory_hostname": host,
                  "inventory_hostname_short": host, "ansible_managed": "Ansible managed (test)"})
        v.update(_trusted(self.common))
        v.update(_trusted(self.host_vars[host]))
        v["hostvars"] = self.hostvars
        v.update(self.hostvars[host])
        return v

    def render(self, host: str, role: str, template: str, extra: Mapping[str, Any] | None = None) -> str:
        v = self.variables(host)
        v.update(extra or {})
        source = (ROLES / role / "templates" / template).read_text()
        templar = Templar(loader=DataLoader(), variables=v)
        return templar.template(trust_as_template(source), escape_backslashes=False)

    def evaluate(self, host: str, expression: Any) -> Any:
        return Templar(loader=DataLoader(), variables=self.variables(host)).template(_trusted(expression))


class OfflineCib:
    """A CIB file with the two nodes declared, driven like the role drives the
    live one: cib_lib.sh + a staging script with CIB_file pointing at a copy."""

    def __init__(self, workdir: Path, node_names: List[str]) -> None:
        self.dir = workdir
        blank = subprocess.run(["cibadmin", "--empty"], capture_output=True, text=True, check=True).stdout
        nodes = "".join(f'<node id="{i}" uname="{n}"/>' for i, n in enumerate(node_names, 1))
        # As the role finds it: both nodes joined, quorum held (crm_verify warns otherwise).
        states = "".join(f'<node_state id="{i}" uname="{n}" in_ccm="true" crmd="online" join="member" '
                         f'expected="member"/>' for i, n in enumerate(node_names, 1))
        self.live = workdir / "live.xml"
        self.live.write_text(blank.replace("<cib ", '<cib have-quorum="1" ', 1)
                             .replace("<nodes/>", f"<nodes>{nodes}</nodes>")
                             .replace("<status/>", f"<status>{states}</status>"))
        shutil.copy(ROLES / "heartbeat" / "files" / "cib_lib.sh", workdir / "cib_lib.sh")

    def stage(self, script: str, target: Path) -> subprocess.CompletedProcess:
        """Run a staging script exactly as tasks/cib_push.yml does."""
        (self.dir / "stage.sh").write_text(script)
        env = dict(os.environ, CIB_file=str(target))
        return subprocess.run(["sh", "-ec", ". ./cib_lib.sh; . ./stage.sh"], cwd=self.dir, env=env,
                              capture_output=True, text=True, check=False)

    def copy_of_live(self, name: str = "new.xml") -> Path:
        target = self.dir / name
        shutil.copy(self.live, target)
        return target

    def push(self, *scripts: str) -> str:
        """Stage into a copy, verify, diff, patch the 'live' file when they differ.
        Returns 'unchanged' or 'patched' — what the role would report."""
        new = self.copy_of_live()
        for script in scripts:
            staged = self.stage(script, new)
            assert staged.returncode == 0, staged.stderr
        verify = subprocess.run(["crm_verify", "--xml-file", str(new)], capture_output=True, text=True, check=False)
        assert verify.returncode == 0, verify.stdout + verify.stderr
        same = subprocess.run(["crm_diff", "--no-version", "--original", str(self.live), "--new", str(new)],
                              capture_output=True, text=True, check=False)
        assert same.returncode in (0, 1), same.stderr
        if same.returncode == 0:
            return "unchanged"
        patch = subprocess.run(["crm_diff", "--original", str(self.live), "--new", str(new)],
                               capture_output=True, text=True, check=False)
        assert patch.returncode == 1, patch.stderr
        (self.dir / "patch.xml").write_text(patch.stdout)
        applied = subprocess.run(["cibadmin", "--patch", "--xml-file", str(self.dir / "patch.xml")],
                                 env=dict(os.environ, CIB_file=str(self.live)), capture_output=True, text=True, check=False)
        assert applied.returncode == 0, applied.stderr
        return "patched"
