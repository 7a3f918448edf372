#!/usr/bin/env python
"""Read or disturb the route-table state of a test world by direct EC2 calls (not the module's word).

    routes.py CONN show --vip VIP VPC_ID [VPC_ID ...]   -> JSON: every route of every table, the VIP's
                                                        route per table, src/dst check of every ENI
    routes.py CONN point RTB DESTINATION ENI             -> replace the route's target with ENI
    routes.py CONN blackhole RTB DESTINATION SUBNET      -> route to a fresh ENI, then delete that ENI
    routes.py CONN delete RTB DESTINATION                -> delete the route
    routes.py CONN add-cidr VPC_ID CIDR                  -> associate a secondary CIDR with the VPC

CONN is --endpoint-url URL --region REGION --access-key KEY --secret-key SECRET.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Dict, List

import boto3

TARGET_KEYS = ("NetworkInterfaceId", "InstanceId", "GatewayId", "NatGatewayId", "TransitGatewayId",
               "VpcPeeringConnectionId")


def route_target(route: Dict[str, Any]) -> str:
    return next((route[k] for k in TARGET_KEYS if route.get(k)), "none")


def show(ec2: Any, vip: str, vpc_ids: List[str]) -> Dict[str, Any]:
    tables = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": vpc_ids}])["RouteTables"]
    enis = ec2.describe_network_interfaces(Filters=[{"Name": "vpc-id", "Values": vpc_ids}])["NetworkInterfaces"]
    vpcs = ec2.describe_vpcs(VpcIds=vpc_ids)["Vpcs"]
    state: Dict[str, Any] = {"route_tables": {}, "vip": {}, "source_dest_check": {}, "cidrs": {}}
    for table in tables:
        routes = {r.get("DestinationCidrBlock", "?"): {"target": route_target(r), "state": r.get("State")}
                  for r in table.get("Routes", [])}
        state["route_tables"][table["RouteTableId"]] = routes
        state["vip"][table["RouteTableId"]] = routes.get(f"{vip}/32", {"target": "missing", "state": "missing"})
    for eni in enis:
        state["source_dest_check"][eni["NetworkInterfaceId"]] = eni.get("SourceDestCheck")
    for vpc in vpcs:
        state["cidrs"][vpc["VpcId"]] = sorted(a["CidrBlock"] for a in vpc.get("CidrBlockAssociationSet", []))
    return state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("endpoint-url", "region", "access-key", "secret-key"):
        parser.add_argument(f"--{name}", required=True)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("show")
    p.add_argument("--vip", required=True)
    p.add_argument("vpc_ids", nargs="+")
    p = sub.add_parser("point")
    p.add_argument("rtb")
    p.add_argument("destination")
    p.add_argument("eni")
    p = sub.add_parser("blackhole")
    p.add_argument("rtb")
    p.add_argument("destination")
    p.add_argument("subnet")
    p = sub.add_parser("delete")
    p.add_argument("rtb")
    p.add_argument("destination")
    p = sub.add_parser("add-cidr")
    p.add_argument("vpc_id")
    p.add_argument("cidr")
    args = parser.parse_args()

    ec2 = boto3.client("ec2", endpoint_url=args.endpoint_url, region_name=args.region,
                       aws_access_key_id=args.access_key, aws_secret_access_key=args.secret_key)
    if args.command == "show":
        print(json.dumps(show(ec2, args.vip, args.vpc_ids), indent=1, sort_keys=True))
    elif args.command == "point":
        ec2.replace_route(RouteTableId=args.rtb, DestinationCidrBlock=args.destination, NetworkInterfaceId=args.eni)
    elif args.command == "blackhole":
        eni = ec2.create_network_interface(SubnetId=args.subnet)["NetworkInterface"]["NetworkInterfaceId"]
        ec2.replace_route(RouteTableId=args.rtb, DestinationCidrBlock=args.destination, NetworkInterfaceId=eni)
        ec2.delete_network_interface(NetworkInterfaceId=eni)
        print(eni)
    elif args.command == "delete":
        ec2.delete_route(RouteTableId=args.rtb, DestinationCidrBlock=args.destination)
    else:
        ec2.associate_vpc_cidr_block(VpcId=args.vpc_id, CidrBlock=args.cidr)


if __name__ == "__main__":
    main()
