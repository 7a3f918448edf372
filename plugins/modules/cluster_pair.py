#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cluster_pair
short_description: Create or adopt the two EC2 instances of a cluster pair, with their security group and IAM role
version_added: 1.0.0
description:
  - Builds the AWS side of a two-node HA cluster in one VPC, the nodes in two subnets of different availability zones.
  - Creates (or adopts) the security group C(<name>-cluster), the IAM role C(<name>-node) with an EC2 trust policy and
    one inline policy C(ec2ha-node), the instance profile C(<name>-node) holding the role, and the two instances.
  - The security group opens only what the roles use - between the two nodes corosync knet (UDP O(corosync_port))
    and PostgreSQL (TCP 5432, replication and pg_rewind; the group references itself), SSH (TCP 22) from
    O(admin_cidrs) and PostgreSQL from O(client_cidrs). Nothing uses pcsd (TCP 2224) or SSH between the nodes, so
    neither is opened. Its ingress rules are reconciled exactly - missing ones are added, any other is removed (the
    pcsd and node-to-node SSH rules of earlier releases too) - because the group is the cluster's own.
  - The inline policy grants fencing (C(ec2:DescribeInstances), C(ec2:StopInstances), C(ec2:StartInstances) on
    instances tagged C(ec2ha:cluster=<name>)) and exactly the calls the ec2ha agents make for the chosen
    O(scenarios), scoped to O(route_table_ids), O(allocation_id), O(hosted_zone_id) and O(record_name).
    See RV(policy), the notes, and C(docs/security.md) for what IAM cannot scope.
  - Every node requires IMDSv2 (C(HttpTokens=required)) with a hop limit of 1 and the endpoint on - set at launch,
    converged on an existing or adopted instance (C(ec2:ModifyInstanceMetadataOptions), only when it differs).
  - A launched node's root volume is encrypted (O(encrypt_root_volume), O(kms_key_id)). An existing node's
    unencrypted root volume cannot be encrypted in place - it is left as it is, with a warning.
  - Every resource made or adopted is tagged C(ec2ha:cluster=<name>); instances (and their primary network
    interface) also C(ec2ha:node=<node name>), which is how a re-run finds the instances it launched.
  - An adopted instance (O(nodes[].instance_id)) joins the security group (its other groups stay), is tagged, gets
    the metadata options above, and gets the instance profile if it has none; an instance profile it already has is
    kept, with a warning.
  - With the V(vip_route) scenario, the source/destination check is turned off on each node's primary interface.
  - O(image_id), O(instance_type), O(key_name), O(user_data), O(encrypt_root_volume), O(kms_key_id) and
    O(nodes[].private_ip) are used at launch only; an existing node is never replaced or resized (a different private
    IP is an error).
  - Reads first and writes only the difference; a second run with the same input reports no change and makes no
    write. A run that failed midway leaves tagged resources that the next run finds and completes.
  - Input is checked against AWS before any write; a bad value fails with one sentence and changes nothing.
author: ec2ha.cluster developers (@ec2ha)
options:
  name:
    description:
      - The cluster name, 1 to 58 letters, digits or C(+=,.@_-). It names the security group C(<name>-cluster), the role
        and instance profile C(<name>-node), and is the value of the tag C(ec2ha:cluster).
    type: str
    required: true
  nodes:
    description:
      - Exactly two nodes, in two subnets of the same VPC and of different availability zones.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - The node's name; the C(Name) tag of an instance this module launches, and the C(ec2ha:node) tag.
          - A re-run finds the node's instance by the exact value of that tag (C(*) and C(?) are plain characters).
        type: str
        required: true
      subnet_id:
        description:
          - The subnet the node is in (launched there, or where the adopted instance must be).
        type: str
        required: true
      private_ip:
        description:
          - The node's primary private IPv4 address, inside its subnet and not one of the five AWS keeps.
          - Default - EC2 picks one. For an existing instance, a different address is an error.
        type: str
      instance_id:
        description:
          - Adopt this existing instance (pending or running, in O(nodes[].subnet_id)) instead of launching one.
        type: str
  image_id:
    description:
      - The AMI to launch nodes from. Required while a node has no instance yet.
    type: str
  instance_type:
    description:
      - The instance type of launched nodes. Required while a node has no instance yet.
    type: str
  key_name:
    description:
      - The EC2 key pair for launched nodes.
    type: str
  user_data:
    description:
      - User data for launched nodes (plain text; boto3 encodes it).
    type: str
  admin_cidrs:
    description:
      - CIDR blocks (IPv4 or IPv6) allowed to reach the nodes by SSH (TCP 22). Empty - no SSH ingress at all.
    type: list
    elements: str
    default: []
  client_cidrs:
    description:
      - CIDR blocks allowed to reach PostgreSQL (TCP 5432) on the nodes, for example the VPC's or the application's.
    type: list
    elements: str
    default: []
  corosync_port:
    description:
      - The UDP port of the corosync knet link between the nodes (the heartbeat role's C(heartbeat_knet_port)).
      - One port, because knet uses one per link; the 5404-5406 range of older guides is for corosync 2's udp/udpu
        transports.
    type: int
    default: 5405
  scenarios:
    description:
      - The recovery scenarios the nodes' agents run; the inline policy grants what each needs, plus fencing.
      - Each needs its resource options - V(vip_route) O(route_table_ids), V(elastic_ip) O(allocation_id),
        V(dns_record) O(hosted_zone_id) and O(record_name).
      - V(route_table) and V(route53), the names of release 1.0.0, are deprecated aliases of V(vip_route) and
        V(dns_record) (removed in 2.0.0).
    type: list
    elements: str
    choices: [vip_route, elastic_ip, dns_record, route_table, route53]
    default: []
  route_table_ids:
    description:
      - The route tables (in the pair's VPC) whose VIP route the agent replaces (or re-creates); the policy allows
        C(ec2:ReplaceRoute) and C(ec2:CreateRoute) on these only.
    type: list
    elements: str
    default: []
  allocation_id:
    description:
      - The Elastic IP's allocation id; the policy allows C(ec2:AssociateAddress) of this address only.
    type: str
  hosted_zone_id:
    description:
      - The Route 53 hosted zone id; the policy allows reading records in this zone only.
    type: str
  record_name:
    description:
      - The A record the dns_record agent moves (the recovery kit's record), a name inside the zone of
        O(hosted_zone_id) or one label relative to it. Required with the V(dns_record) scenario.
      - The policy allows C(route53:ChangeResourceRecordSets) on this record only (an UPSERT of type A), by the
        condition key C(route53:ChangeResourceRecordSetsNormalizedRecordNames).
    type: str
  encrypt_root_volume:
    description:
      - Launch nodes with an encrypted root volume (the image's root device, EBS encryption).
      - An existing or adopted node whose root volume is not encrypted gets a warning; EBS cannot encrypt it in place.
      - V(false) launches the root volume as the image and the account's EBS encryption default say.
    type: bool
    default: true
  kms_key_id:
    description:
      - The KMS key (key id, key ARN, alias name or alias ARN) that encrypts launched root volumes.
      - Default - the account's default EBS key. Needs O(encrypt_root_volume).
    type: str
  tags:
    description:
      - Extra tags on each node's instance and primary network interface, added to those the module sets
        (C(ec2ha:cluster), C(ec2ha:node), C(Name)), which cannot be set here. Tags already on a node stay.
      - For example C(ec2ha:lab-host=true) makes the embedded lab back each instance with a host.
    type: dict
    default: {}
  lab_host:
    description:
      - Deprecated (removed in 2.0.0) - use O(tags) with C(ec2ha:lab-host=true), which is what V(true) sets.
    type: bool
  wait_timeout:
    description:
      - Seconds to wait for launched instances to be running.
    type: float
    default: 300
extends_documentation_fragment:
  - ec2ha.cluster.aws
notes:
  - With C(--diff), before and after hold the security group's ingress rules, the role's policy and each node.
  - There is no C(state=absent) on purpose - the nodes hold the cluster's data; terminating them, and the role
    fencing depends on, is an act to take on its own, not a flag of a build-out module.
  - The node policy leaves out C(ec2:RebootInstances) (fence_aws reboots with off and on). C(ec2:CreateRoute) and
    C(ec2:ReplaceRoute) are allowed on the listed route tables only (the route table agent's monitor re-creates a
    VIP route deleted by hand); AWS has no condition key for a route's destination or target, so in those tables a
    node may write any route. C(ec2:Describe*) and C(route53:ListHostedZonesByName) support no resource-level
    permissions and are on C(*).
  - IAM permissions used by the module itself are C(ec2:Describe*) (subnets, instances, images, key pairs, network
    interfaces, volumes, route tables, addresses, security groups), C(route53:GetHostedZone),
    C(ec2:CreateSecurityGroup), C(ec2:AuthorizeSecurityGroupIngress), C(ec2:RevokeSecurityGroupIngress),
    C(ec2:CreateTags), C(ec2:RunInstances), C(ec2:ModifyInstanceMetadataOptions),
    C(ec2:ModifyNetworkInterfaceAttribute), C(ec2:AssociateIamInstanceProfile), C(iam:GetRole), C(iam:CreateRole),
    C(iam:UpdateAssumeRolePolicy), C(iam:TagRole), C(iam:GetRolePolicy), C(iam:PutRolePolicy),
    C(iam:GetInstanceProfile), C(iam:CreateInstanceProfile), C(iam:AddRoleToInstanceProfile) and C(iam:PassRole).
    With O(kms_key_id), the key must also let the caller use it for EBS (C(kms:CreateGrant), C(kms:Decrypt),
    C(kms:DescribeKey), C(kms:GenerateDataKeyWithoutPlaintext), C(kms:ReEncrypt*)).
seealso:
  - name: Fence agent for AWS
    description: How fence_aws stops and starts instances.
    link: https://github.com/ClusterLabs/fence-agents/blob/main/agents/aws/fence_aws.py
"""

EXAMPLES = r"""
- name: Build a pair for the vip_route and dns_record scenarios
  ec2ha.cluster.cluster_pair:
    name: pg
    nodes:
      - name: pg1
        subnet_id: subnet-0aaaaaaaaaaaaaaa1
        private_ip: 10.0.1.10
      - name: pg2
        subnet_id: subnet-0bbbbbbbbbbbbbbb2
    image_id: ami-0123456789abcdef0
    instance_type: t3.medium
    key_name: ops
    admin_cidrs: [10.99.0.0/16]
    client_cidrs: [10.0.0.0/16]
    scenarios: [vip_route, dns_record]
    route_table_ids: [rtb-0aaaaaaaaaaaaaaa1, rtb-0bbbbbbbbbbbbbbb2]
    hosted_zone_id: Z0123456789ABCDEFGHIJ
    record_name: primary.db.internal
    kms_key_id: alias/pg-ebs
    region: eu-west-1
  register: pair

- name: Adopt two existing instances for the Elastic IP scenario
  ec2ha.cluster.cluster_pair:
    name: web
    nodes:
      - {name: web1, subnet_id: subnet-0aaaaaaaaaaaaaaa1, instance_id: i-0123456789abcdef0}
      - {name: web2, subnet_id: subnet-0bbbbbbbbbbbbbbb2, instance_id: i-0fedcba9876543210}
    scenarios: [elastic_ip]
    allocation_id: eipalloc-0123456789abcdef0
    region: eu-west-1

- name: Preview the writes
  ec2ha.cluster.cluster_pair:
    name: pg
    nodes: "{{ pg_nodes }}"
    image_id: ami-0123456789abcdef0
    instance_type: t3.medium
    region: eu-west-1
  check_mode: true
  diff: true
  register: preview

- name: Add the nodes to the inventory
  ansible.builtin.add_host:
    name: "{{ item.key }}"
    groups: [cluster]
    ansible_host: "{{ item.value.private_ip }}"
    heartbeat_instance_id: "{{ item.value.instance_id }}"
  loop: "{{ pair.nodes | dict2items }}"
"""

RETURN = r"""
nodes:
  description:
    - Per node name, what an inventory needs. In check mode a node not launched yet has C(instance_id) V((new)).
  returned: success
  type: dict
  contains:
    instance_id:
      description: The instance id.
      type: str
      returned: success
      sample: i-0123456789abcdef0
    state:
      description: The instance state (V(running) after a launch).
      type: str
      returned: success
      sample: running
    private_ip:
      description: The primary private IPv4 address.
      type: str
      returned: success
      sample: 10.0.1.10
    public_ip:
      description: The public IPv4 address, if any.
      type: str
      returned: success
      sample: null
    network_interface_id:
      description: The primary network interface.
      type: str
      returned: success
      sample: eni-0123456789abcdef0
    availability_zone:
      description: The node's availability zone.
      type: str
      returned: success
      sample: eu-west-1a
    subnet_id:
      description: The node's subnet.
      type: str
      returned: success
      sample: subnet-0aaaaaaaaaaaaaaa1
    source_dest_check:
      description: The primary interface's source/destination check.
      type: bool
      returned: success
      sample: false
    metadata_options:
      description: The instance metadata options (in check mode, as they will be).
      type: dict
      returned: success
      contains:
        http_tokens:
          description: V(required) - only IMDSv2 session tokens are accepted.
          type: str
          returned: success
          sample: required
        http_put_response_hop_limit:
          description: How many network hops the token response may travel.
          type: int
          returned: success
          sample: 1
        http_endpoint:
          description: Whether the instance metadata endpoint is on.
          type: str
          returned: success
          sample: enabled
      sample: {"http_tokens": "required", "http_put_response_hop_limit": 1, "http_endpoint": "enabled"}
    root_volume_encrypted:
      description: Whether the root EBS volume is encrypted (null when unknown, as for a node to launch without
        encryption, or an instance-store root).
      type: bool
      returned: success
      sample: true
    adopted:
      description: Whether the instance was given by O(nodes[].instance_id).
      type: bool
      returned: success
      sample: false
  sample: {"pg1": {"instance_id": "i-0123456789abcdef0", "state": "running", "private_ip": "10.0.1.10",
           "public_ip": null, "network_interface_id": "eni-0123456789abcdef0", "availability_zone": "eu-west-1a",
           "subnet_id": "subnet-0aaaaaaaaaaaaaaa1", "source_dest_check": false,
           "metadata_options": {"http_tokens": "required", "http_put_response_hop_limit": 1,
                                "http_endpoint": "enabled"},
           "root_volume_encrypted": true, "adopted": false}}
vpc_id:
  description: The pair's VPC.
  returned: success
  type: str
  sample: vpc-0123456789abcdef0
security_group_id:
  description: The security group C(<name>-cluster); V((new)) in check mode before it exists.
  returned: success
  type: str
  sample: sg-0123456789abcdef0
role_arn:
  description: The ARN of the role C(<name>-node).
  returned: success
  type: str
  sample: arn:aws:iam::123456789012:role/pg-node
instance_profile_arn:
  description: The ARN of the instance profile C(<name>-node).
  returned: success
  type: str
  sample: arn:aws:iam::123456789012:instance-profile/pg-node
policy:
  description: The inline policy document C(ec2ha-node) of the role, as generated.
  returned: success
  type: dict
  sample: {"Version": "2012-10-17", "Statement": [{"Sid": "Describe", "Effect": "Allow",
           "Action": ["ec2:DescribeInstances"], "Resource": "*"}]}
actions:
  description: One line per write made (or, in check mode, planned).
  returned: success
  type: list
  elements: str
  sample: ["create security group pg-cluster", "allow udp 5405 from self"]
before:
  description: The pair as read before the run (security group id and ingress rules, role, policy, profile, nodes).
  returned: success
  type: dict
  sample: {"security_group": {"id": null, "ingress": []}, "role": null, "policy": null, "instance_profile": null,
           "nodes": {}}
after:
  description: The pair as re-read after the run; in check mode, as the planned writes would leave it.
  returned: success
  type: dict
  sample: {"security_group": {"id": "sg-0123456789abcdef0", "ingress": ["udp 5405 from self"]}, "role": "pg-node",
           "policy": {}, "instance_profile": "pg-node", "nodes": {}}
aws_calls:
  description:
    - Every AWS API call made, in order; in check mode the writes are listed with C(planned=true) and not made.
    - Also returned on failure, with the calls made up to the failure.
  returned: always
  type: list
  elements: dict
  sample: [{"service": "ec2", "operation": "create_security_group", "resource": "pg-cluster", "planned": false,
            "params": {"GroupName": "pg-cluster"}}]
"""

from typing import Any, Dict

from ansible_collections.ec2ha.cluster.plugins.module_utils.module_shell import new_module, run_module

from ansible_collections.ec2ha.cluster.plugins.module_utils import cluster_pair
from ansible_collections.ec2ha.cluster.plugins.module_utils.ids import (
    LAB_HOST_TAG,
    SCENARIO_ALIASES,
    SCENARIOS,
    deprecated_scenarios,
)

REMOVED_IN = "2.0.0"


ARGUMENT_SPEC: Dict[str, Any] = dict(
    name=dict(type="str", required=True),
    nodes=dict(type="list", elements="dict", required=True, options=dict(
        name=dict(type="str", required=True),
        subnet_id=dict(type="str", required=True),
        private_ip=dict(type="str"),
        instance_id=dict(type="str"),
    )),
    image_id=dict(type="str"),
    instance_type=dict(type="str"),
    key_name=dict(type="str", no_log=False),
    user_data=dict(type="str"),
    admin_cidrs=dict(type="list", elements="str", default=[]),
    client_cidrs=dict(type="list", elements="str", default=[]),
    corosync_port=dict(type="int", default=5405),
    scenarios=dict(type="list", elements="str", default=[],
                   choices=list(SCENARIOS) + list(SCENARIO_ALIASES)),
    route_table_ids=dict(type="list", elements="str", default=[]),
    allocation_id=dict(type="str"),
    hosted_zone_id=dict(type="str"),
    record_name=dict(type="str"),
    encrypt_root_volume=dict(type="bool", default=True),
    kms_key_id=dict(type="str", no_log=False),
    tags=dict(type="dict", default={}),
    lab_host=dict(type="bool"),
    wait_timeout=dict(type="float", default=300.0),
)


def spec_from(p: Dict[str, Any]) -> cluster_pair.PairSpec:
    nodes = tuple(cluster_pair.NodeSpec(n["name"], n["subnet_id"], n.get("private_ip"), n.get("instance_id"))
                  for n in p["nodes"])
    return cluster_pair.PairSpec(
        name=p["name"], nodes=nodes, image_id=p["image_id"], instance_type=p["instance_type"],
        key_name=p["key_name"], user_data=p["user_data"], admin_cidrs=tuple(p["admin_cidrs"]),
        client_cidrs=tuple(p["client_cidrs"]), corosync_port=p["corosync_port"],
        scenarios=tuple(p["scenarios"]), route_table_ids=tuple(dict.fromkeys(p["route_table_ids"])),
        allocation_id=p["allocation_id"], hosted_zone_id=p["hosted_zone_id"], record_name=p["record_name"],
        encrypt_root_volume=p["encrypt_root_volume"], kms_key_id=p["kms_key_id"], tags=tags_from(p),
        wait_timeout=p["wait_timeout"])


def tags_from(p: Dict[str, Any]) -> Dict[str, str]:
    tags = {str(k): str(v) for k, v in p["tags"].items()}
    if p["lab_host"]:
        tags.setdefault(LAB_HOST_TAG, "true")
    return tags


def warn_deprecated(module: Any) -> None:
    for old in deprecated_scenarios(module.params["scenarios"]):
        module.deprecate(f"Scenario name '{old}' is deprecated: use '{SCENARIO_ALIASES[old]}'.",
                         version=REMOVED_IN, collection_name="ec2ha.cluster")
    if module.params["lab_host"] is not None:
        module.deprecate(f"Option lab_host is deprecated: use tags with {LAB_HOST_TAG}: 'true'.",
                         version=REMOVED_IN, collection_name="ec2ha.cluster")


def main() -> None:
    module = new_module(ARGUMENT_SPEC)
    warn_deprecated(module)

    def body(aws: Any) -> Dict[str, Any]:
        pair = cluster_pair.resolve(aws, spec_from(module.params))
        result = cluster_pair.converge(aws, pair, module.check_mode)
        out = result.as_dict()
        # What was left as found on purpose (an adopted instance's own profile, a stopped node).
        for warning in result.warnings:
            module.warn(warning)
        return out

    run_module(module, body)


if __name__ == "__main__":
    main()
