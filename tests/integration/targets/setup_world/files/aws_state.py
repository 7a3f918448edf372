#!/usr/bin/env python
"""Read the state of a test world straight from the AWS endpoint (describe calls only) and print JSON.

The targets judge a module by what AWS says, never by the module's own result. One sub-command per
kind of state:

    aws_state.py CONN routes --vip VIP VPC_ID [VPC_ID...]
        -> {"route_tables": {RTB: {DESTINATION: {"target", "state"}}}, "vip": {RTB: the VIP's /32 route
            ({"target": "missing", ...} if none)}, "source_dest_check": {ENI: bool}, "cidrs": {VPC: [CIDR]}}
    aws_state.py CONN eip ALLOCATION_ID
        -> {"public_ip", "allocation_id", "network_interface_id", "private_ip", "addresses"}
           ("addresses": how many Elastic IPs the account holds, to see that nothing was allocated)
    aws_state.py CONN records ZONE_ID [ZONE_ID...]
        -> {"zones": [every hosted zone id], "records": {ZONE_ID: [{"name", "type", "ttl", "values"}]}}
    aws_state.py CONN pair VPC_ID CLUSTER [CLUSTER...]
        -> {"clusters": {CLUSTER: {"instances": {node: {..., "metadata": {HttpTokens, HttpPutResponseHopLimit,
                                                              HttpEndpoint}, "root_encrypted": bool}},
                                   "security_group": {...} or null,
                                   "role": {...} or null, "instance_profile": {...} or null}},
            "counts": {"instances", "security_groups", "roles", "instance_profiles"}}

CONN is --endpoint-url URL [--region R] [--access-key KEY] [--secret-key SECRET]. The writes a test
makes behind a module's back are aws_change.py's, next to this file.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Dict, List, Optional

import boto3

PROTOCOLS = {"6": "tcp", "17": "udp"}
ROUTE_TARGETS = ("NetworkInterfaceId", "InstanceId", "GatewayId", "NatGatewayId", "TransitGatewayId",
                 "VpcPeeringConnectionId")


def connection_parser() -> argparse.ArgumentParser:
    """The CONN options, shared with aws_change.py as a parent parser."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--access-key", default="testing")
    parser.add_argument("--secret-key", default="testing")
    return parser


def client(args: argparse.Namespace, service: str) -> Any:
    session = boto3.session.Session(aws_access_key_id=args.access_key, aws_secret_access_key=args.secret_key,
                                    region_name=args.region)
    return session.client(service, endpoint_url=args.endpoint_url)


def tags(item: Dict[str, Any]) -> Dict[str, str]:
    return {t["Key"]: t["Value"] for t in item.get("Tags") or item.get("TagSet") or []}


# ---- routes ------------------------------------------------------------------------------------------

def route_target(route: Dict[str, Any]) -> str:
    return next((route[k] for k in ROUTE_TARGETS if route.get(k)), "none")


def routes(ec2: Any, vip: str, vpc_ids: List[str]) -> Dict[str, Any]:
    tables = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": vpc_ids}])["RouteTables"]
    enis = ec2.describe_network_interfaces(Filters=[{"Name": "vpc-id", "Values": vpc_ids}])["NetworkInterfaces"]
    vpcs = ec2.describe_vpcs(VpcIds=vpc_ids)["Vpcs"]
    state: Dict[str, Any] = {"route_tables": {}, "vip": {}, "source_dest_check": {}, "cidrs": {}}
    for table in tables:
        found = {r.get("DestinationCidrBlock", "?"): {"target": route_target(r), "state": r.get("State")}
                 for r in table.get("Routes", [])}
        state["route_tables"][table["RouteTableId"]] = found
        state["vip"][table["RouteTableId"]] = found.get(f"{vip}/32", {"target": "missing", "state": "missing"})
    for eni in enis:
        state["source_dest_check"][eni["NetworkInterfaceId"]] = eni.get("SourceDestCheck")
    for vpc in vpcs:
        state["cidrs"][vpc["VpcId"]] = sorted(a["CidrBlock"] for a in vpc.get("CidrBlockAssociationSet", []))
    return state


# ---- Elastic IP --------------------------------------------------------------------------------------

def eip(ec2: Any, allocation_id: str) -> Dict[str, Any]:
    # describe_addresses: the one view that is exact right after a re-association (moto and EC2).
    address = ec2.describe_addresses(AllocationIds=[allocation_id])["Addresses"][0]
    return {"public_ip": address["PublicIp"], "allocation_id": address["AllocationId"],
            "network_interface_id": address.get("NetworkInterfaceId") or None,
            "private_ip": address.get("PrivateIpAddress") or None,
            "addresses": len(ec2.describe_addresses()["Addresses"])}


# ---- Route 53 records --------------------------------------------------------------------------------

def record_sets(r53: Any, zone_id: str) -> List[Dict[str, Any]]:
    pages = r53.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone_id)
    found = [{"name": s["Name"].lower(), "type": s["Type"], "ttl": s.get("TTL"),
              "values": sorted(r["Value"] for r in s.get("ResourceRecords", []))}
             for page in pages for s in page["ResourceRecordSets"]]
    return sorted(found, key=lambda s: (s["name"], s["type"]))


def records(r53: Any, zone_ids: List[str]) -> Dict[str, Any]:
    zones = [z["Id"].split("/")[-1] for page in r53.get_paginator("list_hosted_zones").paginate()
             for z in page["HostedZones"]]
    return {"zones": sorted(zones), "records": {zone_id: record_sets(r53, zone_id) for zone_id in zone_ids}}


# ---- cluster pair ------------------------------------------------------------------------------------

def rules(group: Dict[str, Any]) -> List[str]:
    found = set()
    for perm in group.get("IpPermissions", []):
        proto = PROTOCOLS.get(str(perm["IpProtocol"]), str(perm["IpProtocol"]))
        low, high = perm.get("FromPort"), perm.get("ToPort")
        ports = str(low) if low == high else f"{low}-{high}"
        for pair in perm.get("UserIdGroupPairs", []):
            found.add(f"{proto} {ports} from {'self' if pair['GroupId'] == group['GroupId'] else pair['GroupId']}")
        for rng in perm.get("IpRanges", []):
            found.add(f"{proto} {ports} from {rng['CidrIp']}")
    return sorted(found)


def root_encrypted(ec2: Any, inst: Dict[str, Any]) -> Optional[bool]:
    """The root EBS volume's Encrypted flag, as describe_volumes says (None: no EBS root)."""
    volume_id = next((m["Ebs"]["VolumeId"] for m in inst.get("BlockDeviceMappings", [])
                      if m["DeviceName"] == inst.get("RootDeviceName") and "Ebs" in m), None)
    if volume_id is None:
        return None
    return ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]["Encrypted"]


def live_instances(ec2: Any, filters: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    filters = filters + [{"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}]
    return [i for r in ec2.describe_instances(Filters=filters)["Reservations"] for i in r["Instances"]]


def pair_instance(ec2: Any, inst: Dict[str, Any]) -> Dict[str, Any]:
    eni_id = inst["NetworkInterfaces"][0]["NetworkInterfaceId"]
    eni = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"][0]
    return {"instance_id": inst["InstanceId"], "state": inst["State"]["Name"],
            "availability_zone": inst["Placement"]["AvailabilityZone"], "subnet_id": inst["SubnetId"],
            "private_ip": inst["PrivateIpAddress"], "tags": tags(inst),
            "instance_profile": (inst.get("IamInstanceProfile") or {}).get("Arn"),
            "network_interface_id": eni_id, "source_dest_check": eni["SourceDestCheck"],
            "groups": sorted(g["GroupName"] for g in eni["Groups"]), "eni_tags": tags(eni),
            "metadata": {k: (inst.get("MetadataOptions") or {}).get(k)
                         for k in ("HttpTokens", "HttpPutResponseHopLimit", "HttpEndpoint")},
            "root_encrypted": root_encrypted(ec2, inst)}


def pair_role(iam: Any, name: str) -> Optional[Dict[str, Any]]:
    try:
        found = iam.get_role(RoleName=name)["Role"]
    except iam.exceptions.NoSuchEntityException:
        return None
    role = {"arn": found["Arn"], "trust": found["AssumeRolePolicyDocument"], "tags": tags(found),
            "policies": iam.list_role_policies(RoleName=name)["PolicyNames"], "policy": None}
    if "ec2ha-node" in role["policies"]:
        role["policy"] = iam.get_role_policy(RoleName=name, PolicyName="ec2ha-node")["PolicyDocument"]
    return role


def pair_profile(iam: Any, name: str) -> Optional[Dict[str, Any]]:
    try:
        found = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
    except iam.exceptions.NoSuchEntityException:
        return None
    return {"arn": found["Arn"], "roles": [r["RoleName"] for r in found["Roles"]]}


def cluster(ec2: Any, iam: Any, vpc_id: str, name: str) -> Dict[str, Any]:
    instances = {tags(inst).get("ec2ha:node", inst["InstanceId"]): pair_instance(ec2, inst)
                 for inst in live_instances(ec2, [{"Name": "tag:ec2ha:cluster", "Values": [name]}])}
    groups = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc_id]},
                                                   {"Name": "group-name", "Values": [f"{name}-cluster"]}])
    group = groups["SecurityGroups"][0] if groups["SecurityGroups"] else None
    return {"instances": instances, "role": pair_role(iam, f"{name}-node"),
            "instance_profile": pair_profile(iam, f"{name}-node"),
            "security_group": {"id": group["GroupId"], "rules": rules(group), "tags": tags(group)} if group else None}


def pair(ec2: Any, iam: Any, vpc_id: str, names: List[str]) -> Dict[str, Any]:
    counts = {"instances": len(live_instances(ec2, [])),
              "security_groups": len(ec2.describe_security_groups()["SecurityGroups"]),
              "roles": len(iam.list_roles()["Roles"]),
              "instance_profiles": len(iam.list_instance_profiles()["InstanceProfiles"])}
    return {"clusters": {n: cluster(ec2, iam, vpc_id, n) for n in names}, "counts": counts}


# ---- command line ------------------------------------------------------------------------------------

def read(args: argparse.Namespace) -> Dict[str, Any]:
    if args.kind == "routes":
        return routes(client(args, "ec2"), args.vip, args.vpc_ids)
    if args.kind == "eip":
        return eip(client(args, "ec2"), args.allocation_id)
    if args.kind == "records":
        return records(client(args, "route53"), args.zone_ids)
    return pair(client(args, "ec2"), client(args, "iam"), args.vpc_id, args.names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], parents=[connection_parser()])
    kinds = parser.add_subparsers(dest="kind", required=True)
    p = kinds.add_parser("routes", help="the route tables, VIP routes, src/dst checks and CIDRs of VPCs")
    p.add_argument("--vip", required=True)
    p.add_argument("vpc_ids", nargs="+")
    p = kinds.add_parser("eip", help="where an Elastic IP is associated")
    p.add_argument("allocation_id")
    p = kinds.add_parser("records", help="every hosted zone id and the records of the zones named")
    p.add_argument("zone_ids", nargs="+")
    p = kinds.add_parser("pair", help="the instances, security group, role and profile of cluster pairs")
    p.add_argument("vpc_id")
    p.add_argument("names", nargs="+")
    print(json.dumps(read(parser.parse_args()), indent=1, sort_keys=True, default=str))


if __name__ == "__main__":
    main()
