#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: endpoint_info
short_description: Report which cluster node holds each client endpoint, and flag split or dangling states
version_added: 1.0.0
description:
  - Reads, for a set of cluster nodes, who holds each client endpoint now - the route-table VIP, the Elastic IP
    and the Route 53 A record - with the state of every VIP route and the source/destination check of the
    nodes' network interfaces.
  - Flags what needs attention - VIP routes split across nodes, missing or blackhole routes, a route or an
    Elastic IP pointing at no node of the cluster, an unassociated Elastic IP, a record pointing at neither
    node or at several addresses, endpoints held by different nodes.
  - Makes no write. It reads through the same code the converging modules and the cluster agents use.
author: ec2ha.cluster developers (@ec2ha)
options:
  nodes:
    description:
      - The cluster's nodes, by instance id or exact C(Name) tag. Stopped nodes are reported too.
      - Mutually exclusive with O(cluster).
    type: list
    elements: str
  cluster:
    description:
      - The exact value of the C(ec2ha:cluster) tag that marks the cluster's nodes (no wildcards).
      - Mutually exclusive with O(nodes).
    type: str
  vip:
    description:
      - The route-table VIP to report on.
    type: str
  route_tables:
    description:
      - The route tables to read for the VIP. When omitted, every route table of the nodes' VPCs that has
        a route for the VIP.
    type: list
    elements: str
  public_ip:
    description:
      - The Elastic IP to report on, by public address. Mutually exclusive with O(allocation_id).
    type: str
  allocation_id:
    description:
      - The Elastic IP to report on, by allocation id. Mutually exclusive with O(public_ip).
    type: str
  zone:
    description:
      - The hosted zone of the DNS endpoint, by name or id. Needs O(record).
    type: str
  record:
    description:
      - The A record of the DNS endpoint, fully qualified or relative to O(zone).
    type: str
  private_zone:
    description:
      - Picks the private (V(true)) or public (V(false)) zone when both carry the name O(zone).
    type: bool
extends_documentation_fragment:
  - ec2ha.cluster.aws
attributes:
  diff_mode:
    support: none
    details: The module only reads.
notes:
  - IAM permissions used are C(ec2:DescribeInstances), C(ec2:DescribeRouteTables),
    C(ec2:DescribeNetworkInterfaces), C(ec2:DescribeAddresses), C(route53:GetHostedZone),
    C(route53:ListHostedZonesByName) and C(route53:ListResourceRecordSets).
"""

EXAMPLES = r"""
- name: Who holds what in the cluster tagged ec2ha:cluster=db
  ec2ha.cluster.endpoint_info:
    cluster: db
    vip: 192.168.100.10
    public_ip: 203.0.113.25
    zone: db.internal
    record: primary
    region: eu-west-1
  register: endpoints

- name: Fail when an endpoint is split or dangling
  ansible.builtin.assert:
    that: endpoints.healthy
    fail_msg: "{{ endpoints.flags | join('; ') }}"
"""

RETURN = r"""
nodes:
  description: The cluster's nodes as read.
  returned: always
  type: list
  elements: dict
  sample: [{"instance_id": "i-0123456789abcdef0", "name": "db1", "state": "running",
            "availability_zone": "eu-west-1a", "private_ip": "10.0.1.10", "public_ip": null,
            "interfaces": [{"network_interface_id": "eni-0123456789abcdef0", "device_index": 0,
                            "private_ips": ["10.0.1.10"], "source_dest_check": false}]}]
vip_route:
  description:
    - The VIP's route in each route table, with the node it reaches (C(holder), null when it reaches none).
    - C(holder) at the top is the node every route table agrees on, null when they do not.
  returned: when O(vip) is given
  type: dict
  sample: {"vip": "192.168.100.10", "holder": "i-0123456789abcdef0", "holders": ["i-0123456789abcdef0"],
           "route_tables": {"rtb-0aaaaaaaaaaaaaaa1": {"state": "active", "network_interface_id": "eni-0123456789abcdef0",
                            "instance_id": "i-0123456789abcdef0", "other_target": null, "holder": "i-0123456789abcdef0"}},
           "source_dest_check": {"eni-0123456789abcdef0": false}, "flags": []}
elastic_ip:
  description: The Elastic IP, where it is associated, and the node holding it (C(holder), null for none).
  returned: when O(public_ip) or O(allocation_id) is given
  type: dict
  sample: {"public_ip": "203.0.113.25", "allocation_id": "eipalloc-0123456789abcdef0",
           "network_interface_id": "eni-0123456789abcdef0", "private_ip": "10.0.1.10",
           "instance_id": "i-0123456789abcdef0", "holder": "i-0123456789abcdef0", "flags": []}
dns_record:
  description: The A record, its values, and the node it names (C(holder), null for none or several).
  returned: when O(zone) and O(record) are given
  type: dict
  sample: {"zone": {"id": "Z0123456789ABCDEFGHIJ", "name": "db.internal.", "private": true},
           "name": "primary.db.internal.", "ttl": 60, "values": ["10.0.1.10"], "holder": "i-0123456789abcdef0",
           "flags": []}
holders:
  description: Per endpoint reported, the instance id of the node holding it (null for none).
  returned: always
  type: dict
  sample: {"vip_route": "i-0123456789abcdef0", "elastic_ip": "i-0123456789abcdef0", "dns_record": "i-0123456789abcdef0"}
flags:
  description: One sentence per split or dangling state found; empty when all is well.
  returned: always
  type: list
  elements: str
  sample: ["routes for 192.168.100.10/32 are split across nodes i-0123456789abcdef0, i-0fedcba9876543210"]
healthy:
  description: True when no flag is raised and every endpoint reported is held by a node.
  returned: always
  type: bool
  sample: true
aws_calls:
  description: Every AWS API call made, in order (all reads).
  returned: always
  type: list
  elements: dict
  sample: [{"service": "ec2", "operation": "describe_instances", "resource": "db", "planned": false,
            "params": {"Filters": [{"Name": "tag:ec2ha:cluster", "Values": ["db"]}]}}]
"""

from typing import Any, Dict

from ansible_collections.ec2ha.cluster.plugins.module_utils.endpoint_info import Endpoints, report
from ansible_collections.ec2ha.cluster.plugins.module_utils.module_shell import new_module, run_module

ARGUMENT_SPEC: Dict[str, Any] = dict(
    nodes=dict(type="list", elements="str"),
    cluster=dict(type="str"),
    vip=dict(type="str"),
    route_tables=dict(type="list", elements="str"),
    public_ip=dict(type="str"),
    allocation_id=dict(type="str"),
    zone=dict(type="str"),
    record=dict(type="str"),
    private_zone=dict(type="bool"),
)


def main() -> None:
    module = new_module(ARGUMENT_SPEC)
    p = module.params
    spec = Endpoints(nodes=p["nodes"], cluster=p["cluster"], vip=p["vip"], route_tables=p["route_tables"],
                     public_ip=p["public_ip"], allocation_id=p["allocation_id"], zone=p["zone"],
                     record=p["record"], private_zone=p["private_zone"])
    run_module(module, lambda aws: dict(report(aws, spec), changed=False))


if __name__ == "__main__":
    main()
