#!/usr/bin/env python
"""Start or stop a moto server on loopback for the tests; the process is tracked by its PID.

    tests/support/moto_server.py start STATE_DIR  -> prints the endpoint URL; writes STATE_DIR/moto.pid, moto.url
    tests/support/moto_server.py stop STATE_DIR   -> stops the process named in STATE_DIR/moto.pid
    (tests/support/moto_server.py is the command-line entry of this module; tests import
    ec2ha_testkit.moto_server, or use the `endpoint` fixture of tests/unit/conftest.py)
    moto_server.py serve PORT -> the server process itself (what `start` runs)

The server is the lab daemon's moto app (lab.emulator.control.start_moto), not moto's own
`moto_server` command: the lab's app serves one request at a time, which moto 5.2.5 needs (see
lab.emulator.control._one_request_at_a_time), and the tests then meet the moto the lab runs. That
includes its fault injection (lab/emulator/faults.py): throttle, cut, delay or rewrite chosen calls
with `faults.inject(url, rule)` and `faults.clear(url)`.

EC2HA_MOTO_PYTHON names the interpreter that serves moto (default: this one). The oldest-boto3
run (tests/support/boto_min.sh) sets it to the main venv's: the code under test then runs on the
boto3/botocore the nodes get, and moto's server on the botocore it is released against.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(state: Path) -> str:
    state.mkdir(parents=True, exist_ok=True)
    if (state / "moto.pid").exists():
        stop(state)
    port = free_port()
    log = open(state / "moto.log", "ab")
    python = os.environ.get("EC2HA_MOTO_PYTHON") or sys.executable
    proc = subprocess.Popen(
        [python, str(Path(__file__).resolve()), "serve", str(port)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    (state / "moto.pid").write_text(str(proc.pid))
    (state / "moto.url").write_text(url)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1).read()
            return url
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"moto server exited with {proc.returncode}; see {state / 'moto.log'}")
            time.sleep(0.2)
    stop(state)
    raise SystemExit("moto server did not answer within 30 s")


@contextlib.contextmanager
def running(state: Path) -> Iterator[str]:
    """A moto server for the ``with`` block: its URL; stopped on the way out."""
    url = start(state)
    try:
        yield url
    finally:
        stop(state)


def stop(state: Path) -> None:
    pidfile = state / "moto.pid"
    if not pidfile.exists():
        return
    pid = int(pidfile.read_text())
    try:
        os.kill(pid, signal.SIGTERM)
        for _attempt in range(50):
            os.kill(pid, 0)
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    pidfile.unlink()


def serve(port: int) -> None:
    """Serve moto on 127.0.0.1:port until SIGTERM or SIGINT."""
    # The server process is started by path (a new interpreter), so it finds the lab by path too.
    sys.path.insert(0, str(REPO))
    from lab.emulator import control

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *args: stopping.set())
    signal.signal(signal.SIGINT, lambda *args: stopping.set())
    control.share_region_lookups()
    server = control.start_moto("127.0.0.1", port)
    print(f"moto on http://127.0.0.1:{server.server_address[1]}, pid {os.getpid()}", flush=True)
    stopping.wait()
    control.stop_server(server)


def main(argv: "list[str]") -> None:
    if len(argv) != 3 or sys.argv[1] not in ("start", "stop", "serve"):
        raise SystemExit(__doc__)
    if argv[1] == "start":
        print(start(Path(argv[2])))
    elif argv[1] == "serve":
        serve(int(argv[2]))
    else:
        stop(Path(argv[2]))


if __name__ == "__main__":
    main(sys.argv)
