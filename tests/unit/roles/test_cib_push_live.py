# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ec2ha.cluster.cib_objects against a LIVE Pacemaker, not a file: a one-node
corosync + pacemaker started inside private pid/mount/net/uts namespaces
(loopback only, tmpfs over every state directory), corosync.conf rendered by
the role. The heartbeat and replication CIB tasks run four times through
ansible-playbook: check mode with --diff (reports the change and shows it,
writes nothing: the same CIB epoch), real (patches), check mode and real again
(changed=0).

Part of make test (well under a minute here); skipped with the reason where
corosync/pacemaker are not installed or not root. Resources never start: the
cluster is put in maintenance mode in the same patch, and PostgreSQL paths
point nowhere (the mount namespace shares this machine's disk).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from roletools import Inventory, require

PLAY = """
- name: CIB push of heartbeat and replication against a live one-node Pacemaker
  hosts: pair
  gather_facts: false
  vars:
    heartbeat_fence_region: us-east-1
    heartbeat_cib_wait_retries: 90
    heartbeat_cib_wait_delay: 1
    heartbeat_cluster_properties:
      maintenance-mode: "true"
      enable-startup-probes: "false"
    replication_password: pw
    replication_vip: 192.168.100.10
    replication_pg_datadir: /nonexistent/ec2ha-test
    replication_pg_confdir: /nonexistent/ec2ha-test-conf
  tasks:
    - name: Heartbeat facts
      ansible.builtin.include_role:
        name: ec2ha.cluster.heartbeat
        tasks_from: validate.yml
    - name: Replication facts
      ansible.builtin.include_role:
        name: ec2ha.cluster.replication
        tasks_from: validate.yml
    - name: Heartbeat CIB
      ansible.builtin.include_role:
        name: ec2ha.cluster.heartbeat
        tasks_from: cib.yml
    - name: Replication CIB
      ansible.builtin.include_role:
        name: ec2ha.cluster.replication
        tasks_from: cib.yml
"""

INVENTORY = """[pair]
alpha ansible_host=127.0.0.1 heartbeat_instance_id=i-0aaaaaaaaaaaaaaa1
bravo ansible_host=127.0.0.2 heartbeat_instance_id=i-0bbbbbbbbbbbbbbb2
[pair:vars]
ansible_connection=local
ansible_python_interpreter={python}
"""

# PID 1 of the namespaces. Everything it starts dies with it.
BOOT = """set -e
mount --make-rprivate /
hostname alpha
ip link set lo up
for d in /run /dev/shm /var/lib/pacemaker /var/lib/corosync /var/log/pacemaker /var/log/corosync /etc/corosync; do
  mount -t tmpfs tmpfs $d
done
mkdir -p /var/lib/pacemaker/cib /var/lib/pacemaker/pengine /var/lib/pacemaker/blackbox /var/lib/pacemaker/cores
chown -R hacluster:haclient /var/lib/pacemaker /var/log/pacemaker
cp {work}/corosync.conf {work}/authkey /etc/corosync/
chmod 0400 /etc/corosync/authkey
corosync -f > {work}/corosync.out 2>&1 &
/usr/sbin/pacemakerd -f > {work}/pacemakerd.out 2>&1 &
set +e
cd {work}
for i in $(seq 120); do
  crm_mon --one-shot --output-as=xml 2>/dev/null | grep -q 'current_dc present="true"' && break
  sleep 1
done
cibadmin --query > before.xml
run=0
for mode in "--check --diff" "" --check ""; do
  run=$((run + 1))
  {playbook} -i inventory play.yml $mode > run$run.log 2>&1
  echo "run$run rc=$?"
  cibadmin --query > after$run.xml
done
crm_verify -L > verify.log 2>&1; echo "verify rc=$?"
cibadmin --query > live.xml
"""


def _epoch(path: Path) -> str:
    return ET.parse(path).getroot().get("epoch")


def test_check_push_check_push_on_a_live_cluster(tmp_path: Path):
    require("unshare", "corosync", "pacemakerd", "corosync-keygen", "crm_mon", "cibadmin", "ip")
    if os.geteuid() != 0:
        pytest.skip("needs root (namespaces, tmpfs mounts)")
    work = tmp_path
    playbook = Path(sys.executable).with_name("ansible-playbook")
    inv = Inventory({"alpha": {"heartbeat_node_addr": "127.0.0.1"}},
                    {"heartbeat_authkey_file": "/etc/corosync/authkey", "heartbeat_token": 3000})
    (work / "corosync.conf").write_text(inv.render("alpha", "heartbeat", "corosync.conf.j2")
                                        .replace("to_logfile: yes", "to_logfile: no"))
    subprocess.run(["corosync-keygen", "-l", "2048", "-k", str(work / "authkey")], check=True, capture_output=True)
    (work / "play.yml").write_text(PLAY)
    (work / "inventory").write_text(INVENTORY.format(python=sys.executable))
    (work / "boot.sh").write_text(BOOT.format(work=work, playbook=playbook))
    collections = Path(__file__).resolve().parents[3] / ".build" / "collections"
    env = dict(os.environ, ANSIBLE_NOCOLOR="1",
               ANSIBLE_COLLECTIONS_PATH=os.environ.get("ANSIBLE_COLLECTIONS_PATH", str(collections)))
    done = subprocess.run(["unshare", "--mount", "--pid", "--net", "--uts", "--fork", "--kill-child",
                           "--mount-proc", "sh", str(work / "boot.sh")],
                          capture_output=True, text=True, timeout=600, env=env, check=False)
    runs = ["run1.log", "run2.log", "run3.log", "run4.log"]
    logs = {n: (work / n).read_text() for n in runs if (work / n).exists()}
    assert all(f"{n[:-4]} rc=0" in done.stdout for n in runs), done.stdout + done.stderr + str(logs)
    changed = [re.search(r"alpha\s+: ok=\d+\s+changed=(\d+)", logs[n]).group(1) for n in runs]
    # check mode reports both pending patches (heartbeat, replication) and writes nothing;
    # the real run patches twice; then nothing is left to do.
    assert changed == ["2", "2", "0", "0"], changed
    assert "fence-aws" not in (work / "after1.xml").read_text()
    assert _epoch(work / "after1.xml") == _epoch(work / "before.xml")
    assert int(_epoch(work / "after2.xml")) > int(_epoch(work / "before.xml"))
    assert _epoch(work / "after4.xml") == _epoch(work / "after2.xml")
    # --diff shows the objects the patch would create (+ lines of the callback's diff).
    diff = logs["run1.log"]
    for needle in ('+<primitive id="fence-aws" class="stonith" type="fence_aws">', '+<clone id="pgsqld-clone">',
                   'name="stonith-enabled" value="true"'):
        assert needle in diff, diff[-4000:]
    assert "fence-aws" in (work / "after2.xml").read_text()
    assert "verify rc=0" in done.stdout, (work / "verify.log").read_text()
    live = (work / "live.xml").read_text()
    for needle in ('<primitive id="fence-aws" class="stonith" type="fence_aws">', '<clone id="pgsqld-clone">',
                   'name="ec2ha-pgsql-sync" value="1"', 'id="pgsqld-clone-promote-only-in-sync"'):
        assert needle in live
