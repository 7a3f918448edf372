"""Lab hosts follow their EC2 instances: boot, power-off, power-on with the disk kept, reboot,
terminate; and the lab itself comes down clean and up again at once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import lab_command, root_namespace_network

from lab import topology
from lab.emulator import hosts, lifecycle
from lab.helpers import wait_for

# A bound, not a speed goal: a power change follows the API call well within this even on a loaded
# CI machine (a terminate also unmounts the host's disk). `lab bench` measures the real figure
# (stop -> powered off: 15 ms median here).
POWER_FOLLOW = 5.0


def test_down_leaves_nothing_and_up_works_again_at_once(lab, lab_session):
    if not lab_session:
        pytest.skip("the lab was up before this session: not ours to take down")
    old_pid = lab["pid"]
    result = lab_command("down")
    assert result.returncode == 0, result.stderr
    assert lifecycle.leftovers() == []
    assert not hosts.netns_exists(topology.ROUTER_NS)
    assert not hosts.pid_matches(old_pid, lifecycle.DAEMON_MARKER)
    result = lab_command("up")
    assert result.returncode == 0, result.stderr
    info = lifecycle.lab_info()
    assert info["ready"] and info["pid"] != old_pid
    assert hosts.netns_exists(topology.ROUTER_NS)


def test_tagged_instance_boots_and_answers_its_hostname_over_ssh(launch):
    node = launch("lab-node-a")
    node.wait_up()
    assert node.check("hostname").strip() == "lab-node-a"
    assert node.check("cat /proc/1/comm").strip() == "tini"


def test_untagged_instance_gets_no_host(launch, ec2):
    tagged = launch("tagged")
    plain = launch("plain", tagged=False)
    tagged.wait_up()
    assert not hosts.netns_exists(topology.host_netns(plain.id))
    assert not hosts.host_dir(plain.id).exists()


def test_host_without_name_tag_is_named_from_its_address(lab, ec2):
    primary = lab["world"]["primary"]
    reply = ec2.run_instances(
        ImageId=primary["image_id"], MinCount=1, MaxCount=1, SubnetId=primary["subnet_ids"]["b"],
        TagSpecifications=[{"ResourceType": "instance",
                            "Tags": [{"Key": topology.LAB_HOST_TAG, "Value": "true"}]}])
    instance = reply["Instances"][0]
    from conftest import Node
    node = Node(lab, instance["InstanceId"], instance["PrivateIpAddress"], "unnamed")
    try:
        node.wait_up()
        assert node.check("hostname").strip() == "ip-" + node.ip.replace(".", "-")
    finally:
        ec2.terminate_instances(InstanceIds=[node.id])
        wait_for(lambda: not hosts.netns_exists(topology.host_netns(node.id)), 10)


def test_stop_powers_off_and_start_boots_with_the_disk_kept(launch, ec2):
    node = launch("lab-node-stop")
    node.wait_up()
    node.check("echo before-stop > /var/tmp/disk-survives && echo x > /run/lost-on-power-off")
    ec2.stop_instances(InstanceIds=[node.id])
    wait_for(lambda: not node.powered(), POWER_FOLLOW, 0.005, "power-off")
    assert not node.reachable()
    assert node.state(ec2) == "stopped"
    ec2.start_instances(InstanceIds=[node.id])
    wait_for(node.powered, POWER_FOLLOW, 0.005, "power-on")
    node.wait_up()
    assert node.check("cat /var/tmp/disk-survives").strip() == "before-stop"
    assert node.ssh("test -e /run/lost-on-power-off").returncode == 1
    assert node.check("hostname").strip() == "lab-node-stop"


def test_reboot_restarts_the_host(launch, ec2):
    node = launch("lab-node-reboot")
    node.wait_up()
    node.check("touch /run/gone-after-reboot /var/tmp/kept-after-reboot")
    first_pid1 = (hosts.host_dir(node.id) / "pid").read_text()
    ec2.reboot_instances(InstanceIds=[node.id])
    wait_for(lambda: (hosts.host_dir(node.id) / "pid").exists()
             and (hosts.host_dir(node.id) / "pid").read_text() != first_pid1,
             POWER_FOLLOW, 0.005, "the reboot")
    node.wait_up()
    assert node.ssh("test -e /run/gone-after-reboot").returncode == 1
    assert node.ssh("test -e /var/tmp/kept-after-reboot").returncode == 0


def test_stop_and_start_within_one_poll_still_power_cycles(launch, ec2):
    node = launch("lab-node-cycle")
    node.wait_up()
    node.check("touch /run/cycle-marker")
    ec2.stop_instances(InstanceIds=[node.id])
    ec2.start_instances(InstanceIds=[node.id])
    node.wait_up()
    wait_for(lambda: node.ssh("test -e /run/cycle-marker").returncode == 1, 5, 0.1,
             "the host to have been power-cycled")


def test_boot_drops_addresses_a_real_stop_start_loses(launch, ec2):
    node = launch("lab-node-vip")
    node.wait_up()
    wait_for(lambda: node.check("ip -o -4 addr show dev eth0 2>/dev/null"), 10, 0.1,
             "the data plane's eth0 in the host")
    node.check("ip addr add 192.168.77.7/32 dev eth0")
    node.check("ip addr add 192.168.77.8/32 dev lo")       # where a route-table VIP is kept
    ec2.stop_instances(InstanceIds=[node.id])
    wait_for(lambda: not node.powered(), POWER_FOLLOW, 0.005, "power-off")
    ec2.start_instances(InstanceIds=[node.id])
    node.wait_up()
    addresses = node.check("ip -o -4 addr show")
    assert "192.168.77.7" not in addresses and "192.168.77.8" not in addresses
    assert "127.0.0.1" in addresses
    assert node.ip in addresses


def test_terminate_removes_namespace_and_disk(launch, ec2):
    node = launch("lab-node-gone")
    node.wait_up()
    assert hosts.host_dir(node.id).exists()
    ec2.terminate_instances(InstanceIds=[node.id])
    wait_for(lambda: not hosts.netns_exists(topology.host_netns(node.id)), POWER_FOLLOW, 0.005,
             "the host namespace to go")
    wait_for(lambda: not hosts.host_dir(node.id).exists(), 2, 0.01, "the host disk to go")


def test_terminated_instance_frees_its_private_ip(launch, ec2, lab):
    # As on AWS: a pair rebuilt on fixed addresses reuses them (moto alone keeps them "in use").
    node = launch("lab-node-reused-ip", tagged=False)
    subnet = ec2.describe_instances(InstanceIds=[node.id])["Reservations"][0]["Instances"][0]["SubnetId"]
    ec2.terminate_instances(InstanceIds=[node.id])
    again = ec2.run_instances(ImageId=lab["world"]["primary"]["image_id"], MinCount=1, MaxCount=1,
                              SubnetId=subnet, PrivateIpAddress=node.ip)["Instances"][0]
    try:
        assert again["PrivateIpAddress"] == node.ip
    finally:
        ec2.terminate_instances(InstanceIds=[again["InstanceId"]])


def test_host_calls_the_aws_api_over_tls_with_stock_boto3(launch, lab):
    """Debian's python3-boto3 in the host, no endpoint_url: DNS (/etc/hosts) + lab CA do it."""
    node = launch("lab-node-api")
    node.wait_up()
    script = ("import boto3; r = boto3.client('ec2', region_name='us-east-1')"
              f".describe_instances(InstanceIds=['{node.id}']);"
              " print(r['Reservations'][0]['Instances'][0]['PrivateIpAddress'])")
    out = node.check(f"AWS_ACCESS_KEY_ID={lab['aws_access_key_id']} "
                     f"AWS_SECRET_ACCESS_KEY={lab['aws_secret_access_key']} "
                     f"/usr/bin/python3 -c \"{script}\"")
    assert out.strip() == node.ip


def test_inventory_and_ssh_config_name_every_host(launch, lab):
    node = launch("lab-node-inv")
    node.wait_up()
    inventory = wait_for(lambda: "lab-node-inv" in open(lab["inventory"]).read()
                         and open(lab["inventory"]).read(), 2, what="the inventory entry")
    assert f"ansible_host: {node.ip}" in inventory
    assert f"ec2_instance_id: {node.id}" in inventory
    from conftest import Node
    by_name = Node(lab, node.id, "lab-node-inv", "by-name")
    assert by_name.check("hostname").strip() == "lab-node-inv"


def test_root_network_namespace_is_untouched(launch, root_network_before):
    """Hosts running, data plane up: not one address, route or link added to the machine."""
    node = launch("lab-node-root")
    node.wait_up()
    assert root_namespace_network() == root_network_before


def test_ansible_reaches_hosts_by_private_ip_through_the_lab_inventory(launch, lab):
    nodes = [launch("lab-ansible-1"), launch("lab-ansible-2")]
    for node in nodes:
        node.wait_up()
    wait_for(lambda: all(n.ip in open(lab["inventory"]).read() for n in nodes), 2,
             what="both hosts in the inventory")
    ansible = str(Path(sys.executable).parent / "ansible")
    result = subprocess.run(
        [ansible, "-i", lab["inventory"], ",".join(n.name for n in nodes), "-m", "command",
         "-a", "hostname", "-o"], capture_output=True, text=True, timeout=120,
        env=dict(os.environ, ANSIBLE_HOST_KEY_CHECKING="False"), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    for node in nodes:
        assert f"{node.name} | CHANGED | rc=0 | (stdout) {node.name}" in result.stdout


PROBE_SERVICE = """#!/bin/sh
### BEGIN INIT INFO
# Provides:          e2h-probe
# Required-Start:
# Required-Stop:
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: lab test probe
### END INIT INFO
[ "$1" = start ] && date +%s.%N > /run/e2h-probe-started
exit 0
"""


def test_services_enabled_with_update_rc_d_start_at_boot(launch, ec2):
    node = launch("lab-node-rc")
    node.wait_up()
    node.check(f"cat > /etc/init.d/e2h-probe <<'EOF'\n{PROBE_SERVICE}EOF\n"
               "chmod 755 /etc/init.d/e2h-probe && update-rc.d e2h-probe defaults")
    assert node.ssh("test -e /run/e2h-probe-started").returncode == 1
    ec2.reboot_instances(InstanceIds=[node.id])
    node.wait_up()
    wait_for(lambda: node.ssh("test -e /run/lab-booted").returncode == 0, 10, 0.2, "boot end")
    assert node.ssh("test -e /run/e2h-probe-started").returncode == 0
    node.check("update-rc.d e2h-probe disable")
    ec2.reboot_instances(InstanceIds=[node.id])
    node.wait_up()
    # sshd starts first and the other services right after it: wait for init to finish.
    wait_for(lambda: node.ssh("test -e /run/lab-booted").returncode == 0, 10, 0.2, "boot end")
    assert node.ssh("test -e /run/e2h-probe-started").returncode == 1


def test_reassociated_elastic_ip_leaves_the_old_interface(launch, ec2):
    # As on AWS: DescribeInstances no longer shows the EIP on the node it left (moto alone kept it).
    first, second = launch("lab-eip-first", tagged=False), launch("lab-eip-second", tagged=False)
    allocation = ec2.allocate_address(Domain="vpc")
    try:
        for node in (first, second):
            ec2.associate_address(AllocationId=allocation["AllocationId"], InstanceId=node.id, AllowReassociation=True)
        shown = {i["InstanceId"]: i.get("PublicIpAddress")
                 for r in ec2.describe_instances(InstanceIds=[first.id, second.id])["Reservations"]
                 for i in r["Instances"]}
        assert shown == {first.id: None, second.id: allocation["PublicIp"]}
    finally:
        ec2.release_address(AllocationId=allocation["AllocationId"])
