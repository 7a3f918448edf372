# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The contract every scenario core keeps (vip_route, elastic_ip, dns_record), one test each over
the three: a denied write is one sentence naming the action; a throttled read is "unknown", then
the next read succeeds; check mode plans the write and makes none. Botocore Stubber, no network."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import pytest
from ec2ha_testkit import stubs
from ec2ha_testkit.calls import operations, writes

from ansible_collections.ec2ha.cluster.plugins.module_utils import dns_record, elastic_ip, vip_route
from ansible_collections.ec2ha.cluster.plugins.module_utils.aws import AwsCallError, AwsSession

VPC, RTB = "vpc-00000001", "rtb-0000000000000000a"
NODE1, NODE2 = "i-00000000000000001", "i-00000000000000002"
ENI1, ENI2 = "eni-00000000000000001", "eni-00000000000000002"
IP1, IP2 = "10.0.1.10", "10.0.2.10"
VIP, EIP, ALLOC = "192.168.10.10", "198.51.100.10", "eipalloc-0123456789abcdef0"
ZONE = dns_record.Zone("Z0123456789ABC", "example.internal.", True)
NAME = "db.example.internal."


@dataclasses.dataclass
class Core:
    """One core, as the contract sees it: its target on node2, the reads that show the endpoint on
    node1 (``wrong``) or on node2 (``right``), and the one write that moves it."""

    name: str
    service: str
    target: Any
    wrong: Callable[[Any], None]
    right: Callable[[Any], None]
    read: str               # the first read of a converge or monitor
    write: str
    action: str             # service:Action, as IAM names it
    resource: str
    module: Any

    def converge(self, aws: AwsSession, check_mode: bool = False) -> Any:
        return self.module.converge(aws, self.target, check_mode)

    def monitor(self, aws: AwsSession) -> Any:
        return self.module.monitor(aws, self.target)


def routes_on(eni: str) -> Callable[[Any], None]:
    def queue(stub: Any) -> None:
        stub.add_response("describe_route_tables", {"RouteTables": [stubs.route_table(RTB, VPC, f"{VIP}/32", eni)]})
        stub.add_response("describe_network_interfaces", {"NetworkInterfaces": [
            stubs.interface(ENI2, NODE2, False), stubs.interface(ENI1, NODE1, False)]})
    return queue


def address_on(eni: str, ip: str, node: str) -> Callable[[Any], None]:
    return lambda stub: stub.add_response("describe_addresses", {"Addresses": [stubs.address(EIP, ALLOC, eni, ip, node)]})


def record_of(ip: str) -> Callable[[Any], None]:
    return lambda stub: stub.add_response("list_resource_record_sets",
                                          stubs.record_sets([stubs.a_record(NAME, [ip])]))


CORES = [
    Core("vip_route", "ec2", vip_route.Target(VIP, VPC, ENI2, NODE2, f"{NODE2} (pg2)", [RTB]),
         routes_on(ENI1), routes_on(ENI2), "describe_route_tables", "replace_route", "ec2:ReplaceRoute", RTB,
         vip_route),
    Core("elastic_ip", "ec2", elastic_ip.EipTarget(EIP, ALLOC, ENI2, IP2, NODE2, "pg2", f"{NODE2} (pg2)"),
         address_on(ENI1, IP1, NODE1), address_on(ENI2, IP2, NODE2), "describe_addresses", "associate_address",
         "ec2:AssociateAddress", EIP, elastic_ip),
    Core("dns_record", "route53", dns_record.DnsTarget(ZONE, NAME, 60, IP2), record_of(IP1), record_of(IP2),
         "list_resource_record_sets", "change_resource_record_sets", "route53:ChangeResourceRecordSets",
         f"{NAME} in {ZONE.zone_id}", dns_record),
]


@pytest.fixture(params=CORES, ids=[c.name for c in CORES])
def core(request: Any) -> Core:
    return request.param


def test_a_denied_write_is_one_sentence_naming_the_action(stubbed, core):
    stub = stubbed.stub(core.service)
    core.wrong(stub)
    stub.add_client_error(core.write, service_error_code="AccessDenied", http_status_code=403,
                          service_message=f"User is not authorized to perform {core.action}")

    with pytest.raises(AwsCallError) as failed:
        core.converge(stubbed.aws)

    assert str(failed.value) == (f"{core.action} on {core.resource} was denied (AccessDenied): "
                                 f"the credentials lack permission for {core.action}.")
    assert not failed.value.transient
    stubbed.assert_all_used()


def test_a_throttled_read_is_unknown_then_the_next_succeeds(stubbed, core):
    stub = stubbed.stub(core.service)
    stub.add_client_error(core.read, service_error_code="Throttling", http_status_code=400,
                          service_message="Rate exceeded")
    core.right(stub)

    first = core.monitor(stubbed.aws)
    second = core.monitor(stubbed.aws)

    assert first.status == "unknown" and "Throttling" in first.details[0]
    assert second.status == "ok" and second.details == []
    assert writes(stubbed.aws) == []
    stubbed.assert_all_used()


def test_check_mode_plans_the_write_and_makes_none(stubbed, core):
    stub = stubbed.stub(core.service)
    core.wrong(stub)           # no write queued: a real write would fail in the Stubber

    result = core.converge(stubbed.aws, check_mode=True)

    stubbed.assert_all_used()
    assert result.changed
    assert writes(stubbed.aws) == []
    assert operations(stubbed.aws, planned=True) == [core.write]
    assert [c.resource for c in stubbed.aws.calls if c.planned] == [core.resource]
