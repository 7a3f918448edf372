# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Elastic IP core against botocore's Stubber: what moto cannot show (throttling, AccessDenied,
a re-association that does not stick, a non-VPC address) plus the plan/converge contract."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import pytest

from ec2ha_testkit.calls import operations, writes
from ec2ha_testkit.wire import EC2_NS, THROTTLED, Answers, answered_session
from ansible_collections.ec2ha.cluster.plugins.module_utils import elastic_ip
from ansible_collections.ec2ha.cluster.plugins.module_utils.aws import (
    AwsCallError,
    AwsSession,
    InputError,
    VerifyError,
)
from ec2ha_testkit.clock import FakeClock

EIP, ALLOC = "203.0.113.25", "eipalloc-0123456789abcdef0"
NODE1, ENI1, IP1 = "i-0000000000000000a", "eni-0000000000000000a", "10.0.1.10"
NODE2, ENI2, IP2 = "i-0000000000000000b", "eni-0000000000000000b", "10.0.2.10"
IP2_SECONDARY = "10.0.2.11"
ASSOCIATE = {"AllocationId": ALLOC, "NetworkInterfaceId": ENI2, "PrivateIpAddress": IP2, "AllowReassociation": True}


# --- response builders ---------------------------------------------------------------------------

def address(eni: Optional[str], private_ip: Optional[str] = None, instance: Optional[str] = None,
            domain: str = "vpc") -> Dict[str, Any]:
    item: Dict[str, Any] = {"PublicIp": EIP, "Domain": domain}
    if domain == "vpc":
        item["AllocationId"] = ALLOC
    if eni:
        item.update(NetworkInterfaceId=eni, PrivateIpAddress=private_ip, AssociationId="eipassoc-00000001")
    if instance:
        item["InstanceId"] = instance
    return item


def instance(instance_id: str, enis: List[Dict[str, Any]], state: str = "running") -> Dict[str, Any]:
    return {"InstanceId": instance_id, "State": {"Name": state}, "VpcId": "vpc-00000001",
            "SubnetId": "subnet-00000001", "PrivateIpAddress": enis[0]["PrivateIpAddress"],
            "Tags": [{"Key": "Name", "Value": f"node-{instance_id[-1]}"}], "NetworkInterfaces": enis}


def eni(eni_id: str, ips: List[str], index: int = 0) -> Dict[str, Any]:
    return {"NetworkInterfaceId": eni_id, "Attachment": {"DeviceIndex": index}, "PrivateIpAddress": ips[0],
            "PrivateIpAddresses": [{"PrivateIpAddress": ip, "Primary": i == 0} for i, ip in enumerate(ips)],
            "SubnetId": "subnet-00000001", "SourceDestCheck": True}


NODE2_INSTANCE = instance(NODE2, [eni(ENI2, [IP2, IP2_SECONDARY])])


def queue_address(stub: Any, item: Dict[str, Any], by_ip: bool = True) -> None:
    expected = {"PublicIps": [EIP]} if by_ip else {"AllocationIds": [ALLOC]}
    stub.add_response("describe_addresses", {"Addresses": [item]}, expected)


def queue_node(stub: Any, inst: Dict[str, Any]) -> None:
    stub.add_response("describe_instances", {"Reservations": [{"Instances": [inst]}]})


def spec(**overrides: Any) -> elastic_ip.EipSpec:
    values: Dict[str, Any] = {"node": NODE2, "public_ip": EIP}
    values.update(overrides)
    return elastic_ip.EipSpec(**values)


def run(aws: AwsSession, request: elastic_ip.EipSpec, check_mode: bool = False) -> elastic_ip.ConvergeResult:
    target, current = elastic_ip.resolve_target(aws, request)
    clock = FakeClock()
    return elastic_ip.converge(aws, target, check_mode, current, clock=clock, sleep=clock.sleep)


# --- converge ------------------------------------------------------------------------------------

def test_moves_the_eip_from_node1_to_node2_and_verifies_with_describe_addresses(stubbed):
    ec2 = stubbed.stub("ec2")
    queue_address(ec2, address(ENI1, IP1, NODE1))
    queue_node(ec2, NODE2_INSTANCE)
    ec2.add_response("associate_address", {"AssociationId": "eipassoc-00000002"}, ASSOCIATE)
    # moto (and EC2 for a while) leave InstanceId empty right after a re-association.
    queue_address(ec2, address(ENI2, IP2), by_ip=False)

    result = run(stubbed.aws, spec())

    stubbed.assert_all_used()
    assert result.changed
    assert result.before.holder == elastic_ip.EipHolder(ENI1, IP1, NODE1)
    assert result.after.as_dict()["network_interface_id"] == ENI2
    assert result.as_dict()["after"]["private_ip"] == IP2
    assert operations(stubbed.aws) == ["describe_addresses", "describe_instances", "associate_address",
                                       "describe_addresses"]


def test_already_in_place_makes_no_write(stubbed):
    ec2 = stubbed.stub("ec2")
    queue_address(ec2, address(ENI2, IP2, NODE2))
    queue_node(ec2, NODE2_INSTANCE)

    result = run(stubbed.aws, spec())

    stubbed.assert_all_used()
    assert not result.changed and result.actions == []
    assert writes(stubbed.aws) == []


def test_same_eni_other_private_ip_is_a_move(stubbed):
    ec2 = stubbed.stub("ec2")
    queue_address(ec2, address(ENI2, IP2, NODE2))
    queue_node(ec2, NODE2_INSTANCE)
    ec2.add_response("associate_address", {"AssociationId": "eipassoc-00000003"},
                     dict(ASSOCIATE, PrivateIpAddress=IP2_SECONDARY))
    queue_address(ec2, address(ENI2, IP2_SECONDARY), by_ip=False)

    result = run(stubbed.aws, spec(private_ip=IP2_SECONDARY))

    stubbed.assert_all_used()
    assert result.changed and result.after.holder.private_ip == IP2_SECONDARY


def test_check_mode_plans_the_write_and_makes_none(stubbed):
    ec2 = stubbed.stub("ec2")
    queue_address(ec2, address(ENI1, IP1, NODE1))
    queue_node(ec2, NODE2_INSTANCE)

    result = run(stubbed.aws, spec(), check_mode=True)

    stubbed.assert_all_used()  # no associate_address was queued: a real write would have failed the test
    assert result.changed
    assert result.after.holder.eni_id == ENI2 and result.before.holder.eni_id == ENI1
    assert operations(stubbed.aws, planned=True) == ["associate_address"]
    assert stubbed.aws.calls[-1].params == ASSOCIATE


def test_unassociated_eip_is_associated(stubbed):
    ec2 = stubbed.stub("ec2")
    queue_address(ec2, address(None))
    queue_node(ec2, NODE2_INSTANCE)
    ec2.add_response("associate_address", {"AssociationId": "eipassoc-00000004"}, ASSOCIATE)
    queue_address(ec2, address(ENI2, IP2), by_ip=False)

    result = run(stubbed.aws, spec())

    assert result.changed and result.as_dict()["before"]["network_interface_id"] is None


def test_access_denied_is_one_sentence_naming_the_permission(stubbed):
    ec2 = stubbed.stub("ec2")
    queue_address(ec2, address(ENI1, IP1, NODE1))
    queue_node(ec2, NODE2_INSTANCE)
    ec2.add_client_error("associate_address", service_error_code="UnauthorizedOperation", http_status_code=403,
                         service_message="You are not authorized to perform this operation.")

    with pytest.raises(AwsCallError) as failed:
        run(stubbed.aws, spec())

    message = str(failed.value)
    assert "ec2:AssociateAddress" in message and EIP in message and "UnauthorizedOperation" in message
    assert message.count(". ") == 0 and message.endswith(".") and "\n" not in message
    assert not failed.value.transient


def test_a_move_that_does_not_stick_is_a_verify_error(stubbed):
    ec2 = stubbed.stub("ec2")
    queue_address(ec2, address(ENI1, IP1, NODE1))
    queue_node(ec2, NODE2_INSTANCE)
    ec2.add_response("associate_address", {"AssociationId": "eipassoc-00000005"}, ASSOCIATE)
    for _attempt in range(8):  # the bounded re-read: at 0, .25, .75, 1.75, 3.75, 5.75, 7.75, 9.75 s of 10 s
        queue_address(ec2, address(ENI1, IP1, NODE1), by_ip=False)

    with pytest.raises(VerifyError) as failed:
        run(stubbed.aws, spec())

    stubbed.assert_all_used()
    assert f"is on {ENI1} ({IP1}), expected {ENI2} ({IP2})" in str(failed.value)
    assert "re-read for 10 s" in str(failed.value)


# --- bad input: fails before any write -----------------------------------------------------------

@pytest.mark.parametrize("code", ["InvalidAddress.NotFound", "InvalidAllocationID.NotFound"])
def test_unknown_eip_is_an_input_error(stubbed, code):
    stubbed.stub("ec2").add_client_error("describe_addresses", service_error_code=code, http_status_code=400)
    with pytest.raises(InputError, match=f"Elastic IP {EIP} is not allocated in this account and region"):
        run(stubbed.aws, spec())
    assert writes(stubbed.aws) == []


def test_non_vpc_eip_is_an_input_error(stubbed):
    queue_address(stubbed.stub("ec2"), address(None, domain="standard"))
    with pytest.raises(InputError, match="EC2-Classic"):
        run(stubbed.aws, spec())
    assert writes(stubbed.aws) == []


def test_private_ip_not_on_the_eni_is_an_input_error(stubbed):
    ec2 = stubbed.stub("ec2")
    queue_address(ec2, address(ENI1, IP1, NODE1))
    queue_node(ec2, NODE2_INSTANCE)
    with pytest.raises(InputError) as failed:
        run(stubbed.aws, spec(private_ip="10.0.9.9"))
    assert str(failed.value) == (f"private_ip 10.0.9.9 is not an address of {ENI2} on node {NODE2} (node-b) "
                                 f"(it has {IP2}, {IP2_SECONDARY}).")
    assert writes(stubbed.aws) == []


def test_several_enis_and_no_interface_is_an_input_error_and_interface_picks_one(stubbed):
    ec2 = stubbed.stub("ec2")
    multi = instance(NODE2, [eni(ENI2, [IP2]), eni("eni-0000000000000000c", ["10.0.2.20"], index=1)])
    queue_address(ec2, address(ENI1, IP1, NODE1))
    queue_node(ec2, multi)
    with pytest.raises(InputError, match="has 2 network interfaces"):
        run(stubbed.aws, spec())
    assert writes(stubbed.aws) == []

    queue_address(ec2, address(ENI1, IP1, NODE1))
    queue_node(ec2, multi)
    target, _current = elastic_ip.resolve_target(stubbed.aws, spec(interface="1"))
    assert (target.eni_id, target.private_ip) == ("eni-0000000000000000c", "10.0.2.20")


def test_stopped_node_is_an_input_error(stubbed):
    ec2 = stubbed.stub("ec2")
    queue_address(ec2, address(ENI1, IP1, NODE1))
    queue_node(ec2, instance(NODE2, [eni(ENI2, [IP2])], state="stopped"))
    with pytest.raises(InputError, match="is stopped, not running"):
        run(stubbed.aws, spec())
    assert writes(stubbed.aws) == []


@pytest.mark.parametrize("overrides, message", [
    ({"public_ip": None}, "Give exactly one of public_ip and allocation_id"),
    ({"allocation_id": ALLOC}, "Give exactly one of public_ip and allocation_id"),
    ({"public_ip": "203.0.113"}, "public_ip '203.0.113' is not an IPv4 address."),
    ({"public_ip": None, "allocation_id": "alloc-1"}, "allocation_id 'alloc-1' is not an allocation id"),
    ({"private_ip": "ten"}, "private_ip 'ten' is not an IPv4 address."),
])
def test_malformed_input_needs_no_aws_call(stubbed, overrides, message):
    with pytest.raises(InputError, match=message):
        run(stubbed.aws, spec(**overrides))
    assert stubbed.aws.calls == []


# --- monitor -------------------------------------------------------------------------------------

def target() -> elastic_ip.EipTarget:
    return elastic_ip.EipTarget(EIP, ALLOC, ENI2, IP2, NODE2, "node-b", f"{NODE2} (node-b)")


def test_monitor_ok_wrong_unknown(stubbed):
    ec2 = stubbed.stub("ec2")
    queue_address(ec2, address(ENI2, IP2), by_ip=False)
    queue_address(ec2, address(ENI1, IP1, NODE1), by_ip=False)
    ec2.add_client_error("describe_addresses", service_error_code="RequestLimitExceeded", http_status_code=503)
    ec2.add_client_error("describe_addresses", service_error_code="InvalidAllocationID.NotFound",
                         http_status_code=400)

    states = [elastic_ip.monitor(stubbed.aws, target()) for _attempt in range(4)]

    stubbed.assert_all_used()
    assert [s.status for s in states] == ["ok", "wrong", "unknown", "wrong"]
    assert states[1].details == [f"Elastic IP {EIP} is on {ENI1} ({IP1}), expected {ENI2} ({IP2}) of node "
                                 f"{NODE2} (node-b)"]
    assert "RequestLimitExceeded" in states[2].details[0]
    assert "not allocated" in states[3].details[0]
    assert operations(stubbed.aws) == ["describe_addresses"] * 4


def test_monitor_raises_a_permanent_error(stubbed):
    stubbed.stub("ec2").add_client_error("describe_addresses", service_error_code="UnauthorizedOperation",
                                         http_status_code=403)
    with pytest.raises(AwsCallError, match="ec2:DescribeAddresses"):
        elastic_ip.monitor(stubbed.aws, target())


# --- throttling through botocore's own retries ---------------------------------------------------


def addresses_xml(eni_id: str, private_ip: str) -> bytes:
    return (f"<DescribeAddressesResponse {EC2_NS}><requestId>r</requestId><addressesSet><item>"
            f"<publicIp>{EIP}</publicIp><allocationId>{ALLOC}</allocationId><domain>vpc</domain>"
            f"<networkInterfaceId>{eni_id}</networkInterfaceId><privateIpAddress>{private_ip}</privateIpAddress>"
            "</item></addressesSet></DescribeAddressesResponse>").encode()


ASSOCIATED_XML = (f"<AssociateAddressResponse {EC2_NS}><requestId>r</requestId><return>true</return>"
                  "<associationId>eipassoc-00000009</associationId></AssociateAddressResponse>").encode()


def test_throttled_write_is_retried_by_botocore_then_succeeds(monkeypatch):
    """Stubber bypasses botocore's retries, so answer at the HTTP layer (before-send): the session's
    retry config (standard mode) must resend the throttled AssociateAddress and converge succeed."""
    answers = Answers([(503, THROTTLED), (200, ASSOCIATED_XML), (200, addresses_xml(ENI2, IP2))])
    delays: List[float] = []
    monkeypatch.setattr("botocore.endpoint.time.sleep", delays.append)  # no real backoff wait in a unit test
    aws = answered_session(answers)
    before = elastic_ip.ElasticIp(EIP, ALLOC, "vpc", elastic_ip.EipHolder(ENI1, IP1, NODE1))

    result = elastic_ip.converge(aws, target(), address=before)

    sent = [request.body for request in answers.sent]
    assert result.changed and result.after.holder.eni_id == ENI2
    assert answers.answers == [] and len(sent) == 3 and sent[0] == sent[1]   # the same request, sent again
    assert len(delays) == 1                                                  # after one backoff
    assert operations(aws) == ["associate_address", "describe_addresses"]


def test_throttling_beyond_the_retries_is_transient(monkeypatch):
    monkeypatch.setattr("botocore.endpoint.time.sleep", lambda _seconds: None)
    aws = answered_session(Answers([(503, THROTTLED)], repeat_last=True), max_attempts=2)
    before = elastic_ip.ElasticIp(EIP, ALLOC, "vpc", elastic_ip.EipHolder(ENI1, IP1, NODE1))

    with pytest.raises(AwsCallError) as failed:
        elastic_ip.converge(aws, target(), address=before)
    assert failed.value.transient and "ec2:AssociateAddress" in str(failed.value)
    assert elastic_ip.monitor(aws, target()).status == "unknown"
