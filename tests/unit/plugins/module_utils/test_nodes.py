# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A user-given name is matched exactly: in an EC2 filter value `*` and `?` are wildcards, so
`node: "b*"` once resolved to an instance outside the cluster. Judged on a moto server."""

from __future__ import annotations

import uuid
from typing import Any, Dict

import pytest

from ec2ha_testkit.calls import writes
from ansible_collections.ec2ha.cluster.plugins.module_utils import endpoint_info, vip_route
from ansible_collections.ec2ha.cluster.plugins.module_utils.aws import AwsSession, ConnectionSettings, InputError
from ansible_collections.ec2ha.cluster.plugins.module_utils.nodes import find_node

from ec2ha_testkit import world as world_builder


@pytest.fixture(scope="module")
def world(endpoint: str) -> Dict[str, Any]:
    """The setup_world world plus two instances named <p>b1 and <p>bx, tagged with clusters <p>pg and <p>pgx."""
    built = world_builder.build(endpoint, "us-east-1", "nd" + uuid.uuid4().hex[:6])
    ec2 = session(endpoint).client("ec2")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    prefix = uuid.uuid4().hex[:6]
    for label, cluster in (("b1", "pg"), ("bx", "pgx")):
        made = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                                 SubnetId=built["subnets"]["a"], TagSpecifications=[{
                                     "ResourceType": "instance", "Tags": [
                                         {"Key": "Name", "Value": prefix + label},
                                         {"Key": "ec2ha:cluster", "Value": prefix + cluster}]}])
        built[label] = made["Instances"][0]["InstanceId"]
    built["prefix"] = prefix
    return built


def session(url: str) -> AwsSession:
    return AwsSession(ConnectionSettings(region="us-east-1", endpoint_url=url, access_key="testing",
                                         secret_key="testing"))


def vip_routes(aws: AwsSession, world: Dict[str, Any]) -> Dict[str, Any]:
    tables = aws.client("ec2").describe_route_tables(RouteTableIds=list(world["route_tables"].values()))
    return {t["RouteTableId"]: [r for r in t["Routes"] if r.get("DestinationCidrBlock") == f"{world['vip']}/32"]
            for t in tables["RouteTables"]}


@pytest.mark.parametrize("pattern", ["b*", "b?", "bx*", "B1"])
def test_a_name_that_is_only_a_pattern_for_other_names_matches_no_instance(endpoint, world, pattern):
    aws = session(endpoint)
    name = world["prefix"] + pattern
    with pytest.raises(InputError) as caught:
        find_node(aws, name)
    assert str(caught.value) == (f"Node '{name}' matches no live EC2 instance (by instance id or exact "
                                 "Name tag).")
    assert writes(aws) == []


def test_moving_the_vip_to_a_pattern_fails_before_any_write_and_changes_nothing(endpoint, world):
    aws = session(endpoint)
    before = vip_routes(aws, world)
    with pytest.raises(InputError, match=r"^Node '\w+bx\*' matches no live EC2 instance"):
        vip_route.resolve_target(aws, world["vip"], world["prefix"] + "bx*", list(world["route_tables"].values()))
    assert writes(aws) == []
    assert vip_routes(session(endpoint), world) == before


def test_an_exact_name_resolves_to_its_instance(endpoint, world):
    aws = session(endpoint)
    assert find_node(aws, world["prefix"] + "b1").instance_id == world["b1"]
    assert find_node(aws, world["prefix"] + "bx").instance_id == world["bx"]


def test_the_cluster_tag_is_matched_exactly(endpoint, world):
    aws = session(endpoint)
    with pytest.raises(InputError, match=r"^No live instance carries the tag ec2ha:cluster=\w+pg\*\.$"):
        endpoint_info.cluster_nodes(aws, endpoint_info.Endpoints(cluster=world["prefix"] + "pg*"))
    exact = endpoint_info.cluster_nodes(aws, endpoint_info.Endpoints(cluster=world["prefix"] + "pg"))
    assert [n.instance_id for n in exact] == [world["b1"]]
