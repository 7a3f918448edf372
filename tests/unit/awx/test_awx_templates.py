# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The job templates of extensions/awx name playbooks that exist, ask exactly the variables those
playbooks read, and are applied whole by apply.yml; the folder ships in the built collection."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Any, Iterator, Set

import pytest
import yaml
from ec2ha_testkit import awx_runner
from ec2ha_testkit.awx_survey import survey_variables

ROOT = awx_runner.ROOT
TEMPLATES = awx_runner.job_template_paths()


def strings(node: Any) -> Iterator[str]:
    """Every string of a YAML document, keys and values (comments are not in it)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from strings(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def playbook_strings(template: dict) -> list:
    return list(strings(yaml.safe_load((ROOT / template["playbook"]).read_text())))


def launch_variables_read(template: dict) -> Set[str]:
    """The variables of the playbook's own launch prefix (ec2ha_switchover_*, ec2ha_rejoin_*) it reads."""
    prefix = f"ec2ha_{Path(template['playbook']).stem}_"
    return {m for s in playbook_strings(template) for m in re.findall(rf"\b{prefix}\w+", s)}


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.stem)
def test_the_playbook_exists_in_the_collection(path):
    template = awx_runner.load(path)
    playbook = ROOT / template["playbook"]
    assert playbook.is_file() and playbook.parent == ROOT / "playbooks", template["playbook"]


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.stem)
def test_every_survey_variable_is_read_by_the_playbook(path):
    template = awx_runner.load(path)
    texts = playbook_strings(template)
    for variable in survey_variables(template):
        assert any(re.search(rf"\b{variable}\b", s) for s in texts), f"{template['playbook']} never reads {variable}"


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.stem)
def test_the_survey_asks_every_launch_variable_the_playbook_reads(path):
    """A variable added to the playbook (ec2ha_switchover_timeout, say) needs its question, or AWX
    refuses it on launch (ask_variables_on_launch is false)."""
    template = awx_runner.load(path)
    assert launch_variables_read(template) == set(survey_variables(template))


def test_the_launch_variables_are_the_ones_the_playbooks_document(job_templates):
    assert set(survey_variables(job_templates["switchover"])) == {
        "ec2ha_switchover_target", "ec2ha_switchover_max_lag_bytes", "ec2ha_switchover_force"}
    assert set(survey_variables(job_templates["rejoin"])) == {"ec2ha_rejoin_node"}


def test_the_job_templates_ask_what_an_operator_needs(job_templates):
    for name, template in job_templates.items():
        assert template["job_type"] == "run", name
        # The plays choose their hosts (localhost, then the in-memory group pair): a limit only skips plays.
        assert template["ask_limit_on_launch"] is False, name
        assert template["ask_variables_on_launch"] is False, name
        assert template["allow_simultaneous"] is False, name
        assert template["verbosity"] in range(6), name
    # AWX's "check" job type is the switchover's dry run.
    assert {n for n, t in job_templates.items() if t["ask_job_type_on_launch"]} == {"switchover"}
    assert len({t["name"] for t in job_templates.values()}) == len(job_templates)


def apply_task_fields(task_name: str, var: str) -> Set[str]:
    """The keys of a data file that apply.yml's task passes on (references to ``var.<key>``)."""
    tasks = yaml.safe_load((awx_runner.AWX_DIR / "tasks" / "apply_objects.yml").read_text())
    task = next(t for t in tasks if t["name"] == task_name)
    return {m for s in strings(task) for m in re.findall(rf"\b{var}\.(\w+)", s)}


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.stem)
def test_apply_passes_every_field_of_a_job_template(path):
    passed = apply_task_fields("Create or update the job templates and their surveys", "__ec2ha_awx_jt")
    assert set(awx_runner.load(path)) <= passed, set(awx_runner.load(path)) - passed


@pytest.mark.parametrize("path", awx_runner.credential_type_paths(), ids=lambda p: p.stem)
def test_apply_passes_every_field_of_a_credential_type(path):
    passed = apply_task_fields("Create or update the credential types", "__ec2ha_awx_type")
    assert set(awx_runner.load(path)) <= passed, set(awx_runner.load(path)) - passed


def test_the_folder_ships_in_the_built_collection():
    ignored = yaml.safe_load((ROOT / "galaxy.yml").read_text())["build_ignore"]
    shipped = [p.relative_to(ROOT).as_posix() for p in awx_runner.AWX_DIR.rglob("*") if p.is_file()]
    assert "extensions/awx/apply.yml" in shipped
    for path in shipped:
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        hits = [pattern for pattern in ignored for p in prefixes if fnmatch.fnmatch(p, pattern)]
        assert not hits, f"galaxy.yml build_ignore {hits} leaves {path} out of the tarball"
