"""The lab's fixed names and address plan, shared by every part of the lab (read-only contract).

One router namespace models every VPC router, the internet gateway, the Direct Connect link
and VPC peering (the lab's VPCs must not overlap, as peered VPCs must not in AWS). Routes of each
moto route table become a Linux routing table in the router namespace, selected by source
subnet (ip rule), so a VIP route applies to exactly the subnets associated with that table.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STATE_DIR = REPO / "lab" / "state"          # ignored by git; everything the lab writes lives here

PREFIX = "e2h-"                              # every namespace the lab creates starts with this
ROUTER_NS = "e2h-router"                     # VPC routers + IGW + Direct Connect + peering
CLIENT_NS = "e2h-client"                     # client inside the primary VPC (subnet a)
INTERNET_NS = "e2h-internet"                 # client on the internet (reaches EIPs only)
ONPREM_NS = "e2h-onprem"                     # client on premises behind Direct Connect

# Tags that ask the lab to act.
LAB_VPC_TAG = "ec2ha:lab"                    # on a VPC: the data plane serves it (value "true")
LAB_HOST_TAG = "ec2ha:lab-host"              # on an instance: the hypervisor backs it (value "true")

# The AWS API as the hosts see it: moto behind TLS, under the real AWS host names.
AWS_API_ADDRESS = "198.18.0.2"               # on a dummy interface in ROUTER_NS, port 443
IMDS_ADDRESS = "169.254.169.254"             # inside each host namespace, port 80

# The lab world created by `lab up` (regions, VPCs, subnets).
PRIMARY_REGION = "us-east-1"
DR_REGION = "us-west-2"
PRIMARY_VPC_CIDR = "10.0.0.0/16"
PRIMARY_SUBNETS = {"a": "10.0.1.0/24", "b": "10.0.2.0/24"}   # AZ us-east-1a, us-east-1b
DR_VPC_CIDR = "10.1.0.0/16"
DR_SUBNETS = {"a": "10.1.1.0/24"}                            # AZ us-west-2a
CLIENT_ADDRESS = "10.0.1.250"                # e2h-client, in primary subnet a
INTERNET_CIDR = "203.0.113.0/24"             # router side .1, e2h-internet .10
ONPREM_CIDR = "172.16.0.0/24"                # router side .1 (the DX link), e2h-onprem .10
# DNS: the Route 53 Resolver of a VPC sits at VPC base + 2 (10.0.0.2, 10.1.0.2), in ROUTER_NS;
# on premises resolves through the primary VPC's resolver over Direct Connect (an inbound endpoint).


def host_netns(instance_id: str) -> str:
    """The network namespace of the lab host backing an EC2 instance."""
    return PREFIX + instance_id
