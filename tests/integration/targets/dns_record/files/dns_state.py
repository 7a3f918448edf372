#!/usr/bin/env python
"""Read (or prepare) the Route 53 test state straight from the AWS endpoint and print JSON.

The tests judge the module by what Route 53 says, never by the module's own result:

    dns_state.py --endpoint-url URL show ZONE_ID [ZONE_ID...]
        -> {"zones": [every hosted zone id], "records": {ZONE_ID: [{"name", "type", "ttl", "values"}, ...]}}
    dns_state.py --endpoint-url URL prepare PRIVATE_ZONE_ID NODE2_ENI
        -> {"twin_zone_id": a public zone with the private zone's name,
            "node2_public_ip": a new Elastic IP put on NODE2_ENI,
            "cname": a CNAME record name created in the private zone}
"""

from __future__ import annotations

import argparse
import json
import uuid

import boto3


def clients(args: argparse.Namespace):
    session = boto3.session.Session(aws_access_key_id=args.access_key, aws_secret_access_key=args.secret_key,
                                    region_name=args.region)
    return session.client("route53", endpoint_url=args.endpoint_url), session.client("ec2", endpoint_url=args.endpoint_url)


def record_sets(r53, zone_id: str) -> list:
    pages = r53.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone_id)
    found = [{"name": s["Name"].lower(), "type": s["Type"], "ttl": s.get("TTL"),
              "values": sorted(r["Value"] for r in s.get("ResourceRecords", []))}
             for page in pages for s in page["ResourceRecordSets"]]
    return sorted(found, key=lambda s: (s["name"], s["type"]))


def show(r53, zone_ids: list) -> dict:
    zones = [z["Id"].split("/")[-1] for page in r53.get_paginator("list_hosted_zones").paginate()
             for z in page["HostedZones"]]
    return {"zones": sorted(zones), "records": {zone_id: record_sets(r53, zone_id) for zone_id in zone_ids}}


def prepare(r53, ec2, private_zone_id: str, node2_eni: str) -> dict:
    name = r53.get_hosted_zone(Id=private_zone_id)["HostedZone"]["Name"]
    twin = r53.create_hosted_zone(Name=name, CallerReference=f"twin-{uuid.uuid4().hex}")
    eip = ec2.allocate_address(Domain="vpc")
    ec2.associate_address(AllocationId=eip["AllocationId"], NetworkInterfaceId=node2_eni)
    cname = f"alias.{name}"
    r53.change_resource_record_sets(HostedZoneId=private_zone_id, ChangeBatch={"Changes": [{
        "Action": "CREATE", "ResourceRecordSet": {"Name": cname, "Type": "CNAME", "TTL": 300,
                                                  "ResourceRecords": [{"Value": "elsewhere.example.com"}]}}]})
    return {"twin_zone_id": twin["HostedZone"]["Id"].split("/")[-1], "node2_public_ip": eip["PublicIp"],
            "cname": cname}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--access-key", default="testing")
    parser.add_argument("--secret-key", default="testing")
    parser.add_argument("action", choices=["show", "prepare"])
    parser.add_argument("resources", nargs="+")
    args = parser.parse_args()
    r53, ec2 = clients(args)
    if args.action == "show":
        print(json.dumps(show(r53, args.resources)))
    else:
        print(json.dumps(prepare(r53, ec2, *args.resources)))


if __name__ == "__main__":
    main()
