#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cib_objects
short_description: Converge Pacemaker configuration objects by a patch of the live CIB
version_added: 1.1.0
description:
  - Reads the live CIB with C(cibadmin --query), stages the desired objects, absent ids, cluster properties
    and node attribute defaults into a copy, checks the copy with C(crm_verify), and patches the live CIB
    with C(cibadmin --patch) only when C(crm_diff) finds a difference. A second run reports no change.
  - An object replaces the element with the same tag and id where it is, so its position and the diff stay
    stable; a new object is created at the end of its configuration section (a missing section, such as
    C(rsc_defaults), is created).
  - The patch is versioned, so a CIB that changed since it was read refuses it and nothing is overwritten;
    run again then.
  - Waits first until the CIB answers and a designated controller (DC) is elected, as a new cluster needs
    about 20 seconds for it.
  - Runs on one cluster node; use C(run_once). Every command it runs is bounded by O(command_timeout).
author: ec2ha.cluster developers (@ec2ha)
options:
  objects:
    description:
      - Configuration elements to converge, each a rendered XML string of one element with an C(id), or a
        dictionary with C(xml) and C(section).
      - C(section) is the configuration section that holds the element (C(resources), C(constraints),
        C(rsc_defaults), C(op_defaults), C(crm_config), ...). It may be left out for resources, constraints,
        cluster property sets, alerts and fencing levels; it is required for C(meta_attributes) sets.
    type: list
    elements: raw
    default: []
  secret_objects:
    description:
      - Objects like O(objects) that hold secrets (a fence agent's secret key). They are never logged, and
        every value inside them is masked in the diff.
    type: list
    elements: raw
    default: []
  absent:
    description:
      - Objects that must not be in the CIB, deleted wherever they are; a missing one is no change.
    type: list
    elements: dict
    default: []
    suboptions:
      tag:
        description: The element's tag, for example V(primitive) or V(rsc_order).
        type: str
        required: true
      id:
        description: The element's id.
        type: str
        required: true
  properties:
    description:
      - Cluster properties (name to value), updated where they are set, otherwise set in
        C(cib-bootstrap-options).
    type: dict
    default: {}
  node_attribute_defaults:
    description:
      - Permanent node attributes set only while the node has no value of that name, so a value the cluster
        wrote since is kept.
    type: list
    elements: dict
    default: []
    suboptions:
      node:
        description: The node's name (its C(uname) in the CIB).
        type: str
        required: true
      name:
        description: The attribute's name.
        type: str
        required: true
      value:
        description: The value to set when the node has none.
        type: str
        required: true
  wait_timeout:
    description:
      - Seconds to wait for the CIB to answer and a DC to be elected before reading it; V(0) does not wait.
    type: int
    default: 120
  wait_interval:
    description: Seconds between two looks at the cluster while waiting.
    type: float
    default: 2
  command_timeout:
    description: Seconds each Pacemaker command may take before the module fails.
    type: float
    default: 60
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Stages and verifies, reports whether the CIB would change, and writes nothing.
      - Errors of C(crm_verify) are returned in RV(verify_messages) instead of failing, because objects an
        earlier task would have created (a fence device) are missing in check mode.
  diff_mode:
    support: full
    details: Before and after hold the XML of each object that changes; values of O(secret_objects) are masked.
  platform:
    platforms: posix
requirements:
  - Pacemaker command-line tools (C(cibadmin), C(crm_verify), C(crm_diff), C(crm_mon)) on the node.
seealso:
  - name: Pacemaker Explained, the CIB
    description: The configuration sections and the objects they hold.
    link: https://clusterlabs.org/pacemaker/doc/2.1/Pacemaker_Explained/html/
"""

EXAMPLES = r"""
- name: Fence device, resource defaults and cluster properties in one patch
  ec2ha.cluster.cib_objects:
    properties:
      stonith-enabled: "true"
      stonith-timeout: 600s
    objects:
      - section: rsc_defaults
        xml: |
          <meta_attributes id="rsc-options">
            <nvpair id="rsc-options-resource-stickiness" name="resource-stickiness" value="10"/>
          </meta_attributes>
      - "{{ lookup('ansible.builtin.template', 'cib/fence_aws.xml.j2') }}"
  run_once: true

- name: A fence device with a secret key, never logged
  ec2ha.cluster.cib_objects:
    secret_objects:
      - "{{ lookup('ansible.builtin.template', 'cib/fence_aws.xml.j2') }}"
  run_once: true

- name: Remove an endpoint and its constraints
  ec2ha.cluster.cib_objects:
    absent:
      - {tag: rsc_colocation, id: ec2ha-elastic-ip-with-promoted}
      - {tag: primitive, id: ec2ha-elastic-ip}
  run_once: true

- name: Preview the change
  ec2ha.cluster.cib_objects:
    objects:
      - <rsc_order id="a-then-b" first="a" then="b" kind="Mandatory"/>
  check_mode: true
  diff: true
  run_once: true
  register: preview
"""

RETURN = r"""
changes:
  description:
    - Each object staged differently from the live CIB; C(action) is V(create), V(replace), V(delete) or
      V(set) (a cluster property or node attribute, by its nvpair id).
    - In check mode, the changes a run would make; empty when nothing differs.
  returned: success
  type: list
  elements: dict
  sample: [{"action": "create", "tag": "primitive", "id": "fence-aws"},
           {"action": "set", "tag": "nvpair", "id": "cib-bootstrap-options-stonith-enabled"}]
patched:
  description: Whether the live CIB was patched (never in check mode).
  returned: success
  type: bool
  sample: true
dc:
  description: The node elected designated controller when the CIB was read; empty when O(wait_timeout=0).
  returned: success
  type: str
  sample: node1
verify_messages:
  description: What C(crm_verify) said about the staged copy (warnings; errors too in check mode).
  returned: success
  type: list
  elements: str
  sample: ["warning: Node node2 is unclean"]
"""

from typing import Any, Dict, List

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ec2ha.cluster.plugins.module_utils.pacemaker.cib import push
from ansible_collections.ec2ha.cluster.plugins.module_utils.pacemaker.runner import PacemakerError, Runner
from ansible_collections.ec2ha.cluster.plugins.module_utils.pacemaker.staging import (
    Absent,
    CibObject,
    Desired,
    NodeAttributeDefault,
    parse_object,
)
from ansible_collections.ec2ha.cluster.plugins.module_utils.pacemaker.state import wait_for_dc

ARGUMENT_SPEC: Dict[str, Any] = dict(
    objects=dict(type="list", elements="raw", default=[]),
    secret_objects=dict(type="list", elements="raw", default=[], no_log=True),
    absent=dict(type="list", elements="dict", default=[],
                options=dict(tag=dict(type="str", required=True), id=dict(type="str", required=True))),
    properties=dict(type="dict", default={}),
    node_attribute_defaults=dict(type="list", elements="dict", default=[],
                                 options=dict(node=dict(type="str", required=True),
                                              name=dict(type="str", required=True),
                                              value=dict(type="str", required=True))),
    wait_timeout=dict(type="int", default=120),
    wait_interval=dict(type="float", default=2.0),
    command_timeout=dict(type="float", default=60.0),
)


def cib_objects(items: List[Any], option: str, secret: bool) -> List[CibObject]:
    """The objects of one option, each a string of XML or a dict with xml and section."""
    parsed = []
    for index, item in enumerate(items):
        label = f"{option}[{index}]"
        if isinstance(item, str):
            parsed.append(parse_object(item, None, secret, label))
        elif isinstance(item, dict) and isinstance(item.get("xml"), str) and set(item) <= {"xml", "section"}:
            parsed.append(parse_object(item["xml"], item.get("section"), secret, label))
        else:
            raise PacemakerError(f"{label} is neither an XML string nor a dict with xml and section.")
    return parsed


def desired_state(p: Dict[str, Any]) -> Desired:
    return Desired(
        objects=cib_objects(p["objects"], "objects", False) + cib_objects(p["secret_objects"], "secret_objects", True),
        absent=[Absent(a["tag"], a["id"]) for a in p["absent"]],
        properties={name: str(value).lower() if isinstance(value, bool) else str(value)
                    for name, value in p["properties"].items()},
        node_attribute_defaults=[NodeAttributeDefault(a["node"], a["name"], a["value"])
                                 for a in p["node_attribute_defaults"]],
    )


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    p = module.params
    try:
        desired = desired_state(p)
        runner = Runner(timeout=p["command_timeout"])
        dc = wait_for_dc(runner, p["wait_timeout"], p["wait_interval"]) if p["wait_timeout"] > 0 else ""
        result = push(runner, desired, module.check_mode)
    except PacemakerError as exc:
        module.fail_json(msg=str(exc))
    out: Dict[str, Any] = dict(changed=result.changed, patched=result.patched, dc=dc,
                               changes=[c.as_dict() for c in result.changes],
                               verify_messages=result.verify_messages)
    if module._diff:
        out["diff"] = result.diff()
    module.exit_json(**out)


if __name__ == "__main__":
    main()
