# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The node policy: exact actions and resources per scenario set, then the proof on a moto server
that enforces IAM: every call the agents and fence_aws make on failover passes with the policy,
and calls outside it are denied."""

from __future__ import annotations

import itertools
import json
import urllib.request
import uuid
from typing import Any, Dict, Iterator, List

import boto3
import botocore.exceptions
import pytest
from moto.iam.access_control import IAMPolicy, PermissionResult

from ansible_collections.ec2ha.cluster.plugins.module_utils import (
    cluster_pair,
    dns_record,
    elastic_ip,
    iam_policy,
    vip_route,
)
from ansible_collections.ec2ha.cluster.plugins.module_utils.aws import (
    DENIED_CODES,
    AwsCallError,
    AwsSession,
    ConnectionSettings,
    api_name,
)

from ec2ha_testkit import moto_server
from ec2ha_testkit import world as world_builder

REGION, ACCOUNT = "eu-west-1", "123456789012"
EC2 = f"arn:aws:ec2:{REGION}:{ACCOUNT}"
RTBS = ["rtb-0000000000000000b", "rtb-0000000000000000a"]
ALLOC, ZONE = "eipalloc-0123456789abcdef0", "Z0123456789ABC"
RECORD = "db.example.internal"
TAGGED = {"StringEquals": {"ec2:ResourceTag/ec2ha:cluster": "pg"}}

FENCING = ["ec2:DescribeInstances", "ec2:StartInstances", "ec2:StopInstances"]
PER_SCENARIO = {
    "vip_route": ["ec2:CreateRoute", "ec2:DescribeNetworkInterfaces", "ec2:DescribeRouteTables",
                  "ec2:DescribeVpcs", "ec2:ModifyNetworkInterfaceAttribute", "ec2:ReplaceRoute"],
    "elastic_ip": ["ec2:AssociateAddress", "ec2:DescribeAddresses"],
    "dns_record": ["route53:ChangeResourceRecordSets", "route53:GetChange", "route53:GetHostedZone",
                   "route53:ListHostedZonesByName", "route53:ListResourceRecordSets"],
}


def policy_for(scenarios: Any) -> Dict[str, Any]:
    return iam_policy.node_policy("pg", REGION, ACCOUNT, scenarios, RTBS if "vip_route" in scenarios else (),
                                  ALLOC if "elastic_ip" in scenarios else None,
                                  ZONE if "dns_record" in scenarios else None,
                                  RECORD if "dns_record" in scenarios else None)


def statements(policy: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    return {s["Sid"]: s for s in policy["Statement"]}


# --- generation ----------------------------------------------------------------------------------

@pytest.mark.parametrize("scenarios", [c for n in range(4) for c in itertools.combinations(iam_policy.SCENARIOS, n)])
def test_each_scenario_set_gets_exactly_its_actions_plus_fencing(scenarios):
    wanted = set(FENCING)
    for scenario in scenarios:
        wanted.update(PER_SCENARIO[scenario])
    policy = policy_for(scenarios)
    assert iam_policy.actions_of(policy) == sorted(wanted)
    assert all(s["Effect"] == "Allow" for s in policy["Statement"])
    # Never the extras a looser guide would add.
    assert not {"ec2:RebootInstances", "ec2:DeleteRoute", "ec2:TerminateInstances", "ec2:*"} & set(
        iam_policy.actions_of(policy))


def test_fencing_only_writes_on_instances_tagged_with_the_cluster():
    s = statements(policy_for(()))
    assert set(s) == {"Describe", "FenceClusterNodes"}
    assert s["Describe"] == {"Sid": "Describe", "Effect": "Allow", "Action": ["ec2:DescribeInstances"], "Resource": "*"}
    assert s["FenceClusterNodes"]["Resource"] == f"{EC2}:instance/*"
    assert s["FenceClusterNodes"]["Condition"] == TAGGED


def test_every_write_is_scoped_to_the_scenario_resources():
    s = statements(policy_for(iam_policy.SCENARIOS))
    # The monitor re-creates a route deleted by hand: CreateRoute, on exactly the same tables as ReplaceRoute.
    assert s["MoveVipRoute"]["Action"] == ["ec2:CreateRoute", "ec2:ReplaceRoute"]
    assert s["MoveVipRoute"]["Resource"] == [f"{EC2}:route-table/{r}" for r in sorted(RTBS)]
    assert s["SourceDestCheckOff"]["Resource"] == f"{EC2}:network-interface/*"
    assert s["SourceDestCheckOff"]["Condition"] == TAGGED
    assert s["MoveElasticIp"]["Resource"] == f"{EC2}:elastic-ip/{ALLOC}"
    assert s["MoveElasticIpToNode"]["Condition"] == TAGGED
    assert s["MoveRecord"]["Resource"] == s["UpsertRecord"]["Resource"] == f"arn:aws:route53:::hostedzone/{ZONE}"
    assert s["UpsertRecord"]["Condition"]["ForAllValues:StringEquals"] == {
        "route53:ChangeResourceRecordSetsActions": ["UPSERT"], "route53:ChangeResourceRecordSetsRecordTypes": ["A"],
        "route53:ChangeResourceRecordSetsNormalizedRecordNames": [RECORD]}
    # Only actions AWS cannot scope stay on "*".
    unscoped = {a for st in s.values() if st["Resource"] == "*" for a in st["Action"]}
    assert unscoped == {"ec2:DescribeInstances", "ec2:DescribeRouteTables", "ec2:DescribeNetworkInterfaces",
                        "ec2:DescribeVpcs", "ec2:DescribeAddresses", "route53:ListHostedZonesByName"}


@pytest.mark.parametrize("fqdn, wanted", [
    ("DB.Example.Internal.", "db.example.internal"),       # lower case, no trailing dot
    ("db.example.internal", "db.example.internal"),
    ("*.example.internal.", "\\052.example.internal"),      # what is not a-z 0-9 - _ . as \ddd (octal)
    ("pg_1.example.internal.", "pg_1.example.internal"),
])
def test_record_names_are_normalized_as_route53_matches_them(fqdn, wanted):
    assert iam_policy.normalized_record_name(fqdn) == wanted


def test_the_upsert_is_scoped_to_the_one_record_name():
    policy = iam_policy.node_policy("pg", REGION, ACCOUNT, ["dns_record"], hosted_zone_id=ZONE,
                                    record_name="Primary.DB.internal.")
    condition = statements(policy)["UpsertRecord"]["Condition"]
    # ForAllValues: every name in the change batch must be this one (a batch naming another record is denied).
    assert condition == {"ForAllValues:StringEquals": {
        "route53:ChangeResourceRecordSetsActions": ["UPSERT"], "route53:ChangeResourceRecordSetsRecordTypes": ["A"],
        "route53:ChangeResourceRecordSetsNormalizedRecordNames": ["primary.db.internal"]}}


def test_partition_follows_the_region():
    policy = iam_policy.node_policy("pg", "cn-north-1", ACCOUNT, ["dns_record"], hosted_zone_id=ZONE,
                                    record_name=RECORD)
    resources = json.dumps(policy)
    assert "arn:aws-cn:ec2:cn-north-1:" in resources and "arn:aws-cn:route53:::hostedzone/" in resources


def test_the_released_scenario_names_are_aliases_of_the_new_ones():
    old = iam_policy.node_policy("pg", REGION, ACCOUNT, ["route_table", "elastic_ip", "route53"], RTBS, ALLOC, ZONE,
                                 RECORD)
    assert old == policy_for(iam_policy.SCENARIOS)
    assert iam_policy.SCENARIOS == ("vip_route", "elastic_ip", "dns_record")


def test_a_scenario_without_its_resource_is_refused():
    with pytest.raises(ValueError):
        iam_policy.node_policy("pg", REGION, ACCOUNT, ["vip_route"])
    with pytest.raises(ValueError):
        iam_policy.node_policy("pg", REGION, ACCOUNT, ["nope"])
    with pytest.raises(ValueError, match="record_name"):
        iam_policy.node_policy("pg", REGION, ACCOUNT, ["dns_record"], hosted_zone_id=ZONE)


def test_normalized_ignores_order_and_one_element_lists():
    policy = policy_for(("vip_route",))
    shuffled = json.loads(json.dumps(policy))
    shuffled["Statement"].reverse()
    shuffled["Statement"][0]["Action"] = list(reversed(shuffled["Statement"][0]["Action"]))
    for st in shuffled["Statement"]:
        if isinstance(st["Action"], list) and len(st["Action"]) == 1:
            st["Action"] = st["Action"][0]
    assert iam_policy.normalized(shuffled) == iam_policy.normalized(json.dumps(policy))
    assert iam_policy.normalized(policy_for(())) != iam_policy.normalized(policy)


def test_trust_policy_lets_only_ec2_assume_the_role():
    assert iam_policy.trust_policy()["Statement"] == [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]


# --- the proof on a moto server that enforces IAM ------------------------------------------------

def as_moto_evaluates(policy: Dict[str, Any]) -> Dict[str, Any]:
    """moto 5.2.5 checks Action only: it hands "*" as the resource of every EC2 and Route 53 request,
    so an ARN-scoped Allow never matches there. The proof therefore runs the generated actions with
    Resource "*"; the ARNs and conditions are pinned by the tests above."""
    flat = json.loads(json.dumps(policy))
    for statement in flat["Statement"]:
        statement["Resource"] = "*"
        statement.pop("Condition", None)
    return flat


@pytest.fixture(scope="module")
def enforcing_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto server of this test's own; it starts open and enforces IAM once the test says so."""
    with moto_server.running(tmp_path_factory.mktemp("moto-iam")) as url:
        yield url


def enforce_iam_from_now(url: str) -> None:
    # moto's reset-auth sets INITIAL_NO_AUTH_ACTION_COUNT and restarts its count: 0 = every request from now on.
    request = urllib.request.Request(f"{url}/moto-api/reset-auth", data=b"0", method="POST",
                                     headers={"Content-Type": "text/plain"})  # form-encoded would hide the body
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert json.loads(answer.read())["status"] == "ok"


def session(url: str, key: str, secret: str) -> AwsSession:
    return AwsSession(ConnectionSettings(region="us-east-1", endpoint_url=url, access_key=key, secret_key=secret,
                                         max_attempts=1))


def user_with_policy(iam: Any, name: str, policy: Dict[str, Any]) -> Dict[str, str]:
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="ec2ha-node", PolicyDocument=json.dumps(as_moto_evaluates(policy)))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return {"key": key["AccessKeyId"], "secret": key["SecretAccessKey"]}


def denied(call: Any) -> str:
    """The error code of a call that must be refused."""
    with pytest.raises((AwsCallError, botocore.exceptions.ClientError)) as caught:
        call()
    error = caught.value
    return error.code if isinstance(error, AwsCallError) else error.response["Error"]["Code"]


def fence_aws(url: str, creds: Dict[str, str], plug: str) -> List[str]:
    """What stock fence_aws does, with boto3's resource API as it uses it: list, status, off, on."""
    conn = boto3.resource("ec2", endpoint_url=url, region_name="us-east-1", aws_access_key_id=creds["key"],
                          aws_secret_access_key=creds["secret"])
    listed = [i.id for i in conn.instances.all()]
    states = [list(conn.instances.filter(Filters=[{"Name": "instance-id", "Values": [plug]}]))[0].state["Name"]]
    conn.instances.filter(InstanceIds=[plug]).stop(Force=True)
    states.append(list(conn.instances.filter(Filters=[{"Name": "instance-id", "Values": [plug]}]))[0].state["Name"])
    conn.instances.filter(InstanceIds=[plug]).start()
    states.append(list(conn.instances.filter(Filters=[{"Name": "instance-id", "Values": [plug]}]))[0].state["Name"])
    assert plug in listed
    return states


def moto_allows(policy: Dict[str, Any], action: str) -> bool:
    """moto's own evaluator (the one its server runs) on the policy as it evaluates it."""
    evaluator = IAMPolicy(json.dumps(as_moto_evaluates(policy)))
    return evaluator.is_action_permitted(action) == PermissionResult.PERMITTED


def route53_failover_calls(url: str, creds: Dict[str, str], world: Dict[str, Any], node: Dict[str, Any]) -> set:
    """The dns_record agent's calls for a move onto ``node``: zone by name and by id, UPSERT, GetChange."""
    agent = session(url, creds["key"], creds["secret"])
    target = dns_record.resolve_target(agent, dns_record.DnsSpec(
        zone=world["private_zone"]["name"], record=world["record"], node=node["instance_id"], private_zone=True))
    change = dns_record.converge(agent, target)
    assert change.changed and change.after.values == (node["private_ip"],)
    dns_record.resolve_target(agent, dns_record.DnsSpec(zone=world["private_zone"]["id"], record=world["record"],
                                                        node=node["instance_id"]))
    assert dns_record.wait_insync(agent, str(change.change_id), 5.0) == "INSYNC"
    assert dns_record.monitor(agent, target).ok
    return {f"{c.service}:{api_name(c.operation)}" for c in agent.calls}


def test_the_policy_allows_every_failover_call_and_denies_the_rest(enforcing_moto):
    url = enforcing_moto
    world = world_builder.build(url, "us-east-1", "iam" + uuid.uuid4().hex[:6])
    admin = session(url, "testing", "testing")
    ec2 = admin.client("ec2")
    spec = cluster_pair.PairSpec(
        name="pg", nodes=(cluster_pair.NodeSpec("pg1", world["subnets"]["a"]),
                          cluster_pair.NodeSpec("pg2", world["subnets"]["b"])),
        image_id=ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"], instance_type="t3.micro",
        scenarios=iam_policy.SCENARIOS, route_table_ids=tuple(world["route_tables"].values()),
        allocation_id=world["eip"]["allocation_id"], hosted_zone_id=world["private_zone"]["id"],
        record_name=world["record"])
    pair = cluster_pair.resolve(admin, spec)
    built = cluster_pair.converge(admin, pair).as_dict()
    pg1, pg2 = built["nodes"]["pg1"], built["nodes"]["pg2"]
    iam = admin.client("iam")
    # The policy as IAM holds it: the UPSERT names the one record; routes only in the listed tables.
    held = statements(json.loads(iam_policy.normalized(iam.get_role_policy(
        RoleName="pg-node", PolicyName=cluster_pair.POLICY_NAME)["PolicyDocument"])))
    assert held["UpsertRecord"]["Condition"]["ForAllValues:StringEquals"][
        "route53:ChangeResourceRecordSetsNormalizedRecordNames"] == world["record"].lower().rstrip(".")
    assert held["MoveVipRoute"]["Action"] == ["ec2:CreateRoute", "ec2:ReplaceRoute"]
    assert sorted(held["MoveVipRoute"]["Resource"]) == sorted(
        f"arn:aws:ec2:us-east-1:{pair.account_id}:route-table/{rtb}" for rtb in world["route_tables"].values())
    # So that the route-table agent has to turn the check off itself (ModifyNetworkInterfaceAttribute).
    ec2.modify_network_interface_attribute(NetworkInterfaceId=pg2["network_interface_id"],
                                           SourceDestCheck={"Value": True})
    # A VIP route deleted by hand in one listed table: the agent's monitor re-creates it (CreateRoute).
    ec2.delete_route(RouteTableId=world["route_tables"]["b"], DestinationCidrBlock=f"{world['vip']}/32")
    node = user_with_policy(iam, "pg-node-user", built["policy"])
    fence_policy = iam_policy.node_policy("pg", "us-east-1", pair.account_id, ())
    fence_only = user_with_policy(iam, "fence-only-user", fence_policy)
    dns_calls = route53_failover_calls(url, node, world, pg2)
    enforce_iam_from_now(url)

    # Route 53: moto 5.2.5 answers every signed Route 53 request with SignatureDoesNotMatch once it
    # enforces IAM (even for an allow-all user), so its calls, made just above by the real core, are
    # judged by moto's own policy evaluator instead of over HTTP.
    assert {"route53:ListHostedZonesByName", "route53:GetHostedZone", "route53:ListResourceRecordSets",
            "route53:ChangeResourceRecordSets", "route53:GetChange"} <= dns_calls
    assert all(moto_allows(built["policy"], action) for action in dns_calls)
    assert not moto_allows(built["policy"], "route53:CreateHostedZone")
    assert not moto_allows(built["policy"], "route53:DeleteHostedZone")
    assert not any(moto_allows(fence_policy, action) for action in dns_calls if action.startswith("route53:"))

    agent = session(url, node["key"], node["secret"])
    # route table scenario, exactly as the agent runs it (resolve on its own instance id, converge),
    # creating the route that was deleted by hand
    target, tables = vip_route.resolve_target(agent, world["vip"], pg2["instance_id"],
                                              list(world["route_tables"].values()), create=True)
    moved = vip_route.converge(agent, target, tables=tables)
    assert moved.changed and moved.status.ok
    assert [a.resource for a in moved.actions if a.operation == "create_route"] == [world["route_tables"]["b"]]
    # Elastic IP scenario
    eip_target, address = elastic_ip.resolve_target(agent, elastic_ip.EipSpec(
        node=pg2["instance_id"], allocation_id=world["eip"]["allocation_id"]))
    assert elastic_ip.converge(agent, eip_target, address=address).changed
    # monitors (read-only) after the moves
    assert vip_route.monitor(agent, target).ok and elastic_ip.monitor(agent, eip_target).ok

    made = {f"{c.service}:{api_name(c.operation)}" for c in agent.calls}
    assert made <= set(iam_policy.actions_of(built["policy"]))
    assert {"ec2:ReplaceRoute", "ec2:CreateRoute", "ec2:ModifyNetworkInterfaceAttribute",
            "ec2:AssociateAddress"} <= made

    # fencing, as stock fence_aws does it, with the node policy and with the fencing-only policy
    assert fence_aws(url, node, pg1["instance_id"]) == ["running", "stopped", "running"]
    assert fence_aws(url, fence_only, pg1["instance_id"]) == ["running", "stopped", "running"]

    # outside the policy: denied (moto says AccessDenied where EC2 says UnauthorizedOperation)
    ec2_as_node = agent.client("ec2")
    assert denied(lambda: ec2_as_node.terminate_instances(InstanceIds=[pg1["instance_id"]])) in DENIED_CODES
    assert denied(lambda: ec2_as_node.create_vpc(CidrBlock="10.250.0.0/16")) in DENIED_CODES
    assert denied(lambda: ec2_as_node.reboot_instances(InstanceIds=[pg1["instance_id"]])) in DENIED_CODES
    assert denied(lambda: ec2_as_node.delete_route(
        RouteTableId=world["route_tables"]["a"], DestinationCidrBlock=f"{world['vip']}/32")) in DENIED_CODES
    assert denied(lambda: session(url, fence_only["key"], fence_only["secret"]).client("ec2").create_route(
        RouteTableId=world["route_tables"]["a"], DestinationCidrBlock="192.0.2.1/32",
        NetworkInterfaceId=pg1["network_interface_id"])) in DENIED_CODES
    assert denied(lambda: agent.client("iam").list_users()) in DENIED_CODES
    # a policy without a scenario does not allow that scenario's move
    fencer = session(url, fence_only["key"], fence_only["secret"])
    back = vip_route.resolve_target(session(url, node["key"], node["secret"]), world["vip"],
                                    pg1["instance_id"], list(world["route_tables"].values()))[0]
    with pytest.raises(AwsCallError) as caught:
        vip_route.converge(fencer, back)
    assert caught.value.code in DENIED_CODES and caught.value.operation == "describe_route_tables"
