# -*- coding: utf-8 -*-
"""recovery_kit: the endpoint resources staged into an offline CIB beside the PAF clone, judged by
crm_verify, and the installed agent shim importing the collection's own scenario code."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Optional

import yaml
from node_programs import render_program
from roletools import ROLES, defaults

ENDPOINTS = {"recovery_kit_vip_route_vip": "192.168.100.10", "recovery_kit_elastic_ip_public_ip": "203.0.113.25",
             "recovery_kit_dns_record_zone": "db.internal", "recovery_kit_dns_record_name": "primary",
             "recovery_kit_endpoint_url": "https://ec2.us-east-1.amazonaws.com"}


def _kit(**values) -> dict:
    kit = defaults("recovery_kit")
    kit.update(yaml.safe_load((ROLES / "recovery_kit" / "vars" / "main.yml").read_text()))
    kit.update(values)
    return kit


def _scripts(inventory_factory, **values) -> list:
    # The kit's defaults go in as inventory settings, so their own templates are rendered as in a play.
    inv = inventory_factory(_kit(**values))
    return (inv.cib_args("alpha", "heartbeat", "cib.yml") + inv.cib_args("alpha", "replication", "cib.yml")
            + inv.cib_args("alpha", "recovery_kit", "main.yml"))


def _nvpairs(element) -> dict:
    return {nv.get("name"): nv.get("value") for nv in element.iter("nvpair")}


def test_each_endpoint_follows_the_promoted_postgresql(inventory_factory, offline_cib):
    cib = offline_cib(["alpha", "bravo"])
    assert cib.push(*_scripts(inventory_factory, **ENDPOINTS)) == "patched"
    root = ET.parse(cib.live).getroot()
    kinds = {"ec2ha-vip-route": "vip_route", "ec2ha-elastic-ip": "elastic_ip", "ec2ha-dns-record": "dns_record"}
    for rid, kind in kinds.items():
        primitive = root.find(f".//resources/primitive[@id='{rid}']")
        assert (primitive.get("class"), primitive.get("provider"), primitive.get("type")) == ("ocf", "ec2ha", kind)
        assert _nvpairs(primitive)["endpoint_url"] == "https://ec2.us-east-1.amazonaws.com"
        colocation = root.find(f".//constraints/rsc_colocation[@id='{rid}-with-promoted']")
        assert (colocation.get("with-rsc"), colocation.get("with-rsc-role")) == ("pgsqld-clone", "Promoted")
        after = root.find(f".//constraints/rsc_order[@id='{rid}-after-promote']")
        assert (after.get("first-action"), after.get("then-action")) == ("promote", "start")
        # Stopped only after the demotion: the standby streams the shutdown checkpoint over the VIP.
        stop = root.find(f".//constraints/rsc_order[@id='{rid}-after-demote']")
        assert (stop.get("first"), stop.get("first-action"), stop.get("then"), stop.get("then-action")) == (
            "pgsqld-clone", "demote", rid, "stop")
        assert root.find(f".//constraints/rsc_order[@id='{rid}-before-demote']") is None
    assert _nvpairs(root.find(".//primitive[@id='ec2ha-vip-route']"))["vip"] == "192.168.100.10"
    assert _nvpairs(root.find(".//primitive[@id='ec2ha-dns-record']"))["record"] == "primary"
    # Idempotent: the same push again changes nothing.
    assert cib.push(*_scripts(inventory_factory, **ENDPOINTS)) == "unchanged"


def test_an_endpoint_no_longer_wanted_leaves_with_its_constraints(inventory_factory, offline_cib):
    cib = offline_cib(["alpha", "bravo"])
    assert cib.push(*_scripts(inventory_factory, **ENDPOINTS)) == "patched"
    fewer = {**ENDPOINTS, "recovery_kit_elastic_ip_public_ip": ""}
    assert cib.push(*_scripts(inventory_factory, **fewer)) == "patched"
    root = ET.parse(cib.live).getroot()
    assert root.find(".//primitive[@id='ec2ha-elastic-ip']") is None
    assert not [c for c in root.find(".//constraints") if c.get("id", "").startswith("ec2ha-elastic-ip")]
    assert root.find(".//primitive[@id='ec2ha-vip-route']") is not None


def _installed_program(tmp_path: Path, name: str, module: str, metadata: Optional[Path] = None) -> Path:
    """The node code as node_code installs it (only __recovery_kit_code under python_dir) and the
    program.j2 executable, run by the node's interpreter (Debian's python3 and python3-boto3)
    isolated: only the installed copy is on its path, not the checkout (the venv's .pth names it),
    not Ansible."""
    code = tmp_path / "python" / "ansible_collections" / "ec2ha" / "cluster" / "plugins" / "module_utils"
    if not code.exists():
        code.mkdir(parents=True)
        for file in _kit()["__recovery_kit_code"]:
            (code / file).write_bytes((ROLES.parent / "plugins" / "module_utils" / file).read_bytes())
    shim = render_program(name, module, tmp_path / "python", metadata).replace("/usr/bin/python3 -c", "/usr/bin/python3 -I -c")
    program = tmp_path / name
    program.write_text(shim)
    return program


def test_agent_shim_runs_the_collection_code(tmp_path: Path) -> None:
    """The installed layout (code under python_dir/ansible_collections/...) answers meta-data."""
    agent = _installed_program(tmp_path, "vip_route", "ocf_agent")
    done = subprocess.run(["sh", str(agent), "meta-data"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert ET.fromstring(done.stdout).get("name") == "vip_route"


def test_an_agent_serves_the_kept_meta_data_and_its_code_answers_when_asked(tmp_path: Path) -> None:
    """Pacemaker asks meta-data before each start: the agent serves the role's kept copy without
    starting Python; EC2HA_METADATA_FROM_CODE=1 (the role's check that writes the copy) and a
    missing copy get the code's own answer."""
    kept = tmp_path / "metadata" / "vip_route.xml"
    agent = _installed_program(tmp_path, "vip_route", "ocf_agent", kept)

    def meta_data(**env: str) -> str:
        done = subprocess.run(["sh", str(agent), "meta-data"], capture_output=True, text=True, cwd=tmp_path,
                              timeout=60, check=False, env={"PATH": "/usr/bin:/bin", **env})
        assert done.returncode == 0, done.stderr
        return done.stdout

    from_code = meta_data()                        # no copy yet
    assert ET.fromstring(from_code).get("name") == "vip_route"
    kept.parent.mkdir()
    kept.write_text("<resource-agent name='kept copy'/>\n")
    assert meta_data() == "<resource-agent name='kept copy'/>\n"
    assert meta_data(EC2HA_METADATA_FROM_CODE="1") == from_code
    # The other actions still run the code (an unknown one: OCF_ERR_UNIMPLEMENTED, 3).
    done = subprocess.run(["sh", str(agent), "no-such-action"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=60, check=False)
    assert done.returncode == 3, (done.returncode, done.stderr)


def test_the_sync_guard_runs_from_the_installed_node_code(tmp_path: Path) -> None:
    """The replication role installs the guard through node_code: the same copy must hold all it imports."""
    guard = _installed_program(tmp_path, "ec2ha-pgsql-sync-guard", "sync_guard")
    done = subprocess.run(["sh", str(guard), "--help"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "--settings" in done.stdout


def test_each_endpoint_forgets_its_failures_after_the_failure_timeout(inventory_factory, offline_cib):
    """A failed start makes the fail count INFINITY (start-failure-is-fatal) on the only node the
    endpoint may run on: failure-timeout lets Pacemaker try again; migration-threshold stops a
    repair fight (a monitor failing again and again) until the failures expire."""
    cib = offline_cib(["alpha", "bravo"])
    assert cib.push(*_scripts(inventory_factory, **ENDPOINTS)) == "patched"
    root = ET.parse(cib.live).getroot()
    for rid in ("ec2ha-vip-route", "ec2ha-elastic-ip", "ec2ha-dns-record"):
        meta = root.find(f".//primitive[@id='{rid}']/meta_attributes")
        assert meta is not None, f"{rid} has no meta_attributes"
        assert _nvpairs(meta) == {"failure-timeout": "60s", "migration-threshold": "3"}
    tuned = {**ENDPOINTS, "recovery_kit_failure_timeout": "2min", "recovery_kit_migration_threshold": 5}
    assert cib.push(*_scripts(inventory_factory, **tuned)) == "patched"
    meta = ET.parse(cib.live).getroot().find(".//primitive[@id='ec2ha-dns-record']/meta_attributes")
    assert _nvpairs(meta) == {"failure-timeout": "2min", "migration-threshold": "5"}


def test_the_deprecated_1_0_names_still_define_the_endpoints(inventory_factory, offline_cib):
    cib = offline_cib(["alpha", "bravo"])
    old = {"recovery_kit_vip": "192.168.100.10", "recovery_kit_eip_public_ip": "203.0.113.25",
           "recovery_kit_dns_zone": "db.internal", "recovery_kit_dns_record": "primary", "recovery_kit_dns_ttl": 45}
    assert cib.push(*_scripts(inventory_factory, **old)) == "patched"
    root = ET.parse(cib.live).getroot()
    assert _nvpairs(root.find(".//primitive[@id='ec2ha-vip-route']"))["vip"] == "192.168.100.10"
    assert _nvpairs(root.find(".//primitive[@id='ec2ha-elastic-ip']"))["public_ip"] == "203.0.113.25"
    dns = _nvpairs(root.find(".//primitive[@id='ec2ha-dns-record']"))
    assert (dns["zone"], dns["record"], dns["ttl"]) == ("db.internal", "primary", "45")
    # The same cluster, now configured with the new names: nothing to change.
    renamed = {"recovery_kit_vip_route_vip": "192.168.100.10", "recovery_kit_elastic_ip_public_ip": "203.0.113.25",
               "recovery_kit_dns_record_zone": "db.internal", "recovery_kit_dns_record_name": "primary",
               "recovery_kit_dns_record_ttl": 45}
    assert cib.push(*_scripts(inventory_factory, **renamed)) == "unchanged"


def test_a_1_0_cluster_loses_its_old_endpoint_ids_in_the_same_patch(inventory_factory, offline_cib):
    """1.0.0 named the primitives ec2ha-vip / ec2ha-eip / ec2ha-dns: the next run replaces them."""
    cib = offline_cib(["alpha", "bravo"])
    assert cib.push(*_scripts(inventory_factory, **ENDPOINTS)) == "patched"
    env = {"CIB_file": str(cib.live), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    for rid, kind in (("ec2ha-vip", "vip_route"), ("ec2ha-eip", "elastic_ip"), ("ec2ha-dns", "dns_record")):
        subprocess.run(["cibadmin", "--create", "--scope", "resources", "--xml-text",
                        f'<primitive id="{rid}" class="ocf" provider="ec2ha" type="{kind}"/>'],
                       env=env, check=True, capture_output=True)
        subprocess.run(["cibadmin", "--create", "--scope", "constraints", "--xml-text",
                        f'<rsc_colocation id="{rid}-with-promoted" rsc="{rid}" with-rsc="pgsqld-clone" '
                        'with-rsc-role="Promoted" score="INFINITY"/>'], env=env, check=True, capture_output=True)
        subprocess.run(["cibadmin", "--create", "--scope", "constraints", "--xml-text",
                        f'<rsc_order id="{rid}-before-demote" first="{rid}" first-action="stop" then="pgsqld-clone" '
                        'then-action="demote" kind="Mandatory" symmetrical="false"/>'], env=env, check=True,
                       capture_output=True)
    assert cib.push(*_scripts(inventory_factory, **ENDPOINTS)) == "patched"
    root = ET.parse(cib.live).getroot()
    for rid in ("ec2ha-vip", "ec2ha-eip", "ec2ha-dns"):
        assert root.find(f".//primitive[@id='{rid}']") is None
        assert root.find(f".//rsc_colocation[@id='{rid}-with-promoted']") is None
        assert root.find(f".//rsc_order[@id='{rid}-before-demote']") is None
    assert root.find(".//primitive[@id='ec2ha-vip-route']") is not None
