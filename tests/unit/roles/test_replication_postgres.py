# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""replication against a real PostgreSQL 15 on loopback: the rendered settings
pass PAF's own checks (postgres -C), pg_hba rejects replication from the node's
own address and lets the peer in, the role's SQL runs, and the sync guard
releases a commit that waits for a standby that is gone.

TLS with the certificates the role's own tasks/tls.yml makes (run through
ansible-playbook on this machine): replication only over TLS, verify-full
against the pair's CA, a standby cloned and streaming over TLS; the role's
tasks/password.yml alters a changed password on the primary only, once.

Loopback stands in for the two nodes: alpha is 127.0.0.1, bravo 127.0.0.2. Every
loopback connection comes FROM 127.0.0.1 (the kernel's source for the loopback
route), so tests that need the peer to connect render pg_hba as bravo sees it
(where 127.0.0.1 is the peer), and the client test lets 127.0.0.1 stand for a
client network. The server also listens on 127.0.0.3, a name no certificate holds."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from node_programs import guard_command
from roletools import ROLES, require, run_role_tasks

BINDIR = Path("/usr/lib/postgresql/15/bin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(*cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", "postgres", "--", *cmd], capture_output=True, text=True, **kw, check=False)


def _poll(check, what: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


class Server:
    def __init__(self, base: Path, inv) -> None:
        self.base, self.inv = base, inv
        self.data, self.conf, self.sock = base / "data", base / "conf", base / "sock"
        self.port = inv.common["replication_pg_port"]

    def psql(self, sql: str, **kw) -> subprocess.CompletedProcess:
        return _as_postgres("psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-h", str(self.sock), "-p", str(self.port),
                            "-d", "postgres", "-c", sql, **kw)

    def write_hba(self, host: str, extra: dict | None = None) -> None:
        (self.conf / "pg_hba.conf").write_text(self.inv.render(host, "replication", "pg_hba.conf.j2", extra))

    def pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().splitlines()[0])


@pytest.fixture(scope="module")
def server(request) -> Iterator[Server]:
    require("runuser")
    if not (BINDIR / "initdb").exists() or shutil.which("psql") is None:
        pytest.skip("needs PostgreSQL 15 (apt-get install postgresql-15)")
    # postgres must traverse the directory: pytest's tmp_path is private to root.
    base = Path(tempfile.mkdtemp(prefix="ec2ha-pg-", dir="/tmp"))
    pg = pwd.getpwnam("postgres")
    from roletools import Inventory  # noqa: PLC0415
    inv = _inventory(Inventory, base)
    srv = Server(base, inv)
    try:
        for d in (srv.data, srv.conf / "conf.d", srv.sock):
            d.mkdir(parents=True)
        for d in (base, srv.data, srv.conf, srv.conf / "conf.d", srv.sock):
            os.chown(d, pg.pw_uid, pg.pw_gid)
        # The CA, keys and certificates of both nodes, made by the role's own tasks.
        made = run_role_tasks(base / "tls-run", "replication", ["validate.yml", "tls.yml"], inv.host_vars,
                              {**inv.common, "replication_pg_cluster": "ec2ha-test-none"})
        assert made.rc == 0, made.output[-3000:]
        init = _as_postgres(str(BINDIR / "initdb"), "-D", str(srv.data), "-U", "postgres", "--auth-local=peer",
                            "--auth-host=scram-sha-256")
        assert init.returncode == 0, init.stderr
        # Debian's layout: configuration in its own directory, conf.d included.
        (srv.conf / "postgresql.conf").write_text(
            f"data_directory = '{srv.data}'\nhba_file = '{srv.conf}/pg_hba.conf'\n"
            f"ident_file = '{srv.data}/pg_ident.conf'\ninclude_dir = 'conf.d'\n")
        (srv.conf / "conf.d" / "ec2ha-replication.conf").write_text(
            inv.render("alpha", "replication", "postgresql-ec2ha.conf.j2"))
        srv.write_hba("alpha")
        started = _as_postgres(str(BINDIR / "pg_ctl"), "-D", str(srv.data), "-o",
                               f"-c config_file={srv.conf}/postgresql.conf", "-l", str(base / "log"), "-w",
                               "-t", "30", "start")
        assert started.returncode == 0, started.stdout + started.stderr + (base / "log").read_text()
        yield srv
    finally:
        if (srv.data / "postmaster.pid").exists():
            pid = srv.pid()
            os.kill(pid, signal.SIGINT)  # fast shutdown, by PID
            _poll(lambda: _gone(pid), "postgres to stop")
        shutil.rmtree(base, ignore_errors=True)


def _inventory(inventory_cls, base: Path):
    settings = {"heartbeat_fence_region": "us-east-1", "replication_vip": "192.168.100.10",
                "replication_password": "s3cret'pw", "replication_pg_port": _free_port(),
                "replication_pg_socket_dir": str(base / "sock"),
                "replication_pg_listen_addresses": "127.0.0.1,127.0.0.3",   # 127.0.0.3: a client network
                "replication_tls_ca_dir": str(base / "ca")}
    hosts = {"alpha": {"heartbeat_node_addr": "127.0.0.1", "heartbeat_instance_id": "i-0aaaaaaaaaaaaaaa1",
                       "replication_tls_dir": str(base / "tls-alpha")},
             "bravo": {"heartbeat_node_addr": "127.0.0.2", "heartbeat_instance_id": "i-0bbbbbbbbbbbbbbb2",
                       "replication_tls_dir": str(base / "tls-bravo")}}
    return inventory_cls(hosts, settings)


def _task(file: str, name: str) -> dict:
    for task in yaml.safe_load((ROLES / "replication" / "tasks" / file).read_text()):
        for inner in [task] + task.get("block", []):
            if inner.get("name") == name:
                return inner
    raise AssertionError(f"no task {name!r} in {file}")


def test_settings_pass_paf_checks(server):
    # The very checks pgsqlms validate-all runs on PostgreSQL 12+ (postgres -C with -D = the config dir).
    postgres = str(BINDIR / "postgres")
    timeline = _as_postgres(postgres, "-C", "recovery_target_timeline", "-D", str(server.conf))
    assert timeline.stdout.strip() == "latest", timeline.stderr
    conninfo = _as_postgres(postgres, "-C", "primary_conninfo", "-D", str(server.conf)).stdout
    assert "application_name=alpha" in conninfo and "host=192.168.100.10" in conninfo
    # The standby verifies the primary it reaches through the VIP against the pair's CA.
    assert f"sslmode=verify-full sslrootcert={server.base}/tls-alpha/ca.crt" in conninfo
    assert server.psql("SHOW ssl").stdout.strip() == "on"
    assert server.psql("SHOW ssl_min_protocol_version").stdout.strip() == "TLSv1.2"
    assert server.psql("SHOW wal_level").stdout.strip() == "replica"
    assert server.psql("SHOW wal_log_hints").stdout.strip() == "on"
    assert server.psql("SHOW synchronous_standby_names").stdout.strip() == ""


def test_role_sql_creates_the_replication_role(server):
    create = _task("bootstrap.yml", "Create the replication role")["ansible.builtin.command"]["stdin"]
    sql = server.inv.evaluate("alpha", create)
    run = _as_postgres("psql", "-X", "-v", "ON_ERROR_STOP=1", "-h", str(server.sock), "-p", str(server.port),
                       "-d", "postgres", input=sql)
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
    admitted = _poll(lambda: (r := _replication_connect(server)).returncode == 0 and r, "hba reload")
    assert admitted.stdout.count("|") == 3  # systemid|timeline|xlogpos|dbname (empty: physical)


def test_standby_conninfo_authenticates_under_pacemakers_home(server):
    # Pacemaker starts PostgreSQL with root's HOME, so libpq would look for /root/.pgpass and the
    # walreceiver would fail with "no password supplied": primary_conninfo must name the passfile.
    if server.psql("SELECT 1 FROM pg_roles WHERE rolname = 'replicator'").stdout.strip() != "1":
        test_role_sql_creates_the_replication_role(server)
    server.write_hba("bravo")  # seen from bravo, 127.0.0.1 is the peer it streams from
    assert server.psql("SELECT pg_reload_conf()").returncode == 0
    conninfo = _as_postgres(str(BINDIR / "postgres"), "-C", "primary_conninfo", "-D", str(server.conf)).stdout.strip()
    declared = server.inv.evaluate("bravo", "{{ replication_passfile }}")
    assert f"passfile={declared}" in conninfo and "tcp_user_timeout=5000" in conninfo
    passfile = server.base / "pgpass"
    content = _task("streaming.yml", "Give the postgres user the replication password (passfile)")
    passfile.write_text(server.inv.evaluate("bravo", content["ansible.builtin.copy"]["content"]))
    pg = pwd.getpwnam("postgres")
    os.chown(passfile, pg.pw_uid, pg.pw_gid)
    passfile.chmod(0o600)
    dsn = (conninfo.replace("host=192.168.100.10", "host=127.0.0.1").replace(f"passfile={declared}", f"passfile={passfile}")
           + " replication=true")
    # runuser sets HOME to the target user's: put root's back as Pacemaker's children have it.
    as_pacemaker = ("env", "-u", "PGPASSWORD", "-u", "PGPASSFILE", "HOME=/root", "psql", "-XAtqw")
    stream = _poll(lambda: (r := _as_postgres(*as_pacemaker, dsn, "-c", "IDENTIFY_SYSTEM")).returncode == 0 and r,
                   "a replication connection with the rendered primary_conninfo")
    assert stream.stdout.count("|") == 3
    without = _as_postgres(*as_pacemaker, dsn.replace(f"passfile={passfile}", ""), "-c", "IDENTIFY_SYSTEM")
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
    _poll(lambda: server.psql("SHOW synchronous_standby_names").stdout.strip() == 'ANY 1 ("bravo")', "reload")
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


# ---------------------------------------------------------------- TLS

def _tcp(server, options: str, sql: str, password: str = "s3cret'pw", host: str = "127.0.0.1"):
    """psql over TCP as root, the password in a passfile; `options` adds to the conninfo."""
    passfile = server.base / "root-pgpass"
    passfile.write_text("*:*:*:*:" + password.replace("\\", "\\\\").replace(":", "\\:") + "\n")
    passfile.chmod(0o600)
    dsn = f"host={host} port={server.port} connect_timeout=5 passfile={passfile} {options}"
    return subprocess.run(["psql", "-XAtqw", dsn, "-c", sql], capture_output=True, text=True, check=False)


def _ensure_replication_role(server) -> None:
    if server.psql("SELECT 1 FROM pg_roles WHERE rolname = 'replicator'").stdout.strip() != "1":
        test_role_sql_creates_the_replication_role(server)


def _use_hba(server, host: str, extra: dict | None = None) -> None:
    server.write_hba(host, extra)
    assert server.psql("SELECT pg_reload_conf()").returncode == 0


SSL_OF_MY_BACKEND = "SELECT ssl, version, coalesce(client_dn, '') FROM pg_stat_ssl WHERE pid = pg_backend_pid()"


def test_replication_only_over_tls_and_the_peer_verified(server):
    _ensure_replication_role(server)
    tls = server.inv.evaluate("bravo", "{{ __replication_tls_conninfo }}")
    assert tls == (f"sslmode=verify-full sslrootcert={server.base}/tls-bravo/ca.crt "
                   f"sslcert={server.base}/tls-bravo/node.crt sslkey={server.base}/tls-bravo/node.key")
    _use_hba(server, "bravo")   # from bravo's side 127.0.0.1 is the peer, alpha
    try:
        rules = server.psql("SELECT type, database[1], address, auth_method FROM pg_hba_file_rules").stdout.splitlines()
        assert "hostssl|replication|127.0.0.1|scram-sha-256" in rules and "hostssl|postgres|127.0.0.1|scram-sha-256" in rules
        # pg_rewind's connection with the fragment: TLS, the primary verified, bravo's certificate shown.
        rewind = _poll(lambda: (r := _tcp(server, f"user=replicator dbname=postgres {tls}", SSL_OF_MY_BACKEND)
                                ).returncode == 0 and r, "the hba reload")
        ssl, version, client_dn = rewind.stdout.strip().split("|")
        assert (ssl, client_dn) == ("t", "/CN=bravo") and version in ("TLSv1.2", "TLSv1.3")
        stream = _tcp(server, f"user=replicator replication=true {tls}", "IDENTIFY_SYSTEM")
        assert stream.returncode == 0 and stream.stdout.count("|") == 3, stream.stderr
        # Cleartext replication from the peer itself: refused.
        plain = _tcp(server, "user=replicator replication=true sslmode=disable", "IDENTIFY_SYSTEM")
        assert plain.returncode != 0
        assert ('pg_hba.conf rejects replication connection for host "127.0.0.1", user "replicator", '
                'no encryption') in plain.stderr
        # verify-full has teeth: the same CA, but a name the certificate does not hold.
        wrong_name = _tcp(server, f"user=replicator dbname=postgres {tls}", "SELECT 1", host="127.0.0.3")
        assert 'does not match host name "127.0.0.3"' in wrong_name.stderr
        # The VIP (192.168.100.10) is not on loopback: what verify-full would check through it.
        through_vip = subprocess.run(["openssl", "verify", "-CAfile", f"{server.base}/tls-bravo/ca.crt", "-verify_ip",
                                      "192.168.100.10", f"{server.base}/tls-alpha/node.crt"], capture_output=True,
                                     text=True, check=False)
        assert through_vip.returncode == 0, through_vip.stdout + through_vip.stderr
    finally:
        _use_hba(server, "alpha")


@pytest.mark.parametrize("client_tls", ["optional", "required"])
def test_clients_are_offered_tls_and_held_to_it_when_required(server, client_tls):
    # Every loopback connection comes from 127.0.0.1: here it stands for a client network, so
    # the two loopback lines (which would admit it first) are left out of the rendered file.
    _ensure_replication_role(server)
    assert server.psql("DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app') THEN "
                       "CREATE ROLE app LOGIN PASSWORD 'app-pw'; END IF; END$$").returncode == 0
    hba = server.inv.render("alpha", "replication", "pg_hba.conf.j2",
                            {"replication_client_networks": ["127.0.0.1/32"], "replication_client_tls": client_tls})
    lines = hba.splitlines()
    v4 = [n for n, line in enumerate(lines) if line.split()[1:] == ["all", "all", "127.0.0.1/32", "scram-sha-256"]]
    assert len(v4) == 2 and lines[v4[0] + 1].split()[3] == "::1/128" and v4[1] == len(lines) - 1  # loopback, client
    del lines[v4[0]:v4[0] + 2]
    (server.conf / "pg_hba.conf").write_text("\n".join(lines) + "\n")
    assert server.psql("SELECT pg_reload_conf()").returncode == 0
    try:
        expected = "hostssl" if client_tls == "required" else "host"
        app = "user=app dbname=postgres"
        tls = _poll(lambda: (r := _tcp(server, f"{app} sslmode=require", SSL_OF_MY_BACKEND, "app-pw")
                             ).returncode == 0 and r, "the hba reload")
        assert tls.stdout.startswith("t|")                      # TLS offered, whatever the setting
        rules = server.psql("SELECT type, address FROM pg_hba_file_rules").stdout.splitlines()
        assert rules[-1] == f"{expected}|127.0.0.1"
        plain = _tcp(server, f"{app} sslmode=disable", SSL_OF_MY_BACKEND, "app-pw")
        if client_tls == "optional":
            assert plain.stdout.startswith("f|"), plain.stderr  # existing cleartext clients keep working
        else:
            assert 'no pg_hba.conf entry for host "127.0.0.1", user "app", database "postgres", no encryption' \
                in plain.stderr
        # The replication user never logs in in cleartext from a client network.
        replicator = _tcp(server, "user=replicator dbname=postgres sslmode=disable", "SELECT 1")
        assert ('pg_hba.conf rejects connection for host "127.0.0.1", user "replicator", database "postgres", '
                'no encryption') in replicator.stderr
        assert _tcp(server, "user=replicator dbname=postgres sslmode=require", "SELECT 1").returncode == 0
    finally:
        _use_hba(server, "alpha")


def test_standby_cloned_and_streaming_over_tls_with_the_rendered_conninfo(server):
    """bravo cloned from alpha with pg_basebackup and the role's fragment, started as Pacemaker
    starts it (HOME=/root) with the primary_conninfo the role renders for it, pointed at
    127.0.0.1 (the VIP is not on loopback)."""
    _ensure_replication_role(server)
    pg = pwd.getpwnam("postgres")
    sb = server.base / "standby"
    data, conf, sock = sb / "data", sb / "conf", sb / "sock"
    for d in (sb, data, conf / "conf.d", sock):
        d.mkdir(parents=True, exist_ok=True)
        os.chown(d, pg.pw_uid, pg.pw_gid)
    data.chmod(0o700)
    passfile = sb / "pgpass"
    content = _task("streaming.yml", "Give the postgres user the replication password (passfile)")
    passfile.write_text(server.inv.evaluate("bravo", content["ansible.builtin.copy"]["content"]))
    os.chown(passfile, pg.pw_uid, pg.pw_gid)
    passfile.chmod(0o600)
    port = _free_port()
    extra = {"replication_primary_conninfo_host": "127.0.0.1", "replication_passfile": str(passfile),
             "replication_pg_settings": {"port": port, "unix_socket_directories": str(sock), "listen_addresses": ""}}
    tls = server.inv.evaluate("bravo", "{{ __replication_tls_conninfo }}")
    _use_hba(server, "bravo")
    pid = None
    source = f"host=127.0.0.1 port={server.port} user=replicator passfile={passfile} {tls}"
    try:
        _poll(lambda: _as_postgres("psql", "-XAtqw", source + " replication=true", "-c", "IDENTIFY_SYSTEM"
                                   ).returncode == 0, "the hba reload")
        clone = _as_postgres(str(BINDIR / "pg_basebackup"), "-w", "-d", source, "-D", str(data), "-X", "stream",
                             "-c", "fast")
        assert clone.returncode == 0, clone.stderr
        (conf / "postgresql.conf").write_text(
            f"data_directory = '{data}'\nhba_file = '{conf}/pg_hba.conf'\nident_file = '{data}/pg_ident.conf'\n"
            "include_dir = 'conf.d'\n")
        (conf / "conf.d" / "ec2ha-replication.conf").write_text(
            server.inv.render("bravo", "replication", "postgresql-ec2ha.conf.j2", extra))
        (conf / "pg_hba.conf").write_text(server.inv.render("bravo", "replication", "pg_hba.conf.j2"))
        (data / "standby.signal").write_text("")
        os.chown(data / "standby.signal", pg.pw_uid, pg.pw_gid)
        started = _as_postgres("env", "HOME=/root", str(BINDIR / "pg_ctl"), "-D", str(data), "-o",
                               f"-c config_file={conf}/postgresql.conf", "-l", str(sb / "log"), "-w", "-t", "30", "start")
        assert started.returncode == 0, started.stdout + started.stderr + (sb / "log").read_text()
        pid = int((data / "postmaster.pid").read_text().splitlines()[0])
        seen = _poll(lambda: (server.psql(
            "SELECT r.state, s.ssl, s.client_dn FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid) "
            "WHERE r.application_name = 'bravo'").stdout.strip() or None), "bravo streaming", timeout=30)
        assert seen == "streaming|t|/CN=bravo"
        standby = ["psql", "-XAtq", "-h", str(sock), "-p", str(port), "-d", "postgres", "-c"]
        receiver = _as_postgres(*standby, "SELECT status, conninfo FROM pg_stat_wal_receiver").stdout
        assert receiver.startswith("streaming|") and "sslmode=verify-full" in receiver
        assert server.psql("CREATE TABLE IF NOT EXISTS over_tls (x int); INSERT INTO over_tls VALUES (42)"
                           ).returncode == 0
        _poll(lambda: _as_postgres(*standby, "SELECT x FROM over_tls").stdout.strip() == "42", "the row on bravo")

        # password.yml with both nodes running: the primary's role is altered, the standby (read-only,
        # it receives the change by replication) is left alone.
        assert server.psql("DROP ROLE IF EXISTS rotator2; CREATE ROLE rotator2 LOGIN PASSWORD 'old-pw'").returncode == 0
        rotation = {"replication_user": "rotator2", "replication_password": "new-pw",
                    "replication_passfile": str(sb / "rotator2-pgpass")}
        rot_inv = type(server.inv)(server.inv.host_vars, {**server.inv.common, **rotation})
        (sb / "rotator2-pgpass").write_text(rot_inv.evaluate("alpha", content["ansible.builtin.copy"]["content"]))
        os.chown(sb / "rotator2-pgpass", pg.pw_uid, pg.pw_gid)
        (sb / "rotator2-pgpass").chmod(0o600)
        hosts = {h: dict(v) for h, v in server.inv.host_vars.items()}
        hosts["bravo"].update(replication_pg_port=port, replication_pg_socket_dir=str(sock))
        rotated = run_role_tasks(sb / "rotate", "replication", ["validate.yml", "password.yml"], hosts,
                                 {**server.inv.common, **rotation, "replication_pg_cluster": "ec2ha-test-none"})
        assert rotated.rc == 0, rotated.output[-3000:]
        assert (rotated.changed("alpha"), rotated.changed("bravo")) == (1, 0)
        assert _tcp(server, "user=rotator2 dbname=postgres", "SELECT 1", "new-pw").returncode == 0
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGINT)
            _poll(lambda: _gone(pid), "the standby to stop")
        _use_hba(server, "alpha")


# ---------------------------------------------------------------- password rotation

def test_changed_password_reaches_the_primary_s_role_once(server):
    """tasks/password.yml four ways on alpha (the primary); bravo's PostgreSQL does not run.
    Its own role (rotator) keeps the other tests' replicator as it is."""
    new = "n3w'pw:x\\y"
    from roletools import Inventory  # noqa: PLC0415
    inv = Inventory({h: dict(v) for h, v in server.inv.host_vars.items()},
                    {**server.inv.common, "replication_user": "rotator", "replication_password": new,
                     "replication_passfile": str(server.base / "rotator-pgpass")})
    assert server.psql("DROP ROLE IF EXISTS rotator; CREATE ROLE rotator LOGIN PASSWORD 'old-pw'").returncode == 0
    passfile = server.base / "rotator-pgpass"
    content = _task("streaming.yml", "Give the postgres user the replication password (passfile)")
    passfile.write_text(inv.evaluate("alpha", content["ansible.builtin.copy"]["content"]))
    pg = pwd.getpwnam("postgres")
    os.chown(passfile, pg.pw_uid, pg.pw_gid)
    passfile.chmod(0o600)
    hosts = {h: dict(v) for h, v in inv.host_vars.items()}
    hosts["bravo"].update(replication_pg_port=_free_port(), replication_pg_socket_dir=str(server.base / "nowhere"))
    common = {**inv.common, "replication_pg_cluster": "ec2ha-test-none"}

    def login(password: str) -> bool:
        return _tcp(server, "user=rotator dbname=postgres", "SELECT 1", password).returncode == 0

    def run(n: int, *args: str):
        done = run_role_tasks(server.base / f"rotate{n}", "replication", ["validate.yml", "password.yml"],
                              hosts, common, *args)
        assert done.rc == 0, done.output[-3000:]
        assert new not in done.output and new.replace("'", "''") not in done.output
        return done.changed("alpha"), done.changed("bravo")

    # The server logs every statement: the ALTER must not reach the log.
    assert server.psql("ALTER SYSTEM SET log_statement = 'all'").returncode == 0
    assert server.psql("SELECT pg_reload_conf()").returncode == 0
    try:
        assert run(1, "--check") == (0, 0) and login("old-pw") and not login(new)   # check mode changes nothing
        assert run(2, "-vvv") == (1, 0)
        assert login(new) and not login("old-pw")
        assert run(3, "--check") == (0, 0) and run(4) == (0, 0)
        # Drift: someone set another password by hand. The next run notices and sets it back.
        assert server.psql("ALTER ROLE rotator PASSWORD 'by-hand'").returncode == 0
        assert run(5) == (1, 0) and login(new)
        logs = "".join(p.read_text(errors="replace") for p in (server.data / "log").glob("*.log"))
        assert "by-hand" in logs                     # the log does record statements...
        assert new.replace("'", "''") not in logs and "n3w" not in logs    # ...but never the role's
    finally:
        server.psql("ALTER SYSTEM RESET log_statement")
        server.psql("SELECT pg_reload_conf()")
