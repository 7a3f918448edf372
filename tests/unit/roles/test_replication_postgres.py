# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""replication against a real PostgreSQL 15 on loopback (pg_server.py): the rendered settings
pass PAF's own checks (postgres -C), pg_hba rejects replication from the node's own address and
lets the peer in, the role's SQL runs, and the sync guard releases a commit that waits for a
standby that is gone.

Every loopback connection comes FROM 127.0.0.1 (the kernel's source for the loopback route), so
tests that need the peer to connect render pg_hba as bravo sees it (where 127.0.0.1 is the peer)."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from node_programs import guard_command
from pg_server import BINDIR, Server, as_postgres, create_replication_role, poll, role_task, running_server


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running_server() as srv:
        yield srv


def test_settings_pass_paf_checks(server):
    # The very checks pgsqlms validate-all runs on PostgreSQL 12+ (postgres -C with -D = the config dir).
    postgres = str(BINDIR / "postgres")
    timeline = as_postgres(postgres, "-C", "recovery_target_timeline", "-D", str(server.conf))
    assert timeline.stdout.strip() == "latest", timeline.stderr
    conninfo = as_postgres(postgres, "-C", "primary_conninfo", "-D", str(server.conf)).stdout
    assert "application_name=alpha" in conninfo and "host=192.168.100.10" in conninfo
    # The standby verifies the primary it reaches through the VIP against the pair's CA.
    assert f"sslmode=verify-full sslrootcert={server.base}/tls-alpha/ca.crt" in conninfo
    assert server.psql("SHOW ssl").stdout.strip() == "on"
    assert server.psql("SHOW ssl_min_protocol_version").stdout.strip() == "TLSv1.2"
    assert server.psql("SHOW wal_level").stdout.strip() == "replica"
    assert server.psql("SHOW wal_log_hints").stdout.strip() == "on"
    assert server.psql("SHOW synchronous_standby_names").stdout.strip() == ""


def test_role_sql_creates_the_replication_role(server):
    run = create_replication_role(server)
    assert run.returncode == 0, run.stderr
    assert server.psql("SELECT rolreplication FROM pg_roles WHERE rolname = 'replicator'").stdout.strip() == "t"


def _replication_connect(server) -> subprocess.CompletedProcess:
    dsn = f"host=127.0.0.1 port={server.port} user=replicator replication=true"
    return subprocess.run(["psql", "-XAtq", dsn, "-c", "IDENTIFY_SYSTEM"], capture_output=True, text=True,
                          env=dict(os.environ, PGPASSWORD="s3cret'pw", PGCONNECT_TIMEOUT="5"), check=False)


def test_hba_rejects_own_address_and_vip_and_admits_the_peer(server):
    if server.psql("SELECT 1 FROM pg_roles WHERE rolname = 'replicator'").stdout.strip() != "1":
        test_role_sql_creates_the_replication_role(server)
    rules = server.psql("SELECT database[1], address, auth_method, coalesce(error, '') FROM pg_hba_file_rules"
                        ).stdout.splitlines()
    assert all(not r.endswith("|") or r.split("|")[3] == "" for r in rules)
    assert "replication|192.168.100.10|reject|" in rules
    assert "replication|127.0.0.1|reject|" in rules
    # alpha's own address is 127.0.0.1: a replication connection from it is refused.
    refused = _replication_connect(server)
    assert refused.returncode != 0
    assert 'pg_hba.conf rejects replication connection for host "127.0.0.1"' in refused.stderr
    # From bravo's point of view 127.0.0.1 is the peer (alpha): admitted with the password.
    server.write_hba("bravo")
    assert server.psql("SELECT pg_reload_conf()").returncode == 0
    admitted = poll(lambda: (r := _replication_connect(server)).returncode == 0 and r, "hba reload")
    assert admitted.stdout.count("|") == 3  # systemid|timeline|xlogpos|dbname (empty: physical)


def test_standby_conninfo_authenticates_under_pacemakers_home(server):
    # Pacemaker starts PostgreSQL with root's HOME, so libpq would look for /root/.pgpass and the
    # walreceiver would fail with "no password supplied": primary_conninfo must name the passfile.
    if server.psql("SELECT 1 FROM pg_roles WHERE rolname = 'replicator'").stdout.strip() != "1":
        test_role_sql_creates_the_replication_role(server)
    server.write_hba("bravo")  # seen from bravo, 127.0.0.1 is the peer it streams from
    assert server.psql("SELECT pg_reload_conf()").returncode == 0
    conninfo = as_postgres(str(BINDIR / "postgres"), "-C", "primary_conninfo", "-D", str(server.conf)).stdout.strip()
    declared = server.inv.evaluate("bravo", "{{ replication_passfile }}")
    assert f"passfile={declared}" in conninfo and "tcp_user_timeout=5000" in conninfo
    passfile = server.base / "pgpass"
    content = role_task("streaming.yml", "Give the postgres user the replication password (passfile)")
    passfile.write_text(server.inv.evaluate("bravo", content["ansible.builtin.copy"]["content"]))
    pg = pwd.getpwnam("postgres")
    os.chown(passfile, pg.pw_uid, pg.pw_gid)
    passfile.chmod(0o600)
    dsn = (conninfo.replace("host=192.168.100.10", "host=127.0.0.1").replace(f"passfile={declared}", f"passfile={passfile}")
           + " replication=true")
    # runuser sets HOME to the target user's: put root's back as Pacemaker's children have it.
    as_pacemaker = ("env", "-u", "PGPASSWORD", "-u", "PGPASSFILE", "HOME=/root", "psql", "-XAtqw")
    stream = poll(lambda: (r := as_postgres(*as_pacemaker, dsn, "-c", "IDENTIFY_SYSTEM")).returncode == 0 and r,
                  "a replication connection with the rendered primary_conninfo")
    assert stream.stdout.count("|") == 3
    without = as_postgres(*as_pacemaker, dsn.replace(f"passfile={passfile}", ""), "-c", "IDENTIFY_SYSTEM")
    assert "no password supplied" in without.stderr


@pytest.fixture
def pacemaker_stubs(tmp_path: Path):
    """crm_mon / crm_attribute / corosync-quorumtool stand-ins: membership as given,
    attribute writes logged with the synchronous_standby_names in force at that
    moment. With reform_on_write, writing bravo's attribute re-forms the corosync
    ring without bravo first (what a CIB update held back by a lost peer meets)."""
    def make(server, bravo: str, reform_on_write: bool = False) -> Path:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        online, unclean = {"member": ("true", "false"), "clean": ("false", "false"),
                           "unclean": ("false", "true")}[bravo]
        (bin_dir / "crm_mon").write_text(
            "#!/bin/sh\ncat <<'EOF'\n<pacemaker-result><nodes>"
            '<node name="alpha" id="1" online="true" unclean="false"/>'
            f'<node name="bravo" id="2" online="{online}" unclean="{unclean}"/>'
            "</nodes></pacemaker-result>\nEOF\n")
        ring = tmp_path / "ring.txt"
        ring.write_text("Ring ID:          1.2d\n\nMembership information\n----------------------\n"
                        "    Nodeid      Votes Name\n         1          1 alpha (local)\n"
                        "         2          1 bravo\n")
        (bin_dir / "corosync-quorumtool").write_text(f"#!/bin/sh\ncat {ring}\n")
        reform = (f"case \"$*\" in *'--node bravo'*--update*) sed -i -e 's/1.2d/1.2e/' -e '/ bravo$/d' {ring};; esac\n"
                  if reform_on_write else "")
        (bin_dir / "crm_attribute").write_text(
            "#!/bin/sh\ncase \"$*\" in *--query*) exit 6;; esac\n" + reform
            + f"ssn=$(runuser -u postgres -- psql -XAtq -h {server.sock} -p {server.port} -d postgres "
            "-c 'SHOW synchronous_standby_names')\n"
            f"echo \"$* ssn=$ssn\" >> {tmp_path}/attr.log\n")
        for f in bin_dir.iterdir():
            f.chmod(0o755)
        return bin_dir
    return make


def _guard(server, bin_dir: Path) -> subprocess.CompletedProcess:
    settings = bin_dir / "guard.json"
    settings.write_text(json.dumps({"mode": "sync", "nodes": ["alpha", "bravo"], "self_name": "alpha",
                                    "pghost": str(server.sock), "pgport": server.port}))
    return subprocess.run(
        guard_command(settings, "--once"), capture_output=True, text=True, timeout=60,
        env=dict(os.environ, PATH=f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin"), check=False)


def _blocked_write(server) -> subprocess.Popen:
    assert server.psql("CREATE TABLE IF NOT EXISTS probe (x int)").returncode == 0
    server.psql("ALTER SYSTEM SET synchronous_standby_names = 'ANY 1 (\"bravo\")'")
    server.psql("SELECT pg_reload_conf()")
    poll(lambda: server.psql("SHOW synchronous_standby_names").stdout.strip() == 'ANY 1 ("bravo")', "reload")
    write = subprocess.Popen(["runuser", "-u", "postgres", "--", "psql", "-XAtq", "-h", str(server.sock), "-p",
                              str(server.port), "-d", "postgres", "-c", "INSERT INTO probe VALUES (1)"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with pytest.raises(subprocess.TimeoutExpired):
        write.wait(timeout=2)  # the commit waits for a standby that is not there
    return write


@pytest.mark.parametrize("bravo, reform_on_write", [
    ("unclean", False),   # the standby node is lost and not fenced yet
    ("member", True),     # it looked a member, but the ring re-formed without it while its 0
])                        # was written: it may never have seen the 0
def test_guard_waits_for_fencing_while_the_standby_may_not_know(server, pacemaker_stubs, tmp_path, bravo, reform_on_write):
    write = _blocked_write(server)
    try:
        result = _guard(server, pacemaker_stubs(server, bravo, reform_on_write))
        assert result.returncode == 0, result.stderr
        assert "replication state: waiting-for-fencing" in result.stderr
        assert server.psql("SHOW synchronous_standby_names").stdout.strip() == 'ANY 1 ("bravo")'
        with pytest.raises(subprocess.TimeoutExpired):
            write.wait(timeout=1)
        log = (tmp_path / "attr.log").read_text()
        assert "--node bravo --name ec2ha-pgsql-sync --lifetime forever --update 0" in log
    finally:
        server.psql("ALTER SYSTEM RESET synchronous_standby_names")
        server.psql("SELECT pg_reload_conf()")
        write.wait(timeout=30)


@pytest.mark.parametrize("bravo", ["clean", "member"])
def test_guard_degrades_and_releases_the_waiting_commit(server, pacemaker_stubs, tmp_path, bravo):
    # clean: the standby node is stopped or fenced; member: its PostgreSQL is gone, the node
    # is up and in the same ring before and after the 0 is written.
    write = _blocked_write(server)
    try:
        result = _guard(server, pacemaker_stubs(server, bravo))
        assert result.returncode == 0, result.stderr
        assert "replication state: degraded" in result.stderr
        assert write.wait(timeout=30) == 0  # released: the primary keeps accepting writes
        assert server.psql("SHOW synchronous_standby_names").stdout.strip() == ""
        log = (tmp_path / "attr.log").read_text().splitlines()
        bravo = [line for line in log if "--node bravo --name ec2ha-pgsql-sync" in line]
        # bravo loses its right to be promoted BEFORE commits stop waiting for it.
        assert bravo == ['--node bravo --name ec2ha-pgsql-sync --lifetime forever --update 0 ssn=ANY 1 ("bravo")']
        assert any("--node alpha --name ec2ha-pgsql-replication --lifetime reboot --update degraded" in line
                   for line in log)
    finally:
        if write.poll() is None:
            write.kill()
            write.wait(timeout=10)
