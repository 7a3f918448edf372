#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vip_route
short_description: Route a virtual IP to one cluster node's network interface in VPC route tables
version_added: 1.0.0
description:
  - Converges the route-table recovery scenario onto one node. The virtual IP (VIP) lies outside every
    CIDR of the VPC and reaches the active node through a V(VIP/32) route in each route table.
  - Replaces the route where it points to another network interface, another target, or is a blackhole;
    creates it only when O(create=true); turns the source/destination check off on the node's
    network interface when it is on.
  - Reads first and writes only the difference, so a run against a node that already holds the VIP
    reports no change. Partial states (some tables on another node, a blackhole route) converge in one run.
  - After writing, re-reads the route tables and fails if they do not show the node.
  - Input is checked against AWS before any write; a bad value fails with one sentence and changes nothing.
author: ec2ha.cluster developers (@ec2ha)
options:
  vip:
    description:
      - The virtual IP, a single IPv4 address outside every CIDR of the node's VPC.
      - A trailing V(/32) is accepted.
    type: str
    required: true
  node:
    description:
      - The node that must receive the VIP, by instance id (V(i-...)) or by its exact C(Name) tag (C(*) and C(?)
        are plain characters, not wildcards).
      - The instance must exist and be running (or pending).
    type: str
    required: true
  route_tables:
    description:
      - Ids of the route tables to manage, all in the node's VPC (the main route table may be one of them).
      - When omitted, every route table of the node's VPC that already has a route for the VIP.
        If there is none, list the route tables and set O(create=true).
    type: list
    elements: str
  interface:
    description:
      - The node's network interface the route points to, by ENI id (V(eni-...)) or device index (V(0), V(1)).
      - Defaults to the node's only network interface; required when the node has several.
    type: str
  create:
    description:
      - Create the route in a listed route table that lacks it.
      - When V(false), a listed route table without a route for the VIP is an error (nothing is changed).
    type: bool
    default: false
extends_documentation_fragment:
  - ec2ha.cluster.aws
notes:
  - With C(--diff), before and after hold the route in each route table and the source/destination check.
  - IAM permissions used are C(ec2:DescribeInstances), C(ec2:DescribeVpcs), C(ec2:DescribeRouteTables),
    C(ec2:DescribeNetworkInterfaces), C(ec2:ReplaceRoute), C(ec2:CreateRoute) (only with O(create=true)) and
    C(ec2:ModifyNetworkInterfaceAttribute).
seealso:
  - name: Route tables for your VPC
    description: How VPC route tables select a target for a destination.
    link: https://docs.aws.amazon.com/vpc/latest/userguide/VPC_Route_Tables.html
"""

EXAMPLES = r"""
- name: Move the database VIP to db2 in every route table that routes it
  ec2ha.cluster.vip_route:
    vip: 192.168.100.10
    node: db2
    region: eu-west-1

- name: Build-out - create the VIP route in three route tables, pointing to db1
  ec2ha.cluster.vip_route:
    vip: 192.168.100.10
    node: i-0123456789abcdef0
    route_tables:
      - rtb-0aaaaaaaaaaaaaaa1
      - rtb-0bbbbbbbbbbbbbbb2
      - rtb-0ccccccccccccccc3
    create: true
    region: eu-west-1

- name: Route to the second interface of a node with two ENIs
  ec2ha.cluster.vip_route:
    vip: 192.168.100.10
    node: db1
    interface: "1"
    region: eu-west-1

- name: Preview a switchover with the planned calls
  ec2ha.cluster.vip_route:
    vip: 192.168.100.10
    node: db1
    region: eu-west-1
  check_mode: true
  diff: true
  register: preview

- name: Show what would be called
  ansible.builtin.debug:
    msg: "{{ preview.aws_calls | selectattr('planned') | map(attribute='operation') | list }}"
"""

RETURN = r"""
vip:
  description: The VIP as a dotted IPv4 address.
  returned: success
  type: str
  sample: 192.168.100.10
instance_id:
  description: The instance id of the node that holds (or in check mode would hold) the VIP.
  returned: success
  type: str
  sample: i-0123456789abcdef0
network_interface_id:
  description: The network interface the routes point to.
  returned: success
  type: str
  sample: eni-0123456789abcdef0
route_tables:
  description: The route tables managed.
  returned: success
  type: list
  elements: str
  sample: [rtb-0aaaaaaaaaaaaaaa1, rtb-0bbbbbbbbbbbbbbb2]
status:
  description:
    - V(ok) when every route table routes the VIP to the node's interface (active) and its source/destination
      check is off; V(wrong) otherwise.
    - In check mode this is the state as read, before the planned writes.
  returned: success
  type: str
  sample: ok
details:
  description: One line per difference behind RV(status); empty when V(ok).
  returned: success
  type: list
  elements: str
  sample:
    - "rtb-0aaaaaaaaaaaaaaa1 has an active route to eni-0fffffffffffffff1 (i-0fffffffffffffff1) for 192.168.100.10/32,
      expected eni-0123456789abcdef0 of i-0123456789abcdef0 (db1)"
before:
  description: The state before the run, per route table and per network interface.
  returned: success
  type: dict
  contains:
    route_tables:
      description:
        - Per route table id, the VIP's route. C(state) is V(active), V(blackhole) or V(missing).
        - C(other_target) names a target that is not a network interface (an internet gateway, for example).
      type: dict
      returned: success
      sample: {"rtb-0aaaaaaaaaaaaaaa1": {"state": "active", "network_interface_id": "eni-0fffffffffffffff1",
               "instance_id": "i-0fffffffffffffff1", "other_target": null}}
    source_dest_check:
      description: Per network interface id (the node's and any a route points to), its source/destination check.
      type: dict
      returned: success
      sample: {"eni-0123456789abcdef0": true}
  sample: {"route_tables": {"rtb-0aaaaaaaaaaaaaaa1": {"state": "active", "network_interface_id": "eni-0fffffffffffffff1",
           "instance_id": "i-0fffffffffffffff1", "other_target": null}},
           "source_dest_check": {"eni-0123456789abcdef0": true}}
after:
  description: The state after the run as re-read from AWS; in check mode, the state the planned writes would give.
  returned: success
  type: dict
  sample: {"route_tables": {"rtb-0aaaaaaaaaaaaaaa1": {"state": "active", "network_interface_id": "eni-0123456789abcdef0",
           "instance_id": "i-0123456789abcdef0", "other_target": null}},
           "source_dest_check": {"eni-0123456789abcdef0": false}}
aws_calls:
  description:
    - Every AWS API call made, in order; in check mode the writes are listed with C(planned=true) and not made.
    - Also returned on failure, with the calls made up to the failure.
  returned: always
  type: list
  elements: dict
  sample: [{"service": "ec2", "operation": "replace_route", "resource": "rtb-0aaaaaaaaaaaaaaa1", "planned": false,
            "params": {"RouteTableId": "rtb-0aaaaaaaaaaaaaaa1", "DestinationCidrBlock": "192.168.100.10/32",
                       "NetworkInterfaceId": "eni-0123456789abcdef0"}}]
"""

from typing import Any, Dict

from ansible_collections.ec2ha.cluster.plugins.module_utils.module_shell import new_module, run_module

from ansible_collections.ec2ha.cluster.plugins.module_utils import vip_route


ARGUMENT_SPEC: Dict[str, Any] = dict(
    vip=dict(type="str", required=True),
    node=dict(type="str", required=True),
    route_tables=dict(type="list", elements="str"),
    interface=dict(type="str"),
    create=dict(type="bool", default=False),
)


def main() -> None:
    module = new_module(ARGUMENT_SPEC)
    p = module.params

    def body(aws: Any) -> Dict[str, Any]:
        target, tables = vip_route.resolve_target(aws, p["vip"], p["node"], p["route_tables"],
                                                  p["interface"], p["create"])
        result = vip_route.converge(aws, target, module.check_mode, tables)
        out = result.as_dict()
        out.update(vip=target.vip, instance_id=target.instance_id, network_interface_id=target.eni_id,
                   route_tables=list(target.route_table_ids))
        return out

    run_module(module, body)


if __name__ == "__main__":
    main()
