# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""extensions/awx/apply.yml: it parses without awx.awx (as the collection's own checks and the
Galaxy importer's ansible-lint see it), says what it lacks in one sentence, and its awx.awx calls
(tasks/apply_objects.yml) resolve, lint and take only options of the real awx.awx.

make lint names playbooks/ and roles/ only: the awx.awx calls cannot be linted without awx.awx,
which is no dependency of the collection, so they are linted here, with it."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ec2ha_testkit import awx_runner

ROOT = awx_runner.ROOT
APPLY = awx_runner.AWX_DIR / "apply.yml"
APPLY_TASKS = awx_runner.AWX_DIR / "tasks" / "apply_objects.yml"
BIN = Path(sys.executable).parent


def ansible(tool: str, *args: str, collections: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections, ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
               ANSIBLE_NOCOLOR="1", NO_COLOR="1", ANSIBLE_STDOUT_CALLBACK="default")
    return subprocess.run([str(BIN / tool), *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=300, check=False)


def test_apply_passes_the_syntax_check_without_awx_awx():
    done = ansible("ansible-playbook", "--syntax-check", "-i", "localhost,", str(APPLY),
                   collections=str(ROOT / ".build" / "collections"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert not re.search(r"^\[(ERROR|WARNING)\]", done.stdout + done.stderr, re.M), done.stdout + done.stderr


def test_apply_says_in_one_sentence_what_it_lacks(tmp_path):
    done = ansible("ansible-playbook", "-i", "localhost,", "-c", "local", str(APPLY),
                   collections=str(ROOT / ".build" / "collections"), cwd=tmp_path)
    assert done.returncode != 0
    [fatal] = re.findall(r"^fatal: \[localhost\]: FAILED! => (\{.*\})$", done.stdout, re.M)
    message = json.loads(fatal)["msg"].strip()
    assert message.startswith("apply.yml needs ec2ha_awx_project and ec2ha_awx_inventory:"), message
    assert "\n" not in message and message.endswith(".")


def test_the_awx_calls_resolve_in_awx_awx(tmp_path, awx_collections):
    """A module name is resolved when a playbook is parsed: import the tasks statically."""
    wrapper = tmp_path / "wrapper.yml"
    wrapper.write_text(yaml.safe_dump([{"name": "Import the awx.awx calls", "hosts": "localhost", "gather_facts": False,
                                        "tasks": [{"ansible.builtin.import_tasks": str(APPLY_TASKS)}]}]))
    done = ansible("ansible-playbook", "--syntax-check", "-i", "localhost,", str(wrapper),
                   collections=str(awx_collections))
    assert done.returncode == 0, done.stdout + done.stderr
    without = ansible("ansible-playbook", "--syntax-check", "-i", "localhost,", str(wrapper),
                      collections=str(ROOT / ".build" / "collections"))
    assert without.returncode != 0 and "couldn't resolve module/action 'awx.awx.credential_type'" in without.stderr


def test_apply_and_its_awx_calls_lint_with_awx_awx(awx_collections):
    """ansible-lint --profile production with the checkout's settings, awx.awx resolvable. Its
    args rule skips tasks whose options are templated (every one here): the options are checked
    against the module's own documentation below."""
    paths = f"{ROOT / '.build' / 'collections'}:{awx_collections}"
    done = ansible("ansible-lint", "--profile", "production", "--offline", "--nocolor",
                   str(APPLY.relative_to(ROOT)), str(APPLY_TASKS.relative_to(ROOT)), collections=paths)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Passed: 0 failure(s), 0 warning(s) in 2 files" in done.stderr, done.stdout + done.stderr


def module_options(collections: Path, module: str) -> set:
    source = collections / "ansible_collections" / "awx" / "awx" / "plugins" / "modules" / f"{module}.py"
    for node in ast.parse(source.read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "DOCUMENTATION":
            return set(yaml.safe_load(ast.literal_eval(node.value))["options"])
    raise AssertionError(f"{source} has no DOCUMENTATION")


@pytest.mark.parametrize("module", ["credential_type", "job_template"])
def test_apply_passes_only_options_of_the_awx_module(awx_collections, module):
    tasks = yaml.safe_load(APPLY_TASKS.read_text())
    [task] = [t for t in tasks if f"awx.awx.{module}" in t]
    assert set(task[f"awx.awx.{module}"]) <= module_options(awx_collections, module)
