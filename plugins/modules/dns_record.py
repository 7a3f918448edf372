#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dns_record
short_description: Point a Route 53 A record at a cluster node
version_added: 1.0.0
description:
  - The Route 53 recovery scenario of a two-node cluster. Clients on premises (Direct Connect) or in
    other VPCs (peering) reach the active node by name; on failover the A record is rewritten with the
    new active node's address.
  - Writes the record with one C(ChangeResourceRecordSets) C(UPSERT), only when its type, TTL or values
    differ from what is asked; otherwise C(changed=false) and no write.
  - With O(wait), polls C(GetChange) until the change is C(INSYNC), at a growing interval and at most
    O(wait_timeout) seconds. A wait that times out fails and names the change id and the time waited;
    the record is written all the same, and a rerun reports C(changed=false).
  - Every input check happens before any write. The module fails on an unknown zone, a zone name shared
    by a private and a public zone without O(private_zone), a record outside the zone, a record name
    that already holds a record excluding a simple A record (a CNAME, an alias A or an A record set with
    a routing policy), an unknown or stopped node, a node without a public IP when O(address=public).
  - Records of other types at the name (TXT, AAAA, MX...) coexist with the A record and are left alone.
  - After the write the module reads the record back and fails if it is not what was written.
author: ec2ha.cluster developers (@ec2ha)
options:
  zone:
    description:
      - The hosted zone, by name (V(example.com)) or id (V(Z0123456789ABC) or V(/hostedzone/Z0123456789ABC)).
      - Private and public zones both work.
    type: str
    required: true
  private_zone:
    description:
      - Pick the private (V(true)) or the public (V(false)) zone when O(zone) is a name used by both.
      - When unset and the name matches a private and a public zone, the module fails and asks for it.
    type: bool
  record:
    description:
      - The record's name, fully qualified (V(db.example.com) or V(db.example.com.)) or one label
        relative to the zone (V(db)). It must lie inside the zone.
    type: str
    required: true
    aliases: [name]
  node:
    description:
      - The node the record must point at, by instance id (C(i-...)) or exact C(Name) tag (C(*) and C(?) are
        plain characters, not wildcards). It must be running.
      - Exactly one of O(node) and O(value) is required.
    type: str
  address:
    description:
      - Which of the node's addresses the record holds, its primary private IPv4 or its public IPv4.
    type: str
    choices: [private, public]
    default: private
  value:
    description:
      - An explicit IPv4 address for the record, instead of a node's address.
    type: str
  ttl:
    description:
      - The record's TTL in seconds. Short TTLs make clients follow a failover sooner.
    type: int
    default: 60
  wait:
    description:
      - Wait until Route 53 reports the change C(INSYNC) on all its DNS servers.
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds to wait for C(INSYNC) before failing.
    type: int
    default: 300
extends_documentation_fragment:
  - ec2ha.cluster.aws
notes:
  - IAM permissions needed are C(route53:ListHostedZonesByName) or C(route53:GetHostedZone),
    C(route53:ListResourceRecordSets), C(route53:ChangeResourceRecordSets), C(route53:GetChange) and,
    with O(node), C(ec2:DescribeInstances).
  - The same code runs in the cluster's Pacemaker agent, so a monitor and this module agree on what
    "in place" means.
seealso:
  - module: ec2ha.cluster.vip_route
  - module: ec2ha.cluster.elastic_ip
"""

EXAMPLES = r"""
- name: Point db.corp.internal at node2's private IP (private hosted zone)
  ec2ha.cluster.dns_record:
    zone: corp.internal
    record: db
    node: db-node2
    region: us-east-1

- name: Point the public name at node1's public IP, without waiting for INSYNC
  ec2ha.cluster.dns_record:
    zone: example.com
    private_zone: false
    record: www.example.com
    node: i-0123456789abcdef0
    address: public
    ttl: 30
    wait: false
  register: www_record

- name: Show the change
  ansible.builtin.debug:
    msg: "{{ www_record.before['values'] | default([]) }} -> {{ www_record.after['values'] }} ({{ www_record.change_id }})"

- name: Pin the record to a fixed address, zone given by id
  ec2ha.cluster.dns_record:
    zone: /hostedzone/Z0123456789ABCDEFGHIJ
    record: db.corp.internal.
    value: 10.0.1.10
    wait_timeout: 120
"""

RETURN = r"""
zone:
  description: The hosted zone written to.
  returned: success
  type: dict
  contains:
    id:
      description: Zone id, without the C(/hostedzone/) prefix.
      returned: success
      type: str
      sample: Z0123456789ABCDEFGHIJ
    name:
      description: Zone name, fully qualified.
      returned: success
      type: str
      sample: corp.internal.
    private:
      description: Whether it is a private hosted zone.
      returned: success
      type: bool
      sample: true
record:
  description: The record's fully qualified name.
  returned: success
  type: str
  sample: db.corp.internal.
value:
  description: The address the record holds (or, in check mode, would hold).
  returned: success
  type: str
  sample: 10.0.1.10
node:
  description: The node the record points at; null when O(value) was given.
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
      sample: db-node2
before:
  description: The A record before the run; empty when there was none.
  returned: success
  type: dict
  sample: {"name": "db.corp.internal.", "type": "A", "ttl": 60, "values": ["10.0.2.10"]}
after:
  description: The A record after the run, read back from Route 53; in check mode, the planned record.
  returned: success
  type: dict
  sample: {"name": "db.corp.internal.", "type": "A", "ttl": 60, "values": ["10.0.1.10"]}
change_id:
  description: The Route 53 change id of the write; null when nothing was written.
  returned: success
  type: str
  sample: C0123456789ABCDEFGHIJ
change_status:
  description: The change's last known status (V(INSYNC) or V(PENDING)); null when nothing was written.
  returned: success
  type: str
  sample: INSYNC
actions:
  description: One line per write made (or, in check mode, planned); empty when nothing had to change.
  returned: success
  type: list
  elements: str
  sample: ["upsert db.corp.internal. A 10.0.1.10 TTL 60 (was 10.0.2.10 TTL 60)"]
aws_calls:
  description: Every AWS API call made, in order (including each C(GetChange) poll); writes that check mode only planned have C(planned=true).
  returned: always
  type: list
  elements: dict
  sample: [{"service": "route53", "operation": "change_resource_record_sets", "resource": "db.corp.internal. in Z0123456789ABCDEFGHIJ",
            "params": {"HostedZoneId": "Z0123456789ABCDEFGHIJ"}, "planned": false}]
"""

from typing import Any, Dict  # noqa: E402

from ansible_collections.ec2ha.cluster.plugins.module_utils.dns_record import DnsSpec, converge, resolve_target  # noqa: E402
from ansible_collections.ec2ha.cluster.plugins.module_utils.module_shell import new_module, run_module  # noqa: E402

ARGUMENT_SPEC: Dict[str, Any] = dict(
    zone=dict(type="str", required=True),
    private_zone=dict(type="bool"),
    record=dict(type="str", required=True, aliases=["name"]),
    node=dict(type="str"),
    address=dict(type="str", default="private", choices=["private", "public"]),
    value=dict(type="str"),
    ttl=dict(type="int", default=60),
    wait=dict(type="bool", default=True),
    wait_timeout=dict(type="int", default=300),
)


def main() -> None:
    module = new_module(ARGUMENT_SPEC, mutually_exclusive=[("node", "value")], required_one_of=[("node", "value")])
    p = module.params
    spec = DnsSpec(zone=p["zone"], record=p["record"], node=p["node"], address=p["address"], value=p["value"],
                   ttl=p["ttl"], private_zone=p["private_zone"], wait=p["wait"], wait_timeout=p["wait_timeout"])

    def body(aws: Any) -> Dict[str, Any]:
        target = resolve_target(aws, spec)
        result = converge(aws, target, module.check_mode, spec.wait, spec.wait_timeout).as_dict()
        return result

    run_module(module, body)


if __name__ == "__main__":
    main()
