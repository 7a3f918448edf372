# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""replication: the PAF clone, sync guard and promotion rule pass crm_verify
next to the heartbeat objects; DRBD config accepted by drbdadm."""

from __future__ import annotations

import socket
import subprocess
import xml.etree.ElementTree as ET

from roletools import require, set_fact_expr


def _heartbeat_script(inv) -> str:
    host_map = inv.evaluate("alpha", set_fact_expr("heartbeat", "cib.yml", "__heartbeat_host_map"))
    return inv.render("alpha", "heartbeat", "cib_stage.sh.j2", {"__heartbeat_host_map": host_map})


def _nvpairs(element) -> dict:
    return {nv.get("name"): nv.get("value") for nv in element.iter("nvpair")}


def test_promotable_clone_guard_and_rule_pass_crm_verify(inventory_factory, offline_cib):
    inv = inventory_factory()
    cib = offline_cib(["alpha", "bravo"])
    assert cib.push(_heartbeat_script(inv), inv.render("alpha", "replication", "cib_stage.sh.j2")) == "patched"
    root = ET.parse(cib.live).getroot()

    clone = root.find(".//resources/clone[@id='pgsqld-clone']")
    assert clone is not None
    meta = _nvpairs(clone.find("meta_attributes"))
    assert meta["promotable"] == "true" and meta["notify"] == "true" and meta["promoted-max"] == "1"
    primitive = clone.find("primitive[@id='pgsqld']")
    assert (primitive.get("provider"), primitive.get("type")) == ("heartbeat", "pgsqlms")
    params = _nvpairs(primitive.find("instance_attributes"))
    assert params["pgdata"] == "/etc/postgresql/15/main"
    assert params["datadir"] == "/var/lib/postgresql/15/main"
    monitors = {op.get("role"): op.get("interval") for op in primitive.iter("op") if op.get("name") == "monitor"}
    assert monitors == {"Promoted": "15s", "Unpromoted": "16s"}

    guard = root.find(".//resources/primitive[@id='pgsql-sync-guard']")
    assert guard.get("type") == "anything"
    assert "--mode sync --nodes alpha,bravo" in _nvpairs(guard)["cmdline_options"]
    colocation = root.find(".//constraints/rsc_colocation[@id='pgsql-sync-guard-with-promoted']")
    assert colocation.get("with-rsc-role") == "Promoted" and colocation.get("score") == "INFINITY"

    rule = root.find(".//constraints/rsc_location[@id='pgsqld-clone-promote-only-in-sync']/rule")
    assert rule.get("role") == "Promoted" and rule.get("score") == "-INFINITY"
    assert {e.get("operation") for e in rule.iter("expression")} == {"not_defined", "ne"}
    # The build-out primary is the one node allowed to be promoted at first.
    assert _nvpairs(root.find(".//nodes/node[@uname='alpha']")) == {"ec2ha-pgsql-sync": "1"}
    assert root.find(".//nodes/node[@uname='bravo']/instance_attributes") is None

    # The fence device from heartbeat is still there: roles do not overwrite each other.
    assert root.find(".//primitive[@id='fence-aws']") is not None


def test_second_push_is_a_no_op_and_keeps_the_guard_s_attribute(inventory_factory, offline_cib):
    inv = inventory_factory()
    cib = offline_cib(["alpha", "bravo"])
    script = inv.render("alpha", "replication", "cib_stage.sh.j2")
    assert cib.push(_heartbeat_script(inv), script) == "patched"
    assert cib.push(_heartbeat_script(inv), script) == "unchanged"
    # The guard has since decided alpha is not promotable: a rerun must not undo it.
    subprocess.run(["crm_attribute", "--node", "alpha", "--name", "ec2ha-pgsql-sync", "--lifetime", "forever",
                    "--update", "0"], env={"CIB_file": str(cib.live), "PATH": "/usr/sbin:/usr/bin"}, check=True,
                   capture_output=True)
    assert cib.push(_heartbeat_script(inv), script) == "unchanged"


def test_async_mode_drops_the_promotion_rule(inventory_factory, offline_cib):
    cib = offline_cib(["alpha", "bravo"])
    sync = inventory_factory()
    assert cib.push(_heartbeat_script(sync), sync.render("alpha", "replication", "cib_stage.sh.j2")) == "patched"
    asynchronous = inventory_factory({"replication_mode": "async"})
    script = asynchronous.render("alpha", "replication", "cib_stage.sh.j2")
    assert cib.push(_heartbeat_script(asynchronous), script) == "patched"
    root = ET.parse(cib.live).getroot()
    assert root.find(".//rsc_location[@id='pgsqld-clone-promote-only-in-sync']") is None
    assert "--mode async" in _nvpairs(root.find(".//primitive[@id='pgsql-sync-guard']"))["cmdline_options"]
    assert cib.push(_heartbeat_script(asynchronous), script) == "unchanged"


def _drbd(inv, tmp_path, name="r0.res"):
    path = tmp_path / name
    path.write_text(inv.render("alpha", "replication", "drbd.res.j2"))
    return path


def test_drbd_resource_passes_drbdadm_dump_and_dry_run_up(inventory_factory, tmp_path):
    require("drbdadm")
    # drbdadm only accepts a resource with an `on` section for this machine's host name.
    inv = inventory_factory(alpha={"heartbeat_node_name": socket.gethostname()})
    path = _drbd(inv, tmp_path)
    dump = subprocess.run(["drbdadm", "-c", str(path), "dump", "r0"], capture_output=True, text=True, check=False)
    assert dump.returncode == 0, dump.stderr
    assert "protocol           C;" in dump.stdout
    assert "address          ipv4 127.0.0.2:7789;" in dump.stdout
    up = subprocess.run(["drbdadm", "-c", str(path), "-d", "up", "r0"], capture_output=True, text=True, check=False)
    assert up.returncode == 0, up.stderr
    assert "drbdsetup new-peer r0 1 --_name=bravo" in up.stdout and "--protocol=C" in up.stdout

    async_inv = inventory_factory({"replication_mode": "async"}, alpha={"heartbeat_node_name": socket.gethostname()})
    dump = subprocess.run(["drbdadm", "-c", str(_drbd(async_inv, tmp_path, "a.res")), "dump", "r0"],
                          capture_output=True, text=True, check=False)
    assert dump.returncode == 0 and "protocol           A;" in dump.stdout


def test_drbdadm_rejects_a_resource_for_other_hosts(inventory_factory, tmp_path):
    require("drbdadm")
    path = _drbd(inventory_factory(), tmp_path)
    dump = subprocess.run(["drbdadm", "-c", str(path), "dump", "r0"], capture_output=True, text=True, check=False)
    assert dump.returncode != 0
    assert "not defined in your config (for this host)" in dump.stderr
