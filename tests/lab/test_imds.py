"""IMDSv2 in each host: tokens required, answers are the asking instance's own (moto's view)."""

from __future__ import annotations

import json

import pytest

from lab.emulator import faults
from lab.helpers import wait_for

# Runs in the host (Debian's python3): one SSH round trip reads every path asked for.
READER = r'''
import json, sys, urllib.request, urllib.error
base = "http://169.254.169.254/latest/"
def call(method, path, headers):
    req = urllib.request.Request(base + path, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
_, token = call("PUT", "api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "60"})
out = {}
for path in sys.argv[1:]:
    if path.startswith("notoken:"):
        out[path] = call("GET", path[8:], {})
    elif path.startswith("forged:"):
        out[path] = call("GET", path[7:], {"X-aws-ec2-metadata-token": "forged"})
    elif path == "put-without-ttl":
        out[path] = call("PUT", "api/token", {})
    else:
        out[path] = call("GET", path, {"X-aws-ec2-metadata-token": token})
print(json.dumps(out))
'''


def read(node, *paths: str) -> dict[str, tuple[int, str]]:
    """{path: (status, body)} as the host sees its IMDS."""
    quoted = " ".join(f"'{p}'" for p in paths)
    out = node.check(f"/usr/bin/python3 -c '{READER.replace(chr(39), chr(34))}' {quoted}")
    return {k: tuple(v) for k, v in json.loads(out).items()}


def values(node, *paths: str) -> dict[str, str]:
    answers = read(node, *paths)
    for path, (code, _body) in answers.items():
        assert code == 200, f"{node.name}: {path} -> {code}"
    return {path: body for path, (_code, body) in answers.items()}


@pytest.fixture
def two_nodes(launch):
    nodes = launch("imds-a", subnet="a"), launch("imds-b", subnet="b")
    for node in nodes:
        node.wait_up()
    return nodes


def test_requests_without_a_valid_token_are_refused(two_nodes):
    answers = read(two_nodes[0], "notoken:meta-data/instance-id", "forged:meta-data/",
                   "put-without-ttl", "meta-data/instance-id")
    assert answers["notoken:meta-data/instance-id"][0] == 401
    assert answers["forged:meta-data/"][0] == 401
    assert answers["put-without-ttl"][0] == 400
    assert answers["meta-data/instance-id"] == (200, two_nodes[0].id)


def test_each_host_gets_its_own_instance_answers(two_nodes, ec2):
    for node in two_nodes:
        described = ec2.describe_instances(InstanceIds=[node.id])["Reservations"][0]["Instances"][0]
        eni = described["NetworkInterfaces"][0]
        mac = eni["MacAddress"]
        base = f"meta-data/network/interfaces/macs/{mac}/"
        got = values(node, "meta-data/instance-id", "meta-data/local-ipv4", "meta-data/mac",
                     "meta-data/placement/availability-zone", "meta-data/placement/region",
                     base, base + "interface-id", base + "local-ipv4s", base + "subnet-id",
                     base + "vpc-id")
        assert got["meta-data/instance-id"] == node.id
        assert got["meta-data/local-ipv4"] == node.ip
        assert got["meta-data/mac"] == mac
        assert got["meta-data/placement/availability-zone"] == \
            described["Placement"]["AvailabilityZone"]
        assert got["meta-data/placement/region"] == "us-east-1"
        assert got[base + "interface-id"] == eni["NetworkInterfaceId"]
        assert got[base + "local-ipv4s"] == node.ip
        assert got[base + "subnet-id"] == described["SubnetId"]
        assert got[base + "vpc-id"] == described["VpcId"]
        assert "interface-id" in got[base].split()
    a, b = two_nodes
    assert values(a, "meta-data/placement/availability-zone") == \
        {"meta-data/placement/availability-zone": "us-east-1a"}
    assert values(b, "meta-data/placement/availability-zone") == \
        {"meta-data/placement/availability-zone": "us-east-1b"}


def test_public_ipv4_follows_the_elastic_ip(two_nodes, ec2):
    a, b = two_nodes
    assert read(a, "meta-data/public-ipv4")["meta-data/public-ipv4"][0] == 404
    allocation = ec2.allocate_address(Domain="vpc")
    try:
        ec2.associate_address(AllocationId=allocation["AllocationId"], InstanceId=a.id)
        assert values(a, "meta-data/public-ipv4")["meta-data/public-ipv4"] == \
            allocation["PublicIp"]
        ec2.associate_address(AllocationId=allocation["AllocationId"], InstanceId=b.id,
                              AllowReassociation=True)
        assert values(b, "meta-data/public-ipv4")["meta-data/public-ipv4"] == \
            allocation["PublicIp"]
        wait_for(lambda: read(a, "meta-data/public-ipv4")["meta-data/public-ipv4"][0] == 404,
                 5, what="the EIP to leave node a's metadata")
    finally:
        association = ec2.describe_addresses(
            AllocationIds=[allocation["AllocationId"]])["Addresses"][0].get("AssociationId")
        if association:
            ec2.disassociate_address(AssociationId=association)
        ec2.release_address(AllocationId=allocation["AllocationId"])


def test_identity_document_names_the_instance(two_nodes):
    path = "dynamic/instance-identity/document"
    document = json.loads(values(two_nodes[1], path)[path])
    assert document["instanceId"] == two_nodes[1].id
    assert document["region"] == "us-east-1"


def test_imds_answers_after_a_stop_and_start(launch, ec2):
    # fence_aws on a node that was itself fenced (stopped and started) asks IMDS first.
    node = launch("imds-cycled")
    node.wait_up()
    ec2.stop_instances(InstanceIds=[node.id])
    wait_for(lambda: not node.powered(), 10, 0.05, "power-off")
    ec2.start_instances(InstanceIds=[node.id])
    node.wait_up()
    assert values(node, "meta-data/instance-id") == {"meta-data/instance-id": node.id}


DROP_PROBE = ('/usr/bin/python3 -c "import urllib.request as u\n'
              'try:\n'
              ' u.urlopen(u.Request(\'http://169.254.169.254/latest/api/token\', method=\'PUT\', '
              'headers={\'X-aws-ec2-metadata-token-ttl-seconds\': \'60\'}), timeout=5); print(\'answered\')\n'
              'except Exception as e: print(\'unanswered\', type(e).__name__)"')


def test_a_fault_rule_takes_one_hosts_imds_down_and_back(two_nodes, lab):
    # The fault matrix's "IMDS down on a node": the switch is the lab's fault table, not the host.
    down, other = two_nodes
    rule = faults.inject(lab["endpoint_url"], {"service": "imds", "params": {"InstanceId": down.id},
                                               "error": {"code": "Unavailable", "status": 503}})
    try:
        assert read(down, "meta-data/instance-id")["meta-data/instance-id"][0] == 503
        assert values(other, "meta-data/instance-id") == {"meta-data/instance-id": other.id}
        faults.remove(lab["endpoint_url"], rule["id"])
        faults.inject(lab["endpoint_url"], {"service": "imds", "params": {"InstanceId": down.id}, "drop": True})
        assert down.check(DROP_PROBE).split()[0] == "unanswered"
        assert other.check(DROP_PROBE).strip() == "answered"
    finally:
        faults.clear(lab["endpoint_url"])
    assert values(down, "meta-data/instance-id") == {"meta-data/instance-id": down.id}
