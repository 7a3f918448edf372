#!/usr/bin/env python
"""Read (or prepare) the Elastic IP test state straight from the AWS endpoint and print JSON.

The tests judge the module by what EC2 says, never by the module's own result:

    eip_state.py --endpoint-url URL --region R show ALLOCATION_ID
        -> {"public_ip", "allocation_id", "network_interface_id", "private_ip", "addresses"}
           ("addresses": how many Elastic IPs the account holds, to see that nothing was allocated)
    eip_state.py --endpoint-url URL --region R prepare ENI_ID [ENI_ID...]
        -> {"secondary_ip": a new secondary private IP on the first ENI,
            "primary_ips": {ENI_ID: its primary private IP},
            "standard_ip": a new EC2-Classic (domain standard) address}
"""

from __future__ import annotations

import argparse
import json

import boto3


def client(args: argparse.Namespace):
    return boto3.session.Session(aws_access_key_id=args.access_key, aws_secret_access_key=args.secret_key,
                                 region_name=args.region).client("ec2", endpoint_url=args.endpoint_url)


def show(ec2, allocation_id: str) -> dict:
    # describe_addresses: the one view that is exact right after a re-association (moto and EC2).
    address = ec2.describe_addresses(AllocationIds=[allocation_id])["Addresses"][0]
    return {"public_ip": address["PublicIp"], "allocation_id": address["AllocationId"],
            "network_interface_id": address.get("NetworkInterfaceId") or None,
            "private_ip": address.get("PrivateIpAddress") or None,
            "addresses": len(ec2.describe_addresses()["Addresses"])}


def private_ips(ec2, eni_id: str) -> set:
    eni = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"][0]
    return {a["PrivateIpAddress"] for a in eni["PrivateIpAddresses"]}


def prepare(ec2, eni_ids: list) -> dict:
    before = private_ips(ec2, eni_ids[0])
    ec2.assign_private_ip_addresses(NetworkInterfaceId=eni_ids[0], SecondaryPrivateIpAddressCount=1)
    primaries = {e["NetworkInterfaceId"]: e["PrivateIpAddress"]
                 for e in ec2.describe_network_interfaces(NetworkInterfaceIds=eni_ids)["NetworkInterfaces"]}
    standard = ec2.allocate_address(Domain="standard")
    return {"secondary_ip": sorted(private_ips(ec2, eni_ids[0]) - before)[0], "primary_ips": primaries,
            "standard_ip": standard["PublicIp"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--access-key", default="testing")
    parser.add_argument("--secret-key", default="testing")
    parser.add_argument("action", choices=["show", "prepare"])
    parser.add_argument("resources", nargs="+")
    args = parser.parse_args()
    ec2 = client(args)
    result = show(ec2, args.resources[0]) if args.action == "show" else prepare(ec2, args.resources)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
