#!/usr/bin/env python
"""Build a small, fresh EC2 world in an AWS endpoint (moto) and print its ids as JSON.

Each call makes a new world under a new name, so targets never see each other's state:
one VPC with two subnets in two AZs and three route tables (the main one included), two
running nodes, a stopped instance, an instance with two ENIs, a VIP routed to node1 in all
three tables, a second VPC with its own route table, an Elastic IP on node1, and a private
and a public hosted zone with an A record on node1.

    world.py --endpoint-url URL [--region us-east-1] [--name NAME]
"""

from __future__ import annotations

import argparse
import json
import uuid

import boto3


def build(endpoint_url: str, region: str, name: str) -> dict:
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                    region_name=region)
    ec2 = session.client("ec2", endpoint_url=endpoint_url)
    r53 = session.client("route53", endpoint_url=endpoint_url)
    octet = int(uuid.uuid4().int % 200) + 20

    def tag(kind: str, label: str) -> list:
        return [{"ResourceType": kind, "Tags": [{"Key": "Name", "Value": f"{name}-{label}"},
                                                {"Key": "ec2ha:world", "Value": name}]}]

    vpc = ec2.create_vpc(CidrBlock=f"10.{octet}.0.0/16", TagSpecifications=tag("vpc", "vpc"))["Vpc"]["VpcId"]
    subnets = {}
    for label, az, cidr in (("a", "a", 1), ("b", "b", 2)):
        subnets[label] = ec2.create_subnet(
            VpcId=vpc, CidrBlock=f"10.{octet}.{cidr}.0/24", AvailabilityZone=f"{region}{az}",
            TagSpecifications=tag("subnet", f"subnet-{label}"))["Subnet"]["SubnetId"]
    main_rt = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]},
                                                 {"Name": "association.main", "Values": ["true"]}])
    route_tables = {"main": main_rt["RouteTables"][0]["RouteTableId"]}
    for label in ("a", "b"):
        rt = ec2.create_route_table(VpcId=vpc, TagSpecifications=tag("route-table", f"rt-{label}"))
        route_tables[label] = rt["RouteTable"]["RouteTableId"]
        ec2.associate_route_table(RouteTableId=route_tables[label], SubnetId=subnets[label])

    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]

    def launch(label: str, subnet: str, **extra) -> dict:
        inst = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                                 SubnetId=subnet, TagSpecifications=tag("instance", label), **extra)
        return inst["Instances"][0]

    nodes = {label: launch(label, subnets[sub]) for label, sub in (("node1", "a"), ("node2", "b"))}
    stopped = launch("stopped", subnets["a"])
    ec2.stop_instances(InstanceIds=[stopped["InstanceId"]])
    multi = launch("multi", subnets["a"])
    extra_eni = ec2.create_network_interface(SubnetId=subnets["a"])["NetworkInterface"]["NetworkInterfaceId"]
    ec2.attach_network_interface(NetworkInterfaceId=extra_eni, InstanceId=multi["InstanceId"], DeviceIndex=1)

    vip = f"192.168.{octet}.10"
    node1_eni = nodes["node1"]["NetworkInterfaces"][0]["NetworkInterfaceId"]
    for rt in route_tables.values():
        ec2.create_route(RouteTableId=rt, DestinationCidrBlock=f"{vip}/32", NetworkInterfaceId=node1_eni)

    other_vpc = ec2.create_vpc(CidrBlock=f"10.{octet + 1}.0.0/16", TagSpecifications=tag("vpc", "other"))
    other_vpc = other_vpc["Vpc"]["VpcId"]
    other_rt = ec2.create_route_table(VpcId=other_vpc)["RouteTable"]["RouteTableId"]

    eip = ec2.allocate_address(Domain="vpc")
    ec2.associate_address(AllocationId=eip["AllocationId"], InstanceId=nodes["node1"]["InstanceId"])

    private_zone = r53.create_hosted_zone(
        Name=f"{name}.internal.", CallerReference=f"{name}-private",
        VPC={"VPCRegion": region, "VPCId": vpc}, HostedZoneConfig={"PrivateZone": True, "Comment": name})
    public_zone = r53.create_hosted_zone(Name=f"{name}.example.com.", CallerReference=f"{name}-public")
    private_zone_id = private_zone["HostedZone"]["Id"].split("/")[-1]
    record = f"db.{name}.internal"
    r53.change_resource_record_sets(HostedZoneId=private_zone_id, ChangeBatch={"Changes": [{
        "Action": "UPSERT", "ResourceRecordSet": {
            "Name": record, "Type": "A", "TTL": 60,
            "ResourceRecords": [{"Value": nodes["node1"]["PrivateIpAddress"]}]}}]})

    return {
        "name": name, "region": region, "endpoint_url": endpoint_url,
        "vpc_id": vpc, "vpc_cidr": f"10.{octet}.0.0/16", "subnets": subnets,
        "route_tables": route_tables, "vip": vip,
        "node1": {"id": nodes["node1"]["InstanceId"], "name": f"{name}-node1", "eni": node1_eni,
                  "private_ip": nodes["node1"]["PrivateIpAddress"]},
        "node2": {"id": nodes["node2"]["InstanceId"], "name": f"{name}-node2",
                  "eni": nodes["node2"]["NetworkInterfaces"][0]["NetworkInterfaceId"],
                  "private_ip": nodes["node2"]["PrivateIpAddress"]},
        "stopped": {"id": stopped["InstanceId"], "name": f"{name}-stopped"},
        "multi": {"id": multi["InstanceId"], "name": f"{name}-multi", "extra_eni": extra_eni},
        "other_vpc_id": other_vpc, "other_route_table": other_rt,
        "eip": {"public_ip": eip["PublicIp"], "allocation_id": eip["AllocationId"]},
        "private_zone": {"id": private_zone_id, "name": f"{name}.internal"},
        "public_zone": {"id": public_zone["HostedZone"]["Id"].split("/")[-1], "name": f"{name}.example.com"},
        "record": record,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--name", default="w" + uuid.uuid4().hex[:8])
    args = parser.parse_args()
    print(json.dumps(build(args.endpoint_url, args.region, args.name), indent=2))


if __name__ == "__main__":
    main()
