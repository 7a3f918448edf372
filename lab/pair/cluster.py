"""An ec2ha cluster pair in the running lab: inventory for playbooks/site.yml, a write client,
power control and the failover timeline. Shared by demo/cluster_demo.py, tests/lab/test_cluster.py
and lab/bench/failover_bench.py.

    info = cli.lab_info()                          # the lab must be up
    settings = prepare(info)                       # EIP + private hosted zone (idempotent), inventory
    run_playbook("playbooks/site.yml", settings)   # -> PlaybookRun(rc, recap {host: {changed, failed..}})
    primary = promoted_node(settings)              # Pacemaker's view, over SSH
    with Writer(settings) as w: ...                # numbered INSERTs through the VIP from CLIENT_NS
    stop_instance(settings, node) / start_instance(...)

Lab differences from AWS (kept here, never in the collection):
- the lab's IMDS serves no instance-profile credentials: the nodes get the lab's static keys
  (fence_aws through heartbeat_fence_access_key/secret, the ec2ha agents through
  /root/.aws/credentials written by site.yml when ec2ha_node_access_key is set);
- the nodes reach AWS under the real host names through the lab's TLS front, so no endpoint_url
  is given to the nodes; the controller uses the lab's plain-HTTP moto endpoint.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import boto3
import yaml
# On the path through the .pth file `make collection` writes into the venv.
from ansible_collections.ec2ha.cluster.plugins.module_utils import aws, endpoint_info

from lab import helpers, topology
from lab.emulator import hosts

REPO = topology.REPO
WORK_DIR = REPO / ".build" / "lab-cluster"
INVENTORY = WORK_DIR / "inventory.yml"
COLLECTIONS = REPO / ".build" / "collections"
CLUSTER = "labpg"
VIP = "192.168.100.10"
ZONE = "ec2ha.lab."
RECORD = "pg.ec2ha.lab."
NODES = (("pg1", "a", "10.0.1.10"), ("pg2", "b", "10.0.2.10"))
DB_USER = "app"
DB_PASSWORD = "lab-app-password"
REPLICATION_PASSWORD = "lab-replication-password"
TAG = "ec2ha:cluster"
# The endpoints by their short labels (data plane, reports): scenario and Pacemaker resource id.
SCENARIOS = {"vip": "vip_route", "eip": "elastic_ip", "dns": "dns_record"}
RESOURCES = {"vip": "ec2ha-vip-route", "eip": "ec2ha-elastic-ip", "dns": "ec2ha-dns-record"}


@dataclass
class Settings:
    """What the playbooks and the checks need to know about the lab cluster."""

    info: dict
    allocation_id: str
    public_ip: str
    zone_id: str
    route_tables: List[str]
    inventory: Path = INVENTORY

    def client(self, service: str):
        return boto3.client(service, endpoint_url=self.info["endpoint_url"],
                            region_name=self.info["region"],
                            aws_access_key_id=self.info["aws_access_key_id"],
                            aws_secret_access_key=self.info["aws_secret_access_key"])


def _elastic_ip(ec2) -> tuple[str, str]:
    """The cluster's EIP (found by tag, else allocated): (allocation id, public IP)."""
    found = ec2.describe_addresses(Filters=[{"Name": f"tag:{TAG}", "Values": [CLUSTER]}])["Addresses"]
    if found:
        return found[0]["AllocationId"], found[0]["PublicIp"]
    made = ec2.allocate_address(Domain="vpc", TagSpecifications=[
        {"ResourceType": "elastic-ip", "Tags": [{"Key": TAG, "Value": CLUSTER}]}])
    return made["AllocationId"], made["PublicIp"]


def _hosted_zone(route53, vpc_id: str, region: str) -> str:
    """The private hosted zone ZONE associated with the lab VPC (found by name, else created)."""
    for zone in route53.list_hosted_zones_by_name(DNSName=ZONE)["HostedZones"]:
        if zone["Name"] == ZONE and zone["Config"].get("PrivateZone"):
            return zone["Id"].split("/")[-1]
    made = route53.create_hosted_zone(Name=ZONE, CallerReference=f"{CLUSTER}-{time.time()}",
                                      VPC={"VPCRegion": region, "VPCId": vpc_id},
                                      HostedZoneConfig={"PrivateZone": True, "Comment": CLUSTER})
    return made["HostedZone"]["Id"].split("/")[-1]


def prepare(info: dict) -> Settings:
    """Create the EIP and the zone the playbook expects, and write the inventory."""
    world = info["world"]["primary"]
    probe = Settings(info, "", "", "", [])
    ec2, route53 = probe.client("ec2"), probe.client("route53")
    allocation_id, public_ip = _elastic_ip(ec2)
    zone_id = _hosted_zone(route53, world["vpc_id"], info["region"])
    tables = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [world["vpc_id"]]}])
    route_tables = sorted(t["RouteTableId"] for t in tables["RouteTables"])
    settings = Settings(info, allocation_id, public_ip, zone_id, route_tables)
    write_inventory(settings)
    return settings


def inventory_data(s: Settings) -> dict:
    info, world = s.info, s.info["world"]["primary"]
    controller = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "ec2ha_cluster_name": CLUSTER,
        "ec2ha_region": info["region"],
        "ec2ha_endpoint_url": info["endpoint_url"],
        "ec2ha_access_key": info["aws_access_key_id"],
        "ec2ha_secret_key": info["aws_secret_access_key"],
        "ec2ha_lab": True,
        "ec2ha_image_id": world["image_id"],
        "ec2ha_instance_type": "t3.medium",
        "ec2ha_nodes": [{"name": name, "subnet_id": world["subnet_ids"][subnet], "private_ip": ip}
                        for name, subnet, ip in NODES],
        "ec2ha_admin_cidrs": [world["cidr"]],
        "ec2ha_client_cidrs": [world["cidr"], topology.ONPREM_CIDR, topology.INTERNET_CIDR],
        "ec2ha_scenarios": list(SCENARIOS.values()),
        "ec2ha_vip": VIP,
        "ec2ha_route_tables": s.route_tables,
        "ec2ha_eip": s.public_ip,
        "ec2ha_eip_allocation_id": s.allocation_id,
        "ec2ha_dns_zone": ZONE.rstrip("."),
        "ec2ha_dns_zone_id": s.zone_id,
        "ec2ha_dns_record": RECORD.rstrip("."),
        "ec2ha_dns_ttl": 5,
    }
    pair = {
        "ansible_user": "root",
        "ansible_ssh_common_args": f"-F {info['ssh_config']}",
        "ansible_python_interpreter": "/usr/bin/python3",
        # Lab difference: no instance-profile credentials from the lab's IMDS.
        "ec2ha_node_access_key": info["aws_access_key_id"],
        "ec2ha_node_secret_key": info["aws_secret_access_key"],
        "heartbeat_fence_access_key": info["aws_access_key_id"],
        "heartbeat_fence_secret_key": info["aws_secret_access_key"],
        # Lab timing (docs/roles.md).
        "heartbeat_token": 3000,
        # The primary wins a fence race; the lab fences in about a second (docs/roles.md).
        "heartbeat_priority_fencing_delay": 4,
        "heartbeat_fence_params": {"power_timeout": 60, "pcmk_reboot_timeout": 120,
                                   "pcmk_reboot_retries": 2},
        "heartbeat_stonith_timeout": 120,
        # Lab difference: every host reads the whole machine's load average, so Pacemaker's CPU
        # throttle (default 80% load) would serialise the survivor's actions for load it does not own.
        "heartbeat_cluster_properties": {"load-threshold": "1000%"},
        "replication_password": REPLICATION_PASSWORD,
        "replication_client_networks": [world["cidr"], topology.ONPREM_CIDR, topology.INTERNET_CIDR],
    }
    return {"all": {"hosts": {"localhost": controller},
                    "children": {"pair": {"vars": pair}}}}


def write_inventory(s: Settings) -> Path:
    s.inventory.parent.mkdir(parents=True, exist_ok=True)
    s.inventory.write_text("# Written by lab/pair/cluster.py for playbooks/site.yml in the lab.\n"
                           + yaml.safe_dump(inventory_data(s), sort_keys=False))
    return s.inventory


# ---------------------------------------------------------------- playbooks

@dataclass
class PlaybookRun:
    rc: int
    seconds: float
    recap: Dict[str, Dict[str, int]]
    output: str

    def changed(self) -> int:
        return sum(h.get("changed", 0) for h in self.recap.values())

    def failed(self) -> int:
        return sum(h.get("failed", 0) + h.get("unreachable", 0) for h in self.recap.values())


RECAP_LINE = re.compile(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$")


def parse_recap(output: str) -> Dict[str, Dict[str, int]]:
    recap: Dict[str, Dict[str, int]] = {}
    in_recap = False
    for line in output.splitlines():
        if line.startswith("PLAY RECAP"):
            in_recap = True
            continue
        match = RECAP_LINE.match(line.strip()) if in_recap else None
        if match:
            recap[match.group(1)] = {k: int(v) for k, v in
                                     (kv.split("=") for kv in match.group(2).split())}
    return recap


def run_playbook(playbook: str, s: Settings, extra: Optional[List[str]] = None,
                 log: Optional[Path] = None, timeout: float = 1200) -> PlaybookRun:
    """ansible-playbook with the lab inventory and the collection linked under .build."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS),
               ANSIBLE_HOST_KEY_CHECKING="False", ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_STDOUT_CALLBACK="default",
               ANSIBLE_SSH_RETRIES="3", ANSIBLE_PIPELINING="True")
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(s.inventory),
           str(REPO / playbook), *(extra or [])]
    log = log or WORK_DIR / "playbook.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    # Streamed to the log as it runs, so a long build-out can be followed with tail -f.
    with open(log, "w") as out:
        result = subprocess.run(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                text=True, timeout=timeout, check=False)
    output = log.read_text()
    return PlaybookRun(result.returncode, time.monotonic() - started, parse_recap(output), output)


# ---------------------------------------------------------------- nodes

def node_instances(s: Settings) -> Dict[str, dict]:
    """{node name: instance} for the pair's instances that are not terminated."""
    ec2 = s.client("ec2")
    pages = ec2.describe_instances(Filters=[{"Name": f"tag:{TAG}", "Values": [CLUSTER]}])
    found = {}
    for reservation in pages["Reservations"]:
        for inst in reservation["Instances"]:
            if inst["State"]["Name"] == "terminated":
                continue
            tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
            found[tags.get("ec2ha:node", inst["InstanceId"])] = inst
    return found


def endpoint_holders(s: Settings) -> Dict[str, Optional[str]]:
    """{"vip", "eip", "dns": node name} as the collection's endpoint_info reads AWS (moto); None
    where the endpoint is split across the nodes, unheld, or held by something else."""
    session = aws.AwsSession(aws.ConnectionSettings(
        access_key=s.info["aws_access_key_id"], secret_key=s.info["aws_secret_access_key"],
        region=s.info["region"], endpoint_url=s.info["endpoint_url"]))
    found = endpoint_info.report(session, endpoint_info.Endpoints(
        cluster=CLUSTER, vip=VIP, route_tables=s.route_tables, allocation_id=s.allocation_id,
        zone=ZONE.rstrip("."), record=RECORD.rstrip(".")))
    names = {inst["InstanceId"]: name for name, inst in node_instances(s).items()}
    return {kind: names.get(found["holders"][scenario]) for kind, scenario in SCENARIOS.items()}


def ssh(s: Settings, address: str, command: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """`command` on the host, bounded. On timeout the whole process group goes, the ProxyCommand
    (ip netns exec ... nc) with ssh: killing ssh alone left nc holding an unauthenticated
    connection to the host's sshd for its LoginGraceTime, and a wait retrying every second piles
    them up against sshd's MaxStartups."""
    return helpers.run_group(["ssh", "-F", s.info["ssh_config"], "-o", "ConnectTimeout=3",
                              "-o", "BatchMode=yes", address, command], timeout)


def answers_ssh(s: Settings, address: str, timeout: float = 10) -> bool:
    """True once the host runs a command over SSH. A host still booting can accept the TCP
    connection and then say nothing for longer than ConnectTimeout (seen in CI under load: ssh
    hung past its 10 s limit and the wait around it died of TimeoutExpired): that is "not yet"."""
    try:
        return ssh(s, address, "true", timeout=timeout).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def wait_for_ssh(s: Settings, name: str, timeout: float = 120) -> None:
    """Bounded wait until the node runs a command over SSH; on timeout the error says what the
    lab knows of the host (instance state, last power change, console tail), so a host that did
    not come back is diagnosed from the CI log alone."""
    address = node_address(name)
    if not helpers.poll(lambda: answers_ssh(s, address), timeout, 1):
        raise TimeoutError(f"timed out after {timeout:g} s waiting for {name} to answer over SSH; "
                           + host_diagnosis(s, name))


def ensure_running(s: Settings, name: str) -> None:
    """The node's instance started if it is stopped, then a bounded wait until it answers SSH."""
    if instance_state(s, name) == "stopped":
        start_instance(s, name)
    wait_for_ssh(s, name)


def host_diagnosis(s: Settings, name: str) -> str:
    """One line: the instance's state in EC2, the hypervisor's last power record and the last
    lines of the host's console (boot script and init errors land there)."""
    try:
        instance = node_instances(s)[name]
    except Exception as exc:  # the diagnosis must not hide the timeout it explains
        return f"instance unreadable: {exc!r}"
    mark = hosts.read_mark(instance["InstanceId"])
    last = f"{mark[0]} {time.monotonic() - mark[1]:.0f} s ago (generation {mark[2]})" if mark else "never"
    console = " | ".join(hosts.console_tail(instance["InstanceId"], 5)) or "nothing but power-offs"
    return (f"instance {instance['InstanceId']} {instance['State']['Name']}, "
            f"hypervisor powered it {last}, console tail: {console}")


def promoted_node(s: Settings, via: Optional[List[str]] = None) -> Optional[str]:
    """The node name Pacemaker runs the promoted PostgreSQL on, asked of any reachable node."""
    for address in via or [node[2] for node in NODES]:
        try:
            out = ssh(s, address, "crm_mon -1 --output-as=xml", timeout=15)
        except subprocess.TimeoutExpired:
            continue
        if out.returncode != 0:
            continue
        match = re.search(r'<resource id="pgsqld"[^>]*role="(?:Promoted|Master)"[^>]*>\s*'
                          r'<node name="([^"]+)"', out.stdout)
        if match:
            return match.group(1)
    return None


def node_address(name: str) -> str:
    return {node[0]: node[2] for node in NODES}[name]


def stop_instance(s: Settings, name: str) -> float:
    """Power the node off the hard way (StopInstances with Force: the lab kills the host's
    PID 1 at once). Returns the monotonic time of the call."""
    instance_id = node_instances(s)[name]["InstanceId"]
    at = time.monotonic()
    s.client("ec2").stop_instances(InstanceIds=[instance_id], Force=True)
    return at


def node_eni(s: Settings, name: str) -> str:
    """The node's primary network interface (what lab/emulator/dataplane/partition.py cuts)."""
    interfaces = node_instances(s)[name]["NetworkInterfaces"]
    return next(i["NetworkInterfaceId"] for i in interfaces if i["Attachment"]["DeviceIndex"] == 0)


def start_instance(s: Settings, name: str) -> None:
    s.client("ec2").start_instances(InstanceIds=[node_instances(s)[name]["InstanceId"]])


def instance_state(s: Settings, name: str) -> str:
    return node_instances(s)[name]["State"]["Name"]


def primary_and_standby(s: Settings) -> tuple[str, str]:
    """The node Pacemaker promotes and the other one; RuntimeError when none is promoted."""
    primary = promoted_node(s)
    if primary is None:
        raise RuntimeError("no promoted PostgreSQL in the lab cluster")
    return primary, next(node[0] for node in NODES if node[0] != primary)
