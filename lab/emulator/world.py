"""The lab world `lab up` creates in moto: the VPCs of lab/topology.py in both regions.

Each VPC is tagged topology.LAB_VPC_TAG=true (the data plane serves it), has its subnets in the
AZs topology names, an internet gateway with a default route, and the two VPCs are peered
(inter-region) with routes both ways in their main route tables. The lab's SSH key is imported
as key pair "lab" in both regions. Returns every id, for lab.json.
"""

from __future__ import annotations

from typing import Any

import boto3

from lab import topology

KEY_NAME = "lab"
LAB_IMAGE_ID = "ami-03cf127a"          # in moto's stock AMI list for every region


def client(endpoint_url: str, region: str, service: str = "ec2", **credentials: str) -> Any:
    return boto3.client(service, region_name=region, endpoint_url=endpoint_url, **credentials)


def _tag(name: str, lab: bool = False) -> list[dict]:
    tags = [{"Key": "Name", "Value": name}]
    if lab:
        tags.append({"Key": topology.LAB_VPC_TAG, "Value": "true"})
    return tags


def _vpc(ec2: Any, region: str, name: str, cidr: str, subnets: dict[str, str],
         public_key: str) -> dict:
    vpc_id = ec2.create_vpc(
        CidrBlock=cidr,
        TagSpecifications=[{"ResourceType": "vpc", "Tags": _tag(name, lab=True)}],
    )["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsSupport={"Value": True})
    ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsHostnames={"Value": True})
    subnet_ids = {}
    for az_letter, subnet_cidr in subnets.items():
        subnet_ids[az_letter] = ec2.create_subnet(
            VpcId=vpc_id, CidrBlock=subnet_cidr, AvailabilityZone=region + az_letter,
            TagSpecifications=[{"ResourceType": "subnet",
                                "Tags": _tag(f"{name}-{az_letter}")}],
        )["Subnet"]["SubnetId"]
    igw_id = ec2.create_internet_gateway(
        TagSpecifications=[{"ResourceType": "internet-gateway", "Tags": _tag(f"{name}-igw")}],
    )["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw_id, VpcId=vpc_id)
    main_rt = ec2.describe_route_tables(Filters=[
        {"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "association.main", "Values": ["true"]},
    ])["RouteTables"][0]["RouteTableId"]
    ec2.create_route(RouteTableId=main_rt, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw_id)
    sg_id = ec2.describe_security_groups(Filters=[
        {"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "group-name", "Values": ["default"]},
    ])["SecurityGroups"][0]["GroupId"]
    ec2.import_key_pair(KeyName=KEY_NAME, PublicKeyMaterial=public_key.encode())
    # One of moto's stock AMIs, looked up by id: listing them all costs seconds per region.
    image_id = ec2.describe_images(ImageIds=[LAB_IMAGE_ID])["Images"][0]["ImageId"]
    return {"region": region, "vpc_id": vpc_id, "cidr": cidr, "subnet_ids": subnet_ids,
            "igw_id": igw_id, "main_route_table_id": main_rt, "security_group_id": sg_id,
            "image_id": image_id, "key_name": KEY_NAME}


def _peer(primary: dict, dr: dict, ec2_primary: Any, ec2_dr: Any) -> str:
    pcx_id = ec2_primary.create_vpc_peering_connection(
        VpcId=primary["vpc_id"], PeerVpcId=dr["vpc_id"], PeerRegion=dr["region"],
        TagSpecifications=[{"ResourceType": "vpc-peering-connection",
                            "Tags": _tag("lab-primary-dr")}],
    )["VpcPeeringConnection"]["VpcPeeringConnectionId"]
    ec2_dr.accept_vpc_peering_connection(VpcPeeringConnectionId=pcx_id)
    ec2_primary.create_route(RouteTableId=primary["main_route_table_id"],
                             DestinationCidrBlock=dr["cidr"], VpcPeeringConnectionId=pcx_id)
    ec2_dr.create_route(RouteTableId=dr["main_route_table_id"],
                        DestinationCidrBlock=primary["cidr"], VpcPeeringConnectionId=pcx_id)
    return pcx_id


def create(endpoint_url: str, public_key: str, **credentials: str) -> dict:
    """Build the lab world in a fresh moto; returns {"primary": {...}, "dr": {...}, "peering_id"}."""
    ec2_primary = client(endpoint_url, topology.PRIMARY_REGION, **credentials)
    ec2_dr = client(endpoint_url, topology.DR_REGION, **credentials)
    primary = _vpc(ec2_primary, topology.PRIMARY_REGION, "lab-primary",
                   topology.PRIMARY_VPC_CIDR, topology.PRIMARY_SUBNETS, public_key)
    dr = _vpc(ec2_dr, topology.DR_REGION, "lab-dr", topology.DR_VPC_CIDR,
              topology.DR_SUBNETS, public_key)
    return {"primary": primary, "dr": dr, "peering_id": _peer(primary, dr, ec2_primary, ec2_dr)}


def warm_up(endpoint_url: str, **credentials: str) -> None:
    """One read per service the hosts use, so that their first call is not the one that waits
    for moto to load the service."""
    client(endpoint_url, topology.PRIMARY_REGION, "sts", **credentials).get_caller_identity()
    client(endpoint_url, topology.PRIMARY_REGION, "route53", **credentials).list_hosted_zones()
