"""Start and stop the lab daemon (lab/emulator/daemon.py); what `lab up` and `lab down` do.

`up` installs the lab's Debian packages (once), starts the daemon and waits, bounded, until it
has written lab/state/lab.json; a failed `up` stops what it started. `down` signals the daemon
by its recorded PID and waits for it; whatever a crashed daemon left (hosts recorded by PID,
namespaces) is swept by PID and by name. Both can be repeated at once (`cli_lock`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from lab import topology
from lab.emulator import daemon, hosts

LAB_JSON = topology.STATE_DIR / "lab.json"
PIDS_JSON = topology.STATE_DIR / "pids.json"
DAEMON_LOG = topology.STATE_DIR / "daemon.log"
DAEMON_MARKER = "-m lab daemon"
UP_TIMEOUT = 90.0
DOWN_TIMEOUT = 30.0


class LabError(Exception):
    """A one-sentence reason the lab command failed."""


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def daemon_pid() -> int | None:
    """The recorded daemon PID if that process is still the lab daemon."""
    pid = read_json(PIDS_JSON).get("daemon")
    return pid if pid and hosts.pid_matches(pid, DAEMON_MARKER) else None


def lab_info() -> dict:
    """lab.json of the running lab, or {} when the lab is not up."""
    info = read_json(LAB_JSON)
    pid = daemon_pid()
    return info if info.get("ready") and pid and info.get("pid") == pid else {}


def install_packages() -> None:
    script = topology.REPO / "lab" / "install.sh"
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise LabError("installing the lab packages failed: "
                       + (result.stderr.strip().splitlines() or ["no output"])[-1])


def start_daemon() -> subprocess.Popen:
    topology.STATE_DIR.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(topology.REPO), PYTHONUNBUFFERED="1")
    with open(DAEMON_LOG, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "lab", "daemon"], cwd=topology.REPO,
                                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)
    PIDS_JSON.write_text(json.dumps({"daemon": proc.pid}) + "\n")
    return proc


def wait_ready(proc: subprocess.Popen, timeout: float = UP_TIMEOUT) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = read_json(LAB_JSON)
        if info.get("ready") and info.get("pid") == proc.pid:
            return info
        if proc.poll() is not None:
            raise LabError("the lab daemon exited during start-up: "
                           + log_tail().replace("\n", " | "))
        time.sleep(0.05)
    raise LabError(f"the lab daemon was not ready within {timeout:.0f} s")


def log_tail(lines: int = 5) -> str:
    try:
        return "\n".join(DAEMON_LOG.read_text().strip().splitlines()[-lines:])
    except OSError:
        return "no log"


def up() -> dict:
    """Bring the lab up (idempotent); returns lab.json plus the time it took."""
    started = time.monotonic()
    info = lab_info()
    if info:
        return dict(info, already_up=True)
    install_packages()
    installed = time.monotonic()
    down(quiet=True)                 # leftovers of a crashed daemon, if any
    proc = start_daemon()
    try:
        info = wait_ready(proc)
    except LabError:
        if proc.poll() is None:     # not ready in time: stop it by its PID, let it clean up
            proc.terminate()
            try:
                proc.wait(timeout=DOWN_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        down(quiet=True)
        raise
    write_env_file(info)
    info = dict(info, up_seconds=round(time.monotonic() - started, 3),
                install_check_seconds=round(installed - started, 3))
    return info


def write_env_file(info: dict) -> None:
    """state/env.sh: `. lab/state/env.sh` points the AWS CLI / boto3 of the controller at moto."""
    (topology.STATE_DIR / "env.sh").write_text(
        f"export AWS_ENDPOINT_URL={info['endpoint_url']}\n"
        f"export AWS_ACCESS_KEY_ID={info['aws_access_key_id']}\n"
        f"export AWS_SECRET_ACCESS_KEY={info['aws_secret_access_key']}\n"
        f"export AWS_DEFAULT_REGION={info['region']}\n")


def down(quiet: bool = False) -> dict:
    """Stop the lab by PID and sweep what a crashed daemon may have left; returns figures."""
    started = time.monotonic()
    pid = daemon_pid()
    if pid is not None:
        hosts.kill_pid(pid, signal.SIGTERM)
        if not hosts.wait_gone(pid, DOWN_TIMEOUT):
            hosts.kill_pid(pid, signal.SIGKILL)
            hosts.wait_gone(pid, 5.0)
    swept = hosts.sweep_recorded_hosts()
    if any(hosts.netns_exists(n) for n in (topology.ROUTER_NS, topology.CLIENT_NS,
                                           topology.INTERNET_NS, topology.ONPREM_NS)):
        daemon.remove_router()      # a daemon that died left the data plane behind
    for name in hosts.recorded_namespaces():
        hosts.delete_netns(name)
    shutil.rmtree(topology.STATE_DIR / "hosts", ignore_errors=True)
    for path in (LAB_JSON, PIDS_JSON, topology.STATE_DIR / "env.sh"):
        path.unlink(missing_ok=True)
    left = leftovers()
    if not left:
        hosts.NAMESPACE_RECORD.unlink(missing_ok=True)
    result = {"down_seconds": round(time.monotonic() - started, 3), "was_up": pid is not None,
              "swept_hosts": swept, "left": left}
    if not quiet and left:
        print("lab down: still present: " + ", ".join(left), file=sys.stderr)
    return result


def leftovers() -> list[str]:
    """Namespaces named by the lab's prefix and processes of the lab still on the machine."""
    ours = {topology.ROUTER_NS, topology.CLIENT_NS, topology.INTERNET_NS, topology.ONPREM_NS}
    ours |= hosts.recorded_namespaces()
    found = [f"netns {name}" for name in sorted(ours) if hosts.netns_exists(name)]
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            if hosts.pid_matches(int(proc.name), DAEMON_MARKER) or \
                    hosts.pid_matches(int(proc.name), "e2h-boot"):
                found.append(f"pid {proc.name}")
    return found


@contextlib.contextmanager
def cli_lock():
    """Serialise `up` and `down` run at the same time (two `up`s would start two daemons)."""
    topology.STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(topology.STATE_DIR / "cli.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
