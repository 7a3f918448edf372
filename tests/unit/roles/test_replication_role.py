# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""replication: the PAF clone, sync guard and promotion rule pass crm_verify
next to the heartbeat objects; DRBD config accepted by drbdadm; the TLS tasks
(tasks/tls.yml) through ansible-playbook on this machine: a CA on the first
host, a key and certificate per node, re-issued only when something is wrong,
your own certificates checked before they are installed."""

from __future__ import annotations

import os
import pwd
import socket
import stat
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from roletools import require, run_role_tasks


def _cib(inv) -> list:
    """What heartbeat's and replication's tasks/cib.yml give ec2ha.cluster.cib_objects, in play order."""
    return inv.cib_args("alpha", "heartbeat", "cib.yml") + inv.cib_args("alpha", "replication", "cib.yml")


def _nvpairs(element) -> dict:
    return {nv.get("name"): nv.get("value") for nv in element.iter("nvpair")}


def test_promotable_clone_guard_and_rule_pass_crm_verify(inventory_factory, offline_cib):
    inv = inventory_factory()
    cib = offline_cib(["alpha", "bravo"])
    assert cib.push(*_cib(inv)) == "patched"
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
    # The guard runs with the role's settings file: sync mode, both nodes.
    assert _nvpairs(guard)["cmdline_options"] == "--settings /etc/ec2ha/pgsql-sync-guard.json"
    settings = inv.evaluate("alpha", "{{ __replication_guard_settings }}")
    assert settings["mode"] == "sync" and settings["nodes"] == ["alpha", "bravo"]
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
    assert cib.push(*_cib(inv)) == "patched"
    assert cib.push(*_cib(inv)) == "unchanged"
    # The guard has since decided alpha is not promotable: a rerun must not undo it.
    subprocess.run(["crm_attribute", "--node", "alpha", "--name", "ec2ha-pgsql-sync", "--lifetime", "forever",
                    "--update", "0"], env={"CIB_file": str(cib.live), "PATH": "/usr/sbin:/usr/bin"}, check=True,
                   capture_output=True)
    assert cib.push(*_cib(inv)) == "unchanged"


def test_async_mode_drops_the_promotion_rule(inventory_factory, offline_cib):
    cib = offline_cib(["alpha", "bravo"])
    sync = inventory_factory()
    assert cib.push(*_cib(sync)) == "patched"
    asynchronous = inventory_factory({"replication_mode": "async"})
    assert cib.push(*_cib(asynchronous)) == "patched"
    root = ET.parse(cib.live).getroot()
    assert root.find(".//rsc_location[@id='pgsqld-clone-promote-only-in-sync']") is None
    # The guard runs with the role's settings file, which says async.
    guard = _nvpairs(root.find(".//primitive[@id='pgsql-sync-guard']"))
    assert guard["cmdline_options"] == "--settings /etc/ec2ha/pgsql-sync-guard.json"
    assert asynchronous.evaluate("alpha", "{{ __replication_guard_settings }}")["mode"] == "async"
    assert cib.push(*_cib(asynchronous)) == "unchanged"


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


# ---------------------------------------------------------------- TLS (tasks/tls.yml)

TLS_TASKS = ["validate.yml", "tls.yml"]


class TlsPair:
    """alpha and bravo on this machine, each with its own TLS directory; the CA directory
    belongs to alpha, the first host. The handler's reload names a cluster that does not exist."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.ca = base / "ca"
        self.hosts = {h: {"heartbeat_node_addr": addr, "replication_tls_dir": str(base / h)}
                      for h, addr in (("alpha", "127.0.0.1"), ("bravo", "127.0.0.2"))}
        self.common = {"replication_vip": "192.168.100.10", "replication_password": "pw",
                       "replication_tls_ca_dir": str(self.ca), "replication_pg_cluster": "ec2ha-test-none"}
        self.runs = 0

    def run(self, *args: str, **common):
        self.runs += 1
        return run_role_tasks(self.base / f"run{self.runs}", "replication", TLS_TASKS, self.hosts,
                              {**self.common, **common}, *args)

    def file(self, host: str, name: str) -> Path:
        return self.base / host / name

    def cert(self, host: str) -> bytes:
        return self.file(host, "node.crt").read_bytes()

    def verify(self, host: str, *options: str) -> subprocess.CompletedProcess:
        return subprocess.run(["openssl", "verify", "-CAfile", str(self.file(host, "ca.crt")), *options,
                               str(self.file(host, "node.crt"))], capture_output=True, text=True, check=False)


@pytest.fixture
def tls_pair(tmp_path: Path) -> TlsPair:
    require("openssl", "runuser")
    if os.geteuid() != 0:
        pytest.skip("needs root (files owned by postgres)")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("needs the postgres user (apt-get install postgresql-15)")
    return TlsPair(tmp_path)


def _owner_mode(path: Path) -> tuple:
    st = path.stat()
    return pwd.getpwuid(st.st_uid).pw_name, stat.S_IMODE(st.st_mode)


def test_tls_check_run_check_run_then_nothing_changes(tls_pair):
    first_check = tls_pair.run("--check")
    assert first_check.rc == 0, first_check.output[-3000:]
    assert first_check.changed("alpha") > 0 and first_check.changed("bravo") > 0  # reported...
    assert not tls_pair.ca.exists() and not (tls_pair.base / "alpha").exists()    # ...and nothing written

    run = tls_pair.run()
    assert run.rc == 0, run.output[-3000:]
    # The CA key: on the first host only, root's, 0600, in a 0700 directory; never copied.
    assert _owner_mode(tls_pair.ca / "ca.key") == ("root", 0o600)
    assert _owner_mode(tls_pair.ca) == ("root", 0o700)
    for host, addr in (("alpha", "127.0.0.1"), ("bravo", "127.0.0.2")):
        assert _owner_mode(tls_pair.file(host, "node.key")) == ("postgres", 0o600)
        assert sorted(p.name for p in (tls_pair.base / host).iterdir()) == ["ca.crt", "node.crt", "node.key"]
        assert tls_pair.file(host, "ca.crt").read_bytes() == (tls_pair.ca / "ca.crt").read_bytes()
        # What verify-full checks on each connection a peer opens: the standby through the VIP,
        # pg_rewind and pg_basebackup to the node's address, the node's name; and as a client.
        for check in (["-verify_ip", "192.168.100.10"], ["-verify_ip", addr], ["-verify_hostname", host]):
            verified = tls_pair.verify(host, "-purpose", "sslserver", *check)
            assert verified.returncode == 0, (host, check, verified.stdout + verified.stderr)
        assert tls_pair.verify(host, "-purpose", "sslclient").returncode == 0
        assert tls_pair.verify(host, "-verify_ip", "127.0.0.9").returncode != 0
    # Each node's key stays on its node: next to the CA only what the CA signs with and its extensions.
    assert sorted(p.name for p in tls_pair.ca.iterdir()) == ["alpha.ext", "bravo.ext", "ca.crt", "ca.key"]
    made = {p: p.read_bytes() for p in [tls_pair.ca / "ca.key", tls_pair.ca / "ca.crt"]
            + [tls_pair.file(h, n) for h in ("alpha", "bravo") for n in ("ca.crt", "node.crt", "node.key")]}

    for mode in ("--check", ""):
        again = tls_pair.run(*([mode] if mode else []))
        assert again.rc == 0, again.output[-3000:]
        assert (again.changed("alpha"), again.changed("bravo")) == (0, 0), again.output[-3000:]
    assert {p: p.read_bytes() for p in made} == made
    keys = [p.read_text().splitlines()[1] for p in made if p.name.endswith(".key")]
    assert not [k for k in keys for r in (first_check, run, again) if k in r.output]


def test_tls_reissues_only_what_is_wrong(tls_pair):
    assert tls_pair.run().rc == 0
    ca_key, alpha_key = (tls_pair.ca / "ca.key").read_bytes(), tls_pair.file("alpha", "node.key").read_bytes()
    alpha_cert = tls_pair.cert("alpha")

    # bravo's certificate replaced by one its CA did not sign: bravo's alone is re-issued.
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(tls_pair.base / "other.key"), "-subj", "/CN=bravo", "-days", "30",
                    "-out", str(tls_pair.file("bravo", "node.crt"))], check=True, capture_output=True)
    fixed = tls_pair.run()
    assert fixed.rc == 0, fixed.output[-3000:]
    assert tls_pair.verify("bravo", "-verify_ip", "192.168.100.10").returncode == 0
    assert tls_pair.cert("alpha") == alpha_cert and fixed.changed("alpha") == 0

    # A certificate expiring within replication_tls_renew_days is re-issued (for the same key).
    renewed = tls_pair.run(**{"replication_tls_renew_days": 900})   # longer than the 825 days issued
    assert renewed.rc == 0 and tls_pair.cert("alpha") != alpha_cert
    assert tls_pair.file("alpha", "node.key").read_bytes() == alpha_key

    # The VIP moves to another address: a certificate lacking it is re-issued with it.
    moved = tls_pair.run(**{"replication_vip": "192.168.100.20"})
    assert moved.rc == 0, moved.output[-3000:]
    for host in ("alpha", "bravo"):
        assert tls_pair.verify(host, "-verify_ip", "192.168.100.20").returncode == 0
    assert tls_pair.run(**{"replication_vip": "192.168.100.20"}).changed("alpha") == 0

    # A node key lost: a new key, and a certificate for it.
    tls_pair.file("alpha", "node.key").unlink()
    rekeyed = tls_pair.run(**{"replication_vip": "192.168.100.20"})
    assert rekeyed.rc == 0 and tls_pair.file("alpha", "node.key").read_bytes() != alpha_key
    pub = subprocess.run(["openssl", "pkey", "-in", str(tls_pair.file("alpha", "node.key")), "-pubout"],
                         capture_output=True, text=True, check=True).stdout
    cert_pub = subprocess.run(["openssl", "x509", "-in", str(tls_pair.file("alpha", "node.crt")), "-noout", "-pubkey"],
                              capture_output=True, text=True, check=True).stdout
    assert pub == cert_pub
    assert (tls_pair.ca / "ca.key").read_bytes() == ca_key  # the CA outlives all of it


def _own_pki(base: Path, names: dict) -> dict:
    """A CA of your own and a certificate per host, as an operator would bring them."""
    base.mkdir()

    def run(*cmd):
        subprocess.run(cmd, cwd=base, check=True, capture_output=True)
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
        "ca.key", "-subj", "/CN=your CA", "-days", "365", "-addext", "basicConstraints=critical,CA:TRUE", "-out", "ca.crt")
    pems = {"ca": (base / "ca.crt").read_text()}
    for host, san in names.items():
        run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
            f"{host}.key", "-subj", f"/CN={host}", "-out", f"{host}.csr")
        (base / f"{host}.ext").write_text(f"extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName={san}\n")
        run("openssl", "x509", "-req", "-in", f"{host}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-days", "365",
            "-extfile", f"{host}.ext", "-out", f"{host}.crt")
        pems[host] = ((base / f"{host}.crt").read_text(), (base / f"{host}.key").read_text())
    return pems


def test_tls_own_certificates_are_checked_before_they_are_installed(tls_pair):
    pems = _own_pki(tls_pair.base / "pki", {"alpha": "DNS:alpha,IP:127.0.0.1,IP:192.168.100.10",
                                            "bravo": "DNS:bravo,IP:127.0.0.2"})   # bravo's lacks the VIP
    for host in ("alpha", "bravo"):
        tls_pair.hosts[host].update(replication_tls_cert=pems[host][0], replication_tls_key=pems[host][1])
    run = tls_pair.run(replication_tls_ca_cert=pems["ca"])
    assert run.rc != 0
    assert "replication_tls_cert of bravo cannot be used, nothing was installed" in run.output
    assert "-verify_ip 192.168.100.10" in run.output
    assert not tls_pair.file("bravo", "node.key").exists() and not tls_pair.file("bravo", "node.crt").exists()
    assert tls_pair.cert("alpha") == pems["alpha"][0].encode()
    assert _owner_mode(tls_pair.file("alpha", "node.key")) == ("postgres", 0o600)
    assert not tls_pair.ca.exists()                  # your CA: the role makes none
    assert pems["alpha"][1].splitlines()[1] not in run.output and pems["bravo"][1].splitlines()[1] not in run.output

    # bravo's key with alpha's certificate: refused as well.
    tls_pair.hosts["bravo"]["replication_tls_cert"] = pems["alpha"][0]
    mismatch = tls_pair.run(replication_tls_ca_cert=pems["ca"])
    assert "it is not a certificate for the node key" in mismatch.output

    # Everything right, but signed by another CA than the one given.
    other = _own_pki(tls_pair.base / "pki2", {"bravo": "DNS:bravo,IP:127.0.0.2,IP:192.168.100.10"})["bravo"]
    tls_pair.hosts["bravo"].update(replication_tls_cert=other[0], replication_tls_key=other[1])
    foreign = tls_pair.run(replication_tls_ca_cert=pems["ca"])
    assert "openssl verify failed with -purpose sslclient" in foreign.output
    assert not tls_pair.file("bravo", "node.crt").exists()


def test_tls_settings_that_cannot_work_fail_first(tls_pair):
    run = tls_pair.run(replication_tls=False, replication_client_tls="required")
    assert run.rc != 0 and "required\nneeds replication_tls" in run.output.replace(" needs", "\nneeds")
    assert not tls_pair.ca.exists()
    partial = tls_pair.run(replication_tls_ca_cert="-----BEGIN CERTIFICATE-----")
    assert partial.rc != 0 and "all three" in partial.output


def test_clone_priority_makes_the_primary_win_fence_races_and_the_guard_is_watched(inventory_factory, offline_cib):
    # With heartbeat's priority-fencing-delay, fencing that targets the node running the promoted
    # instance (priority + 1) waits: in a partition the primary shoots first.
    inv = inventory_factory()
    cib = offline_cib(["alpha", "bravo"])
    assert cib.push(*_cib(inv)) == "patched"
    root = ET.parse(cib.live).getroot()
    assert _nvpairs(root.find(".//resources/clone[@id='pgsqld-clone']/meta_attributes"))["priority"] == "1"
    guard = _nvpairs(root.find(".//resources/primitive[@id='pgsql-sync-guard']/instance_attributes"))
    # The monitor hook runs the very same program and settings with --check: a guard that stopped deciding fails.
    assert guard["binfile"] == "/usr/local/sbin/ec2ha-pgsql-sync-guard"
    assert guard["monitor_hook"] == f"/usr/local/sbin/ec2ha-pgsql-sync-guard {guard['cmdline_options']} --check"
    settings = inv.evaluate("alpha", "{{ __replication_guard_settings }}")
    assert (settings["pass_file"], settings["pid_file"], int(settings["stale_after"])) == (
        "/run/pgsql-sync-guard.pass", "/run/pgsql-sync-guard.pid", 30)
    assert settings["self_name"] == "alpha" and settings["nodes"] == ["alpha", "bravo"]
    assert _nvpairs(root.find(".//resources/primitive[@id='pgsql-sync-guard']/meta_attributes"))["failure-timeout"] == "60s"
    # A guard that cannot run never moves the primary.
    assert root.find(".//constraints/rsc_colocation[@id='pgsql-sync-guard-with-promoted']").get("influence") == "false"
