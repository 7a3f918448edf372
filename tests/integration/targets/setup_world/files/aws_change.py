#!/usr/bin/env python
"""Change a test world by direct AWS calls, behind the module's back: what a target adds to the world
before a test, or the split and dangling states it puts the world in. Prints JSON where it makes ids.

    aws_change.py CONN prepare-pair VPC_ID SUBNET_A
        -> {"image_id", "subnet_a2": a second subnet in SUBNET_A's AZ, "other_subnet": a subnet of another
            VPC, "subnet_a_cidr"}
    aws_change.py CONN prepare-eip ENI_ID [ENI_ID...]
        -> {"secondary_ip": a new secondary private IP on the first ENI,
            "primary_ips": {ENI_ID: its primary private IP},
            "standard_ip": a new EC2-Classic (domain standard) address}
    aws_change.py CONN prepare-records PRIVATE_ZONE_ID NODE2_ENI
        -> {"twin_zone_id": a public zone with the private zone's name,
            "node2_public_ip": a new Elastic IP put on NODE2_ENI,
            "cname": a CNAME record name created in the private zone}
    aws_change.py CONN point RTB DESTINATION ENI        -> replace the route's target with ENI
    aws_change.py CONN blackhole RTB DESTINATION SUBNET -> route to a fresh ENI, then delete that ENI
    aws_change.py CONN delete-route RTB DESTINATION     -> delete the route
    aws_change.py CONN add-cidr VPC_ID CIDR             -> associate a secondary CIDR with the VPC
    aws_change.py CONN tag KEY VALUE RESOURCE [RESOURCE...] -> tag EC2 resources
    aws_change.py CONN disassociate ALLOCATION_ID       -> disassociate the Elastic IP
    aws_change.py CONN upsert-record ZONE_ID NAME VALUE -> UPSERT the A record NAME (TTL 60) to VALUE

CONN is aws_state.py's (the reader next to this file): --endpoint-url URL [--region R] [--access-key KEY]
[--secret-key SECRET].
"""

from __future__ import annotations

import argparse
import json
import uuid
from typing import Any, Callable, Dict, List, Optional

from aws_state import client, connection_parser


def prepare_pair(ec2: Any, vpc_id: str, subnet_a: str) -> Dict[str, Any]:
    subnet = ec2.describe_subnets(SubnetIds=[subnet_a])["Subnets"][0]
    base = subnet["CidrBlock"].split(".")
    second = ec2.create_subnet(VpcId=vpc_id, CidrBlock=f"{base[0]}.{base[1]}.9.0/24",
                               AvailabilityZone=subnet["AvailabilityZone"])["Subnet"]["SubnetId"]
    other_vpc = ec2.create_vpc(CidrBlock="172.31.0.0/16")["Vpc"]["VpcId"]
    other = ec2.create_subnet(VpcId=other_vpc, CidrBlock="172.31.1.0/24",
                              AvailabilityZone=subnet["AvailabilityZone"][:-1] + "b")["Subnet"]["SubnetId"]
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    return {"image_id": image, "subnet_a2": second, "other_subnet": other, "subnet_a_cidr": subnet["CidrBlock"]}


def private_ips(ec2: Any, eni_id: str) -> set:
    eni = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"][0]
    return {a["PrivateIpAddress"] for a in eni["PrivateIpAddresses"]}


def prepare_eip(ec2: Any, eni_ids: List[str]) -> Dict[str, Any]:
    before = private_ips(ec2, eni_ids[0])
    ec2.assign_private_ip_addresses(NetworkInterfaceId=eni_ids[0], SecondaryPrivateIpAddressCount=1)
    primaries = {e["NetworkInterfaceId"]: e["PrivateIpAddress"]
                 for e in ec2.describe_network_interfaces(NetworkInterfaceIds=eni_ids)["NetworkInterfaces"]}
    standard = ec2.allocate_address(Domain="standard")
    return {"secondary_ip": sorted(private_ips(ec2, eni_ids[0]) - before)[0], "primary_ips": primaries,
            "standard_ip": standard["PublicIp"]}


def upsert_record(r53: Any, zone_id: str, name: str, value: str, kind: str = "A", ttl: int = 60,
                  action: str = "UPSERT") -> None:
    r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [{
        "Action": action, "ResourceRecordSet": {"Name": name, "Type": kind, "TTL": ttl,
                                                "ResourceRecords": [{"Value": value}]}}]})


def prepare_records(r53: Any, ec2: Any, private_zone_id: str, node2_eni: str) -> Dict[str, Any]:
    name = r53.get_hosted_zone(Id=private_zone_id)["HostedZone"]["Name"]
    twin = r53.create_hosted_zone(Name=name, CallerReference=f"twin-{uuid.uuid4().hex}")
    address = ec2.allocate_address(Domain="vpc")
    ec2.associate_address(AllocationId=address["AllocationId"], NetworkInterfaceId=node2_eni)
    cname = f"alias.{name}"
    upsert_record(r53, private_zone_id, cname, "elsewhere.example.com", kind="CNAME", ttl=300, action="CREATE")
    return {"twin_zone_id": twin["HostedZone"]["Id"].split("/")[-1], "node2_public_ip": address["PublicIp"],
            "cname": cname}


def blackhole(ec2: Any, rtb: str, destination: str, subnet: str) -> str:
    eni = ec2.create_network_interface(SubnetId=subnet)["NetworkInterface"]["NetworkInterfaceId"]
    ec2.replace_route(RouteTableId=rtb, DestinationCidrBlock=destination, NetworkInterfaceId=eni)
    ec2.delete_network_interface(NetworkInterfaceId=eni)
    return eni


def disassociate(ec2: Any, allocation_id: str) -> None:
    address = ec2.describe_addresses(AllocationIds=[allocation_id])["Addresses"][0]
    ec2.disassociate_address(AssociationId=address["AssociationId"])


def change(args: argparse.Namespace) -> Optional[Dict[str, Any]]:
    """Make the change; a prepare-* change returns the ids it made."""
    ec2 = client(args, "ec2")
    a = args.args
    changes: Dict[str, Callable[[], Any]] = {
        "prepare-pair": lambda: prepare_pair(ec2, a[0], a[1]),
        "prepare-eip": lambda: prepare_eip(ec2, a),
        "prepare-records": lambda: prepare_records(client(args, "route53"), ec2, a[0], a[1]),
        "point": lambda: ec2.replace_route(RouteTableId=a[0], DestinationCidrBlock=a[1], NetworkInterfaceId=a[2]),
        "blackhole": lambda: blackhole(ec2, a[0], a[1], a[2]),
        "delete-route": lambda: ec2.delete_route(RouteTableId=a[0], DestinationCidrBlock=a[1]),
        "add-cidr": lambda: ec2.associate_vpc_cidr_block(VpcId=a[0], CidrBlock=a[1]),
        "tag": lambda: ec2.create_tags(Resources=a[2:], Tags=[{"Key": a[0], "Value": a[1]}]),
        "disassociate": lambda: disassociate(ec2, a[0]),
        "upsert-record": lambda: upsert_record(client(args, "route53"), a[0], a[1], a[2]),
    }
    result = changes[args.change]()
    return result if args.change.startswith("prepare-") else None


# How many arguments each change takes at the least (and at the most, but for prepare-eip and tag).
ARITY = {"prepare-pair": 2, "prepare-eip": 1, "prepare-records": 2, "point": 3, "blackhole": 3,
         "delete-route": 2, "add-cidr": 2, "tag": 3, "disassociate": 1, "upsert-record": 3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], parents=[connection_parser()])
    parser.add_argument("change", choices=sorted(ARITY))
    parser.add_argument("args", nargs="+")
    args = parser.parse_args()
    wanted, given = ARITY[args.change], len(args.args)
    if given < wanted or (given > wanted and args.change not in ("prepare-eip", "tag")):
        parser.error(f"{args.change} takes {wanted} arguments, not {given}")
    result = change(args)
    if result is not None:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
