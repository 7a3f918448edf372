"""A client writing to the pair: one numbered INSERT per transaction through the VIP, from a
process in CLIENT_NS, each write's start, end, outcome and answering node recorded.

    with writing(settings, primary) as writer: ...   # the ticks table made, first writes acked
    writer.outage(after) / writer.ok_after(when)     # what the client saw
    rows_present(settings)                           # every seq the table holds (no lost commit)
    gaps(writes, since) / two_writer_events(writes)  # waits between acks; writes two servers took at once
"""

from __future__ import annotations

import contextlib
import json
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, List, Optional

from lab import helpers, topology
from lab.pair.cluster import DB_PASSWORD, DB_USER, VIP, Settings, node_address, ssh

CLIENT_SCRIPT = r"""
import json, os, subprocess, sys, time
conninfo, start = sys.argv[1], int(sys.argv[2])
seq = start
while True:
    t0 = time.time()
    r = subprocess.run(["psql", conninfo, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c",
                        "INSERT INTO ticks (seq) VALUES (%d) RETURNING lab_node()" % seq],
                       capture_output=True, text=True)
    print(json.dumps({"seq": seq, "t0": t0, "t1": time.time(), "ok": r.returncode == 0,
                      "server": r.stdout.strip(), "err": r.stderr.strip()[-200:]}), flush=True)
    seq += 1
    if r.returncode == 0:
        time.sleep(0.05)
"""


def conninfo(host: str = VIP) -> str:
    return (f"host={host} port=5432 dbname=postgres user={DB_USER} password={DB_PASSWORD} "
            "connect_timeout=2 application_name=lab-writer")


def psql_in(ns: str, sql: str, host: str = VIP, timeout: float = 10) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, "psql", conninfo(host), "-XAtq",
                           "-v", "ON_ERROR_STOP=1", "-c", sql],
                          capture_output=True, text=True, timeout=timeout, check=False)


@dataclass
class Write:
    seq: int
    t0: float
    t1: float
    ok: bool
    server: str
    err: str


@dataclass
class Writer:
    """One INSERT per transaction through the VIP from CLIENT_NS, in a process in that namespace."""

    start: int = 1
    ns: str = topology.CLIENT_NS
    writes: List[Write] = field(default_factory=list)

    def __enter__(self) -> "Writer":
        env = {"PATH": "/usr/bin:/bin", "PGCONNECT_TIMEOUT": "2"}
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns, "python3", "-c", CLIENT_SCRIPT,
                                      conninfo(), str(self.start)],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     env=env)
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        return self

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                write = Write(**json.loads(line))
            except (ValueError, TypeError):
                continue
            with self.lock:
                self.writes.append(write)

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(timeout=5)

    def snapshot(self) -> List[Write]:
        with self.lock:
            return list(self.writes)

    def acknowledged(self) -> List[int]:
        return [w.seq for w in self.snapshot() if w.ok]

    def ok_after(self, when: float, server: Optional[str] = None) -> Optional[Write]:
        for w in self.snapshot():
            if w.ok and w.t0 >= when and (server is None or w.server == server):
                return w
        return None

    def outage(self, after: float) -> Optional[tuple[float, float]]:
        """(last ack before the first failure after `after`, first ack after it) in epoch s."""
        writes = self.snapshot()
        last_ok, first_fail = None, None
        for w in writes:
            if w.t0 < after:
                if w.ok:
                    last_ok = w.t1
                continue
            if not w.ok and first_fail is None:
                first_fail = w
            if first_fail is not None and w.ok:
                return (last_ok or first_fail.t0, w.t1)
            if first_fail is None and w.ok:
                last_ok = w.t1
        return None


@contextlib.contextmanager
def writing(s: Settings, primary: str, warmup: int = 20) -> Iterator["Writer"]:
    """A client writing numbered rows through the VIP (the table made on the primary), yielded
    once its first `warmup` writes are acknowledged; stopped on leaving."""
    prepare_table(s, primary)
    start = int(time.time() * 1000) * 100      # seq numbers never reused across runs
    with Writer(start=start) as writer:
        helpers.wait_for(lambda: len(writer.acknowledged()) >= warmup, 60, 0.2, "the client's first writes through the VIP")
        yield writer


def prepare_table(s: Settings, primary: str) -> None:
    """The app role and the ticks table, made on the primary over SSH (idempotent)."""
    sql = (f"DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname='{DB_USER}') THEN "
           f"CREATE ROLE {DB_USER} LOGIN PASSWORD '{DB_PASSWORD}'; END IF; END$$;"
           f"CREATE TABLE IF NOT EXISTS ticks (seq bigint PRIMARY KEY, at timestamptz DEFAULT now());"
           f"GRANT INSERT, SELECT, DELETE ON ticks TO {DB_USER};"
           # Which node answered: its application_name in primary_conninfo (superuser-only
           # setting, hence SECURITY DEFINER), the Pacemaker node name PAF requires there.
           "CREATE OR REPLACE FUNCTION lab_node() RETURNS text LANGUAGE sql SECURITY DEFINER AS "
           "$f$ SELECT substring(current_setting('primary_conninfo') "
           "from 'application_name=([A-Za-z0-9_.-]+)') $f$;"
           f"GRANT EXECUTE ON FUNCTION lab_node() TO {DB_USER};")
    out = ssh(s, node_address(primary), "runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -c "
              + shlex.quote(sql))
    if out.returncode != 0:
        raise RuntimeError(f"preparing the ticks table on {primary} failed: {out.stderr.strip()}")


def rows_present(s: Settings) -> set[int]:
    out = psql_in(topology.CLIENT_NS, "SELECT seq FROM ticks")
    if out.returncode != 0:
        raise RuntimeError(f"reading ticks through the VIP failed: {out.stderr.strip()}")
    return {int(line) for line in out.stdout.split()}


def gaps(writes: Iterable[Write], since: float) -> List[tuple[float, float]]:
    """(wait, end) between consecutive acknowledged writes, for the waits that end after `since`:
    max() of it is the client's worst outage from then on, and when it ended."""
    ends = sorted(w.t1 for w in writes if w.ok)
    return [(b - a, b) for a, b in zip(ends, ends[1:]) if b >= since]


def longest_gap(writes: Iterable[Write], since: float) -> Optional[float]:
    """The longest of gaps(writes, since); None with fewer than two acknowledged writes."""
    return max(gaps(writes, since), default=(None, None))[0]


def two_writer_events(writes: Iterable[Write]) -> int:
    """Acknowledged writes that one server took while another server's acknowledged writes were
    still going on: each server's writes span [its first start, its last end]; every write of a
    server that falls inside another's span counts once. 0 when writes moved at most once and
    cleanly from one server to the other."""
    acked = [w for w in writes if w.ok]
    spans: Dict[str, tuple] = {}
    for w in acked:
        first, last = spans.get(w.server, (w.t0, w.t1))
        spans[w.server] = (min(first, w.t0), max(last, w.t1))
    return sum(1 for w in acked for server, (first, last) in spans.items()
               if server != w.server and first < w.t1 and w.t0 < last)
