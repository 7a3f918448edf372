"""The lab's network data plane against moto (server mode) with real packets.

Node stand-ins are network namespaces named after real moto instances (tagged lab-host), each
running a banner server; the data plane is driven through Network.setup()/tick()/teardown() by a
ticker thread, like the lab daemon does. Namespace names are scratch ones (Namespaces.scratch),
so a lab that is up on the machine is left alone. Run as root:

    .venv/bin/python -m pytest -q tests/lab/test_dataplane.py   (from the checkout, as root)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Optional

import pytest

from netfixture import BANNER_PORT, VIP, Stage

from lab import topology
from lab.bench.latency import format_latencies, measure_latencies
from lab.emulator.dataplane import dns
from lab.emulator.dataplane.kernel import ip_json, kernel_route, netns_exists
from lab.emulator.dataplane.plan import KernelRoute, nft_ruleset, plan_router, table_number
from lab.emulator.dataplane.probe import ProbeError, probe, resolve
from lab.emulator.dataplane.snapshot import (Address, Ec2Snapshot, Eni, Instance, Peering, Route,
                                             RouteTable, Subnet, Vpc, Zone)
from lab.helpers import poll

REPO = Path(__file__).resolve().parents[2]
MOTO = REPO / "tests" / "support" / "moto_server.py"
PRIMARY_RESOLVER = "10.0.0.2"
DR_RESOLVER = "10.1.0.2"


# ---------------------------------------------------------------------------------------------
# Fixtures and helpers


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    if os.geteuid() != 0:
        pytest.skip("the data plane needs root (network namespaces)")
    state = tmp_path_factory.mktemp("dataplane")
    url = subprocess.run([sys.executable, str(MOTO), "start", str(state / "moto")], check=True,
                         capture_output=True, text=True).stdout.strip()
    st = Stage(url, state)
    try:
        st.build_world()
        st.start_nodes()
        st.start_network()
        yield st
    finally:
        st.close()
        subprocess.run([sys.executable, str(MOTO), "stop", str(state / "moto")], check=False)


def banner(ns: str, host: str, timeout: float = 0.5) -> Optional[str]:
    """Which node answers host:BANNER_PORT from `ns`, or None when nothing does."""
    try:
        return probe(ns, host, BANNER_PORT, timeout=timeout)
    except ProbeError:
        return None


def answers(ns: str, host: str, expected: Optional[str], timeout: float = 3.0) -> bool:
    """True once `expected` answers (None: once nothing does), polled up to `timeout`."""
    return poll(lambda: banner(ns, host) == expected, timeout)


def resolves(ns: str, name: str, expected: tuple, timeout: float = 3.0) -> bool:
    """True once `name` resolves to `expected` in `ns` (a lost answer counts as not yet)."""
    def check() -> bool:
        try:
            return resolve(ns, name).addresses == expected
        except ProbeError:
            return False
    return poll(check, timeout)


def route_of(st: Stage, table_id: str, dest: str) -> Optional[KernelRoute]:
    return kernel_route(st.names.router, table_id, f"{dest}/32")


def point_vip(st: Stage, node: str) -> None:
    # moto's create_route overwrites an existing destination: this is "make it so".
    st.ec2.create_route(RouteTableId=st.ids["rtb"], DestinationCidrBlock=f"{VIP}/32",
                        NetworkInterfaceId=st.nodes[node].eni_id)


# ---------------------------------------------------------------------------------------------
# Route table scenario


def test_vip_follows_replace_route(stage: Stage) -> None:
    client = stage.names.client
    point_vip(stage, "node1")
    assert answers(client, VIP, "node1")
    stage.ec2.replace_route(RouteTableId=stage.ids["rtb"], DestinationCidrBlock=f"{VIP}/32",
                            NetworkInterfaceId=stage.nodes["node2"].eni_id)
    assert answers(client, VIP, "node2")
    assert route_of(stage, stage.ids["rtb"], VIP).via == stage.nodes["node2"].private_ip


def test_source_dest_check_on_drops_vip_traffic(stage: Stage) -> None:
    client, node2 = stage.names.client, stage.nodes["node2"]
    point_vip(stage, "node2")
    assert answers(client, VIP, "node2")
    try:
        stage.ec2.modify_network_interface_attribute(NetworkInterfaceId=node2.eni_id,
                                                     SourceDestCheck={"Value": True})
        assert answers(client, VIP, None)
        assert route_of(stage, stage.ids["rtb"], VIP).kind == "blackhole"
        assert banner(client, node2.private_ip) == "node2"      # its own address still works
    finally:
        stage.ec2.modify_network_interface_attribute(NetworkInterfaceId=node2.eni_id,
                                                     SourceDestCheck={"Value": False})
    assert answers(client, VIP, "node2")


def test_stopped_instance_blackholes_its_routes(stage: Stage) -> None:
    client, node2 = stage.names.client, stage.nodes["node2"]
    point_vip(stage, "node2")
    assert answers(client, VIP, "node2")
    try:
        stage.ec2.stop_instances(InstanceIds=[node2.instance_id])
        assert answers(client, VIP, None)
        assert route_of(stage, stage.ids["rtb"], VIP).kind == "blackhole"
    finally:
        stage.ec2.start_instances(InstanceIds=[node2.instance_id])
    assert answers(client, VIP, "node2")


def test_vip_route_applies_to_the_subnets_of_its_table_only(stage: Stage) -> None:
    client = stage.names.client
    point_vip(stage, "node2")
    assert answers(client, VIP, "node2")
    custom = stage.ec2.create_route_table(VpcId=stage.ids["vpc"])["RouteTable"]["RouteTableId"]
    association = stage.ec2.associate_route_table(RouteTableId=custom, SubnetId=stage.ids["subnet_a"])[
        "AssociationId"]
    try:
        assert answers(client, VIP, None)                      # subnet a's table has no VIP route
        assert banner(client, stage.nodes["node2"].private_ip) == "node2"   # its local route does
        stage.ec2.create_route(RouteTableId=custom, DestinationCidrBlock=f"{VIP}/32",
                               NetworkInterfaceId=stage.nodes["node1"].eni_id)
        assert answers(client, VIP, "node1")                   # each table its own target
    finally:
        stage.ec2.disassociate_route_table(AssociationId=association)
        stage.ec2.delete_route_table(RouteTableId=custom)
    assert answers(client, VIP, "node2")


# ---------------------------------------------------------------------------------------------
# Elastic IP scenario


def test_elastic_ip_reaches_the_associated_node_from_the_internet(stage: Stage) -> None:
    internet = stage.names.internet
    allocation = stage.ec2.allocate_address(Domain="vpc")
    eip = allocation["PublicIp"]
    try:
        assert banner(internet, eip) is None                   # not associated: nothing answers
        stage.ec2.associate_address(AllocationId=allocation["AllocationId"],
                                    NetworkInterfaceId=stage.nodes["node2"].eni_id)
        assert answers(internet, eip, "node2")
        stage.ec2.associate_address(AllocationId=allocation["AllocationId"], AllowReassociation=True,
                                    NetworkInterfaceId=stage.nodes["node1"].eni_id)
        assert answers(internet, eip, "node1")
        # Private addresses are not reachable from the internet, EIP or not.
        assert banner(internet, stage.nodes["node1"].private_ip) is None
        # Without the 0.0.0.0/0 -> igw route the replies have no way out.
        stage.ec2.delete_route(RouteTableId=stage.ids["rtb"], DestinationCidrBlock="0.0.0.0/0")
        assert answers(internet, eip, None)
        stage.ec2.create_route(RouteTableId=stage.ids["rtb"], DestinationCidrBlock="0.0.0.0/0",
                               GatewayId=stage.ids["igw"])
        assert answers(internet, eip, "node1")
    finally:
        association = stage.ec2.describe_addresses(AllocationIds=[allocation["AllocationId"]])["Addresses"][0]
        if association.get("AssociationId"):
            stage.ec2.disassociate_address(AssociationId=association["AssociationId"])
        stage.ec2.release_address(AllocationId=allocation["AllocationId"])
        routes = stage.ec2.describe_route_tables(RouteTableIds=[stage.ids["rtb"]])["RouteTables"][0]["Routes"]
        if not any(r.get("DestinationCidrBlock") == "0.0.0.0/0" for r in routes):
            stage.ec2.create_route(RouteTableId=stage.ids["rtb"], DestinationCidrBlock="0.0.0.0/0",
                                   GatewayId=stage.ids["igw"])
    assert answers(internet, eip, None)


# ---------------------------------------------------------------------------------------------
# Route 53 scenario


def _upsert(stage: Stage, zone_id: str, name: str, address: str, ttl: int) -> None:
    stage.route53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [{
        "Action": "UPSERT", "ResourceRecordSet": {
            "Name": name, "Type": "A", "TTL": ttl, "ResourceRecords": [{"Value": address}]}}]})


def test_dns_upsert_moves_onprem_clients_after_the_ttl(stage: Stage) -> None:
    onprem, name = stage.names.onprem, "pg.db.lab.internal"
    zone_id = stage.route53.create_hosted_zone(
        Name="db.lab.internal", CallerReference="dataplane-private",
        VPC={"VPCRegion": topology.PRIMARY_REGION, "VPCId": stage.ids["vpc"]},
        HostedZoneConfig={"PrivateZone": True, "Comment": "lab"})["HostedZone"]["Id"]
    _upsert(stage, zone_id, name, stage.nodes["node1"].private_ip, ttl=1)
    assert resolves(onprem, name, (stage.nodes["node1"].private_ip,))
    first = resolve(onprem, name)
    assert first.addresses == (stage.nodes["node1"].private_ip,) and first.ttl == 1
    assert banner(onprem, name) == "node1"

    _upsert(stage, zone_id, name, stage.nodes["node2"].private_ip, ttl=1)
    written = time.monotonic()
    # A client that cached the first answer may use it for its TTL; after that it must move.
    moved = resolves(onprem, name, (stage.nodes["node2"].private_ip,), timeout=first.ttl + 1.0)
    assert moved, "the resolver still served the old address one TTL after the UPSERT"
    print(f"\nDNS answer moved {time.monotonic() - written:.3f} s after the UPSERT")
    assert banner(onprem, name) == "node2"


def test_private_zones_answer_associated_vpcs_only(stage: Stage) -> None:
    name = "pg.only-primary.internal"
    zone_id = stage.route53.create_hosted_zone(
        Name="only-primary.internal", CallerReference="dataplane-visibility",
        VPC={"VPCRegion": topology.PRIMARY_REGION, "VPCId": stage.ids["vpc"]},
        HostedZoneConfig={"PrivateZone": True, "Comment": "lab"})["HostedZone"]["Id"]
    public_id = stage.route53.create_hosted_zone(
        Name="lab-public.example", CallerReference="dataplane-public")["HostedZone"]["Id"]
    _upsert(stage, zone_id, name, "10.0.1.10", ttl=30)
    _upsert(stage, public_id, "www.lab-public.example", "192.0.2.80", ttl=45)
    dr_ns = stage.nodes["dr1"].netns
    # Both writes are seen once both resolve (an answer may come from a view up to 0.2 s old).
    assert resolves(stage.names.client, name, ("10.0.1.10",))
    assert resolves(stage.names.internet, "www.lab-public.example", ("192.0.2.80",))
    assert resolve(stage.names.onprem, name).addresses == ("10.0.1.10",)
    assert resolve(stage.names.internet, name).rcode == "NXDOMAIN"
    assert resolve(dr_ns, name, server=DR_RESOLVER).rcode == "NXDOMAIN"
    public = resolve(dr_ns, "www.lab-public.example", server=DR_RESOLVER)
    assert public.addresses == ("192.0.2.80",) and public.ttl == 45
    assert resolve(stage.names.client, "absent.lab-public.example").rcode == "NXDOMAIN"
    # A VPC's resolver serves that VPC only: the DR host cannot use the primary one.
    with pytest.raises(ProbeError):
        resolve(dr_ns, name, server=PRIMARY_RESOLVER, timeout=0.5)
    # The subnet's gateway (.1) is the router, not a resolver.
    with pytest.raises(ProbeError):
        resolve(stage.names.client, name, server="10.0.1.1", timeout=0.5)


# ---------------------------------------------------------------------------------------------
# Peering and Direct Connect


def test_dr_reaches_primary_only_while_the_peering_route_exists(stage: Stage) -> None:
    dr_ns, node1 = stage.nodes["dr1"].netns, stage.nodes["node1"]
    assert banner(dr_ns, node1.private_ip) is None
    pcx = stage.ec2.create_vpc_peering_connection(
        VpcId=stage.ids["vpc"], PeerVpcId=stage.ids["dr_vpc"], PeerRegion=topology.DR_REGION,
    )["VpcPeeringConnection"]["VpcPeeringConnectionId"]
    try:
        stage.ec2.create_route(RouteTableId=stage.ids["rtb"], DestinationCidrBlock=topology.DR_VPC_CIDR,
                               VpcPeeringConnectionId=pcx)
        stage.ec2_dr.create_route(RouteTableId=stage.ids["dr_rtb"], DestinationCidrBlock=topology.PRIMARY_VPC_CIDR,
                                  VpcPeeringConnectionId=pcx)
        assert answers(dr_ns, node1.private_ip, None)          # routes, but not accepted yet
        stage.ec2_dr.accept_vpc_peering_connection(VpcPeeringConnectionId=pcx)
        assert answers(dr_ns, node1.private_ip, "node1")
        stage.ec2_dr.delete_route(RouteTableId=stage.ids["dr_rtb"], DestinationCidrBlock=topology.PRIMARY_VPC_CIDR)
        assert answers(dr_ns, node1.private_ip, None)
    finally:
        for client, table, cidr in ((stage.ec2, stage.ids["rtb"], topology.DR_VPC_CIDR),
                                    (stage.ec2_dr, stage.ids["dr_rtb"], topology.PRIMARY_VPC_CIDR)):
            try:
                client.delete_route(RouteTableId=table, DestinationCidrBlock=cidr)
            except client.exceptions.ClientError:
                pass
        stage.ec2.delete_vpc_peering_connection(VpcPeeringConnectionId=pcx)


def test_onprem_reaches_the_primary_vpc_only(stage: Stage) -> None:
    assert answers(stage.names.onprem, stage.nodes["node1"].private_ip, "node1")
    assert banner(stage.names.onprem, stage.nodes["dr1"].private_ip) is None
    assert banner(stage.names.onprem, VIP) is None
    assert banner(stage.names.internet, stage.nodes["node1"].private_ip) is None


def test_host_gets_moto_mac_address_and_default_route(stage: Stage) -> None:
    node = stage.nodes["node1"]
    eni = stage.ec2.describe_network_interfaces(NetworkInterfaceIds=[node.eni_id])["NetworkInterfaces"][0]
    link = ip_json(node.netns, "addr", "show", "dev", "eth0")[0]
    assert link["address"] == eni["MacAddress"]
    assert f"{node.private_ip}/24" in {f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"]}
    assert ip_json(node.netns, "route", "show", "default")[0]["gateway"] == "10.0.1.1"


def test_host_link_comes_and_goes_with_the_instance(stage: Stage) -> None:
    node = stage.launch("node3", stage.ec2, stage.ids["subnet_b"], "10.0.2.30", topology.PRIMARY_REGION)
    stage.start_node(node)
    try:
        assert answers(stage.names.client, node.private_ip, "node3")
        stage.ec2.terminate_instances(InstanceIds=[node.instance_id])
        assert poll(lambda: "eth0" not in {e["ifname"] for e in ip_json(node.netns, "link", "show")}, 3.0)
    finally:
        stage.ec2.terminate_instances(InstanceIds=[node.instance_id])


# ---------------------------------------------------------------------------------------------
# Figures, then teardown (keep these last: the teardown test ends the module's data plane)


def test_reconcile_latency_is_measured(stage: Stage, capsys: pytest.CaptureFixture) -> None:
    results = measure_latencies(stage.endpoint, stage.names, samples=3)
    with capsys.disabled():                    # the figures show without -s
        print("\nreconcile latency, API write -> data plane (tick every 0.2 s):\n" + format_latencies(results))
    assert {kind: len(values) for kind, values in results.items()} == {
        "route": 3, "src/dst check": 3, "eip": 3, "dns": 3}
    assert not stage.ticker.errors, stage.ticker.errors


def test_teardown_removes_everything_it_made(stage: Stage) -> None:
    dns_pid = int((stage.state_dir / dns.PID_FILE).read_text())
    stage.ticker.stop()
    stage.network.teardown()
    assert [ns for ns in stage.names.all() if netns_exists(ns)] == []
    assert not Path(f"/proc/{dns_pid}").exists() \
        or "lab.emulator.dataplane.dns" not in Path(f"/proc/{dns_pid}/cmdline").read_text()
    assert not (Path("/etc/netns") / stage.names.client).exists()
    # The hosts' ends of the veths go with the router (the kernel cleans up asynchronously).
    assert poll(lambda: [e["ifname"] for e in ip_json(stage.nodes["node1"].netns, "link", "show")] == ["lo"],
                3.0)


# ---------------------------------------------------------------------------------------------
# Planning and answering without a kernel (pure functions)


def _snapshot(check: bool = False, state: str = "running", peering: str = "active") -> Ec2Snapshot:
    vpc, dr = Vpc("vpc-1", "us-east-1", "10.0.0.0/16", True), Vpc("vpc-2", "us-west-2", "10.1.0.0/16", True)
    return Ec2Snapshot(
        vpcs=(vpc, dr),
        subnets=(Subnet("subnet-a", "vpc-1", "10.0.1.0/24"), Subnet("subnet-d", "vpc-2", "10.1.1.0/24")),
        instances=(Instance("i-1", state, True, True),),
        enis=(Eni("eni-1", "vpc-1", "subnet-a", "10.0.1.10", "02:00:00:00:00:01", "i-1", 0, check),),
        route_tables=(RouteTable("rtb-000001", "vpc-1", True, (), (
            Route("10.0.0.0/16", gateway_id="local"), Route(f"{VIP}/32", eni_id="eni-1"),
            Route("10.1.0.0/16", peering_id="pcx-1"))),),
        peerings=(Peering("pcx-1", peering, "vpc-1", "vpc-2"),),
        addresses=(Address("127.1.2.3", "10.0.1.10", "eni-1"),),
    )


def _route(snap: Ec2Snapshot, dest: str) -> KernelRoute:
    return next(r for r in plan_router(snap, set()).routes if r.destination == dest and r.table == table_number("rtb-000001"))


def test_plan_blackholes_vip_when_check_is_on_or_instance_stopped() -> None:
    assert _route(_snapshot(), f"{VIP}/32").via == "10.0.1.10"
    assert _route(_snapshot(check=True), f"{VIP}/32").kind == "blackhole"
    assert _route(_snapshot(state="stopped"), f"{VIP}/32").kind == "blackhole"


def test_plan_routes_peering_only_while_active() -> None:
    assert _route(_snapshot(), "10.1.1.0/24").dev.startswith("br-")
    assert _route(_snapshot(peering="pending-acceptance"), "10.1.0.0/16").kind == "blackhole"


def test_nft_dnats_elastic_ips_of_running_instances_only() -> None:
    assert "ip daddr 127.1.2.3 dnat to 10.0.1.10" in nft_ruleset(_snapshot())
    assert "dnat to" not in nft_ruleset(_snapshot(state="stopped"))


def test_resolver_answers_private_zone_by_client_vpc() -> None:
    primary = Vpc("vpc-1", topology.PRIMARY_REGION, topology.PRIMARY_VPC_CIDR, True)
    dr = Vpc("vpc-2", topology.DR_REGION, topology.DR_VPC_CIDR, True)
    zone = Zone("Z1", "db.internal.", True, (("us-east-1", "vpc-1"),), {("pg.db.internal.", "A"): (5, ("10.0.1.10",))})
    view = dns.View(zones=(zone,), vpcs=(primary, dr))
    assert dns.answer(view, "pg.db.internal", "A", "10.0.1.250", "10.0.0.2") == (
        "NOERROR", [("pg.db.internal.", "A", 5, "10.0.1.10")])
    assert dns.answer(view, "pg.db.internal", "A", "172.16.0.10", "10.0.0.2")[0] == "NOERROR"
    assert dns.answer(view, "pg.db.internal", "A", "10.1.1.10", "10.1.0.2") == ("NXDOMAIN", [])
    assert dns.answer(view, "pg.db.internal", "AAAA", "10.0.1.250", "10.0.0.2") == ("NOERROR", [])
    assert dns.answer(view, "ec2.us-east-1.amazonaws.com", "A", "10.1.1.10", "10.1.0.2")[1][0][3] == \
        topology.AWS_API_ADDRESS
