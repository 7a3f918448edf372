"""IMDSv2 in each host: tokens required, answers are the asking instance's own (moto's view)."""

from __future__ import annotations

import pytest

from conftest import wait_for

IMDS = "http://169.254.169.254"
TOKEN = ("T=$(curl -s -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' "
         f"{IMDS}/latest/api/token) && ")


def get(node, path: str) -> str:
    return node.check(TOKEN + f"curl -sf -H \"X-aws-ec2-metadata-token: $T\" {IMDS}/latest/{path}")


def status(node, command: str) -> str:
    return node.check(f"curl -s -o /dev/null -w '%{{http_code}}' {command}").strip()


@pytest.fixture
def two_nodes(launch):
    nodes = launch("imds-a", subnet="a"), launch("imds-b", subnet="b")
    for node in nodes:
        node.wait_up()
    return nodes


def test_requests_without_a_token_get_401(two_nodes):
    node = two_nodes[0]
    assert status(node, f"{IMDS}/latest/meta-data/instance-id") == "401"
    assert status(node, f"-H 'X-aws-ec2-metadata-token: forged' {IMDS}/latest/meta-data/") == "401"
    assert status(node, f"-X PUT {IMDS}/latest/api/token") == "400"     # no TTL header


def test_each_host_gets_its_own_instance_answers(two_nodes, ec2):
    for node in two_nodes:
        described = ec2.describe_instances(InstanceIds=[node.id])["Reservations"][0]["Instances"][0]
        eni = described["NetworkInterfaces"][0]
        assert get(node, "meta-data/instance-id") == node.id
        assert get(node, "meta-data/local-ipv4") == node.ip
        assert get(node, "meta-data/placement/availability-zone") == \
            described["Placement"]["AvailabilityZone"]
        assert get(node, "meta-data/placement/region") == "us-east-1"
        mac = get(node, "meta-data/mac")
        assert mac == eni["MacAddress"]
        base = f"meta-data/network/interfaces/macs/{mac}/"
        assert get(node, base + "interface-id") == eni["NetworkInterfaceId"]
        assert get(node, base + "local-ipv4s") == node.ip
        assert get(node, base + "subnet-id") == described["SubnetId"]
        assert get(node, base + "vpc-id") == described["VpcId"]
        assert "interface-id" in get(node, base).split()
    a, b = two_nodes
    assert get(a, "meta-data/placement/availability-zone") == "us-east-1a"
    assert get(b, "meta-data/placement/availability-zone") == "us-east-1b"


def test_public_ipv4_follows_the_elastic_ip(two_nodes, ec2):
    a, b = two_nodes
    assert a.ssh(TOKEN + f"curl -sf -H \"X-aws-ec2-metadata-token: $T\" "
                 f"{IMDS}/latest/meta-data/public-ipv4").returncode != 0
    allocation = ec2.allocate_address(Domain="vpc")
    try:
        ec2.associate_address(AllocationId=allocation["AllocationId"], InstanceId=a.id)
        assert get(a, "meta-data/public-ipv4") == allocation["PublicIp"]
        ec2.associate_address(AllocationId=allocation["AllocationId"], InstanceId=b.id,
                              AllowReassociation=True)
        assert get(b, "meta-data/public-ipv4") == allocation["PublicIp"]
        wait_for(lambda: a.ssh(TOKEN + f"curl -sf -H \"X-aws-ec2-metadata-token: $T\" "
                               f"{IMDS}/latest/meta-data/public-ipv4").returncode != 0, 5,
                 what="the EIP to leave node a's metadata")
    finally:
        ec2.disassociate_address(AssociationId=ec2.describe_addresses(
            AllocationIds=[allocation["AllocationId"]])["Addresses"][0]["AssociationId"])
        ec2.release_address(AllocationId=allocation["AllocationId"])


def test_identity_document_names_the_instance(two_nodes):
    import json
    document = json.loads(get(two_nodes[1], "dynamic/instance-identity/document"))
    assert document["instanceId"] == two_nodes[1].id
    assert document["region"] == "us-east-1"
