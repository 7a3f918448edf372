"""The lab, up once for the whole session (`python -m lab up`) and down at the end, by PID.

The session ends by asserting that `lab down` left no namespace and no lab process behind.
Tests reach hosts the way the controller does: SSH through lab/state/ssh_config.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import boto3
import pytest

from lab import topology
from lab.emulator import hosts, lifecycle
from lab.helpers import run_group, wait_for

REPO = topology.REPO

LAB_TIMEOUT = 180


def lab_command(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "lab", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=LAB_TIMEOUT, check=False)


def root_namespace_network() -> dict[str, str]:
    """The machine's own addresses, routes and links (the lab must never add to them)."""
    def show(*args: str) -> str:
        out = subprocess.run(["ip", "-o", *args], capture_output=True, text=True, check=False).stdout
        return "\n".join(sorted(line.split(" link/")[0] for line in out.splitlines()))
    return {"addresses": show("addr"), "routes": show("route", "show", "table", "all"),
            "links": show("link")}


@pytest.fixture(scope="session")
def root_network_before() -> dict[str, str]:
    return root_namespace_network()


@pytest.fixture(scope="session")
def lab_session(root_network_before) -> bool:
    """True if this session brought the lab up (and so takes it down at the end)."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (namespaces, mounts)")
    ours = not lifecycle.lab_info()        # a lab someone else brought up is left running
    result = lab_command("up")
    assert result.returncode == 0, result.stderr
    yield ours
    if ours:
        result = lab_command("down")
        assert result.returncode == 0, result.stdout + result.stderr
        assert lifecycle.leftovers() == []


@pytest.fixture
def lab(lab_session) -> dict:
    """lab.json of the running lab (read afresh: a test may have restarted the lab)."""
    return json.loads(lifecycle.LAB_JSON.read_text())


@pytest.fixture
def ec2(lab):
    return boto3.client("ec2", region_name=lab["region"], endpoint_url=lab["endpoint_url"],
                        aws_access_key_id=lab["aws_access_key_id"],
                        aws_secret_access_key=lab["aws_secret_access_key"])


class Node:
    """One tagged instance and the ways to reach its lab host."""

    def __init__(self, lab: dict, instance_id: str, private_ip: str, name: str) -> None:
        self.lab, self.id, self.ip, self.name = lab, instance_id, private_ip, name

    def ssh(self, command: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return run_group(["ssh", "-F", self.lab["ssh_config"], "-o", "ConnectTimeout=3",
                          "-o", "BatchMode=yes", self.ip, command], timeout)

    def check(self, command: str, timeout: float = 60) -> str:
        result = self.ssh(command, timeout)
        assert result.returncode == 0, f"{self.name}: {command}: {result.stderr}"
        return result.stdout

    def reachable(self) -> bool:
        return self.ssh("true", timeout=10).returncode == 0

    def wait_up(self, timeout: float = 30) -> None:
        wait_for(self.reachable, timeout, 0.1, f"{self.name} over SSH")

    def powered(self) -> bool:
        """True while the host's boot process (parent of its PID 1) exists."""
        return (hosts.host_dir(self.id) / "pid").exists()

    def state(self, ec2) -> str:
        reply = ec2.describe_instances(InstanceIds=[self.id])
        return reply["Reservations"][0]["Instances"][0]["State"]["Name"]


@pytest.fixture
def launch(lab, ec2):
    """launch(name, subnet="a", tagged=True) -> Node; every instance is terminated afterwards."""
    launched: list[str] = []

    def make(name: str, subnet: str = "a", tagged: bool = True) -> Node:
        primary = lab["world"]["primary"]
        tags = [{"Key": "Name", "Value": name}]
        if tagged:
            tags.append({"Key": topology.LAB_HOST_TAG, "Value": "true"})
        reply = ec2.run_instances(
            ImageId=primary["image_id"], InstanceType="t3.micro", MinCount=1, MaxCount=1,
            SubnetId=primary["subnet_ids"][subnet], KeyName=primary["key_name"],
            TagSpecifications=[{"ResourceType": "instance", "Tags": tags}])
        instance = reply["Instances"][0]
        launched.append(instance["InstanceId"])
        return Node(lab, instance["InstanceId"], instance["PrivateIpAddress"], name)

    yield make
    if launched:
        ec2.terminate_instances(InstanceIds=launched)
        wait_for(lambda: not any(hosts.netns_exists(topology.host_netns(i)) for i in launched),
                 10, what="terminated hosts to be removed")
