# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""CIB files with a status section (nodes joined or not, operation history per node), so the real
crm_mon computes roles, failures and attributes from them as it would on a cluster (CIB_file)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

# resource id -> (class, provider, type)
AGENTS = {"pgsqld": ("ocf", "heartbeat", "pgsqlms"), "ec2ha-vip-route": ("ocf", "ec2ha", "vip_route"),
          "fence-aws": ("stonith", "", "fence_aws")}
RESOURCES = ('<clone id="pgsqld-clone"><meta_attributes id="pgsqld-clone-meta">'
             '<nvpair id="pgsqld-clone-meta-promotable" name="promotable" value="true"/></meta_attributes>'
             '<primitive id="pgsqld" class="ocf" provider="heartbeat" type="pgsqlms"/></clone>'
             '<primitive id="ec2ha-vip-route" class="ocf" provider="ec2ha" type="vip_route"/>'
             '<primitive id="fence-aws" class="stonith" type="fence_aws"/>')

# An operation as the node recorded it: (resource, operation, rc, interval ms, exit reason).
Op = Tuple[str, str, int, int, str]


def _op(node: str, call: int, op: Op) -> str:
    rsc, name, rc, interval, reason = op
    key = f"{rsc}_{name}_{interval}"
    magic = "00000000-0000-0000-0000-000000000000"
    return (f'<lrm_rsc_op id="{key}" operation_key="{key}" operation="{name}" crm-debug-origin="test" '
            f'crm_feature_set="3.16.2" transition-key="1:1:0:{magic}" transition-magic="0:{rc};1:1:0:{magic}" '
            f'exit-reason="{reason}" on_node="{node}" call-id="{call}" rc-code="{rc}" op-status="0" '
            f'interval="{interval}" last-rc-change="1700000000" exec-time="10" queue-time="0" op-digest="x"/>')


def _history(node: str, ops: Sequence[Op]) -> str:
    by_rsc: Dict[str, List[str]] = {}
    for call, op in enumerate(ops, 10):
        by_rsc.setdefault(op[0], []).append(_op(node, call, op))
    body = ""
    for rsc, recorded in by_rsc.items():
        cls, provider, kind = AGENTS[rsc]
        provider_attr = f' provider="{provider}"' if provider else ""
        body += f'<lrm_resource id="{rsc}" type="{kind}" class="{cls}"{provider_attr}>{"".join(recorded)}</lrm_resource>'
    return f"<lrm_resources>{body}</lrm_resources>"


def cib_with_status(path: Path, online: Dict[str, bool], history: Dict[str, Sequence[Op]],
                    properties: Dict[str, str] = None, attributes: Dict[str, Dict[str, str]] = None,
                    constraints: str = "") -> Path:
    """Write a CIB with the nodes of ``online`` (name -> joined), the ec2ha resources, and each
    node's operation history; ``attributes`` are transient node attributes."""
    blank = subprocess.run(["cibadmin", "--empty"], capture_output=True, text=True, check=True).stdout
    names = list(online)
    nodes = "".join(f'<node id="{i}" uname="{n}"/>' for i, n in enumerate(names, 1))
    props = "".join(f'<nvpair id="opt-{k}" name="{k}" value="{v}"/>' for k, v in (properties or {}).items())
    states = ""
    for i, name in enumerate(names, 1):
        joined = online[name]
        ccm = ('in_ccm="true" crmd="online" join="member" expected="member"' if joined
               else 'in_ccm="false" crmd="offline" join="down" expected="down"')
        attrs = "".join(f'<nvpair id="status-{i}-{k}" name="{k}" value="{v}"/>'
                        for k, v in ((attributes or {}).get(name) or {}).items())
        transient = (f'<transient_attributes id="{i}"><instance_attributes id="status-{i}">{attrs}'
                     '</instance_attributes></transient_attributes>') if attrs else ""
        states += (f'<node_state id="{i}" uname="{name}" {ccm}><lrm id="{i}">{_history(name, history.get(name, ()))}'
                   f'</lrm>{transient}</node_state>')
    path.write_text(blank.replace("<cib ", '<cib have-quorum="1" dc-uuid="1" ', 1)
                    .replace("<crm_config/>", '<crm_config><cluster_property_set id="cib-bootstrap-options">'
                             f'{props}</cluster_property_set></crm_config>')
                    .replace("<nodes/>", f"<nodes>{nodes}</nodes>")
                    .replace("<resources/>", f"<resources>{RESOURCES}</resources>")
                    .replace("<constraints/>", f"<constraints>{constraints}</constraints>")
                    .replace("<status/>", f"<status>{states}</status>"))
    return path
