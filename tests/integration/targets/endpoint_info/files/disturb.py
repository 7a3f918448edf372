#!/usr/bin/env python
"""Put a test world into split or dangling states by direct AWS calls, behind the module's back.

    disturb.py WORLD_JSON tag-cluster NAME     -> tag node1 and node2 with ec2ha:cluster=NAME
    disturb.py WORLD_JSON split-routes         -> route table 'a' to node2, the others stay on node1
    disturb.py WORLD_JSON unassociate-eip      -> disassociate the Elastic IP
    disturb.py WORLD_JSON foreign-record       -> the A record points at an address of no node
"""

from __future__ import annotations

import json
import sys

import boto3


def main() -> None:
    world = json.loads(sys.argv[1])
    action = sys.argv[2]
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                    region_name=world["region"])
    ec2 = session.client("ec2", endpoint_url=world["endpoint_url"])
    r53 = session.client("route53", endpoint_url=world["endpoint_url"])
    if action == "tag-cluster":
        ec2.create_tags(Resources=[world["node1"]["id"], world["node2"]["id"]],
                        Tags=[{"Key": "ec2ha:cluster", "Value": sys.argv[3]}])
    elif action == "split-routes":
        ec2.replace_route(RouteTableId=world["route_tables"]["a"], DestinationCidrBlock=world["vip"] + "/32",
                          NetworkInterfaceId=world["node2"]["eni"])
    elif action == "unassociate-eip":
        address = ec2.describe_addresses(AllocationIds=[world["eip"]["allocation_id"]])["Addresses"][0]
        ec2.disassociate_address(AssociationId=address["AssociationId"])
    elif action == "foreign-record":
        r53.change_resource_record_sets(HostedZoneId=world["private_zone"]["id"], ChangeBatch={"Changes": [{
            "Action": "UPSERT", "ResourceRecordSet": {"Name": world["record"], "Type": "A", "TTL": 60,
                                                      "ResourceRecords": [{"Value": "198.51.100.7"}]}}]})
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
