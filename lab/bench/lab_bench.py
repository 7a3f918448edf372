"""`python -m lab bench`: the lab's own figures.

lab up (cold, packages installed) and down time, first boot of three hosts (RunInstances ->
sshd answers), power-change follow latency (from just before the API call to: the host's PID
namespace gone / boot started / sshd answers again) for stop, start and reboot, the memory of
the lab's processes (PSS of the daemon and every host process), and the data plane's own
API-write -> kernel latencies (lab/bench/latency.py). Timestamps come from the system-wide
monotonic clock, shared by this process and the daemon's power marks.
"""

from __future__ import annotations

import time
from pathlib import Path

import boto3

from lab import helpers, topology
from lab.bench.latency import measure_latencies
from lab.emulator import hosts, lifecycle

REPEATS = 5


def _children(pid: int) -> list[int]:
    try:
        path = Path(f"/proc/{pid}/task/{pid}/children")
        return [int(p) for p in path.read_text().split()]
    except OSError:
        return []


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants (the daemon's tree holds every host process)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(_children(current))
    return found


def pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def lab_memory_mib(daemon_pid: int) -> dict:
    pids = process_tree(daemon_pid)
    daemon = pss_kib(daemon_pid)
    total = sum(pss_kib(p) for p in pids)
    return {"daemon": round(daemon / 1024, 1), "hosts": round((total - daemon) / 1024, 1),
            "total": round(total / 1024, 1), "processes": len(pids)}


def host_table() -> list[dict]:
    rows = []
    root = topology.STATE_DIR / "hosts"
    for hdir in sorted(root.iterdir()) if root.is_dir() else []:
        power = (hdir / "power").read_text().split() if (hdir / "power").exists() else ["-"]
        rows.append({"instance_id": hdir.name, "power": power[0],
                     "netns": topology.host_netns(hdir.name)})
    return rows


def wait_mark(instance_id: str, power: str, after: float, timeout: float = 10.0) -> float:
    """Seconds from `after` to the daemon's mark of `power` (bounded poll)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        mark = hosts.read_mark(instance_id)
        if mark and mark[0] == power and mark[1] >= after:
            return mark[1] - after
        time.sleep(0.002)
    raise TimeoutError(f"{instance_id} was not marked {power} within {timeout} s")


def wait_ssh(instance_id: str, after: float, timeout: float = 30.0) -> float:
    netns = topology.host_netns(instance_id)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if hosts.netns_exists(netns) and hosts.port_open_in_netns(netns, "127.0.0.1", 22):
            return time.monotonic() - after
        time.sleep(0.01)
    raise TimeoutError(f"{instance_id}: sshd did not answer within {timeout} s")


def wait_down(instance_id: str, after: float, timeout: float = 10.0) -> float:
    """Seconds until the host's recorded boot process is gone (its PID namespace with it)."""
    pidfile = hosts.host_dir(instance_id) / "pid"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pidfile.exists():
            return time.monotonic() - after
        time.sleep(0.002)
    raise TimeoutError(f"{instance_id} still running after {timeout} s")


def median(values: list[float]) -> float:
    return helpers.median(values, 3)


def run_hosts(ec2, world: dict, count: int, name: str) -> list[str]:
    primary = world["primary"]
    reply = ec2.run_instances(
        ImageId=primary["image_id"], InstanceType="t3.micro", MinCount=count, MaxCount=count,
        SubnetId=primary["subnet_ids"]["a"], KeyName=primary["key_name"],
        TagSpecifications=[{"ResourceType": "instance", "Tags": [
            {"Key": topology.LAB_HOST_TAG, "Value": "true"}, {"Key": "Name", "Value": name}]}])
    return [i["InstanceId"] for i in reply["Instances"]]


def measure_power(ec2, instance_id: str) -> dict:
    stop, start_mark, start_ssh, reboot_ssh = [], [], [], []
    for _repeat in range(REPEATS):
        t0 = time.monotonic()
        ec2.stop_instances(InstanceIds=[instance_id])
        wait_down(instance_id, t0)
        stop.append(wait_mark(instance_id, "off", t0))
        t0 = time.monotonic()
        ec2.start_instances(InstanceIds=[instance_id])
        start_mark.append(wait_mark(instance_id, "on", t0))
        start_ssh.append(wait_ssh(instance_id, t0))
        t0 = time.monotonic()
        ec2.reboot_instances(InstanceIds=[instance_id])
        wait_mark(instance_id, "on", t0)
        reboot_ssh.append(wait_ssh(instance_id, t0))
    return {"stop_to_powered_off_s": median(stop), "stop_max_s": round(max(stop), 3),
            "start_to_boot_started_s": median(start_mark),
            "start_max_s": round(max(start_mark), 3),
            "start_to_sshd_s": median(start_ssh), "reboot_to_sshd_s": median(reboot_ssh)}


def disable_source_dest_check(ec2, ids: list[str]) -> None:
    """Let the bench hosts' ENIs forward: the data-plane probe moves a route between them."""
    for reservation in ec2.describe_instances(InstanceIds=ids)["Reservations"]:
        for instance in reservation["Instances"]:
            for eni in instance["NetworkInterfaces"]:
                ec2.modify_network_interface_attribute(
                    NetworkInterfaceId=eni["NetworkInterfaceId"], SourceDestCheck={"Value": False})


def data_plane_latencies(endpoint_url: str) -> dict:
    """API write -> data plane shows it (lab/bench/latency.py), medians in seconds."""
    try:
        samples = measure_latencies(endpoint_url, samples=REPEATS)
    except Exception as exc:       # the control-plane figures stand on their own
        return {"error": str(exc)}
    return {f"{kind}_s": median(values) for kind, values in samples.items()}


def run() -> dict:
    """Measure; brings the lab up (and down at the end) when it was not up."""
    figures: dict = {}
    was_up = bool(lifecycle.lab_info())
    if not was_up:
        figures["lab_up_s"] = lifecycle.up()["up_seconds"]
    info = lifecycle.lab_info()
    ec2 = boto3.client("ec2", region_name=info["region"], endpoint_url=info["endpoint_url"],
                       aws_access_key_id=info["aws_access_key_id"],
                       aws_secret_access_key=info["aws_secret_access_key"])
    figures["daemon_start_s"] = info["daemon_start_seconds"]
    ids: list[str] = []
    try:
        t0 = time.monotonic()
        ids = run_hosts(ec2, info["world"], 3, "bench")
        boots = [wait_ssh(i, t0) for i in ids]
        figures["first_boot_3_hosts_s"] = {"median": median(boots), "last": round(max(boots), 3)}
        figures["memory_mib_3_hosts"] = lab_memory_mib(info["pid"])
        figures["power"] = measure_power(ec2, ids[0])
        disable_source_dest_check(ec2, ids)     # as the route-table scenario does
        figures["data_plane"] = data_plane_latencies(info["endpoint_url"])
        t0 = time.monotonic()
        ec2.terminate_instances(InstanceIds=ids)
        wait_removed(ids)
        figures["terminate_3_hosts_removed_s"] = round(time.monotonic() - t0, 3)
    finally:
        if not was_up:
            figures["lab_down_s"] = lifecycle.down()["down_seconds"]
        elif ids:
            ec2.terminate_instances(InstanceIds=ids)
    return figures


def wait_removed(ids: list[str], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while any(hosts.netns_exists(topology.host_netns(i)) for i in ids):
        if time.monotonic() > deadline:
            raise TimeoutError(f"hosts still present after {timeout} s: {ids}")
        time.sleep(0.005)
