# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Route-table core against botocore's Stubber: what moto cannot show (throttling, RouteAlreadyExists,
AccessDenied, a failure between two writes, blackhole routes)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import pytest

from ec2ha_testkit.calls import operations, writes
from ec2ha_testkit.wire import EC2_NS, THROTTLED, Answers, answered_session
from ansible_collections.ec2ha.cluster.plugins.module_utils import vip_route
from ansible_collections.ec2ha.cluster.plugins.module_utils.aws import (
    AwsCallError,
    AwsSession,
    ConnectionSettings,
    InputError,
    VerifyError,
)

VPC = "vpc-0a1b2c3d4e5f60718"
OTHER_VPC = "vpc-0f0f0f0f0f0f0f0f0"
VIP = "192.168.50.10"
DEST = VIP + "/32"
NODE1, ENI1 = "i-0000000000000000a", "eni-0000000000000000a"
NODE2, ENI2 = "i-0000000000000000b", "eni-0000000000000000b"
GONE_ENI = "eni-0000000000000000f"
RTBS = ["rtb-00000000000000001", "rtb-00000000000000002", "rtb-00000000000000003"]
WRITES = ("replace_route", "create_route", "modify_network_interface_attribute")


# --- response builders ---------------------------------------------------------------------------

def instance(instance_id: str, enis: List[str], state: str = "running") -> Dict[str, Any]:
    return {"InstanceId": instance_id, "State": {"Name": state}, "VpcId": VPC, "SubnetId": "subnet-00000001",
            "PrivateIpAddress": "10.0.1.4", "Tags": [{"Key": "Name", "Value": f"node-{instance_id[-1]}"}],
            "NetworkInterfaces": [{"NetworkInterfaceId": eni, "Attachment": {"DeviceIndex": index},
                                   "PrivateIpAddress": f"10.0.1.{4 + index}", "SubnetId": "subnet-00000001",
                                   "SourceDestCheck": True} for index, eni in enumerate(enis)]}


def route(eni: Optional[str], state: str = "active") -> Dict[str, Any]:
    return {"DestinationCidrBlock": DEST, "NetworkInterfaceId": eni, "State": state, "Origin": "CreateRoute"}


def table(rtb: str, vip_route: Optional[Dict[str, Any]], vpc: str = VPC) -> Dict[str, Any]:
    routes = [{"DestinationCidrBlock": "10.0.0.0/16", "GatewayId": "local", "State": "active"}]
    return {"RouteTableId": rtb, "VpcId": vpc, "Routes": routes + ([vip_route] if vip_route else [])}


def eni(eni_id: str, instance_id: str, check: bool) -> Dict[str, Any]:
    return {"NetworkInterfaceId": eni_id, "SourceDestCheck": check, "VpcId": VPC,
            "Attachment": {"InstanceId": instance_id, "DeviceIndex": 0}}


def target(create: bool = False, tables: Optional[List[str]] = None) -> vip_route.Target:
    return vip_route.Target(vip=VIP, vpc_id=VPC, eni_id=ENI2, instance_id=NODE2, node_label=f"{NODE2} (node-b)",
                            route_table_ids=list(tables or RTBS), create=create)


def queue_read(stub: Any, tables: List[Dict[str, Any]], enis: List[Dict[str, Any]]) -> None:
    stub.add_response("describe_route_tables", {"RouteTables": tables})
    stub.add_response("describe_network_interfaces", {"NetworkInterfaces": enis})


def queue_write(stub: Any, operation: str, rtb: str) -> None:
    params = {"RouteTableId": rtb, "DestinationCidrBlock": DEST, "NetworkInterfaceId": ENI2}
    stub.add_response(operation, {"Return": True} if operation == "create_route" else {}, params)


def on_target(rtbs: Optional[List[str]] = None) -> List[Dict[str, Any]]:
    return [table(rtb, route(ENI2)) for rtb in rtbs or RTBS]


# --- plan / converge ------------------------------------------------------------------------------

def test_converge_moves_every_table_and_turns_srcdst_off(stubbed):
    ec2 = stubbed.stub("ec2")
    queue_read(ec2, [table(rtb, route(ENI1)) for rtb in RTBS], [eni(ENI1, NODE1, False), eni(ENI2, NODE2, True)])
    ec2.add_response("modify_network_interface_attribute", {},
                     {"NetworkInterfaceId": ENI2, "SourceDestCheck": {"Value": False}})
    for rtb in RTBS:
        queue_write(ec2, "replace_route", rtb)
    queue_read(ec2, on_target(), [eni(ENI2, NODE2, False)])

    result = vip_route.converge(stubbed.aws, target())

    stubbed.assert_all_used()
    assert result.changed
    assert result.status.status == "ok"
    assert writes(stubbed.aws) == ["modify_network_interface_attribute"] + ["replace_route"] * 3
    assert result.before.routes[RTBS[0]].instance_id == NODE1  # from the ENI: no InstanceId on the route
    assert {r.network_interface_id for r in result.after.routes.values()} == {ENI2}


def test_check_mode_makes_no_write_call(stubbed):
    ec2 = stubbed.stub("ec2")
    # Only reads are queued: any write would reach Stubber with nothing queued and fail the test.
    queue_read(ec2, [table(rtb, route(ENI1)) for rtb in RTBS], [eni(ENI1, NODE1, False), eni(ENI2, NODE2, True)])

    result = vip_route.converge(stubbed.aws, target(), check_mode=True)

    stubbed.assert_all_used()
    assert result.changed
    assert writes(stubbed.aws) == []
    assert operations(stubbed.aws, planned=True) == ["modify_network_interface_attribute"] + ["replace_route"] * 3
    assert result.status.status == "wrong"  # the state as read, not as predicted
    assert result.after.routes[RTBS[2]].network_interface_id == ENI2
    assert result.after.source_dest_check[ENI2] is False


def test_already_converged_writes_nothing(stubbed):
    queue_read(stubbed.stub("ec2"), on_target(), [eni(ENI2, NODE2, False)])
    result = vip_route.converge(stubbed.aws, target())
    assert not result.changed and result.status.ok and writes(stubbed.aws) == []


def test_partial_state_with_a_blackhole_converges_in_one_run(stubbed):
    ec2 = stubbed.stub("ec2")
    tables = [table(RTBS[0], route(ENI2)), table(RTBS[1], route(ENI1)), table(RTBS[2], route(ENI2, "blackhole"))]
    queue_read(ec2, tables, [eni(ENI1, NODE1, True), eni(ENI2, NODE2, False)])
    queue_write(ec2, "replace_route", RTBS[1])
    queue_write(ec2, "replace_route", RTBS[2])
    queue_read(ec2, on_target(), [eni(ENI2, NODE2, False)])

    result = vip_route.converge(stubbed.aws, target())

    stubbed.assert_all_used()
    assert [(c.operation, c.resource) for c in stubbed.aws.calls if c.operation in WRITES] == [
        ("replace_route", RTBS[1]), ("replace_route", RTBS[2])]
    assert result.before.routes[RTBS[2]].state == "blackhole"
    assert result.status.ok


def test_route_to_a_deleted_eni_reads_as_blackhole(stubbed):
    # moto keeps "active" for a route whose ENI is gone; AWS says blackhole. Both must read as blackhole.
    queue_read(stubbed.stub("ec2"), [table(RTBS[0], route(GONE_ENI))], [eni(ENI2, NODE2, False)])
    report = vip_route.read_routes(stubbed.aws, VIP, RTBS[:1], [ENI2])
    assert report.routes[RTBS[0]].state == "blackhole"
    assert vip_route.classify(report, target(tables=RTBS[:1])).status == "wrong"


def test_route_already_exists_on_create_is_replaced(stubbed):
    ec2 = stubbed.stub("ec2")
    queue_read(ec2, [table(RTBS[0], None)], [eni(ENI2, NODE2, False)])
    ec2.add_client_error("create_route", service_error_code="RouteAlreadyExists", http_status_code=400,
                         service_message="The route identified by 192.168.50.10/32 already exists.")
    # Another writer created it meanwhile, pointing to node1: re-read, then replace.
    queue_read(ec2, [table(RTBS[0], route(ENI1))], [eni(ENI1, NODE1, True), eni(ENI2, NODE2, False)])
    queue_write(ec2, "replace_route", RTBS[0])
    queue_read(ec2, on_target(RTBS[:1]), [eni(ENI2, NODE2, False)])

    result = vip_route.converge(stubbed.aws, target(create=True, tables=RTBS[:1]))

    stubbed.assert_all_used()
    assert writes(stubbed.aws) == ["create_route", "replace_route"]
    assert result.status.ok


def test_route_already_exists_and_right_is_left_alone(stubbed):
    ec2 = stubbed.stub("ec2")
    queue_read(ec2, [table(RTBS[0], None)], [eni(ENI2, NODE2, False)])
    ec2.add_client_error("create_route", service_error_code="RouteAlreadyExists", http_status_code=400)
    queue_read(ec2, on_target(RTBS[:1]), [eni(ENI2, NODE2, False)])
    queue_read(ec2, on_target(RTBS[:1]), [eni(ENI2, NODE2, False)])

    result = vip_route.converge(stubbed.aws, target(create=True, tables=RTBS[:1]))

    stubbed.assert_all_used()
    assert writes(stubbed.aws) == ["create_route"]
    assert result.changed and result.status.ok


def test_missing_route_without_create_fails_before_any_write(stubbed):
    queue_read(stubbed.stub("ec2"), [table(RTBS[0], route(ENI1)), table(RTBS[1], None)],
               [eni(ENI1, NODE1, False), eni(ENI2, NODE2, True)])
    with pytest.raises(InputError, match=f"Route table {RTBS[1]} has no route for {DEST}: set create=true"):
        vip_route.converge(stubbed.aws, target(tables=RTBS[:2]))
    assert writes(stubbed.aws) == []


def test_failure_midway_raises_and_the_next_converge_finishes(stubbed):
    ec2 = stubbed.stub("ec2")
    queue_read(ec2, [table(rtb, route(ENI1)) for rtb in RTBS], [eni(ENI1, NODE1, False), eni(ENI2, NODE2, False)])
    queue_write(ec2, "replace_route", RTBS[0])
    ec2.add_client_error("replace_route", service_error_code="InternalError", http_status_code=500)

    with pytest.raises(AwsCallError) as failed:
        vip_route.converge(stubbed.aws, target())
    assert failed.value.operation == "replace_route" and RTBS[1] in str(failed.value)
    assert [c.resource for c in stubbed.aws.calls if c.operation == "replace_route"] == RTBS[:2]  # 3rd untouched
    stubbed.assert_all_used()

    # The next run reads a partial state and writes only what is left.
    stubbed.aws.calls.clear()
    queue_read(ec2, [table(RTBS[0], route(ENI2))] + [table(rtb, route(ENI1)) for rtb in RTBS[1:]],
               [eni(ENI1, NODE1, False), eni(ENI2, NODE2, False)])
    queue_write(ec2, "replace_route", RTBS[1])
    queue_write(ec2, "replace_route", RTBS[2])
    queue_read(ec2, on_target(), [eni(ENI2, NODE2, False)])

    result = vip_route.converge(stubbed.aws, target())

    stubbed.assert_all_used()
    assert [c.resource for c in stubbed.aws.calls if c.operation == "replace_route"] == RTBS[1:]
    assert result.status.ok


def test_access_denied_is_one_sentence_naming_the_permission(stubbed):
    ec2 = stubbed.stub("ec2")
    queue_read(ec2, [table(RTBS[0], route(ENI1))], [eni(ENI1, NODE1, False), eni(ENI2, NODE2, False)])
    ec2.add_client_error("replace_route", service_error_code="UnauthorizedOperation", http_status_code=403,
                         service_message="You are not authorized to perform this operation.")

    with pytest.raises(AwsCallError) as failed:
        vip_route.converge(stubbed.aws, target(tables=RTBS[:1]))

    message = str(failed.value)
    assert message == (f"ec2:ReplaceRoute on {RTBS[0]} was denied (UnauthorizedOperation): "
                       "the credentials lack permission for ec2:ReplaceRoute.")
    assert "\n" not in message and not failed.value.transient


def test_verify_fails_when_the_reread_differs(stubbed):
    ec2 = stubbed.stub("ec2")
    queue_read(ec2, [table(RTBS[0], route(ENI1))], [eni(ENI1, NODE1, False), eni(ENI2, NODE2, False)])
    queue_write(ec2, "replace_route", RTBS[0])
    queue_read(ec2, [table(RTBS[0], route(ENI1))], [eni(ENI1, NODE1, False), eni(ENI2, NODE2, False)])

    with pytest.raises(VerifyError, match=f"After the writes, {RTBS[0]} has an active route to {ENI1}"):
        vip_route.converge(stubbed.aws, target(tables=RTBS[:1]), verify_timeout=0)


def test_verify_polls_until_the_state_shows():
    reads = iter([[table(RTBS[0], route(ENI1))], on_target(RTBS[:1])])
    sleeps: List[float] = []
    clock = iter(range(100))

    class FakeAws(AwsSession):
        def paginate(self, service, operation, key, resource="", **params):
            if operation == "describe_route_tables":
                return next(reads)
            return [eni(ENI2, NODE2, False)]

    aws = FakeAws(ConnectionSettings(region="us-east-1"))
    report = vip_route.verify(aws, target(tables=RTBS[:1]), timeout=5, clock=lambda: next(clock),
                              sleep=sleeps.append)
    assert report.routes[RTBS[0]].network_interface_id == ENI2
    assert sleeps == [0.25]


# --- throttling: "unknown" for a monitor, botocore's retries for a one-off blip --------------------

def test_throttled_monitor_is_unknown_then_ok(stubbed):
    ec2 = stubbed.stub("ec2")
    ec2.add_client_error("describe_route_tables", service_error_code="RequestLimitExceeded", http_status_code=503,
                         service_message="Request limit exceeded.")
    queue_read(ec2, on_target(), [eni(ENI2, NODE2, False)])

    first = vip_route.monitor(stubbed.aws, target())
    second = vip_route.monitor(stubbed.aws, target())

    stubbed.assert_all_used()
    assert first.status == "unknown" and "RequestLimitExceeded" in first.details[0]
    assert second.status == "ok"


def test_throttled_converge_raises_a_transient_error(stubbed):
    stubbed.stub("ec2").add_client_error("describe_route_tables", service_error_code="Throttling",
                                         http_status_code=400)
    with pytest.raises(AwsCallError) as failed:
        vip_route.converge(stubbed.aws, target())
    assert failed.value.transient
    assert writes(stubbed.aws) == []


def test_monitor_reports_wrong_with_details(stubbed):
    queue_read(stubbed.stub("ec2"), [table(RTBS[0], route(ENI1)), table(RTBS[1], route(ENI2)), table(RTBS[2], None)],
               [eni(ENI1, NODE1, False), eni(ENI2, NODE2, True)])
    status = vip_route.monitor(stubbed.aws, target())
    assert status.status == "wrong"
    assert [d.split(" ")[0] for d in status.details] == [RTBS[0], RTBS[2], ENI2]
    assert f"an active route to {ENI1} ({NODE1})" in status.details[0]
    assert "no route" in status.details[1]


TABLES_XML = (f"<DescribeRouteTablesResponse {EC2_NS}><requestId>r2</requestId><routeTableSet><item>"
              f"<routeTableId>{RTBS[0]}</routeTableId><vpcId>{VPC}</vpcId><routeSet><item>"
              f"<destinationCidrBlock>{DEST}</destinationCidrBlock><networkInterfaceId>{ENI2}</networkInterfaceId>"
              "<state>active</state><origin>CreateRoute</origin></item></routeSet></item></routeTableSet>"
              "</DescribeRouteTablesResponse>").encode()
ENIS_XML = (f"<DescribeNetworkInterfacesResponse {EC2_NS}><requestId>r3</requestId><networkInterfaceSet><item>"
            f"<networkInterfaceId>{ENI2}</networkInterfaceId><sourceDestCheck>false</sourceDestCheck>"
            f"<attachment><instanceId>{NODE2}</instanceId><deviceIndex>0</deviceIndex></attachment></item>"
            "</networkInterfaceSet></DescribeNetworkInterfacesResponse>").encode()


def test_one_throttle_is_retried_by_botocore_and_the_monitor_sees_ok(monkeypatch):
    """Stubber bypasses botocore's retries, so answer at the HTTP layer (before-send) instead: the session's
    own retry config (standard mode) must retry the throttled request and the core must see success."""
    answers = Answers([(400, THROTTLED), (200, TABLES_XML), (200, ENIS_XML)])
    delays: List[float] = []
    monkeypatch.setattr("botocore.endpoint.time.sleep", delays.append)  # no real backoff wait in a unit test
    aws = answered_session(answers)

    status = vip_route.monitor(aws, target(tables=RTBS[:1]))

    assert status.status == "ok"
    assert len(answers.sent) == 3 and answers.answers == []   # the throttled request was sent again
    assert len(delays) == 1 and delays[0] >= 0          # after one backoff
    assert operations(aws) == ["describe_route_tables", "describe_network_interfaces"]


# --- input validation (resolve_target) ------------------------------------------------------------

def queue_node(stub: Any, inst: Dict[str, Any]) -> None:
    stub.add_response("describe_instances", {"Reservations": [{"Instances": [inst]}]})


def queue_vpc(stub: Any, cidrs: List[str]) -> None:
    stub.add_response("describe_vpcs", {"Vpcs": [{"VpcId": VPC, "CidrBlock": cidrs[0], "CidrBlockAssociationSet": [
        {"CidrBlock": c, "CidrBlockState": {"State": "associated"}} for c in cidrs]}]})


@pytest.mark.parametrize("vip", ["192.168.50", "not-an-ip", "fd00::1", "192.168.50.0/24", ""])
def test_bad_vip_is_refused_before_any_call(stubbed, vip):
    with pytest.raises(InputError, match=r"^vip '.*' is not an IPv4 address: expected a single address"):
        vip_route.resolve_target(stubbed.aws, vip, NODE2)
    assert stubbed.aws.calls == []


def test_vip_inside_a_secondary_cidr_is_refused(stubbed):
    ec2 = stubbed.stub("ec2")
    queue_node(ec2, instance(NODE2, [ENI2]))
    queue_vpc(ec2, ["10.0.0.0/16", "192.168.0.0/16"])
    with pytest.raises(InputError, match=f"^vip {VIP} is inside 192.168.0.0/16 of {VPC}"):
        vip_route.resolve_target(stubbed.aws, VIP, NODE2)
    assert writes(stubbed.aws) == []


def test_route_tables_of_another_vpc_or_unknown_are_refused(stubbed):
    ec2 = stubbed.stub("ec2")
    # Stubber answers in order: one node, VPC and route-table read per resolve_target.
    for found in ([table(RTBS[0], route(ENI1)), table(RTBS[1], None, OTHER_VPC)], [table(RTBS[0], route(ENI1))]):
        queue_node(ec2, instance(NODE2, [ENI2]))
        queue_vpc(ec2, ["10.0.0.0/16"])
        ec2.add_response("describe_route_tables", {"RouteTables": found})
    with pytest.raises(InputError, match=f"^Route table {RTBS[1]} belongs to {OTHER_VPC}, not to the node's {VPC}"):
        vip_route.resolve_target(stubbed.aws, VIP, NODE2, RTBS[:2])
    with pytest.raises(InputError, match=f"^Route table '{RTBS[2]}' does not exist"):
        vip_route.resolve_target(stubbed.aws, VIP, NODE2, [RTBS[0], RTBS[2]])
    stubbed.assert_all_used()


@pytest.mark.parametrize("tables, message", [
    ([], "^route_tables is empty"),
    (["subnet-0123456789"], "^Route table 'subnet-0123456789' is not a route table id"),
])
def test_malformed_route_tables_are_refused_before_any_call(stubbed, tables, message):
    with pytest.raises(InputError, match=message):
        vip_route.resolve_target(stubbed.aws, VIP, NODE2, tables)
    assert stubbed.aws.calls == []


def test_omitted_route_tables_are_those_with_the_route(stubbed):
    ec2 = stubbed.stub("ec2")
    queue_node(ec2, instance(NODE2, [ENI2]))
    queue_vpc(ec2, ["10.0.0.0/16"])
    ec2.add_response("describe_route_tables", {"RouteTables": [table(RTBS[2], route(ENI1)), table(RTBS[0], None),
                                                               table(RTBS[1], route(ENI1, "blackhole"))]})
    found = vip_route.resolve_target(stubbed.aws, VIP + "/32", "node-b")[0]
    assert found.route_table_ids == [RTBS[1], RTBS[2]]
    assert (found.vip, found.eni_id, found.instance_id) == (VIP, ENI2, NODE2)


def test_omitted_route_tables_and_no_route_anywhere_is_refused(stubbed):
    ec2 = stubbed.stub("ec2")
    queue_node(ec2, instance(NODE2, [ENI2]))
    queue_vpc(ec2, ["10.0.0.0/16"])
    ec2.add_response("describe_route_tables", {"RouteTables": [table(RTBS[0], None)]})
    with pytest.raises(InputError, match=f"^No route table of {VPC} has a route for {DEST}: list route_tables "
                                         "and set create=true"):
        vip_route.resolve_target(stubbed.aws, VIP, NODE2)


def test_node_with_several_enis_needs_an_interface(stubbed):
    ec2 = stubbed.stub("ec2")
    for _attempt in range(2):
        queue_node(ec2, instance(NODE2, [ENI2, GONE_ENI]))
    with pytest.raises(InputError, match="has 2 network interfaces .*: set interface"):
        vip_route.resolve_target(stubbed.aws, VIP, NODE2)
    queue_vpc(ec2, ["10.0.0.0/16"])
    ec2.add_response("describe_route_tables", {"RouteTables": [table(RTBS[0], route(ENI1))]})
    found = vip_route.resolve_target(stubbed.aws, VIP, NODE2, interface="1")[0]
    assert found.eni_id == GONE_ENI


def test_stopped_node_is_refused(stubbed):
    queue_node(stubbed.stub("ec2"), instance(NODE2, [ENI2], state="stopped"))
    with pytest.raises(InputError, match="is stopped, not running"):
        vip_route.resolve_target(stubbed.aws, VIP, NODE2)
