# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The playbooks say what their inventory lacks, in one sentence, before they touch anything
(issue 9): run against an inventory of the controller alone, with no variables."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, playbook: str, *extra: str) -> dict:
    """The playbook's one failed task: its name and message, and that no task before it changed anything."""
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK="default",
               ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".build" / "collections"))
    done = subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(inventory),
                           str(ROOT / "playbooks" / playbook), *extra],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode != 0, done.stdout[-2000:]
    failures = re.findall(r"^TASK \[(.+?)\] \*+\n(?:.*\n)*?fatal: \[localhost\]: FAILED! => (\{.*\})$",
                          done.stdout, re.M)
    assert len(failures) == 1, done.stdout[-2000:]
    assert re.search(r"^localhost +: ok=\d+ +changed=0 ", done.stdout, re.M), done.stdout[-2000:]
    return {"task": failures[0][0], "msg": json.loads(failures[0][1])["msg"]}


@pytest.mark.parametrize("playbook, extra, words", [
    ("site.yml", (), ["ec2ha_cluster_name, ec2ha_region, ec2ha_scenarios, ec2ha_nodes (two nodes)"]),
    ("site.yml", ("-e", "ec2ha_cluster_name=pg", "-e", "ec2ha_region=eu-west-1", "-e", '{"ec2ha_scenarios": ["route_table"]}'),
     ["needs, in the controller's (localhost's) variables, ec2ha_nodes (two nodes)"]),
    ("rejoin.yml", (), ["ec2ha_rejoin_node is not set"]),
    ("rejoin.yml", ("-e", "ec2ha_rejoin_node=pg1"), ["ec2ha_cluster_name, ec2ha_region"]),
    ("switchover.yml", (), ["ec2ha_switchover_target is not set"]),
    ("switchover.yml", ("-e", "ec2ha_switchover_target=pg2"), ["ec2ha_cluster_name, ec2ha_region, ec2ha_scenarios"]),
    ("failover.yml", (), ["ec2ha_failover_target is not set"]),
    ("failover.yml", ("-e", "ec2ha_failover_target=pg2"), ["ec2ha_cluster_name, ec2ha_region, ec2ha_scenarios"]),
])
def test_a_missing_variable_is_one_sentence_from_the_play(tmp_path, playbook, extra, words):
    failed = _run(tmp_path, playbook, *extra)
    assert failed["task"].startswith("Check ")
    message = failed["msg"]
    assert all(w in message for w in words), message
    assert "\n" not in message and message.count(". ") == 0 and message.endswith(".")
