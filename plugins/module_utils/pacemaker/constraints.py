# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Temporary moves of a promotable clone's Promoted role, and the move constraints left behind.

A planned switchover places one location constraint of its own (id ``ec2ha-move-<clone>``): a
rule that prefers the target for the Promoted role, true only until a date, so a controller that
dies midway cannot pin the primary for good. It is removed as soon as the move is done. Any
``cli-`` constraint (``crm_resource --move`` / ``--ban`` by hand) or ``ec2ha-move-`` one found
before a switchover is a leftover that would later cause a surprise move. No Ansible import.
"""

from __future__ import annotations

import dataclasses
import datetime
import xml.etree.ElementTree as ET
from typing import List, Optional

from ansible_collections.ec2ha.cluster.plugins.module_utils.pacemaker.runner import PacemakerError, Runner

MOVE_PREFIX = "ec2ha-move-"
LEFTOVER_PREFIXES = ("cli-", MOVE_PREFIX)


@dataclasses.dataclass(frozen=True)
class Location:
    """A location constraint, as far as a switchover cares."""

    id: str
    resource: str
    node: str          # the node it names (attribute node=, or a #uname rule), "" if none
    role: str
    score: str
    until: str         # the end of its lifetime (a date_expression), "" if it has none


def move_id(clone: str) -> str:
    return MOVE_PREFIX + clone


def locations(constraints_xml: str) -> List[Location]:
    """Every rsc_location in ``cibadmin --query --scope constraints``."""
    try:
        root = ET.fromstring(constraints_xml)
    except ET.ParseError as exc:
        raise PacemakerError(f"The CIB's constraints are not XML ({exc}).") from None
    found = []
    for loc in root.iter("rsc_location"):
        rule = loc.find("rule")
        node = loc.get("node", "")
        role = loc.get("role", "")
        score = loc.get("score", "")
        until = ""
        if rule is not None:
            role = rule.get("role", role)
            score = rule.get("score", score)
            uname = [e.get("value", "") for e in rule.iter("expression") if e.get("attribute") == "#uname"]
            node = node or (uname[0] if uname else "")
            until = next((d.get("end", "") for d in rule.iter("date_expression") if d.get("operation") == "lt"), "")
        found.append(Location(loc.get("id", ""), loc.get("rsc", ""), node, role, score, until))
    return found


def leftover_moves(constraints_xml: str) -> List[Location]:
    """Move constraints a switchover must not start over: by hand (cli-) or an earlier one."""
    return [c for c in locations(constraints_xml) if c.id.startswith(LEFTOVER_PREFIXES)]


def move_constraint(clone: str, node: str, until: datetime.datetime) -> str:
    """The constraint that prefers ``node`` for the clone's Promoted role until ``until`` (UTC)."""
    cid = move_id(clone)
    end = until.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    location = ET.Element("rsc_location", {"id": cid, "rsc": clone})
    rule = ET.SubElement(location, "rule", {"id": f"{cid}-rule", "role": "Promoted", "score": "INFINITY",
                                            "boolean-op": "and"})
    ET.SubElement(rule, "expression", {"id": f"{cid}-node", "attribute": "#uname", "operation": "eq",
                                       "value": node})
    ET.SubElement(rule, "date_expression", {"id": f"{cid}-until", "operation": "lt", "end": end})
    return ET.tostring(location, encoding="unicode")


class Constraints:
    """Read, place and clear move constraints through ``runner`` (every command bounded)."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    def query(self) -> str:
        return self.runner.run(["cibadmin", "--query", "--scope", "constraints"]).stdout

    def place_move(self, clone: str, node: str, lifetime_s: float,
                   now: Optional[datetime.datetime] = None) -> str:
        """Place the move constraint; returns its id."""
        start = now or datetime.datetime.now(datetime.timezone.utc)
        xml = move_constraint(clone, node, start + datetime.timedelta(seconds=lifetime_s))
        self.runner.run(["cibadmin", "--create", "--scope", "constraints", "--xml-text", xml])
        return move_id(clone)

    def clear_move(self, clone: str) -> bool:
        """Remove the move constraint; False when there was none (cibadmin's delete of a missing
        object also succeeds, so it is looked for first)."""
        if not any(c.id == move_id(clone) for c in locations(self.query())):
            return False
        self.runner.run(["cibadmin", "--delete", "--xml-text", f'<rsc_location id="{move_id(clone)}"/>'])
        return True
