#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: elastic_ip
short_description: Move an Elastic IP to a cluster node's network interface
version_added: 1.0.0
description:
  - The Elastic IP recovery scenario of a two-node cluster. Internet clients reach the active node
    through an Elastic IP; on failover the Elastic IP is re-associated with the new active node.
  - Associates the Elastic IP with a network interface (ENI) of O(node) and one of that interface's
    private IP addresses, in one C(AssociateAddress) call with C(AllowReassociation), so it moves
    straight from the old holder without a gap.
  - Idempotent. When the Elastic IP is already on that interface and private IP, nothing is written
    and the result is C(changed=false).
  - Every input check happens before any write. The module fails on an Elastic IP that this account
    and region do not hold, an EC2-Classic (non-VPC) address, an unknown or stopped node, a node
    with several interfaces and no O(interface), a O(private_ip) that is not on the interface.
  - After the write the module reads the address back with C(DescribeAddresses) and fails if it is
    not where it was sent.
author: ec2ha.cluster developers (@ec2ha)
options:
  public_ip:
    description:
      - The Elastic IP, by its public IPv4 address.
      - Exactly one of O(public_ip) and O(allocation_id) is required.
    type: str
    aliases: [eip]
  allocation_id:
    description:
      - The Elastic IP, by its allocation id (C(eipalloc-...)).
    type: str
  node:
    description:
      - The node that must hold the Elastic IP, by instance id (C(i-...)) or exact C(Name) tag (C(*) and C(?) are
        plain characters, not wildcards).
      - It must be running (or pending).
    type: str
    required: true
  interface:
    description:
      - The node's network interface, by ENI id (C(eni-...)) or device index (V(0), V(1), ...).
      - Required when the node has more than one network interface.
    type: str
  private_ip:
    description:
      - The private IPv4 address on the interface that the Elastic IP maps to.
      - Must be one of the interface's private addresses. Defaults to the interface's primary private IP.
    type: str
extends_documentation_fragment:
  - ec2ha.cluster.aws
notes:
  - IAM permissions needed are C(ec2:DescribeAddresses), C(ec2:DescribeInstances) and C(ec2:AssociateAddress).
  - The same code runs in the cluster's Pacemaker agent, so a monitor and this module agree on what
    "in place" means.
seealso:
  - module: ec2ha.cluster.vip_route
  - module: ec2ha.cluster.dns_record
"""

EXAMPLES = r"""
- name: Put the web Elastic IP on node2 (a planned switchover)
  ec2ha.cluster.elastic_ip:
    public_ip: 203.0.113.25
    node: web-node2
    region: us-east-1

- name: Put the Elastic IP on a secondary private IP of node1's second interface
  ec2ha.cluster.elastic_ip:
    allocation_id: eipalloc-0123456789abcdef0
    node: i-0123456789abcdef0
    interface: 1
    private_ip: 10.0.1.20
  register: web_eip

- name: Show where the Elastic IP was before
  ansible.builtin.debug:
    msg: "{{ web_eip.before.network_interface_id }} -> {{ web_eip.after.network_interface_id }}"

- name: Same shared connection settings for every ec2ha.cluster AWS module
  module_defaults:
    group/ec2ha.cluster.aws:
      region: eu-west-1
  block:
    - name: Move the Elastic IP back to node1
      ec2ha.cluster.elastic_ip:
        public_ip: 203.0.113.25
        node: web-node1
"""

RETURN = r"""
public_ip:
  description: The Elastic IP's public address.
  returned: success
  type: str
  sample: 203.0.113.25
allocation_id:
  description: The Elastic IP's allocation id.
  returned: success
  type: str
  sample: eipalloc-0123456789abcdef0
network_interface_id:
  description: The ENI that holds (or, in check mode, would hold) the Elastic IP.
  returned: success
  type: str
  sample: eni-0123456789abcdef0
private_ip:
  description: The private IP of that ENI the Elastic IP maps to.
  returned: success
  type: str
  sample: 10.0.1.10
node:
  description: The node the Elastic IP was moved to.
  returned: success
  type: dict
  contains:
    instance_id:
      description: Instance id.
      returned: success
      type: str
      sample: i-0123456789abcdef0
    name:
      description: The instance's C(Name) tag, or null.
      returned: success
      type: str
      sample: web-node1
before:
  description: The holder before the run; the C(network_interface_id), C(private_ip) and C(instance_id) keys are null when the Elastic IP was not associated.
  returned: success
  type: dict
  sample: {"public_ip": "203.0.113.25", "allocation_id": "eipalloc-0123456789abcdef0",
           "network_interface_id": "eni-0aaaaaaaaaaaaaaaa", "private_ip": "10.0.2.10", "instance_id": "i-0aaaaaaaaaaaaaaaa"}
after:
  description:
    - The holder after the run, read back with C(DescribeAddresses); in check mode, the planned holder.
    - C(instance_id) may be null right after a re-association (EC2 reports it late).
  returned: success
  type: dict
  sample: {"public_ip": "203.0.113.25", "allocation_id": "eipalloc-0123456789abcdef0",
           "network_interface_id": "eni-0123456789abcdef0", "private_ip": "10.0.1.10", "instance_id": "i-0123456789abcdef0"}
actions:
  description: One line per write made (or, in check mode, planned); empty when nothing had to change.
  returned: success
  type: list
  elements: str
  sample: ["associate 203.0.113.25 with eni-0123456789abcdef0 (10.0.1.10) of node i-0123456789abcdef0 (web-node1)"]
aws_calls:
  description: Every AWS API call made, in order; writes that check mode only planned have C(planned=true).
  returned: always
  type: list
  elements: dict
  sample: [{"service": "ec2", "operation": "associate_address", "resource": "203.0.113.25",
            "params": {"AllocationId": "eipalloc-0123456789abcdef0", "NetworkInterfaceId": "eni-0123456789abcdef0",
                       "PrivateIpAddress": "10.0.1.10", "AllowReassociation": true}, "planned": false}]
"""

from typing import Any, Dict  # noqa: E402

from ansible_collections.ec2ha.cluster.plugins.module_utils.elastic_ip import EipSpec, converge, resolve_target  # noqa: E402
from ansible_collections.ec2ha.cluster.plugins.module_utils.module_shell import new_module, run_module  # noqa: E402

ARGUMENT_SPEC: Dict[str, Any] = dict(
    public_ip=dict(type="str", aliases=["eip"]),
    allocation_id=dict(type="str"),
    node=dict(type="str", required=True),
    interface=dict(type="str"),
    private_ip=dict(type="str"),
)


def main() -> None:
    module = new_module(ARGUMENT_SPEC, mutually_exclusive=[("public_ip", "allocation_id")],
                        required_one_of=[("public_ip", "allocation_id")])
    p = module.params
    spec = EipSpec(node=p["node"], public_ip=p["public_ip"], allocation_id=p["allocation_id"],
                   interface=p["interface"], private_ip=p["private_ip"])

    def body(aws: Any) -> Dict[str, Any]:
        target, address = resolve_target(aws, spec)
        result = converge(aws, target, module.check_mode, address).as_dict()
        return result

    run_module(module, body)


if __name__ == "__main__":
    main()
