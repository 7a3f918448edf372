# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A real PostgreSQL 15 on loopback for the replication role's tests (test_replication_postgres.py,
test_replication_tls.py): configured by the role's own templates, with the CA, keys and
certificates its tasks/tls.yml makes. Loopback stands in for the two nodes: alpha is 127.0.0.1,
bravo 127.0.0.2; the server also listens on 127.0.0.3, a name no certificate holds."""

from __future__ import annotations

import contextlib
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

from roletools import ROLES, Inventory, require, run_role_tasks

BINDIR = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_postgres(*cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", "postgres", "--", *cmd], capture_output=True, text=True, **kw, check=False)


def poll(check, what: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def gone(pid: int) -> bool:
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
        return as_postgres("psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-h", str(self.sock), "-p", str(self.port),
                           "-d", "postgres", "-c", sql, **kw)

    def write_hba(self, host: str, extra: dict | None = None) -> None:
        (self.conf / "pg_hba.conf").write_text(self.inv.render(host, "replication", "pg_hba.conf.j2", extra))

    def pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().splitlines()[0])


@contextlib.contextmanager
def running_server() -> Iterator[Server]:
    """A PostgreSQL 15 on loopback configured by the role's templates, stopped by its PID after."""
    require("runuser")
    if not (BINDIR / "initdb").exists() or shutil.which("psql") is None:
        pytest.skip("needs PostgreSQL 15 (apt-get install postgresql-15)")
    # postgres must traverse the directory: pytest's tmp_path is private to root.
    base = Path(tempfile.mkdtemp(prefix="ec2ha-pg-", dir="/tmp"))
    pg = pwd.getpwnam("postgres")
    inv = inventory(Inventory, base)
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
        init = as_postgres(str(BINDIR / "initdb"), "-D", str(srv.data), "-U", "postgres", "--auth-local=peer",
                           "--auth-host=scram-sha-256")
        assert init.returncode == 0, init.stderr
        # Debian's layout: configuration in its own directory, conf.d included.
        (srv.conf / "postgresql.conf").write_text(
            f"data_directory = '{srv.data}'\nhba_file = '{srv.conf}/pg_hba.conf'\n"
            f"ident_file = '{srv.data}/pg_ident.conf'\ninclude_dir = 'conf.d'\n")
        (srv.conf / "conf.d" / "ec2ha-replication.conf").write_text(
            inv.render("alpha", "replication", "postgresql-ec2ha.conf.j2"))
        srv.write_hba("alpha")
        started = as_postgres(str(BINDIR / "pg_ctl"), "-D", str(srv.data), "-o",
                              f"-c config_file={srv.conf}/postgresql.conf", "-l", str(base / "log"), "-w",
                              "-t", "30", "start")
        assert started.returncode == 0, started.stdout + started.stderr + (base / "log").read_text()
        yield srv
    finally:
        if (srv.data / "postmaster.pid").exists():
            pid = srv.pid()
            os.kill(pid, signal.SIGINT)  # fast shutdown, by PID
            poll(lambda: gone(pid), "postgres to stop")
        shutil.rmtree(base, ignore_errors=True)


def inventory(inventory_cls, base: Path):
    settings = {"heartbeat_fence_region": "us-east-1", "replication_vip": "192.168.100.10",
                "replication_password": "s3cret'pw", "replication_pg_port": free_port(),
                "replication_pg_socket_dir": str(base / "sock"),
                "replication_pg_listen_addresses": "127.0.0.1,127.0.0.3",   # 127.0.0.3: a client network
                "replication_tls_ca_dir": str(base / "ca")}
    hosts = {"alpha": {"heartbeat_node_addr": "127.0.0.1", "heartbeat_instance_id": "i-0aaaaaaaaaaaaaaa1",
                       "replication_tls_dir": str(base / "tls-alpha")},
             "bravo": {"heartbeat_node_addr": "127.0.0.2", "heartbeat_instance_id": "i-0bbbbbbbbbbbbbbb2",
                       "replication_tls_dir": str(base / "tls-bravo")}}
    return inventory_cls(hosts, settings)


def role_task(file: str, name: str) -> dict:
    for task in yaml.safe_load((ROLES / "replication" / "tasks" / file).read_text()):
        for inner in [task] + task.get("block", []):
            if inner.get("name") == name:
                return inner
    raise AssertionError(f"no task {name!r} in {file}")


def create_replication_role(server: Server) -> subprocess.CompletedProcess:
    """The role's own CREATE ROLE (bootstrap.yml), run on the server."""
    create = role_task("bootstrap.yml", "Create the replication role")["ansible.builtin.command"]["stdin"]
    sql = server.inv.evaluate("alpha", create)
    return as_postgres("psql", "-X", "-v", "ON_ERROR_STOP=1", "-h", str(server.sock), "-p", str(server.port),
                       "-d", "postgres", input=sql)
