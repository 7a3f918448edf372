# -*- coding: utf-8 -*-
"""lab/emulator/faults.py: rules match what they say, botocore sees the injected errors as AWS's own (and its
retry mode retries them), and the control plane on the moto server switches them. The server is
the lab's own moto app (lab.control.start_moto) in this process, on loopback; no root needed."""

from __future__ import annotations

import io
import threading
from typing import Any, Dict, Iterator

import boto3
import botocore.config
import botocore.exceptions
import pytest

from lab.emulator import control, faults


@pytest.fixture(scope="module")
def table() -> faults.FaultTable:
    return faults.FaultTable()


@pytest.fixture(scope="module")
def endpoint(table: faults.FaultTable) -> Iterator[str]:
    server = control.start_moto("127.0.0.1", 0, fault_table=table)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        control.stop_server(server)


@pytest.fixture
def url(endpoint: str) -> Iterator[str]:
    """The endpoint, with no rule left behind by the test."""
    yield endpoint
    faults.clear(endpoint)


def client(url: str, service: str, attempts: int = 1, read_timeout: float = 10) -> Any:
    config = botocore.config.Config(retries={"mode": "standard", "total_max_attempts": attempts},
                                    read_timeout=read_timeout, connect_timeout=2)
    return boto3.client(service, endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing", config=config)


def hits(url: str) -> Dict[int, int]:
    return {r["id"]: r["hits"] for r in faults.rules(url)}


# --- pure: what a request is, what a rule matches --------------------------------------------------

def environ(method: str, path: str, body: bytes = b"", service: str = "ec2", **extra: str) -> Dict[str, Any]:
    return {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": extra.pop("query", ""),
            "CONTENT_TYPE": "application/x-www-form-urlencoded; charset=utf-8", "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body), "REMOTE_ADDR": "10.0.1.10",
            "HTTP_AUTHORIZATION": f"AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/{service}/aws4_request, "
                                  "SignedHeaders=host, Signature=0", **extra}


def test_an_ec2_request_is_its_action_and_form_fields_and_the_body_is_left_for_moto():
    body = b"Action=ReplaceRoute&Version=2016-11-15&RouteTableId=rtb-0b&DestinationCidrBlock=192.168.1.10%2F32"
    env = environ("POST", "/", body)
    request = faults.request_of(env, faults.read_body(env))
    assert (request.service, request.action, request.client) == ("ec2", "ReplaceRoute", "10.0.1.10")
    assert request.params["RouteTableId"] == "rtb-0b" and request.params["DestinationCidrBlock"] == "192.168.1.10/32"
    assert env["wsgi.input"].read() == body


@pytest.mark.parametrize("method, path, action, params", [
    ("GET", "/2013-04-01/change/C123", "GetChange", {"Id": "C123"}),
    ("POST", "/2013-04-01/hostedzone/Z1/rrset/", "ChangeResourceRecordSets", {"HostedZoneId": "Z1"}),
    ("GET", "/2013-04-01/hostedzone/Z1/rrset", "ListResourceRecordSets", {"HostedZoneId": "Z1"}),
    ("GET", "/2013-04-01/hostedzone/Z1", "GetHostedZone", {"Id": "Z1"}),
    ("GET", "/2013-04-01/hostedzonesbyname", "ListHostedZonesByName", {}),
    ("PUT", "/2013-04-01/tags/hostedzone/Z1", None, {}),
])
def test_a_route53_request_is_named_by_its_method_and_path(method, path, action, params):
    assert faults.route53_operation(method, path) == (action, params)


def test_a_rule_matches_every_condition_it_names_and_counts_down_exactly():
    table = faults.FaultTable()
    rule = table.add({"action": "ReplaceRoute", "params": {"RouteTableId": "rtb-0b"}, "client": "10.0.1.10",
                      "error": "RequestLimitExceeded", "count": 2})
    base = {"service": "ec2", "action": "ReplaceRoute", "client": "10.0.1.10"}
    other_table = faults.Request(params={"RouteTableId": "rtb-0a"}, **base)
    other_client = faults.Request(params={"RouteTableId": "rtb-0b"}, **dict(base, client="127.0.0.1"))
    wanted = faults.Request(params={"RouteTableId": "rtb-0b"}, **base)
    assert table.take(other_table) is None and table.take(other_client) is None
    taken = [table.take(wanted) for _attempt in range(3)]
    assert [t.id if t else None for t in taken] == [rule.id, rule.id, None]
    assert table.listing() == [dict(rule.as_dict(), count=0, hits=2)]
    assert not table.active()


def test_concurrent_requests_take_a_counted_rule_exactly_count_times():
    table = faults.FaultTable()
    table.add({"service": "ec2", "drop": True, "count": 50})
    request = faults.Request("ec2", "DescribeVpcs", {}, "127.0.0.1")
    taken: list = []
    workers = [threading.Thread(target=lambda: taken.extend(table.take(request) for _i in range(20)))
               for _t in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sum(1 for t in taken if t is not None) == 50


@pytest.mark.parametrize("rule, message", [
    ({"action": "GetChange"}, "needs an effect"),
    ({"error": "Throttling", "drop": True}, "one effect, not error and drop"),
    ({"drop": True, "count": 0}, "count 0 must be a positive integer"),
    ({"drop": True, "actoin": "GetChange"}, "Unknown fault rule keys ['actoin']"),
    ({"error": {"status": 400}}, "must be an error code"),
    ([], "is a JSON object"),
])
def test_a_malformed_rule_is_refused_in_one_sentence(rule, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        faults.parse_rule(rule, 1)


# --- against the lab's moto app ---------------------------------------------------------------------

def test_botocore_reads_an_injected_throttle_as_ec2s_own_and_its_retry_mode_retries_it(url):
    rule = faults.inject(url, {"action": "DescribeVpcs", "error": "RequestLimitExceeded", "count": 2})
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        client(url, "ec2").describe_vpcs()
    assert refused.value.response["Error"]["Code"] == "RequestLimitExceeded"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    # One throttle left: standard mode's second attempt meets it, its third reaches moto.
    assert "Vpcs" in client(url, "ec2", attempts=3).describe_vpcs()
    assert hits(url) == {rule["id"]: 2}
    assert client(url, "ec2").describe_vpcs()["Vpcs"]


def test_an_error_matches_only_the_named_route_table(url):
    ec2 = client(url, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.77.0.0/16")["Vpc"]["VpcId"]
    tables = [ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"] for _i in range(2)]
    faults.inject(url, {"action": "CreateRoute", "params": {"RouteTableId": tables[1]},
                        "error": {"code": "ServiceUnavailable", "message": "try later"}})
    for rtb in tables:
        try:
            ec2.create_route(RouteTableId=rtb, DestinationCidrBlock="192.168.77.10/32", GatewayId="local")
        except botocore.exceptions.ClientError as exc:
            assert rtb == tables[1]
            assert (exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"]) == \
                ("ServiceUnavailable", 503)
            assert exc.response["Error"]["Message"] == "try later"
    routes = {t["RouteTableId"]: [r["DestinationCidrBlock"] for r in t["Routes"]]
              for t in ec2.describe_route_tables(RouteTableIds=tables)["RouteTables"]}
    assert "192.168.77.10/32" in routes[tables[0]] and "192.168.77.10/32" not in routes[tables[1]]


def test_route53_errors_parse_and_getchange_can_read_pending(url):
    r53 = client(url, "route53")
    zone = r53.create_hosted_zone(Name="faults.internal.", CallerReference="faults")["HostedZone"]["Id"]
    faults.inject(url, {"action": "ListResourceRecordSets", "error": "Throttling", "count": 1})
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        r53.list_resource_record_sets(HostedZoneId=zone)
    assert refused.value.response["Error"]["Code"] == "Throttling"
    faults.inject(url, {"action": "ChangeResourceRecordSets", "rewrite": {"INSYNC": "PENDING"}})
    faults.inject(url, {"action": "GetChange", "rewrite": {"INSYNC": "PENDING"}})
    change = r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [{
        "Action": "UPSERT", "ResourceRecordSet": {"Name": "db.faults.internal.", "Type": "A", "TTL": 60,
                                                  "ResourceRecords": [{"Value": "10.0.0.1"}]}}]})["ChangeInfo"]
    assert change["Status"] == "PENDING"
    assert r53.get_change(Id=change["Id"])["ChangeInfo"]["Status"] == "PENDING"
    faults.clear(url)
    assert r53.get_change(Id=change["Id"])["ChangeInfo"]["Status"] == "INSYNC"


def test_a_dropped_call_is_a_cut_connection_and_a_delay_past_the_read_timeout_a_timeout(url):
    faults.inject(url, {"service": "ec2", "drop": True, "count": 1})
    with pytest.raises(botocore.exceptions.ConnectionClosedError):
        client(url, "ec2").describe_vpcs()
    faults.inject(url, {"action": "DescribeVpcs", "delay": 2, "count": 1})
    with pytest.raises(botocore.exceptions.ReadTimeoutError):
        client(url, "ec2", read_timeout=0.5).describe_vpcs()
    assert client(url, "ec2").describe_vpcs()["Vpcs"]


def test_two_fronts_given_one_table_share_its_rules(url, table):
    second = control.start_moto("127.0.0.1", 0, fault_table=table)
    try:
        rule = faults.inject(url, {"action": "DescribeVpcs", "error": "RequestLimitExceeded", "count": 1})
        other = f"http://127.0.0.1:{second.server_address[1]}"
        with pytest.raises(botocore.exceptions.ClientError, match="RequestLimitExceeded"):
            client(other, "ec2").describe_vpcs()
        assert hits(url) == {rule["id"]: 1}
    finally:
        control.stop_server(second)


def test_the_control_plane_refuses_a_bad_rule_and_removes_one_by_id(url):
    with pytest.raises(ValueError, match="answered 400: A fault rule needs an effect"):
        faults.inject(url, {"action": "GetChange"})
    first = faults.inject(url, {"action": "DescribeVpcs", "drop": True})
    second = faults.inject(url, {"action": "DescribeSubnets", "drop": True})
    faults.remove(url, first["id"])
    assert [r["id"] for r in faults.rules(url)] == [second["id"]]
    assert client(url, "ec2").describe_vpcs()["Vpcs"]
    assert faults.clear(url) == 1 and faults.rules(url) == []
