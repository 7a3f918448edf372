# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""heartbeat: corosync.conf accepted by corosync -t; the CIB objects it gives cib_objects pass
crm_verify, hold the fence_aws device (a secret key as a secret object), and a second push changes nothing."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ansible_collections.ec2ha.cluster.plugins.module_utils.pacemaker.runner import PacemakerError
from roletools import require


def _corosync_test(conf: str, tmp_path: Path) -> subprocess.CompletedProcess:
    path = tmp_path / "corosync.conf"
    # corosync -t would append to the machine's /var/log/corosync/corosync.log otherwise.
    path.write_text(conf.replace("to_logfile: yes", "to_logfile: no"))
    return subprocess.run(["corosync", "-t", "-c", str(path)], capture_output=True, text=True, check=False)


@pytest.fixture
def authkey(tmp_path: Path) -> Path:
    require("corosync", "corosync-keygen")
    key = tmp_path / "authkey"
    subprocess.run(["corosync-keygen", "-l", "2048", "-k", str(key)], capture_output=True, check=True)
    return key


def test_corosync_conf_with_defaults_passes_corosync_test(inventory_factory, authkey, tmp_path):
    inv = inventory_factory({"heartbeat_authkey_file": str(authkey)})
    conf = inv.render("alpha", "heartbeat", "corosync.conf.j2")
    result = _corosync_test(conf, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    for line in ("transport: knet", "crypto_cipher: aes256", "crypto_hash: sha256", "token: 30000",
                 "consensus: 36000", "two_node: 1", "ring0_addr: 127.0.0.2", "name: bravo"):
        assert line in conf


def test_lab_timing_derives_consensus(inventory_factory, authkey, tmp_path):
    inv = inventory_factory({"heartbeat_authkey_file": str(authkey), "heartbeat_token": 3000})
    conf = inv.render("alpha", "heartbeat", "corosync.conf.j2")
    assert "token: 3000\n" in conf and "consensus: 3600\n" in conf
    assert _corosync_test(conf, tmp_path).returncode == 0


def test_corosync_test_rejects_a_broken_rendering(inventory_factory, authkey, tmp_path):
    # The check above can fail: a bad hash value is refused by corosync itself.
    inv = inventory_factory({"heartbeat_authkey_file": str(authkey)})
    conf = inv.render("alpha", "heartbeat", "corosync.conf.j2").replace("crypto_hash: sha256", "crypto_hash: crc")
    assert _corosync_test(conf, tmp_path).returncode != 0


def _cib(inv) -> list:
    """What tasks/cib.yml gives ec2ha.cluster.cib_objects."""
    return inv.cib_args("alpha", "heartbeat", "cib.yml")


def test_cib_holds_fence_aws_and_passes_crm_verify(inventory_factory, offline_cib):
    inv = inventory_factory()
    cib = offline_cib(["alpha", "bravo"])
    assert cib.push(*_cib(inv)) == "patched"
    root = ET.parse(cib.live).getroot()
    fence = root.find(".//resources/primitive[@id='fence-aws']")
    assert fence is not None and fence.get("class") == "stonith" and fence.get("type") == "fence_aws"
    params = {nv.get("name"): nv.get("value") for nv in fence.iter("nvpair")}
    assert params["pcmk_host_map"] == "alpha:i-0aaaaaaaaaaaaaaa1;bravo:i-0bbbbbbbbbbbbbbb2"
    # No random delay: the primary's priority decides a fence race (priority-fencing-delay).
    assert params["pcmk_delay_max"] == "0s"
    assert params["region"] == "us-east-1"
    assert "secret_key" not in params
    props = {nv.get("name"): nv.get("value") for nv in root.iterfind(".//crm_config//nvpair")}
    assert props["stonith-enabled"] == "true"
    assert props["priority-fencing-delay"] == "15s"
    defaults = {nv.get("name"): nv.get("value") for nv in root.iterfind(".//rsc_defaults//nvpair")}
    assert defaults == {"resource-stickiness": "10", "migration-threshold": "5"}


def test_second_push_changes_nothing_and_a_change_is_patched(inventory_factory, offline_cib):
    cib = offline_cib(["alpha", "bravo"])
    assert cib.push(*_cib(inventory_factory())) == "patched"
    assert cib.push(*_cib(inventory_factory())) == "unchanged"
    faster = inventory_factory({"heartbeat_fence_delay_max": 2})
    assert cib.push(*_cib(faster)) == "patched"
    root = ET.parse(cib.live).getroot()
    delay = root.find(".//primitive[@id='fence-aws']//nvpair[@name='pcmk_delay_max']")
    assert delay.get("value") == "2s"
    # Replaced in place: still one fence device, not a second copy.
    assert len(root.findall(".//primitive[@id='fence-aws']")) == 1
    assert cib.push(*_cib(faster)) == "unchanged"


def test_a_secret_key_travels_as_a_secret_object(inventory_factory, offline_cib):
    keyed = inventory_factory({"heartbeat_fence_access_key": "AKIAEXAMPLE", "heartbeat_fence_secret_key": "s3cr3t"})
    (args,) = _cib(keyed)
    assert not [o for o in args["objects"] if "fence_aws" in str(o)]
    assert len(args["secret_objects"]) == 1 and 'value="s3cr3t"' in args["secret_objects"][0]
    cib = offline_cib(["alpha", "bravo"])
    assert cib.push(args) == "patched"
    params = {nv.get("name"): nv.get("value") for nv in ET.parse(cib.live).getroot().iterfind(
        ".//primitive[@id='fence-aws']//nvpair")}
    assert (params["access_key"], params["secret_key"]) == ("AKIAEXAMPLE", "s3cr3t")
    (plain,) = _cib(inventory_factory())
    assert plain["secret_objects"] == [] and any("fence_aws" in str(o) for o in plain["objects"])


def test_crm_verify_rejects_stonith_without_a_device(inventory_factory, offline_cib):
    # The verification step can fail: stonith-enabled=true and no fence device.
    cib = offline_cib(["alpha", "bravo"])
    (args,) = _cib(inventory_factory())
    without_device = {**args, "objects": [], "secret_objects": []}
    before = cib.live.read_text()
    with pytest.raises(PacemakerError, match="crm_verify refused the staged CIB") as refused:
        cib.push(without_device)
    assert cib.live.read_text() == before
    # What the layer keys its failure on (crm_verify says "Errors found"), and why.
    assert any("no STONITH resources have been defined" in m for m in refused.value.messages)
    # A preview (check mode) reports it instead: the device may come from an earlier role's task.
    assert cib.push(without_device, check_mode=True) == "patched"


def _assertion(task_name: str):
    """The `that` and `fail_msg` of one assert task of heartbeat's validate.yml: the role's own code."""
    import yaml
    from roletools import ROLES
    for task in yaml.safe_load((ROLES / "heartbeat" / "tasks" / "validate.yml").read_text()):
        if task.get("name") == task_name:
            return task["ansible.builtin.assert"]
    raise AssertionError(f"no task {task_name!r} in heartbeat's validate.yml")


def _holds(inv, task_name: str) -> bool:
    that = _assertion(task_name)["that"]
    conditions = that if isinstance(that, list) else [that]
    return all(inv.evaluate("alpha", "{{ " + c + " }}") for c in conditions)


def test_role_refuses_a_cluster_without_fencing(inventory_factory):
    # Before: heartbeat_stonith_enabled: false was accepted, and a partition gave two primaries.
    assert _holds(inventory_factory(), "Refuse a cluster without fencing")
    assert not _holds(inventory_factory({"heartbeat_stonith_enabled": False}), "Refuse a cluster without fencing")
    message = _assertion("Refuse a cluster without fencing")["fail_msg"]
    assert "two writable primaries" in message and "\n" not in message.strip()


@pytest.mark.parametrize("priority, random_max, ok", [(15, 0, True), (4, 1, True), (4, 2, False), (0, 0, False)])
def test_role_wants_the_priority_delay_to_decide_fence_races(inventory_factory, priority, random_max, ok):
    inv = inventory_factory({"heartbeat_priority_fencing_delay": priority, "heartbeat_fence_delay_max": random_max})
    assert _holds(inv, "Fail when the fence race would not be decided by priority") is ok
