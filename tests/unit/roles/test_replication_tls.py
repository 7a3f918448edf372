# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""replication's TLS and password rotation against a real PostgreSQL 15 on loopback (pg_server.py),
with the certificates the role's own tasks/tls.yml makes: replication only over TLS, verify-full
against the pair's CA, a standby cloned and streaming over TLS; the role's tasks/password.yml
alters a changed password on the primary only, once.

Every loopback connection comes FROM 127.0.0.1, so the client test lets 127.0.0.1 stand for a
client network."""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
from typing import Iterator

import pytest

from pg_server import (BINDIR, Server, as_postgres, create_replication_role, free_port, gone, poll, role_task,
                       running_server)
from roletools import run_role_tasks


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running_server() as srv:
        yield srv


def _tcp(server, options: str, sql: str, password: str = "s3cret'pw", host: str = "127.0.0.1"):
    """psql over TCP as root, the password in a passfile; `options` adds to the conninfo."""
    passfile = server.base / "root-pgpass"
    passfile.write_text("*:*:*:*:" + password.replace("\\", "\\\\").replace(":", "\\:") + "\n")
    passfile.chmod(0o600)
    dsn = f"host={host} port={server.port} connect_timeout=5 passfile={passfile} {options}"
    return subprocess.run(["psql", "-XAtqw", dsn, "-c", sql], capture_output=True, text=True, check=False)


def _ensure_replication_role(server) -> None:
    if server.psql("SELECT 1 FROM pg_roles WHERE rolname = 'replicator'").stdout.strip() != "1":
        assert create_replication_role(server).returncode == 0


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
        rewind = poll(lambda: (r := _tcp(server, f"user=replicator dbname=postgres {tls}", SSL_OF_MY_BACKEND)
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
        tls = poll(lambda: (r := _tcp(server, f"{app} sslmode=require", SSL_OF_MY_BACKEND, "app-pw")
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
    content = role_task("streaming.yml", "Give the postgres user the replication password (passfile)")
    passfile.write_text(server.inv.evaluate("bravo", content["ansible.builtin.copy"]["content"]))
    os.chown(passfile, pg.pw_uid, pg.pw_gid)
    passfile.chmod(0o600)
    port = free_port()
    extra = {"replication_primary_conninfo_host": "127.0.0.1", "replication_passfile": str(passfile),
             "replication_pg_settings": {"port": port, "unix_socket_directories": str(sock), "listen_addresses": ""}}
    tls = server.inv.evaluate("bravo", "{{ __replication_tls_conninfo }}")
    _use_hba(server, "bravo")
    pid = None
    source = f"host=127.0.0.1 port={server.port} user=replicator passfile={passfile} {tls}"
    try:
        poll(lambda: as_postgres("psql", "-XAtqw", source + " replication=true", "-c", "IDENTIFY_SYSTEM"
                                 ).returncode == 0, "the hba reload")
        clone = as_postgres(str(BINDIR / "pg_basebackup"), "-w", "-d", source, "-D", str(data), "-X", "stream",
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
        started = as_postgres("env", "HOME=/root", str(BINDIR / "pg_ctl"), "-D", str(data), "-o",
                              f"-c config_file={conf}/postgresql.conf", "-l", str(sb / "log"), "-w", "-t", "30", "start")
        assert started.returncode == 0, started.stdout + started.stderr + (sb / "log").read_text()
        pid = int((data / "postmaster.pid").read_text().splitlines()[0])
        seen = poll(lambda: (server.psql(
            "SELECT r.state, s.ssl, s.client_dn FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid) "
            "WHERE r.application_name = 'bravo'").stdout.strip() or None), "bravo streaming", timeout=30)
        assert seen == "streaming|t|/CN=bravo"
        standby = ["psql", "-XAtq", "-h", str(sock), "-p", str(port), "-d", "postgres", "-c"]
        receiver = as_postgres(*standby, "SELECT status, conninfo FROM pg_stat_wal_receiver").stdout
        assert receiver.startswith("streaming|") and "sslmode=verify-full" in receiver
        assert server.psql("CREATE TABLE IF NOT EXISTS over_tls (x int); INSERT INTO over_tls VALUES (42)"
                           ).returncode == 0
        poll(lambda: as_postgres(*standby, "SELECT x FROM over_tls").stdout.strip() == "42", "the row on bravo")

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
            poll(lambda: gone(pid), "the standby to stop")
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
    content = role_task("streaming.yml", "Give the postgres user the replication password (passfile)")
    passfile.write_text(inv.evaluate("alpha", content["ansible.builtin.copy"]["content"]))
    pg = pwd.getpwnam("postgres")
    os.chown(passfile, pg.pw_uid, pg.pw_gid)
    passfile.chmod(0o600)
    hosts = {h: dict(v) for h, v in inv.host_vars.items()}
    hosts["bravo"].update(replication_pg_port=free_port(), replication_pg_socket_dir=str(server.base / "nowhere"))
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
