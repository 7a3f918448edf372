# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Route 53 core against botocore's Stubber: what moto cannot show (a PENDING change, a wait that
times out, throttled polls, AccessDenied) plus zone/record resolution and the converge contract."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import pytest

from ec2ha_testkit.calls import operations, writes
from ansible_collections.ec2ha.cluster.plugins.module_utils import dns_record
from ansible_collections.ec2ha.cluster.plugins.module_utils.aws import AwsCallError, InputError, VerifyError
from ec2ha_testkit.clock import FakeClock

ZONE_ID, PUBLIC_ID = "Z0PRIVATE00000000001", "Z0PUBLIC000000000002"
ZONE = "corp.example."
NAME = "db.corp.example."
NODE2, IP2, PUBLIC2 = "i-0000000000000000b", "10.0.2.10", "198.51.100.20"
IP1 = "10.0.1.10"
CHANGE = "C0000000000000000001"


# --- response builders ---------------------------------------------------------------------------

def zone(zone_id: str = ZONE_ID, private: bool = True, name: str = ZONE) -> Dict[str, Any]:
    return {"Id": f"/hostedzone/{zone_id}", "Name": name, "CallerReference": zone_id,
            "Config": {"PrivateZone": private}}


def queue_zones(stub: Any, zones: List[Dict[str, Any]], name: str = ZONE) -> None:
    stub.add_response("list_hosted_zones_by_name",
                      {"HostedZones": zones, "IsTruncated": False, "MaxItems": "100", "DNSName": name},
                      {"DNSName": name})


def a_record(values: List[str], ttl: int = 60, name: str = NAME) -> Dict[str, Any]:
    return {"Name": name, "Type": "A", "TTL": ttl, "ResourceRecords": [{"Value": v} for v in values]}


def queue_records(stub: Any, sets: List[Dict[str, Any]], name: str = NAME) -> None:
    """What ListResourceRecordSets answers when asked to start at ``name``: the sets there, then the next name."""
    following = [a_record(["10.9.9.9"], name="zz." + ZONE)]
    stub.add_response("list_resource_record_sets",
                      {"ResourceRecordSets": sets + following, "IsTruncated": False, "MaxItems": "100"},
                      {"HostedZoneId": ZONE_ID, "StartRecordName": name, "MaxItems": "100"})


def queue_node(stub: Any, public_ip: Optional[str] = PUBLIC2, state: str = "running") -> None:
    inst: Dict[str, Any] = {
        "InstanceId": NODE2, "State": {"Name": state}, "VpcId": "vpc-00000001", "SubnetId": "subnet-00000001",
        "PrivateIpAddress": IP2, "Tags": [{"Key": "Name", "Value": "node-b"}],
        "NetworkInterfaces": [{"NetworkInterfaceId": "eni-0000000000000000b", "Attachment": {"DeviceIndex": 0},
                               "PrivateIpAddress": IP2, "SubnetId": "subnet-00000001"}]}
    if public_ip:
        inst["PublicIpAddress"] = public_ip
    stub.add_response("describe_instances", {"Reservations": [{"Instances": [inst]}]})


def upsert(value: str = IP2, ttl: int = 60) -> Dict[str, Any]:
    return {"HostedZoneId": ZONE_ID, "ChangeBatch": {"Comment": "ec2ha.cluster dns_record", "Changes": [{
        "Action": "UPSERT", "ResourceRecordSet": {"Name": NAME, "Type": "A", "TTL": ttl,
                                                  "ResourceRecords": [{"Value": value}]}}]}}


def change_info(status: str) -> Dict[str, Any]:
    return {"ChangeInfo": {"Id": f"/change/{CHANGE}", "Status": status, "SubmittedAt": "2026-01-01T00:00:00Z"}}


def spec(**overrides: Any) -> dns_record.DnsSpec:
    values: Dict[str, Any] = {"zone": "corp.example", "record": "db", "node": NODE2}
    values.update(overrides)
    return dns_record.DnsSpec(**values)


def target(value: str = IP2, ttl: int = 60) -> dns_record.DnsTarget:
    return dns_record.DnsTarget(dns_record.Zone(ZONE_ID, ZONE, True), NAME, ttl, value, NODE2, "node-b")


def converge(stubbed: Any, clock: Optional[FakeClock] = None, check_mode: bool = False, **overrides: Any):
    clock = clock or FakeClock()
    request = spec(**overrides)
    found = dns_record.resolve_target(stubbed.aws, request)
    return dns_record.converge(stubbed.aws, found, check_mode, request.wait, request.wait_timeout,
                               clock=clock, sleep=clock.sleep)


# --- converge and the INSYNC wait ----------------------------------------------------------------

def test_pending_then_insync_waits_with_a_growing_interval(stubbed):
    r53, ec2 = stubbed.stub("route53"), stubbed.stub("ec2")
    queue_zones(r53, [zone()])
    queue_node(ec2)
    queue_records(r53, [a_record([IP1])])
    r53.add_response("change_resource_record_sets", change_info("PENDING"), upsert())
    for status in ("PENDING", "PENDING", "PENDING", "INSYNC"):
        r53.add_response("get_change", change_info(status), {"Id": CHANGE})
    queue_records(r53, [a_record([IP2])])
    clock = FakeClock()

    result = converge(stubbed, clock)

    stubbed.assert_all_used()
    assert result.changed and result.change_id == CHANGE and result.change_status == "INSYNC"
    assert result.before.values == (IP1,) and result.after.values == (IP2,)
    assert clock.slept == [1.0, 1.5, 2.25]      # grows; never a fixed sleep
    assert result.as_dict()["before"] == {"name": NAME, "type": "A", "ttl": 60, "values": [IP1]}


def test_the_poll_interval_is_capped_and_never_overshoots_the_deadline():
    clock = FakeClock()
    polls: List[float] = []

    class Pending:
        """An AwsSession stand-in whose GetChange always answers PENDING."""

        def call(self, service: str, operation: str, resource: str = "", **params: Any) -> Dict[str, Any]:
            polls.append(clock())
            return change_info("PENDING")

    with pytest.raises(dns_record.WaitTimeout):
        dns_record.wait_insync(Pending(), CHANGE, 60, clock, clock.sleep)  # type: ignore[arg-type]

    assert max(clock.slept) == dns_record.MAX_POLL
    assert polls[-1] == 1060.0 and clock.now == 1060.0   # the last poll lands on the deadline, not past it
    assert len(polls) < 15                               # backing off: far fewer polls than one a second


def test_a_wait_that_times_out_names_the_change_and_the_time(stubbed):
    r53, ec2 = stubbed.stub("route53"), stubbed.stub("ec2")
    queue_zones(r53, [zone()])
    queue_node(ec2)
    queue_records(r53, [a_record([IP1])])
    r53.add_response("change_resource_record_sets", change_info("PENDING"), upsert())
    # 1 + 1.5 + 2.25 + 3.375 + 1.875 (capped by the 10 s deadline): six polls, the last at the deadline.
    for _attempt in range(6):
        r53.add_response("get_change", change_info("PENDING"), {"Id": CHANGE})
    clock = FakeClock()

    with pytest.raises(dns_record.WaitTimeout) as failed:
        converge(stubbed, clock, wait_timeout=10)

    stubbed.assert_all_used()
    assert str(failed.value) == (f"Route 53 change {CHANGE} is still PENDING after 10.0 s (wait_timeout 10 s): "
                                 "the record is written but not yet in sync on every Route 53 DNS server.")
    assert failed.value.change_id == CHANGE
    assert sum(clock.slept) == 10.0


def test_throttled_polls_then_insync_succeed(stubbed):
    r53, ec2 = stubbed.stub("route53"), stubbed.stub("ec2")
    queue_zones(r53, [zone()])
    queue_node(ec2)
    queue_records(r53, [])
    r53.add_response("change_resource_record_sets", change_info("PENDING"), upsert())
    # What is left once botocore's own retries gave up: a throttled poll is "not yet", not a failure.
    r53.add_client_error("get_change", service_error_code="Throttling", http_status_code=400,
                         service_message="Rate exceeded")
    r53.add_client_error("get_change", service_error_code="PriorRequestNotComplete", http_status_code=400)
    r53.add_response("get_change", change_info("INSYNC"), {"Id": CHANGE})
    queue_records(r53, [a_record([IP2])])

    result = converge(stubbed)

    stubbed.assert_all_used()
    assert result.changed and result.change_status == "INSYNC"
    assert result.as_dict()["before"] == {}
    assert operations(stubbed.aws).count("get_change") == 3


def test_throttled_polls_until_the_deadline_say_so(stubbed):
    r53 = stubbed.stub("route53")
    for _attempt in range(3):  # at 0, 1 and 2.5 s of a 2.5 s timeout
        r53.add_client_error("get_change", service_error_code="Throttling", http_status_code=400)
    clock = FakeClock()
    with pytest.raises(dns_record.WaitTimeout, match=f"change {CHANGE} is still unknown \\(Throttling\\) after 2.5 s"):
        dns_record.wait_insync(stubbed.aws, CHANGE, 2.5, clock, clock.sleep)


def test_no_wait_returns_pending_without_polling(stubbed):
    r53, ec2 = stubbed.stub("route53"), stubbed.stub("ec2")
    queue_zones(r53, [zone()])
    queue_node(ec2)
    queue_records(r53, [a_record([IP1])])
    r53.add_response("change_resource_record_sets", change_info("PENDING"), upsert())
    queue_records(r53, [a_record([IP2])])

    result = converge(stubbed, wait=False)

    stubbed.assert_all_used()
    assert result.change_status == "PENDING" and "get_change" not in operations(stubbed.aws)


def test_unchanged_record_makes_no_write(stubbed):
    r53, ec2 = stubbed.stub("route53"), stubbed.stub("ec2")
    queue_zones(r53, [zone()])
    queue_node(ec2)
    queue_records(r53, [a_record([IP2])])

    result = converge(stubbed)

    stubbed.assert_all_used()
    assert not result.changed and writes(stubbed.aws) == [] and result.change_id is None


@pytest.mark.parametrize("current", [a_record([IP2], ttl=300), a_record([IP2, IP1])],
                         ids=["other TTL", "extra value"])
def test_ttl_or_extra_values_are_rewritten(stubbed, current):
    r53, ec2 = stubbed.stub("route53"), stubbed.stub("ec2")
    queue_zones(r53, [zone()])
    queue_node(ec2)
    queue_records(r53, [current])
    r53.add_response("change_resource_record_sets", change_info("INSYNC"), upsert())
    queue_records(r53, [a_record([IP2])])

    result = converge(stubbed)

    stubbed.assert_all_used()
    assert result.changed and writes(stubbed.aws) == ["change_resource_record_sets"]


def test_check_mode_plans_the_upsert_and_makes_no_write(stubbed):
    r53, ec2 = stubbed.stub("route53"), stubbed.stub("ec2")
    queue_zones(r53, [zone()])
    queue_node(ec2)
    queue_records(r53, [a_record([IP1])])

    result = converge(stubbed, check_mode=True)

    stubbed.assert_all_used()
    assert result.changed and result.after.values == (IP2,) and result.change_id is None
    assert operations(stubbed.aws, planned=True) == ["change_resource_record_sets"]
    assert stubbed.aws.calls[-1].params == upsert()


def test_access_denied_is_one_sentence_naming_the_permission(stubbed):
    r53, ec2 = stubbed.stub("route53"), stubbed.stub("ec2")
    queue_zones(r53, [zone()])
    queue_node(ec2)
    queue_records(r53, [a_record([IP1])])
    r53.add_client_error("change_resource_record_sets", service_error_code="AccessDenied", http_status_code=403,
                         service_message="User is not authorized to perform route53:ChangeResourceRecordSets")

    with pytest.raises(AwsCallError) as failed:
        converge(stubbed)

    assert str(failed.value) == (f"route53:ChangeResourceRecordSets on {NAME} in {ZONE_ID} was denied (AccessDenied): "
                                 "the credentials lack permission for route53:ChangeResourceRecordSets.")
    assert not failed.value.transient


def test_a_write_that_does_not_show_is_a_verify_error(stubbed):
    r53, ec2 = stubbed.stub("route53"), stubbed.stub("ec2")
    queue_zones(r53, [zone()])
    queue_node(ec2)
    queue_records(r53, [a_record([IP1])])
    r53.add_response("change_resource_record_sets", change_info("INSYNC"), upsert())
    queue_records(r53, [a_record([IP1])])

    with pytest.raises(VerifyError, match=f"is A {IP1} TTL 60, expected A {IP2} TTL 60"):
        converge(stubbed)


def test_public_address_and_explicit_value(stubbed):
    r53, ec2 = stubbed.stub("route53"), stubbed.stub("ec2")
    queue_zones(r53, [zone()])
    queue_node(ec2)
    found = dns_record.resolve_target(stubbed.aws, spec(address="public"))
    assert found.value == PUBLIC2 and found.node_id == NODE2

    queue_zones(r53, [zone()])
    found = dns_record.resolve_target(stubbed.aws, spec(node=None, value="192.0.2.7"))
    assert found.value == "192.0.2.7" and found.node_id is None
    assert "describe_instances" not in operations(stubbed.aws)[2:]


# --- zones and names -----------------------------------------------------------------------------

def test_zone_by_id_with_or_without_prefix(stubbed):
    r53 = stubbed.stub("route53")
    for _attempt in range(2):
        r53.add_response("get_hosted_zone", {"HostedZone": zone(), "DelegationSet": {"NameServers": ["ns1"]}},
                         {"Id": ZONE_ID})
    assert dns_record.find_zone(stubbed.aws, ZONE_ID) == dns_record.Zone(ZONE_ID, ZONE, True)
    assert dns_record.find_zone(stubbed.aws, f"/hostedzone/{ZONE_ID}").zone_id == ZONE_ID


def test_a_name_shared_by_private_and_public_zones_needs_private_zone(stubbed):
    r53 = stubbed.stub("route53")
    both = [zone(), zone(PUBLIC_ID, private=False), zone("Z0OTHER0000000000003", name="corp.example.net.")]
    queue_zones(r53, both)
    with pytest.raises(InputError) as failed:
        dns_record.find_zone(stubbed.aws, "corp.example")
    assert str(failed.value) == (f"Zone name corp.example matches a private and a public hosted zone ({ZONE_ID} "
                                 f"(private), {PUBLIC_ID} (public)): set private_zone to true or false to pick one.")
    queue_zones(r53, both)
    assert dns_record.find_zone(stubbed.aws, "corp.example", private_zone=False).zone_id == PUBLIC_ID
    queue_zones(r53, both, name=ZONE)
    assert dns_record.find_zone(stubbed.aws, "Corp.Example.", private_zone=True).zone_id == ZONE_ID


def test_unknown_zone_name_and_id_are_input_errors(stubbed):
    r53 = stubbed.stub("route53")
    queue_zones(r53, [zone(name="corp.example.net.")], name="corp.example.")
    with pytest.raises(InputError, match="^No hosted zone is named corp.example in this account.$"):
        dns_record.find_zone(stubbed.aws, "corp.example")
    r53.add_client_error("get_hosted_zone", service_error_code="NoSuchHostedZone", http_status_code=404)
    with pytest.raises(InputError, match="^Hosted zone id Z0NOSUCH does not exist in this account.$"):
        dns_record.find_zone(stubbed.aws, "Z0NOSUCH")


@pytest.mark.parametrize("record, fqdn", [
    ("db", NAME), ("DB", NAME), ("db.corp.example", NAME), ("db.corp.example.", NAME),
    ("corp.example", ZONE), ("a.b.corp.example", "a.b.corp.example."), ("*", "*.corp.example."),
])
def test_record_names_inside_the_zone(record, fqdn):
    assert dns_record.record_fqdn(record, ZONE) == fqdn


@pytest.mark.parametrize("record", ["db.other.example", "db.other.example.", "db.corp.example.net.",
                                    "xcorp.example.", "bad_label-.corp.example", "a.*.corp.example"])
def test_record_names_outside_the_zone_or_invalid(record):
    with pytest.raises(InputError, match=f"Record '{record.replace('*', '.')}"):
        dns_record.record_fqdn(record, ZONE)


@pytest.mark.parametrize("other, what", [
    ({"Name": NAME, "Type": "CNAME", "TTL": 60, "ResourceRecords": [{"Value": "elsewhere.example."}]},
     "a CNAME record (elsewhere.example.)"),
    ({"Name": NAME, "Type": "A", "AliasTarget": {"HostedZoneId": "Z2", "DNSName": "lb.example.",
                                                 "EvaluateTargetHealth": False}},
     "an alias A record (to lb.example.)"),
    (dict(a_record([IP1]), SetIdentifier="blue", Weight=10),
     "an A record with a routing policy (set identifier blue)"),
])
def test_another_record_type_at_the_name_is_an_input_error_before_any_write(stubbed, other, what):
    r53, ec2 = stubbed.stub("route53"), stubbed.stub("ec2")
    queue_zones(r53, [zone()])
    queue_node(ec2)
    queue_records(r53, [other])
    with pytest.raises(InputError) as failed:
        converge(stubbed)
    assert str(failed.value) == (f"Record db.corp.example in zone corp.example ({ZONE_ID}) already holds {what}: "
                                 "this module manages only a simple A record there; remove it or choose another name.")
    assert writes(stubbed.aws) == []


def test_records_of_other_types_at_the_name_coexist_and_are_left_alone(stubbed):
    """Only a CNAME, an alias A or an A set with a routing policy conflicts with a simple A record;
    TXT, AAAA (alias or not), MX... live beside it, and neither plan nor monitor sees them."""
    r53 = stubbed.stub("route53")
    beside = [{"Name": NAME, "Type": "AAAA", "TTL": 60, "ResourceRecords": [{"Value": "2001:db8::1"}]},
              {"Name": NAME, "Type": "MX", "TTL": 60, "ResourceRecords": [{"Value": "10 mail.corp.example."}]},
              {"Name": NAME, "Type": "TXT", "TTL": 60, "ResourceRecords": [{"Value": '"v=spf1 -all"'}]},
              {"Name": NAME, "Type": "AAAA", "SetIdentifier": "blue", "Weight": 1, "TTL": 60,
               "ResourceRecords": [{"Value": "2001:db8::2"}]}]
    queue_records(r53, [a_record([IP2])] + beside)
    queue_records(r53, beside)
    zone_ = dns_record.Zone(ZONE_ID, ZONE, True)
    assert dns_record.read_record(stubbed.aws, zone_, NAME) == dns_record.RecordSet(NAME, 60, (IP2,))
    assert dns_record.read_record(stubbed.aws, zone_, NAME) is None
    stubbed.assert_all_used()


def test_apex_soa_and_ns_are_not_conflicts(stubbed):
    r53 = stubbed.stub("route53")
    apex = [{"Name": ZONE, "Type": "NS", "TTL": 172800, "ResourceRecords": [{"Value": "ns1.example."}]},
            {"Name": ZONE, "Type": "SOA", "TTL": 900, "ResourceRecords": [{"Value": "ns1.example. x 1 2 3 4 5"}]}]
    queue_records(r53, apex, name=ZONE)
    assert dns_record.read_record(stubbed.aws, dns_record.Zone(ZONE_ID, ZONE, True), ZONE) is None


def test_node_without_public_ip_is_an_input_error(stubbed):
    r53, ec2 = stubbed.stub("route53"), stubbed.stub("ec2")
    queue_zones(r53, [zone()])
    queue_node(ec2, public_ip=None)
    with pytest.raises(InputError, match=f"^Node {NODE2} \\(node-b\\) has no public IP address: use address: "
                                         "private or give value.$"):
        converge(stubbed, address="public")
    assert writes(stubbed.aws) == []


@pytest.mark.parametrize("overrides, message", [
    ({"node": None}, "Give exactly one of node and value"),
    ({"value": "10.0.0.1"}, "Give exactly one of node and value"),
    ({"node": None, "value": "10.0.0"}, "value '10.0.0' is not an IPv4 address."),
    ({"address": "elastic"}, "address 'elastic' is not one of private, public."),
    ({"ttl": -1}, "ttl -1 must be between"),
    ({"wait_timeout": 0}, "wait_timeout 0 must be a positive number"),
    ({"wait_timeout": float("nan")}, "wait_timeout nan must be a positive number"),
    ({"zone": " "}, "zone is empty"),
])
def test_malformed_input_needs_no_aws_call(stubbed, overrides, message):
    with pytest.raises(InputError, match=message):
        converge(stubbed, **overrides)
    assert stubbed.aws.calls == []


# --- monitor -------------------------------------------------------------------------------------

def test_monitor_ok_wrong_unknown(stubbed):
    r53 = stubbed.stub("route53")
    queue_records(r53, [a_record([IP2])])
    queue_records(r53, [a_record([IP1])])
    queue_records(r53, [])
    r53.add_client_error("list_resource_record_sets", service_error_code="Throttling", http_status_code=400)
    queue_records(r53, [{"Name": NAME, "Type": "CNAME", "TTL": 60, "ResourceRecords": [{"Value": "x.example."}]}])

    states = [dns_record.monitor(stubbed.aws, target()) for _attempt in range(5)]

    stubbed.assert_all_used()
    assert [s.status for s in states] == ["ok", "wrong", "wrong", "unknown", "wrong"]
    assert states[1].details == [f"Record db.corp.example is A {IP1} TTL 60, expected A {IP2} TTL 60"]
    assert states[2].details == [f"Record db.corp.example is absent, expected A {IP2} TTL 60"]
    assert "Throttling" in states[3].details[0] and "CNAME" in states[4].details[0]
    assert operations(stubbed.aws) == ["list_resource_record_sets"] * 5
