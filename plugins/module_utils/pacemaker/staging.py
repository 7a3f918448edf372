# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stage desired objects into a copy of the CIB, in memory: pure functions on an ElementTree.

Staging follows what ``cibadmin`` does to a file, so ``crm_diff`` against the live CIB shows
only what really differs:

* an object replaces the element with the same tag and id in place (its position, and so the
  diff, stays stable), or is created at the end of its configuration section, creating the
  section when the CIB lacks it (a blank CIB has no rsc_defaults or op_defaults);
* an absent object is deleted wherever it is;
* a cluster property is updated where it is set, else set in ``cib-bootstrap-options`` (the set
  Pacemaker itself uses), with the id crm_attribute would give it;
* a node attribute default is set only when the node has no value yet, so a value the cluster
  wrote since (the sync guard's) is kept.

No Ansible import.
"""

from __future__ import annotations

import copy
import dataclasses
import xml.etree.ElementTree as ET
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence

from ansible_collections.ec2ha.cluster.plugins.module_utils.pacemaker.runner import PacemakerError

# Where an object goes when its section is not given: the unambiguous tags.
SECTION_OF_TAG: Mapping[str, str] = {
    "primitive": "resources", "group": "resources", "clone": "resources", "bundle": "resources",
    "master": "resources", "template": "resources",
    "rsc_location": "constraints", "rsc_colocation": "constraints", "rsc_order": "constraints",
    "rsc_ticket": "constraints", "rsc_set": "constraints",
    "cluster_property_set": "crm_config", "alert": "alerts", "fencing-level": "fencing-topology",
}
SECTIONS = ("crm_config", "rsc_defaults", "op_defaults", "nodes", "resources", "constraints",
            "fencing-topology", "tags", "alerts")
BOOTSTRAP_SET = "cib-bootstrap-options"
MASK = "********"


@dataclasses.dataclass(frozen=True)
class CibObject:
    """One configuration element the caller wants, in its section."""

    section: str
    element: ET.Element
    secret: bool = False

    @property
    def tag(self) -> str:
        return self.element.tag

    @property
    def id(self) -> str:
        return self.element.get("id", "")


class Absent(NamedTuple):
    """An object that must not be in the CIB."""

    tag: str
    id: str


class NodeAttributeDefault(NamedTuple):
    """A permanent node attribute set only while the node has none of that name."""

    node: str
    name: str
    value: str


@dataclasses.dataclass
class Desired:
    objects: Sequence[CibObject] = ()
    absent: Sequence[Absent] = ()
    properties: Mapping[str, str] = dataclasses.field(default_factory=dict)
    node_attribute_defaults: Sequence[NodeAttributeDefault] = ()


@dataclasses.dataclass(frozen=True)
class Change:
    """One difference staged into the copy: ``action`` is create, replace, delete or set."""

    action: str
    tag: str
    id: str
    before: Optional[ET.Element] = None
    after: Optional[ET.Element] = None
    secret: bool = False

    def as_dict(self) -> Dict[str, str]:
        return {"action": self.action, "tag": self.tag, "id": self.id}


def parse_object(xml_text: str, section: Optional[str] = None, secret: bool = False,
                 label: str = "object") -> CibObject:
    """One element from rendered XML; ``label`` names it in an error (never its content when secret)."""
    try:
        element = ET.fromstring(xml_text.strip())
    except ET.ParseError as exc:
        detail = "" if secret else f" ({exc})"
        raise PacemakerError(f"{label} is not well-formed XML{detail}.") from None
    if not element.get("id"):
        raise PacemakerError(f"{label} <{element.tag}> has no id attribute, expected one to find it by.")
    section = section or SECTION_OF_TAG.get(element.tag)
    if section not in SECTIONS:
        raise PacemakerError(f"{label} <{element.tag} id={element.get('id')!r}> needs a section, "
                             f"expected one of {', '.join(SECTIONS)}.")
    return CibObject(section, element, secret)


def check_desired(desired: Desired) -> None:
    """Refuse contradictions before anything is staged: an id wanted twice, or wanted and absent."""
    seen: Dict[str, str] = {}
    for obj in desired.objects:
        if obj.id in seen:
            raise PacemakerError(f"The id {obj.id!r} is given twice, expected each object once.")
        seen[obj.id] = obj.tag
    for gone in desired.absent:
        if gone.id in seen:
            raise PacemakerError(f"The id {gone.id!r} is both wanted and absent, expected one of them.")


def configuration(cib: ET.Element) -> ET.Element:
    found = cib.find("configuration")
    if found is None:
        raise PacemakerError("The CIB has no configuration section, expected the output of cibadmin --query.")
    return found


def stage(cib: ET.Element, desired: Desired) -> List[Change]:
    """Stage ``desired`` into ``cib`` (a copy: it is changed in place); return what differs."""
    check_desired(desired)
    config = configuration(cib)
    changes: List[Change] = []
    for name, value in desired.properties.items():
        changes.extend(_set_property(config, name, str(value)))
    for obj in desired.objects:
        changes.extend(_put(config, obj))
    for gone in desired.absent:
        changes.extend(_delete(config, gone))
    for default in desired.node_attribute_defaults:
        changes.extend(_node_attribute_default(config, default))
    return changes


def same_xml(a: ET.Element, b: ET.Element) -> bool:
    """Equal as Pacemaker reads them: attribute order and indentation do not count."""
    return _canonical(a) == _canonical(b)


def redacted(element: ET.Element) -> ET.Element:
    """A copy with every value masked, for a diff of an object that holds secrets."""
    masked = copy.deepcopy(element)
    for node in masked.iter():
        if "value" in node.attrib:
            node.set("value", MASK)
    return masked


def _canonical(element: ET.Element) -> str:
    bare = copy.deepcopy(element)
    bare.tail = None
    return ET.canonicalize(ET.tostring(bare, encoding="unicode"), strip_text=True)


def _parents(config: ET.Element) -> Dict[ET.Element, ET.Element]:
    return {child: parent for parent in config.iter() for child in parent}


def _section(config: ET.Element, name: str) -> ET.Element:
    found = config.find(name)
    if found is None:
        found = ET.SubElement(config, name)
    return found


def _put(config: ET.Element, obj: CibObject) -> List[Change]:
    parents = _parents(config)
    same_id = [e for e in config.iter() if e.get("id") == obj.id and e is not config]
    for existing in same_id:
        if existing.tag != obj.tag:
            raise PacemakerError(f"The id {obj.id!r} already names a <{existing.tag}> in the CIB, "
                                 f"expected a <{obj.tag}> or a free id.")
    new = copy.deepcopy(obj.element)
    if not same_id:
        section = _section(config, obj.section)
        section.append(new)
        return [Change("create", obj.tag, obj.id, None, new, obj.secret)]
    existing = same_id[0]
    if same_xml(existing, new):
        return []
    parent = parents[existing]
    new.tail = existing.tail
    parent[list(parent).index(existing)] = new
    return [Change("replace", obj.tag, obj.id, existing, new, obj.secret)]


def _delete(config: ET.Element, gone: Absent) -> List[Change]:
    parents = _parents(config)
    changes = []
    for existing in [e for e in config.iter(gone.tag) if e.get("id") == gone.id]:
        parents[existing].remove(existing)
        changes.append(Change("delete", gone.tag, gone.id, existing, None))
    return changes


def _set_property(config: ET.Element, name: str, value: str) -> List[Change]:
    crm_config = _section(config, "crm_config")
    for nvpair in crm_config.iterfind("cluster_property_set/nvpair"):
        if nvpair.get("name") == name:
            if nvpair.get("value") == value:
                return []
            before = copy.deepcopy(nvpair)
            nvpair.set("value", value)
            return [Change("set", "nvpair", nvpair.get("id", name), before, nvpair)]
    bootstrap = next((s for s in crm_config.iterfind("cluster_property_set") if s.get("id") == BOOTSTRAP_SET), None)
    if bootstrap is None:
        bootstrap = ET.Element("cluster_property_set", {"id": BOOTSTRAP_SET})
        crm_config.insert(0, bootstrap)
    nvpair = ET.SubElement(bootstrap, "nvpair", {"id": f"{BOOTSTRAP_SET}-{name}", "name": name, "value": value})
    return [Change("set", "nvpair", nvpair.get("id", name), None, nvpair)]


def _node_attribute_default(config: ET.Element, default: NodeAttributeDefault) -> List[Change]:
    node = next((n for n in config.iterfind("nodes/node") if n.get("uname") == default.node), None)
    if node is None:
        raise PacemakerError(f"The node {default.node!r} is not in the CIB's nodes section, "
                             "expected a node that has joined the cluster.")
    if any(nv.get("name") == default.name for nv in node.iterfind("instance_attributes/nvpair")):
        return []
    # The ids crm_attribute --node NODE --lifetime forever --update gives.
    set_id = f"nodes-{node.get('id')}"
    attributes = next((s for s in node.iterfind("instance_attributes") if s.get("id") == set_id), None)
    if attributes is None:
        attributes = ET.SubElement(node, "instance_attributes", {"id": set_id})
    nvpair = ET.SubElement(attributes, "nvpair", {"id": f"{set_id}-{default.name}", "name": default.name,
                                                  "value": default.value})
    return [Change("set", "nvpair", nvpair.get("id", default.name), None, nvpair)]
