"""Stock fence_aws (Debian's fence-agents), run on node2 over SSH, fences node1 for real:
StopInstances through the TLS endpoint under the AWS host name powers the lab host off."""

from __future__ import annotations

import pytest

from lab.helpers import wait_for


@pytest.fixture
def pair(launch):
    nodes = launch("fence-node1"), launch("fence-node2")
    for node in nodes:
        node.wait_up()
    return nodes


def fence(node, lab, plug: str, action: str):
    return node.ssh(f"AWS_ACCESS_KEY_ID={lab['aws_access_key_id']} "
                    f"AWS_SECRET_ACCESS_KEY={lab['aws_secret_access_key']} "
                    f"fence_aws --region us-east-1 --plug {plug} --action {action}", timeout=120)


def test_fence_aws_powers_node1_off_and_on(pair, lab, ec2):
    node1, node2 = pair
    node1.check("echo survives-fencing > /var/tmp/fenced")
    result = fence(node2, lab, node1.id, "off")
    assert result.returncode == 0, result.stdout + result.stderr
    assert node1.state(ec2) == "stopped"
    wait_for(lambda: not node1.powered(), 0.5, 0.01, "node1 powered off")
    assert not node1.reachable()
    status = fence(node2, lab, node1.id, "status")
    assert "OFF" in status.stdout.upper(), status.stdout + status.stderr
    result = fence(node2, lab, node1.id, "on")
    assert result.returncode == 0, result.stdout + result.stderr
    node1.wait_up()
    assert node1.check("cat /var/tmp/fenced").strip() == "survives-fencing"
    assert node1.state(ec2) == "running"


def test_fence_aws_reboot_power_cycles_node1(pair, lab):
    node1, node2 = pair
    node1.check("touch /run/before-fence-reboot")
    result = fence(node2, lab, node1.id, "reboot")
    assert result.returncode == 0, result.stdout + result.stderr
    node1.wait_up()
    wait_for(lambda: node1.ssh("test -e /run/before-fence-reboot").returncode == 1, 5, 0.1,
             "node1 to have been power-cycled")
