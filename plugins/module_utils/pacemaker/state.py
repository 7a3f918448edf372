# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cluster's state as crm_mon reports it (``crm_mon --one-shot --output-as=xml``).

crm_mon, not crmadmin: ``crmadmin --dc_lookup`` blocks for good while there is no DC yet (seen
with Pacemaker 2.1.5; a new cluster elects one after about 20 s), crm_mon answers at once.
:func:`parse_crm_mon` reads the whole answer into a :class:`ClusterState` (nodes, quorum,
maintenance, fencing, resource instances and their roles, failed actions, node attributes): what
a planned switchover's gates read before they change anything. No Ansible import.
"""

from __future__ import annotations

import dataclasses
import time
import xml.etree.ElementTree as ET
from typing import Callable, Dict, List, Optional, Tuple

from ansible_collections.ec2ha.cluster.plugins.module_utils.pacemaker.runner import PacemakerError, Runner

CRM_MON = ("crm_mon", "--one-shot", "--output-as=xml")


def dc_name(crm_mon_xml: str) -> Optional[str]:
    """The elected DC's node name, or None while there is none (or the answer is not crm_mon XML)."""
    try:
        root = ET.fromstring(crm_mon_xml)
    except ET.ParseError:
        return None
    dc = root.find("./summary/current_dc")
    if dc is None or dc.get("present") != "true":
        return None
    return dc.get("name") or dc.get("id") or "unknown"


def wait_for_dc(runner: Runner, timeout: float, interval: float = 2.0,
                clock: Callable[[], float] = time.monotonic,
                sleep: Callable[[float], None] = time.sleep) -> str:
    """Poll crm_mon until the CIB answers and a DC is elected; return the DC's name.

    A crm_mon that fails or times out is one more try (the cluster is starting); after ``timeout``
    seconds the last answer is raised as one sentence.
    """
    deadline = clock() + timeout
    while True:
        try:
            name = dc_name(runner.run(CRM_MON, ok=range(0, 256)).stdout)
            last = "no DC is elected yet"
        except PacemakerError as exc:
            name, last = None, str(exc).rstrip(".")
        if name is not None:
            return name
        if clock() + interval > deadline:
            raise PacemakerError(f"The cluster did not elect a DC within {timeout:g} s ({last}).")
        sleep(interval)


@dataclasses.dataclass(frozen=True)
class NodeState:
    """One cluster node as crm_mon sees it."""

    name: str
    online: bool
    standby: bool
    maintenance: bool
    unclean: bool


@dataclasses.dataclass(frozen=True)
class ResourceInstance:
    """One instance of a resource (a primitive, or one member of a clone) and where it runs."""

    id: str
    parent: str            # the clone (or group) it belongs to, "" for a plain primitive
    agent: str             # e.g. ocf:heartbeat:pgsqlms, stonith:fence_aws
    role: str              # Promoted, Unpromoted, Started, Stopped...
    nodes: Tuple[str, ...]
    failed: bool
    managed: bool


@dataclasses.dataclass(frozen=True)
class FailedAction:
    """A failed operation crm_mon still lists (until a cleanup or its failure-timeout)."""

    resource: str
    operation: str
    node: str
    reason: str


@dataclasses.dataclass(frozen=True)
class ClusterState:
    """What a switchover's gates read before any change: who is up, who is promoted, what failed."""

    dc: Optional[str]
    quorate: bool
    maintenance_mode: bool
    stonith_enabled: bool
    nodes: Dict[str, NodeState]
    resources: Tuple[ResourceInstance, ...]
    failed_actions: Tuple[FailedAction, ...]
    attributes: Dict[str, Dict[str, str]]     # node -> attribute name -> value (transient and permanent)

    def instances(self, resource: str) -> List[ResourceInstance]:
        """The instances of a primitive, or of every primitive in a clone, by either id."""
        return [r for r in self.resources if resource in (r.id, r.parent)]

    def nodes_in_role(self, resource: str, role: str) -> List[str]:
        return sorted({n for r in self.instances(resource) if r.role == role for n in r.nodes})

    def promoted(self, clone: str) -> List[str]:
        """The nodes where the clone runs Promoted (Master in older crm_mon words)."""
        return sorted(set(self.nodes_in_role(clone, "Promoted")) | set(self.nodes_in_role(clone, "Master")))

    def started_on(self, resource: str) -> List[str]:
        return sorted({n for r in self.instances(resource) if r.role not in ("Stopped", "") for n in r.nodes})

    def fencing_devices(self) -> List[ResourceInstance]:
        return [r for r in self.resources if r.agent.startswith("stonith:")]


def _flag(element: ET.Element, name: str) -> bool:
    return element.get(name) == "true"


def _instance(element: ET.Element, parent: str) -> ResourceInstance:
    return ResourceInstance(id=element.get("id", ""), parent=parent, agent=element.get("resource_agent", ""),
                            role=element.get("role", ""), nodes=tuple(n.get("name", "") for n in element.iter("node")),
                            failed=_flag(element, "failed"), managed=element.get("managed", "true") == "true")


def parse_crm_mon(crm_mon_xml: str) -> ClusterState:
    """The cluster state from ``crm_mon --one-shot --output-as=xml``; PacemakerError when the
    answer is not crm_mon's XML."""
    try:
        root = ET.fromstring(crm_mon_xml)
    except ET.ParseError as exc:
        raise PacemakerError(f"crm_mon's answer is not XML ({exc}).") from None
    summary = root.find("summary")
    if summary is None:
        raise PacemakerError("crm_mon's answer has no summary: not crm_mon --output-as=xml.")
    dc = summary.find("current_dc")
    options = summary.find("cluster_options")
    nodes = {n.get("name", ""): NodeState(name=n.get("name", ""), online=_flag(n, "online"),
                                          standby=_flag(n, "standby"), maintenance=_flag(n, "maintenance"),
                                          unclean=_flag(n, "unclean"))
             for n in root.findall("nodes/node")}
    resources: List[ResourceInstance] = []
    for element in root.findall("resources/*"):
        if element.tag == "resource":
            resources.append(_instance(element, ""))
        else:                                           # clone, group, bundle: their members
            resources.extend(_instance(member, element.get("id", "")) for member in element.iter("resource"))
    failures = tuple(FailedAction(resource=f.get("op_key", "").rsplit("_", 2)[0], operation=f.get("task", ""),
                                  node=f.get("node", ""), reason=f.get("exitreason", "") or f.get("exitstatus", ""))
                     for f in root.findall("failures/failure"))
    attributes = {n.get("name", ""): {a.get("name", ""): a.get("value", "") for a in n.findall("attribute")}
                  for n in root.findall("node_attributes/node")}
    return ClusterState(
        dc=dc_name(crm_mon_xml), quorate=dc is not None and dc.get("with_quorum") == "true",
        maintenance_mode=options is not None and options.get("maintenance-mode") == "true",
        stonith_enabled=options is None or options.get("stonith-enabled", "true") == "true",
        nodes=nodes, resources=tuple(resources), failed_actions=failures, attributes=attributes)


def read_state(runner: Runner) -> ClusterState:
    """The live cluster's state, from one bounded crm_mon."""
    return parse_crm_mon(runner.run(CRM_MON).stdout)
