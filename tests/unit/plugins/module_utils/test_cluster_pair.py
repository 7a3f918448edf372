# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""cluster_pair core: input checks, the security group race (Stubber), and a run that fails midway
and is finished by the next one (a moto server on loopback, judged by describe calls)."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any, Dict, List

import boto3
import pytest

from ec2ha_testkit.calls import writes
from ansible_collections.ec2ha.cluster.plugins.module_utils import cluster_pair as cp
from ansible_collections.ec2ha.cluster.plugins.module_utils import iam_policy
from ansible_collections.ec2ha.cluster.plugins.module_utils.aws import (
    AwsCallError,
    AwsSession,
    ConnectionSettings,
    InputError,
)

from ec2ha_testkit import world as world_builder
from ec2ha_testkit.clock import FakeClock

SUBNET_A, SUBNET_B = "subnet-0000000000000000a", "subnet-0000000000000000b"
GROUP = "sg-00000000000000001"


def spec(**overrides: Any) -> cp.PairSpec:
    values: Dict[str, Any] = dict(name="pg", nodes=(cp.NodeSpec("pg1", SUBNET_A), cp.NodeSpec("pg2", SUBNET_B)),
                                  image_id="ami-00000001", instance_type="t3.micro", admin_cidrs=("10.99.0.0/16",))
    values.update(overrides)
    return cp.PairSpec(**values)


# --- input checks that need no AWS call ----------------------------------------------------------

@pytest.mark.parametrize("overrides, message", [
    ({"nodes": (cp.NodeSpec("pg1", SUBNET_A),)}, "^nodes lists 1 nodes: a cluster pair needs exactly two"),
    ({"nodes": (cp.NodeSpec("pg1", SUBNET_A), cp.NodeSpec("pg1", SUBNET_B))}, "must be two different"),
    ({"nodes": (cp.NodeSpec("pg1", "subnet-x"), cp.NodeSpec("pg2", SUBNET_B))}, "subnet_id 'subnet-x' is not a"),
    ({"nodes": (cp.NodeSpec("pg1", SUBNET_A, "10.0.1.300"), cp.NodeSpec("pg2", SUBNET_B))}, "is not an IPv4"),
    ({"nodes": (cp.NodeSpec("pg1", SUBNET_A, instance_id="i-00000000000000001"),
                cp.NodeSpec("pg2", SUBNET_B, instance_id="i-00000000000000001"))}, "Both nodes adopt"),
    ({"admin_cidrs": ("10.0.0.1/16",)}, "^admin_cidrs entry '10.0.0.1/16' is not a CIDR block"),
    ({"admin_cidrs": ("everyone",)}, "^admin_cidrs entry 'everyone' is not a CIDR block"),
    ({"scenarios": ("vip_route",)}, "^Scenario vip_route needs route_table_ids"),
    ({"scenarios": ("route_table",)}, "^Scenario vip_route needs route_table_ids"),   # the deprecated alias
    ({"allocation_id": "eipalloc-0123456789abcdef0"}, "^allocation_id is set but elastic_ip is not in scenarios"),
    ({"scenarios": ("dns_record",), "hosted_zone_id": "example.com"}, "is not a hosted zone id"),
    ({"scenarios": ("route53",), "hosted_zone_id": "Z0123456789ABC"},
     "^Scenario dns_record needs record_name: the node policy is scoped to it"),
    ({"record_name": "db.example.internal"}, "^record_name is set but dns_record is not in scenarios"),
    ({"encrypt_root_volume": False, "kms_key_id": "alias/ebs"},
     "^kms_key_id is set but encrypt_root_volume is false"),
    ({"kms_key_id": "my key"}, "^kms_key_id 'my key' is not a KMS key id, key ARN, alias name or alias ARN"),
    ({"scenarios": ("carrier_pigeon",)}, "not among vip_route, elastic_ip, dns_record"),
    ({"tags": {"ec2ha:cluster": "other"}}, "^tags sets 'ec2ha:cluster', which the module sets itself"),
    ({"tags": {"aws:x": "1"}}, "^tags key 'aws:x' is not a tag AWS accepts"),
    ({"name": "x" * 59}, "must be 1-58 letters"),
    ({"corosync_port": 70000}, "is not a port number"),
])
def test_bad_input_is_one_sentence_before_any_call(stubbed, overrides, message):
    for service in ("ec2", "iam", "route53"):
        stubbed.stub(service)     # a check that is missed fails in the Stubber, never on the network
    with pytest.raises(InputError, match=message):
        cp.resolve(stubbed.aws, spec(**overrides))
    assert stubbed.aws.calls == []


def test_wanted_rules_are_only_the_ports_the_roles_use():
    # corosync knet and PostgreSQL (replication, pg_rewind) between the nodes; SSH from admins and
    # PostgreSQL from clients. Nothing listens on pcsd's 2224, and no role makes the nodes SSH to each other.
    rules = [str(r) for r in cp.wanted_rules(spec(client_cidrs=("10.0.0.0/16",)))]
    assert rules == ["tcp 22 from 10.99.0.0/16", "tcp 5432 from 10.0.0.0/16", "tcp 5432 from self",
                     "udp 5405 from self"]


# --- the InvalidGroup.Duplicate race (Stubber) ---------------------------------------------------

def group(permissions: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {"GroupId": GROUP, "GroupName": "pg-cluster", "VpcId": "vpc-00000001", "OwnerId": "123456789012",
            "Description": "x", "IpPermissions": permissions, "Tags": [{"Key": "ec2ha:cluster", "Value": "pg"}]}


def test_a_group_made_by_another_run_meanwhile_is_taken_and_reconciled(stubbed):
    pair = cp.Pair(spec(), "us-east-1", "123456789012", "aws", "vpc-00000001", [])
    ec2 = stubbed.stub("ec2")
    ec2.add_client_error("create_security_group", "InvalidGroup.Duplicate", "The security group 'pg-cluster' "
                         "already exists for VPC 'vpc-00000001'")
    # The other run got as far as two rules, one of them wrong (SSH from everywhere).
    raced = group([
        {"IpProtocol": "udp", "FromPort": 5405, "ToPort": 5405, "UserIdGroupPairs": [{"GroupId": GROUP}]},
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
         "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": "any"}]},
    ])
    ec2.add_response("describe_security_groups", {"SecurityGroups": [raced]}, {
        "Filters": [{"Name": "vpc-id", "Values": ["vpc-00000001"]}, {"Name": "group-name", "Values": ["pg-cluster"]}]})
    ec2.add_response("authorize_security_group_ingress", {"Return": True})
    ec2.add_response("revoke_security_group_ingress", {"Return": True}, {
        "GroupId": GROUP, "IpPermissions": [{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                                             "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": "any"}]}]})
    done = cp.ensure_group(stubbed.aws, pair)

    stubbed.assert_all_used()
    assert pair.group_id == GROUP
    assert [a.operation for a in done] == ["create_security_group", "authorize_security_group_ingress",
                                           "revoke_security_group_ingress"]
    authorized = next(c for c in stubbed.aws.calls if c.operation == "authorize_security_group_ingress")
    added = sorted(f"{p['IpProtocol']} {p['FromPort']} {(p.get('IpRanges') or p.get('UserIdGroupPairs'))[0]}"
                   for p in authorized.params["IpPermissions"])
    assert added == ["tcp 22 {'CidrIp': '10.99.0.0/16', 'Description': 'SSH from admins'}",
                     f"tcp 5432 {{'GroupId': '{GROUP}', 'Description': 'PostgreSQL replication'}}"]


def test_a_group_of_another_cluster_is_refused_even_after_the_race(stubbed):
    pair = cp.Pair(spec(), "us-east-1", "123456789012", "aws", "vpc-00000001", [])
    ec2 = stubbed.stub("ec2")
    ec2.add_client_error("create_security_group", "InvalidGroup.Duplicate", "exists")
    other = group([])
    other["Tags"] = [{"Key": "ec2ha:cluster", "Value": "web"}]
    ec2.add_response("describe_security_groups", {"SecurityGroups": [other]})
    with pytest.raises(InputError, match="belongs to cluster 'web'"):
        cp.ensure_group(stubbed.aws, pair)
    assert [c.operation for c in stubbed.aws.calls] == ["create_security_group", "describe_security_groups"]


# --- a just-made instance profile that RunInstances does not know yet (IAM is eventually consistent) --


def launch_pair() -> cp.Pair:
    node = cp.NodeState(cp.NodeSpec("pg1", SUBNET_A), "us-east-1a")
    pair = cp.Pair(spec(), "us-east-1", "123456789012", "aws", "vpc-00000001", [node])
    pair.group = group([])
    pair.profile = {"Arn": "arn:aws:iam::123456789012:instance-profile/pg-node", "Roles": []}
    pair.image = {"ImageId": "ami-00000001", "RootDeviceName": "/dev/xvda", "RootDeviceType": "ebs",
                  "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8, "VolumeType": "gp3"}}]}
    return pair


def test_launch_retries_while_the_new_instance_profile_is_unknown_then_launches_once(stubbed):
    pair = launch_pair()
    ec2 = stubbed.stub("ec2")
    for _attempt in range(2):
        ec2.add_client_error("run_instances", "InvalidParameterValue", "Value (arn:aws:iam::123456789012:"
                             "instance-profile/pg-node) for parameter iamInstanceProfile.arn is invalid. Invalid IAM "
                             "Instance Profile ARN")
    ec2.add_response("run_instances", {"Instances": [{"InstanceId": "i-0000000000000000a"}]})
    clock = FakeClock()
    done = cp.launch(stubbed.aws, pair, pair.nodes[0], False, clock, clock.sleep)

    stubbed.assert_all_used()
    assert pair.nodes[0].instance["InstanceId"] == "i-0000000000000000a"
    assert clock.slept == [1.0, 2.0]
    assert [a.summary for a in done] == ["launch node pg1 in subnet-0000000000000000a"]
    launched = [c for c in stubbed.aws.calls if c.operation == "run_instances"][-1].params
    assert launched["IamInstanceProfile"] == {"Arn": "arn:aws:iam::123456789012:instance-profile/pg-node"}
    assert launched["SecurityGroupIds"] == [GROUP] and launched["SubnetId"] == SUBNET_A
    assert launched["MetadataOptions"] == {"HttpTokens": "required", "HttpPutResponseHopLimit": 1,
                                           "HttpEndpoint": "enabled"}
    # Only the root device, encrypted; type and delete-on-termination stay the image's.
    assert launched["BlockDeviceMappings"] == [{"DeviceName": "/dev/xvda", "Ebs": {"Encrypted": True, "VolumeSize": 8}}]


def test_launch_gives_up_on_another_invalid_parameter_at_once(stubbed):
    pair = launch_pair()
    stubbed.stub("ec2").add_client_error("run_instances", "InvalidParameterValue", "Invalid value 't9.huge' "
                                         "for InstanceType")
    clock = FakeClock()
    with pytest.raises(AwsCallError, match="InvalidParameterValue"):
        cp.launch(stubbed.aws, pair, pair.nodes[0], False, clock, clock.sleep)
    assert clock.slept == []


# --- a failure midway, then a re-run (moto server) -----------------------------------------------

class FailingOnce(AwsSession):
    """An AwsSession whose N-th call of one operation fails as AWS would (a transient error)."""

    def __init__(self, settings: ConnectionSettings, operation: str, nth: int):
        super().__init__(settings)
        self.operation, self.nth, self.seen = operation, nth, 0

    def call(self, service: str, operation: str, resource: str = "", **params: Any) -> Dict[str, Any]:
        if operation == self.operation:
            self.seen += 1
            if self.seen == self.nth:
                from ansible_collections.ec2ha.cluster.plugins.module_utils.aws import AwsCall
                self.calls.append(AwsCall(service, operation, resource, params))
                raise AwsCallError(f"ec2:RunInstances on {resource} failed with InsufficientInstanceCapacity.",
                                   service, operation, "InsufficientInstanceCapacity", False)
        return super().call(service, operation, resource, **params)


def settings(url: str) -> ConnectionSettings:
    return ConnectionSettings(region="us-east-1", endpoint_url=url, access_key="testing", secret_key="testing")


def test_a_run_that_fails_midway_is_finished_by_the_next(endpoint):
    world = world_builder.build(endpoint, "us-east-1", "cp" + uuid.uuid4().hex[:6])
    ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                       aws_secret_access_key="testing")
    name = "mid" + uuid.uuid4().hex[:6]
    wanted = spec(name=name, nodes=(cp.NodeSpec("n1", world["subnets"]["a"]), cp.NodeSpec("n2", world["subnets"]["b"])),
                  image_id=ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"],
                  scenarios=("vip_route",), route_table_ids=(world["route_tables"]["a"],))

    first = FailingOnce(settings(endpoint), "run_instances", 2)
    pair = cp.resolve(first, wanted)
    with pytest.raises(AwsCallError, match="InsufficientInstanceCapacity"):
        cp.converge(first, pair)
    assert writes(first)[-2:] == ["run_instances", "run_instances"]
    tagged = [{"Name": "tag:ec2ha:cluster", "Values": [name]},
              {"Name": "instance-state-name", "Values": ["pending", "running"]}]
    assert len([i for r in ec2.describe_instances(Filters=tagged)["Reservations"] for i in r["Instances"]]) == 1

    second = AwsSession(settings(endpoint))
    result = cp.converge(second, cp.resolve(second, wanted))
    # Only what was missing: the second node, and the first node's ENI settings the failure cut short.
    assert result.changed
    assert "run_instances" in writes(second) and writes(second).count("run_instances") == 1
    assert not {"create_security_group", "create_role", "create_instance_profile", "put_role_policy",
                "authorize_security_group_ingress"} & set(writes(second))

    # Judged by EC2 and IAM themselves.
    instances = [i for r in ec2.describe_instances(Filters=tagged)["Reservations"] for i in r["Instances"]]
    assert sorted(cp.tag_value(i["Tags"], "ec2ha:node") for i in instances) == ["n1", "n2"]
    assert {i["Placement"]["AvailabilityZone"] for i in instances} == {"us-east-1a", "us-east-1b"}
    enis = ec2.describe_network_interfaces(NetworkInterfaceIds=[i["NetworkInterfaces"][0]["NetworkInterfaceId"]
                                                                for i in instances])["NetworkInterfaces"]
    group_id = result.as_dict()["security_group_id"]
    assert all(not e["SourceDestCheck"] and group_id in [g["GroupId"] for g in e["Groups"]] for e in enis)
    sg = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    assert {str(r) for r in cp.rules_of(sg)} == {str(r) for r in cp.wanted_rules(wanted)}
    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                       aws_secret_access_key="testing")
    document = iam.get_role_policy(RoleName=f"{name}-node", PolicyName="ec2ha-node")["PolicyDocument"]
    assert iam_policy.normalized(document) == iam_policy.normalized(result.as_dict()["policy"])
    profile = iam.get_instance_profile(InstanceProfileName=f"{name}-node")["InstanceProfile"]
    assert [r["RoleName"] for r in profile["Roles"]] == [f"{name}-node"]
    assert all(i["IamInstanceProfile"]["Arn"] == profile["Arn"] for i in instances)

    third = AwsSession(settings(endpoint))
    again = cp.converge(third, cp.resolve(third, wanted))
    assert not again.changed and writes(third) == []
    assert again.as_dict()["nodes"] == result.as_dict()["nodes"]


def _adopted_pair(endpoint: str, prefix: str):
    """A pair adopted from two world instances, converged once: (ec2 client, spec, group id)."""
    world = world_builder.build(endpoint, "us-east-1", prefix + uuid.uuid4().hex[:6])
    aws = AwsSession(settings(endpoint))
    wanted = spec(name=prefix + uuid.uuid4().hex[:6],
                  nodes=(cp.NodeSpec("n1", world["subnets"]["a"], instance_id=world["node1"]["id"]),
                         cp.NodeSpec("n2", world["subnets"]["b"], instance_id=world["node2"]["id"])))
    return aws.client("ec2"), wanted, cp.converge(aws, cp.resolve(aws, wanted)).as_dict()["security_group_id"]


def test_a_rule_added_by_hand_is_removed_and_a_missing_one_restored(endpoint):
    ec2, wanted, group_id = _adopted_pair(endpoint, "rules")
    ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432,
         "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": "by hand"}]}])
    ec2.revoke_security_group_ingress(GroupId=group_id, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432,
         "UserIdGroupPairs": [{"GroupId": group_id, "Description": "PostgreSQL replication"}]}])

    fix = AwsSession(settings(endpoint))
    result = cp.converge(fix, cp.resolve(fix, dataclasses.replace(wanted)))

    assert result.as_dict()["actions"] == ["allow tcp 5432 from self", "remove tcp 5432 from 0.0.0.0/0"]
    sg = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    assert {str(r) for r in cp.rules_of(sg)} == {str(r) for r in cp.wanted_rules(wanted)}


def test_a_group_with_the_old_pcsd_and_node_ssh_rules_loses_them(endpoint):
    """A group made by an earlier release opened pcsd (2224) and SSH between the nodes: both go."""
    ec2, wanted, group_id = _adopted_pair(endpoint, "old")
    ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": port, "ToPort": port,
         "UserIdGroupPairs": [{"GroupId": group_id, "Description": label}]}
        for port, label in ((2224, "pcsd"), (22, "SSH between the nodes"))])

    fix = AwsSession(settings(endpoint))
    result = cp.converge(fix, cp.resolve(fix, wanted))

    assert result.as_dict()["actions"] == ["remove tcp 22 from self; tcp 2224 from self"]
    sg = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    assert sorted(str(r) for r in cp.rules_of(sg)) == ["tcp 22 from 10.99.0.0/16", "tcp 5432 from self",
                                                       "udp 5405 from self"]


# --- instance metadata (IMDSv2 only, hop limit 1) and the root volume's encryption (moto server) ----

WANTED_METADATA = {"HttpTokens": "required", "HttpPutResponseHopLimit": 1, "HttpEndpoint": "enabled"}


def described(ec2: Any, instance_ids: List[str]) -> Dict[str, Dict[str, Any]]:
    reservations = ec2.describe_instances(InstanceIds=instance_ids)["Reservations"]
    return {i["InstanceId"]: i for r in reservations for i in r["Instances"]}


def metadata(instance: Dict[str, Any]) -> Dict[str, Any]:
    return {k: instance["MetadataOptions"].get(k) for k in WANTED_METADATA}


def root_volume(ec2: Any, instance: Dict[str, Any]) -> Dict[str, Any]:
    volume_id = next(m["Ebs"]["VolumeId"] for m in instance["BlockDeviceMappings"]
                     if m["DeviceName"] == instance["RootDeviceName"])
    return ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]


def test_launched_nodes_require_imdsv2_and_have_an_encrypted_root_volume(endpoint):
    world = world_builder.build(endpoint, "us-east-1", "cm" + uuid.uuid4().hex[:6])
    aws = AwsSession(settings(endpoint))
    ec2 = aws.client("ec2")
    key = aws.client("kms").create_key(Description="ec2ha test")["KeyMetadata"]["Arn"]
    wanted = spec(name="imds" + uuid.uuid4().hex[:6],
                  nodes=(cp.NodeSpec("n1", world["subnets"]["a"]), cp.NodeSpec("n2", world["subnets"]["b"])),
                  image_id=ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"], kms_key_id=key)

    result = cp.converge(aws, cp.resolve(aws, wanted)).as_dict()

    instances = described(ec2, [n["instance_id"] for n in result["nodes"].values()])
    assert len(instances) == 2
    for instance in instances.values():
        assert metadata(instance) == WANTED_METADATA
        volume = root_volume(ec2, instance)
        assert volume["Encrypted"] is True and volume["KmsKeyId"] in (key, key.split("/")[-1])
    again = AwsSession(settings(endpoint))
    assert not cp.converge(again, cp.resolve(again, wanted)).changed and writes(again) == []


def test_encryption_left_off_launches_as_the_image_says(endpoint):
    world = world_builder.build(endpoint, "us-east-1", "cu" + uuid.uuid4().hex[:6])
    aws = AwsSession(settings(endpoint))
    ec2 = aws.client("ec2")
    wanted = spec(name="plain" + uuid.uuid4().hex[:6],
                  nodes=(cp.NodeSpec("n1", world["subnets"]["a"]), cp.NodeSpec("n2", world["subnets"]["b"])),
                  image_id=ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"], encrypt_root_volume=False)

    result = cp.converge(aws, cp.resolve(aws, wanted))

    launched = [c.params for c in aws.calls if c.operation == "run_instances"]
    assert len(launched) == 2 and not any("BlockDeviceMappings" in p for p in launched)
    instances = described(ec2, [n["instance_id"] for n in result.as_dict()["nodes"].values()])
    assert all(metadata(i) == WANTED_METADATA for i in instances.values())
    assert all(root_volume(ec2, i)["Encrypted"] is False for i in instances.values())
    assert result.warnings == []


def test_an_adopted_instance_gets_imdsv2_and_a_warning_for_its_unencrypted_root(endpoint):
    world = world_builder.build(endpoint, "us-east-1", "ca" + uuid.uuid4().hex[:6])
    ids = [world["node1"]["id"], world["node2"]["id"]]
    ec2 = AwsSession(settings(endpoint)).client("ec2")
    assert {described(ec2, ids)[i]["MetadataOptions"]["HttpTokens"] for i in ids} == {"optional"}
    wanted = spec(name="adopt" + uuid.uuid4().hex[:6],
                  nodes=(cp.NodeSpec("n1", world["subnets"]["a"], instance_id=ids[0]),
                         cp.NodeSpec("n2", world["subnets"]["b"], instance_id=ids[1])))

    check = AwsSession(settings(endpoint))
    planned = cp.converge(check, cp.resolve(check, wanted), check_mode=True)
    assert [c.resource for c in check.calls if c.operation == "modify_instance_metadata_options"] == ids
    assert all(c.planned for c in check.calls if c.operation == "modify_instance_metadata_options")
    assert {described(ec2, ids)[i]["MetadataOptions"]["HttpTokens"] for i in ids} == {"optional"}
    assert [n["metadata_options"]["http_tokens"] for n in planned.after["nodes"].values()] == ["required"] * 2

    run = AwsSession(settings(endpoint))
    result = cp.converge(run, cp.resolve(run, wanted))
    assert all(metadata(i) == WANTED_METADATA for i in described(ec2, ids).values())
    # The root volume cannot be encrypted in place: said, not done.
    unencrypted = [w for w in result.warnings if "root volume" in w and "not encrypted" in w]
    assert len(unencrypted) == 2 and all(root_volume(ec2, i)["Encrypted"] is False
                                         for i in described(ec2, ids).values())

    again = AwsSession(settings(endpoint))
    second = cp.converge(again, cp.resolve(again, wanted))
    assert not second.changed and writes(again) == []


def test_a_node_name_with_wildcards_matches_only_itself(endpoint):
    """ec2ha:node is a filter value, where * and ? are wildcards: a node "n?" is not n1 or n2."""
    world = world_builder.build(endpoint, "us-east-1", "cw" + uuid.uuid4().hex[:6])
    aws = AwsSession(settings(endpoint))
    image = aws.client("ec2").describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    name = "wild" + uuid.uuid4().hex[:6]
    first = spec(name=name, nodes=(cp.NodeSpec("n1", world["subnets"]["a"]), cp.NodeSpec("n2", world["subnets"]["b"])),
                 image_id=image)
    built = cp.converge(aws, cp.resolve(aws, first)).as_dict()["nodes"]

    reader = AwsSession(settings(endpoint))
    pair = cp.resolve(reader, dataclasses.replace(first, nodes=(cp.NodeSpec("n?", world["subnets"]["a"]),
                                                                cp.NodeSpec("n2", world["subnets"]["b"]))))

    assert pair.nodes[0].instance is None
    assert pair.nodes[1].instance["InstanceId"] == built["n2"]["instance_id"]
    assert writes(reader) == []
