"""The long-running lab process (`python -m lab daemon`, started by `lab up`).

It owns, in one process: moto (HTTP on loopback for the controller, HTTPS in the router
namespace for the hosts), the hypervisor loop, the hosts' IMDS servers and the network data
plane's reconciler (lab/emulator/dataplane/router.py). On SIGTERM it powers every host off,
removes their namespaces and disks, stops its servers and exits: `lab down` only has to signal
it and wait for its PID.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

from lab import topology
from lab.emulator import control, faults, hypervisor, world
from lab.emulator.dataplane.router import Network

LAB_JSON = topology.STATE_DIR / "lab.json"
SSH_DIR = topology.STATE_DIR / "ssh"
MACHINE_LOCK = "ec2ha-lab-daemon"


def ensure_ssh_key() -> tuple[Path, str]:
    """The lab's SSH key (kept across `up`s): root's authorized key in every host."""
    SSH_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = SSH_DIR / "id_ed25519"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ec2ha-lab",
                        "-f", str(key)], check=True)
    return key, (SSH_DIR / "id_ed25519.pub").read_text()


def ensure_router(endpoint_url: str) -> Network:
    """The data plane set up (router namespace with AWS_API_ADDRESS, clients, resolver)."""
    network = Network(endpoint_url, topology.STATE_DIR)
    network.setup()
    return network


def remove_router(network: Network | None = None) -> None:
    """Undo ensure_router; without `network` (a crashed daemon), a fresh Network tears down."""
    (network or Network("http://127.0.0.1:9", topology.STATE_DIR)).teardown()


def run_network(network: Network, stop: threading.Event, interval: float = 0.2) -> None:
    """The data plane's reconcile loop, in its own thread so that a slow pass (it reads moto
    over HTTP) never delays a power change."""
    last_error = ""
    while not stop.wait(interval):
        try:
            network.tick()
            last_error = ""
        except Exception as exc:        # a bad pass is logged once; the next one starts afresh
            if repr(exc) != last_error:
                traceback.print_exc()
                last_error = repr(exc)


def start_network(network: Network, stop: threading.Event) -> threading.Thread:
    thread = threading.Thread(target=run_network, args=(network, stop), name="network",
                              daemon=True)
    thread.start()
    return thread


def write_lab_json(data: dict) -> None:
    tmp = LAB_JSON.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(LAB_JSON)


def credentials() -> dict[str, str]:
    return {"aws_access_key_id": control.ACCESS_KEY,
            "aws_secret_access_key": control.SECRET_KEY}


def build_world(endpoint: str, public_key: str, out: dict) -> None:
    try:
        out["ids"] = world.create(endpoint, public_key, **credentials())
        world.warm_up(endpoint, **credentials())
    except Exception as exc:        # handed to main()
        out["error"] = exc


def hold_machine_lock() -> socket.socket | None:
    """A machine-wide lock for the life of the daemon, or None if another lab holds it.

    The namespace names are fixed, so two labs (two checkouts) would tear down each other's data
    plane. An abstract unix socket name is unique per machine, vanishes with its process and
    leaves no file behind.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind("\0" + MACHINE_LOCK)
    except OSError:
        sock.close()
        return None
    return sock


def main() -> int:
    """Bring the lab's control plane up, serve until SIGTERM, then tear everything down."""
    topology.STATE_DIR.mkdir(parents=True, exist_ok=True)
    lock = hold_machine_lock()
    if lock is None:
        print("lab daemon: another lab is up on this machine (maybe from another checkout); "
              "run `python -m lab down` there first", flush=True)
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    started = time.monotonic()
    control.share_region_lookups()
    servers = []
    hv = None
    network = network_thread = None
    try:
        ca_crt, server_pem = control.ensure_ca()
        ssh_key, public_key = ensure_ssh_key()
        # One fault table for both fronts and the hosts' IMDS: a rule the controller injects
        # over HTTP also hits the hosts' calls to the TLS front and to their metadata service.
        fault_table = faults.FaultTable()
        hv = hypervisor.Hypervisor(ca_crt.read_bytes(), public_key, ssh_key, fault_table)
        control.install_power_hooks(hv.wake.set)
        moto = control.start_moto(fault_table=fault_table)
        servers.append(moto)
        endpoint = f"http://127.0.0.1:{moto.server_address[1]}"
        # moto's first request per service imports and parses seconds of JSON: build the world
        # (and warm the services the hosts call) while the data plane is set up.
        built: dict = {}
        builder = threading.Thread(target=build_world, args=(endpoint, public_key, built),
                                   name="world")
        builder.start()
        try:
            network = ensure_router(endpoint)
            servers.append(control.start_tls_front(server_pem, fault_table=fault_table))
        finally:
            builder.join()
        if "error" in built:
            raise built["error"]
        ids = built["ids"]
        hypervisor.write_access_files([], ssh_key)
        network_thread = start_network(network, stop)
        write_lab_json({
            "ready": True, "pid": os.getpid(), "endpoint_url": endpoint,
            "aws_access_key_id": control.ACCESS_KEY,
            "aws_secret_access_key": control.SECRET_KEY,
            "region": topology.PRIMARY_REGION, "dr_region": topology.DR_REGION,
            "aws_api_address": topology.AWS_API_ADDRESS, "ca_cert": str(ca_crt),
            "ssh_key": str(ssh_key), "ssh_config": str(hypervisor.SSH_CONFIG),
            "inventory": str(hypervisor.INVENTORY), "world": ids,
            "network_plane": network_thread is not None,
            "daemon_start_seconds": round(time.monotonic() - started, 3),
        })
        print(f"lab daemon ready in {time.monotonic() - started:.2f} s at {endpoint}", flush=True)
        hv.run(stop)
        return 0
    except Exception:
        traceback.print_exc()
        return 1
    finally:
        stop.set()
        stopping = time.monotonic()
        if hv is not None:
            hv.shutdown()
        hosts_down = time.monotonic()
        if network_thread is not None:
            network_thread.join(timeout=10)
        for server in reversed(servers):
            control.stop_server(server)
        servers_down = time.monotonic()
        remove_router(network)
        LAB_JSON.unlink(missing_ok=True)
        print(f"lab daemon stopped: hosts {hosts_down - stopping:.2f} s, servers "
              f"{servers_down - hosts_down:.2f} s, data plane {time.monotonic() - servers_down:.2f} s",
              flush=True)
        sys.stdout.flush()
