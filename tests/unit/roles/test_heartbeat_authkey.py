# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""heartbeat's authkey tasks through ansible-playbook: check mode reports and
writes nothing, a real run generates (or installs the given key), the next runs
change nothing, and the key never reaches the output.

Runs inside private pid/mount/net namespaces with tmpfs over /etc/corosync and
the cluster stack's state directories: the restart handlers the key change
notifies act there and die with the namespace."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

from roletools import require

PLAY = """
- name: Authkey flow
  hosts: pair
  gather_facts: false
  tasks:
    - name: Service backend
      ansible.builtin.include_role:
        name: ec2ha.cluster.heartbeat
        tasks_from: service_manager.yml
    - name: Authkey
      ansible.builtin.include_role:
        name: ec2ha.cluster.heartbeat
        tasks_from: authkey.yml
"""

BOOT = """set -e
mount --make-rprivate /
for d in /etc/corosync /run /dev/shm /var/lib/pacemaker /var/lib/corosync /var/log/pacemaker /var/log/corosync; do
  mount -t tmpfs tmpfs $d
done
cd {work}
set +e
run=0
for mode in --check "" --check ""; do
  run=$((run + 1))
  {playbook} -i inventory play.yml $mode {extra} > run$run.log 2>&1
  echo "run$run rc=$? key=$(base64 -w0 /etc/corosync/authkey 2>/dev/null) mode=$(stat -c %a /etc/corosync/authkey 2>/dev/null)"
done
"""


def _flow(tmp_path: Path, extra: str = "") -> tuple:
    require("unshare", "corosync-keygen", "base64")
    if os.geteuid() != 0:
        pytest.skip("needs root (namespaces, tmpfs over /etc/corosync)")
    playbook = Path(sys.executable).with_name("ansible-playbook")
    (tmp_path / "play.yml").write_text(PLAY)
    (tmp_path / "inventory").write_text(
        f"[pair]\nalpha\nbravo\n[pair:vars]\nansible_connection=local\nansible_python_interpreter={sys.executable}\n")
    (tmp_path / "boot.sh").write_text(BOOT.format(work=tmp_path, playbook=playbook, extra=extra))
    collections = Path(__file__).resolve().parents[3] / ".build" / "collections"
    env = dict(os.environ, ANSIBLE_NOCOLOR="1",
               ANSIBLE_COLLECTIONS_PATH=os.environ.get("ANSIBLE_COLLECTIONS_PATH", str(collections)))
    done = subprocess.run(["unshare", "--mount", "--pid", "--net", "--fork", "--kill-child", "--mount-proc",
                           "sh", str(tmp_path / "boot.sh")], capture_output=True, text=True, timeout=600, env=env, check=False)
    lines = done.stdout.splitlines()
    assert len(lines) == 4 and all(" rc=0 " in line for line in lines), done.stdout + done.stderr
    logs = [(tmp_path / f"run{i}.log").read_text() for i in range(1, 5)]
    changed = [int(log.split("alpha")[-1].split("changed=")[1].split()[0]) for log in logs]
    keys = [line.split("key=")[1].split()[0] if "key= " not in line else "" for line in lines]
    return changed, keys, logs, lines


def test_generated_once_check_mode_writes_nothing(tmp_path):
    changed, keys, logs, lines = _flow(tmp_path)
    assert keys[0] == ""  # check mode: no key written
    assert changed[0] >= 1  # ... but the pending write is reported
    assert len(base64.b64decode(keys[1])) == 256 and "mode=400" in lines[1]
    assert keys[1] == keys[2] == keys[3]
    assert changed[2] == 0 and changed[3] == 0
    assert all(keys[1] not in log for log in logs)


def test_given_key_replaces_a_different_one(tmp_path):
    key = base64.b64encode(os.urandom(256)).decode()
    changed, keys, logs, _output = _flow(tmp_path, extra=f"-e heartbeat_authkey={key}")
    assert keys[0] == "" and changed[0] >= 1
    assert keys[1] == key
    assert changed[2] == 0 and changed[3] == 0
    assert all(key not in log for log in logs)
