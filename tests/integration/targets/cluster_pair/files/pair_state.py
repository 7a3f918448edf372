#!/usr/bin/env python
"""Read (or prepare) the cluster pair test state straight from EC2 and IAM and print JSON.

The tests judge the module by what AWS says, never by the module's own result:

    pair_state.py --endpoint-url URL --region R show VPC_ID CLUSTER [CLUSTER...]
        -> {"clusters": {CLUSTER: {"instances": {node: {..., "metadata": {HttpTokens, HttpPutResponseHopLimit,
                                                              HttpEndpoint}, "root_encrypted": bool}},
                                   "security_group": {...} or null,
                                   "role": {...} or null, "instance_profile": [role names] or null}},
            "counts": {"instances", "security_groups", "roles", "instance_profiles"}}
    pair_state.py --endpoint-url URL --region R prepare VPC_ID SUBNET_A
        -> {"image_id", "subnet_a2": a second subnet in SUBNET_A's AZ, "other_subnet": a subnet of another VPC}
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Dict, List

import boto3

PROTOCOLS = {"6": "tcp", "17": "udp"}


def clients(args: argparse.Namespace) -> Dict[str, Any]:
    session = boto3.session.Session(aws_access_key_id=args.access_key, aws_secret_access_key=args.secret_key,
                                    region_name=args.region)
    return {name: session.client(name, endpoint_url=args.endpoint_url) for name in ("ec2", "iam")}


def tags(item: Dict[str, Any]) -> Dict[str, str]:
    return {t["Key"]: t["Value"] for t in item.get("Tags") or item.get("TagSet") or []}


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


def root_encrypted(ec2: Any, inst: Dict[str, Any]) -> Any:
    """The root EBS volume's Encrypted flag, as describe_volumes says (None: no EBS root)."""
    volume_id = next((m["Ebs"]["VolumeId"] for m in inst.get("BlockDeviceMappings", [])
                      if m["DeviceName"] == inst.get("RootDeviceName") and "Ebs" in m), None)
    if volume_id is None:
        return None
    return ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]["Encrypted"]


def live_instances(ec2: Any, filters: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    filters = filters + [{"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}]
    return [i for r in ec2.describe_instances(Filters=filters)["Reservations"] for i in r["Instances"]]


def cluster(ec2: Any, iam: Any, vpc_id: str, name: str) -> Dict[str, Any]:
    instances = {}
    for inst in live_instances(ec2, [{"Name": "tag:ec2ha:cluster", "Values": [name]}]):
        eni_id = inst["NetworkInterfaces"][0]["NetworkInterfaceId"]
        eni = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"][0]
        instances[tags(inst).get("ec2ha:node", inst["InstanceId"])] = {
            "instance_id": inst["InstanceId"], "state": inst["State"]["Name"],
            "availability_zone": inst["Placement"]["AvailabilityZone"], "subnet_id": inst["SubnetId"],
            "private_ip": inst["PrivateIpAddress"], "tags": tags(inst),
            "instance_profile": (inst.get("IamInstanceProfile") or {}).get("Arn"),
            "network_interface_id": eni_id, "source_dest_check": eni["SourceDestCheck"],
            "groups": sorted(g["GroupName"] for g in eni["Groups"]), "eni_tags": tags(eni),
            "metadata": {k: (inst.get("MetadataOptions") or {}).get(k)
                         for k in ("HttpTokens", "HttpPutResponseHopLimit", "HttpEndpoint")},
            "root_encrypted": root_encrypted(ec2, inst)}
    groups = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc_id]},
                                                   {"Name": "group-name", "Values": [f"{name}-cluster"]}])
    group = groups["SecurityGroups"][0] if groups["SecurityGroups"] else None
    role = profile = None
    try:
        found = iam.get_role(RoleName=f"{name}-node")["Role"]
        role = {"arn": found["Arn"], "trust": found["AssumeRolePolicyDocument"], "tags": tags(found),
                "policies": iam.list_role_policies(RoleName=f"{name}-node")["PolicyNames"], "policy": None}
        if "ec2ha-node" in role["policies"]:
            role["policy"] = iam.get_role_policy(RoleName=f"{name}-node", PolicyName="ec2ha-node")["PolicyDocument"]
    except iam.exceptions.NoSuchEntityException:
        pass
    try:
        found = iam.get_instance_profile(InstanceProfileName=f"{name}-node")["InstanceProfile"]
        profile = {"arn": found["Arn"], "roles": [r["RoleName"] for r in found["Roles"]]}
    except iam.exceptions.NoSuchEntityException:
        pass
    return {"instances": instances, "role": role, "instance_profile": profile,
            "security_group": {"id": group["GroupId"], "rules": rules(group), "tags": tags(group)} if group else None}


def show(c: Dict[str, Any], vpc_id: str, names: List[str]) -> Dict[str, Any]:
    ec2, iam = c["ec2"], c["iam"]
    counts = {"instances": len(live_instances(ec2, [])),
              "security_groups": len(ec2.describe_security_groups()["SecurityGroups"]),
              "roles": len(iam.list_roles()["Roles"]),
              "instance_profiles": len(iam.list_instance_profiles()["InstanceProfiles"])}
    return {"clusters": {n: cluster(ec2, iam, vpc_id, n) for n in names}, "counts": counts}


def prepare(c: Dict[str, Any], vpc_id: str, subnet_a: str) -> Dict[str, Any]:
    ec2 = c["ec2"]
    subnet = ec2.describe_subnets(SubnetIds=[subnet_a])["Subnets"][0]
    base = subnet["CidrBlock"].split(".")
    second = ec2.create_subnet(VpcId=vpc_id, CidrBlock=f"{base[0]}.{base[1]}.9.0/24",
                               AvailabilityZone=subnet["AvailabilityZone"])["Subnet"]["SubnetId"]
    other_vpc = ec2.create_vpc(CidrBlock="172.31.0.0/16")["Vpc"]["VpcId"]
    other = ec2.create_subnet(VpcId=other_vpc, CidrBlock="172.31.1.0/24",
                              AvailabilityZone=subnet["AvailabilityZone"][:-1] + "b")["Subnet"]["SubnetId"]
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    return {"image_id": image, "subnet_a2": second, "other_subnet": other, "subnet_a_cidr": subnet["CidrBlock"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--access-key", default="testing")
    parser.add_argument("--secret-key", default="testing")
    parser.add_argument("action", choices=["show", "prepare"])
    parser.add_argument("vpc_id")
    parser.add_argument("names", nargs="+")
    args = parser.parse_args()
    c = clients(args)
    result = show(c, args.vpc_id, args.names) if args.action == "show" else prepare(c, args.vpc_id, args.names[0])
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
