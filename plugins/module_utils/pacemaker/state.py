# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cluster's state as crm_mon reports it (``crm_mon --one-shot --output-as=xml``).

crm_mon, not crmadmin: ``crmadmin --dc_lookup`` blocks for good while there is no DC yet (seen
with Pacemaker 2.1.5; a new cluster elects one after about 20 s), crm_mon answers at once.
No Ansible import.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from typing import Callable, Optional

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
