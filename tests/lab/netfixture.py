"""Stand-ins for the data-plane tests: a moto world shaped like the lab's, node namespaces with
tiny banner servers, and a thread that ticks the data plane the way the lab daemon does.

Everything started here is tracked (namespace names, PIDs) and removed by `Stage.close()`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import boto3

from lab import topology
from lab.emulator.dataplane.kernel import netns_exists, run
from lab.emulator.dataplane.router import Namespaces, Network

REPO = topology.REPO
BANNER_PORT = 7000
VIP = "192.168.250.10"                      # outside every VPC CIDR, as the route-table scenario wants
AMI = "ami-12c6146b"

# A banner server: accept, send the node's name, close. Runs inside the node's namespace.
SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[2]))); s.listen(64)
while True:
    c, _ = s.accept()
    try: c.sendall(sys.argv[1].encode() + b"\\n")
    finally: c.close()
"""


@dataclass
class Node:
    name: str
    instance_id: str
    eni_id: str
    private_ip: str
    region: str

    @property
    def netns(self) -> str:
        return topology.host_netns(self.instance_id)


@dataclass
class Stage:
    """The moto world, the node stand-ins and the data plane under test."""

    endpoint: str
    state_dir: Path
    ec2: Any = None
    ec2_dr: Any = None
    route53: Any = None
    ids: Dict[str, str] = field(default_factory=dict)
    nodes: Dict[str, Node] = field(default_factory=dict)
    pids: List[int] = field(default_factory=list)
    namespaces: List[str] = field(default_factory=list)
    names: Namespaces = Namespaces.scratch("t")   # never the names of a lab that may be up
    network: Optional[Network] = None
    ticker: Optional["Ticker"] = None

    def client(self, service: str, region: str) -> Any:
        return boto3.client(service, region_name=region, endpoint_url=self.endpoint,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    # -- world ----------------------------------------------------------------------------------

    def build_world(self) -> None:
        self.ec2 = self.client("ec2", topology.PRIMARY_REGION)
        self.ec2_dr = self.client("ec2", topology.DR_REGION)
        self.route53 = self.client("route53", topology.PRIMARY_REGION)
        lab_tag = [{"Key": topology.LAB_VPC_TAG, "Value": "true"}]
        vpc = self.ec2.create_vpc(CidrBlock=topology.PRIMARY_VPC_CIDR)["Vpc"]["VpcId"]
        self.ec2.create_tags(Resources=[vpc], Tags=lab_tag)
        dr_vpc = self.ec2_dr.create_vpc(CidrBlock=topology.DR_VPC_CIDR)["Vpc"]["VpcId"]
        self.ec2_dr.create_tags(Resources=[dr_vpc], Tags=lab_tag)
        self.ids.update(vpc=vpc, dr_vpc=dr_vpc)
        for key, cidr in topology.PRIMARY_SUBNETS.items():
            self.ids[f"subnet_{key}"] = self.ec2.create_subnet(
                VpcId=vpc, CidrBlock=cidr, AvailabilityZone=f"{topology.PRIMARY_REGION}{key}")["Subnet"]["SubnetId"]
        self.ids["dr_subnet"] = self.ec2_dr.create_subnet(
            VpcId=dr_vpc, CidrBlock=topology.DR_SUBNETS["a"],
            AvailabilityZone=f"{topology.DR_REGION}a")["Subnet"]["SubnetId"]
        self.ids["rtb"] = self._main_table(self.ec2, vpc)
        self.ids["dr_rtb"] = self._main_table(self.ec2_dr, dr_vpc)
        igw = self.ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
        self.ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
        self.ec2.create_route(RouteTableId=self.ids["rtb"], DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
        self.ids["igw"] = igw
        self.launch("node1", self.ec2, self.ids["subnet_a"], "10.0.1.10", topology.PRIMARY_REGION)
        self.launch("node2", self.ec2, self.ids["subnet_b"], "10.0.2.10", topology.PRIMARY_REGION)
        self.launch("dr1", self.ec2_dr, self.ids["dr_subnet"], "10.1.1.10", topology.DR_REGION)

    @staticmethod
    def _main_table(ec2: Any, vpc: str) -> str:
        tables = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["RouteTables"]
        return next(t["RouteTableId"] for t in tables if any(a.get("Main") for a in t.get("Associations", [])))

    def launch(self, name: str, ec2: Any, subnet: str, ip: str, region: str) -> Node:
        """A lab-host instance (not yet backed by a namespace: see start_node)."""
        instance = ec2.run_instances(
            ImageId=AMI, MinCount=1, MaxCount=1, SubnetId=subnet, PrivateIpAddress=ip,
            TagSpecifications=[{"ResourceType": "instance", "Tags": [
                {"Key": "Name", "Value": name}, {"Key": topology.LAB_HOST_TAG, "Value": "true"}]}],
        )["Instances"][0]
        eni = instance["NetworkInterfaces"][0]["NetworkInterfaceId"]
        # The route-table scenario's build-out turns the check off on the nodes' ENIs.
        ec2.modify_network_interface_attribute(NetworkInterfaceId=eni, SourceDestCheck={"Value": False})
        self.nodes[name] = Node(name, instance["InstanceId"], eni, ip, region)
        return self.nodes[name]

    # -- node stand-ins -------------------------------------------------------------------------

    def start_nodes(self) -> None:
        for node in list(self.nodes.values()):
            self.start_node(node)

    def start_node(self, node: Node) -> None:
        """The node's namespace (as the hypervisor would make it) and its banner server."""
        run(["ip", "netns", "add", node.netns])
        self.namespaces.append(node.netns)
        # Every node holds the VIP, so only the router decides who answers it.
        run(["ip", "-n", node.netns, "addr", "add", f"{VIP}/32", "dev", "lo"])
        run(["ip", "-n", node.netns, "link", "set", "lo", "up"])
        proc = subprocess.Popen(["ip", "netns", "exec", node.netns, sys.executable, "-c", SERVER,
                                 node.name, str(BANNER_PORT)], start_new_session=True)
        self.pids.append(proc.pid)

    # -- data plane -----------------------------------------------------------------------------

    def start_network(self) -> Network:
        self.network = Network(self.endpoint, self.state_dir, names=self.names)
        self.network.setup()
        self.network.tick()
        self.ticker = Ticker(self.network)
        self.ticker.start()
        return self.network

    def close(self) -> None:
        if self.ticker is not None:
            self.ticker.stop()
        if self.network is not None:
            self.network.teardown()
        for pid in self.pids:
            stop_pid(pid)
        for ns in self.namespaces:
            if netns_exists(ns):
                run(["ip", "netns", "delete", ns], check=False)


class Ticker:
    """Calls Network.tick() every `interval` seconds in a thread, as the lab daemon's loop does."""

    def __init__(self, network: Network, interval: float = 0.2) -> None:
        self.network = network
        self.interval = interval
        self.stopping = threading.Event()
        self.errors: List[str] = []
        self.thread = threading.Thread(target=self._loop, name="lab-net-ticker", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _loop(self) -> None:
        # Start-to-start period: a slow tick (moto under load) does not stretch the next wait.
        next_tick = time.monotonic()
        while not self.stopping.wait(max(0.0, next_tick - time.monotonic())):
            next_tick = time.monotonic() + self.interval
            try:
                self.network.tick()
            except Exception as exc:  # keep ticking; the tests read the errors
                self.errors.append(str(exc))

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)


def stop_pid(pid: int) -> None:
    """SIGTERM, then SIGKILL, the process we started; reaps it."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
        except ChildProcessError:
            return
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
