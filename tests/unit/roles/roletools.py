# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers for the offline checks of the heartbeat and replication roles.

Templates are rendered by ansible-core's own Templar (the same filters and
tests a play uses) from the role defaults plus per-test values; the results
are then judged by the real tools: corosync -t, the cib_objects module's
Pacemaker layer with crm_verify / crm_diff / cibadmin on an offline CIB file,
drbdadm, and postgres itself.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template
from ansible_collections.ec2ha.cluster.plugins.module_utils.pacemaker.cib import push
from ansible_collections.ec2ha.cluster.plugins.module_utils.pacemaker.runner import Runner
from ansible_collections.ec2ha.cluster.plugins.modules.cib_objects import ARGUMENT_SPEC, desired_state

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


def role_vars(role: str) -> Dict[str, Any]:
    """A role's vars/main.yml (its private variables), empty when it has none."""
    path = ROLES / role / "vars" / "main.yml"
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


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
                _trusted(set_fact_expr("replication", "node.yml", "__replication_node")))

    def variables(self, host: str) -> Dict[str, Any]:
        v: Dict[str, Any] = {}
        v.update(_trusted(defaults("heartbeat")))
        v.update(_trusted(defaults("replication")))
        v.update({"ansible_play_hosts_all": list(self.host_vars), "inventory_hostname": host,
                  "inventory_hostname_short": host, "ansible_managed": "Ansible managed (test)"})
        v.update(_trusted(self.common))
        v.update(_trusted(self.host_vars[host]))
        for role in ("heartbeat", "replication"):
            v.update(_trusted(role_vars(role)))  # role vars outrank the inventory, as in a play
        v["hostvars"] = self.hostvars
        v.update(self.hostvars[host])
        return v

    def render(self, host: str, role: str, template: str, extra: Mapping[str, Any] | None = None) -> str:
        v = self.variables(host)
        v.update(extra or {})
        source = (ROLES / role / "templates" / template).read_text()
        templar = Templar(loader=DataLoader(), variables=v)
        return templar.template(trust_as_template(source), escape_backslashes=False)

    def evaluate(self, host: str, expression: Any, extra: Mapping[str, Any] | None = None) -> Any:
        variables = self.variables(host)
        variables.update(extra or {})
        return Templar(loader=DataLoader(), variables=variables).template(_trusted(expression))

    def cib_args(self, host: str, role: str, task_file: str) -> List[Dict[str, Any]]:
        return cib_args(self, host, role, task_file)


class OfflineCib:
    """A CIB file with the two nodes declared, changed like the roles change the live one: the
    cib_objects module's own code (Pacemaker layer) with CIB_file pointing at it."""

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

    def push(self, *module_args: Mapping[str, Any], check_mode: bool = False) -> str:
        """One cib_objects run per argument set, in order, as the roles run them.
        Returns 'patched' when any run changed the CIB, else 'unchanged'."""
        runner = Runner(timeout=60, cib_file=str(self.live))
        changed = False
        for args in module_args:
            params = {name: option.get("default") for name, option in ARGUMENT_SPEC.items()}
            params.update(args)
            changed |= push(runner, desired_state(params), check_mode).changed
        return "patched" if changed else "unchanged"


def _tasks(tasks: Sequence[Mapping[str, Any]]):
    """Every task of a task list, blocks flattened, each with the conditions and vars of its blocks."""
    for task in tasks:
        if "block" in task:
            for inner, when, block_vars in _tasks(task["block"]):
                yield inner, _conditions(task) + when, {**task.get("vars", {}), **block_vars}
        else:
            yield task, _conditions(task), {}


def _conditions(task: Mapping[str, Any]) -> List[str]:
    when = task.get("when", [])
    return when if isinstance(when, list) else [when]


def _template_lookups(inv: "Inventory", host: str, role: str, local: Mapping[str, Any]) -> Dict[str, Any]:
    """lookup/query of ansible.builtin.template on the role's templates (a play's template lookup
    needs the collection loader, which a unit test does not install): they shadow Jinja's globals."""
    def query(plugin: str, *terms: str, template_vars: Mapping[str, Any] | None = None) -> List[str]:
        assert plugin in ("ansible.builtin.template", "template"), plugin
        return [inv.render(host, role, term, {**local, **(template_vars or {})}) for term in terms]

    return {"query": query, "lookup": lambda plugin, *terms, **kw: ",".join(query(plugin, *terms, **kw))}


def cib_args(inv: "Inventory", host: str, role: str, task_file: str) -> List[Dict[str, Any]]:
    """The arguments a role's task file gives ec2ha.cluster.cib_objects on ``host``: its set_fact
    tasks (loops too) and its cib_objects tasks evaluated in order, with their vars and conditions,
    templates looked up in the role. Everything else in the file is passed over."""
    tasks = yaml.safe_load((ROLES / role / "tasks" / task_file).read_text())
    facts: Dict[str, Any] = {}
    found = []
    for task, when, block_vars in _tasks(tasks):
        if not {"ansible.builtin.set_fact", "ec2ha.cluster.cib_objects"} & set(task):
            continue
        local = {**facts, **_trusted(block_vars), **_trusted(task.get("vars", {}))}
        local.update(_template_lookups(inv, host, role, local))
        if not all(inv.evaluate(host, "{{ " + str(c) + " }}", local) for c in when):
            continue
        if "ansible.builtin.set_fact" in task:
            items = inv.evaluate(host, task["loop"], local) if "loop" in task else [None]
            for item in items:
                for name, expression in task["ansible.builtin.set_fact"].items():
                    facts[name] = inv.evaluate(host, expression, {**local, **facts, "item": item})
        elif "ec2ha.cluster.cib_objects" in task:
            args = inv.evaluate(host, task["ec2ha.cluster.cib_objects"], local)
            found.append({k: v for k, v in args.items() if k in ("objects", "secret_objects", "absent", "properties",
                                                                 "node_attribute_defaults")})
    assert found, f"no ec2ha.cluster.cib_objects task in roles/{role}/tasks/{task_file}"
    return found


@dataclass
class PlayRun:
    rc: int
    output: str

    def changed(self, host: str) -> int:
        """changed= of the host in the play recap."""
        found = re.search(rf"^{re.escape(host)}\s+: ok=\d+\s+changed=(\d+)", self.output, re.M)
        assert found, self.output[-3000:]
        return int(found.group(1))


def run_role_tasks(workdir: Path, role: str, task_files: Sequence[str], host_vars: Mapping[str, Mapping[str, Any]],
                   common: Mapping[str, Any], *args: str) -> PlayRun:
    """ansible-playbook on this machine (connection local, one inventory host per role host):
    the role's task files included in order, exactly as a play includes them."""
    workdir.mkdir(parents=True, exist_ok=True)
    play = [{"name": "Role tasks under test", "hosts": "pair", "gather_facts": False,
             "tasks": [{"name": f"Include {f}",
                        "ansible.builtin.include_role": {"name": f"ec2ha.cluster.{role}", "tasks_from": f}}
                       for f in task_files]}]
    inventory = {"all": {"children": {"pair": {
        "hosts": {h: dict(v) for h, v in host_vars.items()},
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, **common}}}}}
    (workdir / "play.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    (workdir / "inventory.yml").write_text(yaml.safe_dump(inventory, sort_keys=False))
    collections = ROLES.parent / ".build" / "collections"
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_COLLECTIONS_PATH=os.environ.get("ANSIBLE_COLLECTIONS_PATH", str(collections)))
    done = subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "-i", "inventory.yml", "play.yml",
                           *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=900, check=False)
    (workdir / "output.log").write_text(done.stdout + done.stderr)
    return PlayRun(done.returncode, done.stdout + done.stderr)
