"""When things happened, as a node's pacemaker.log says (millisecond stamps, the machine's clock,
which is every lab host's clock): the first line matching each pattern after a moment.

    first_events(s, "pg2", {"promoted": r"Result of promote operation for pgsqld on pg2: ok"}, since)
    # -> {"promoted": 1764680491.123}  (epoch seconds; None where no line matched)
"""

from __future__ import annotations

import datetime
import re
from typing import Dict, Optional

from lab.pair import cluster

LOG = "/var/log/pacemaker/pacemaker.log"


def _stamp(line: str, year: int) -> Optional[float]:
    try:
        return datetime.datetime.strptime(f"{year} {line[:19]}", "%Y %b %d %H:%M:%S.%f").timestamp()
    except ValueError:
        return None


def first_events(s: cluster.Settings, node: str, patterns: Dict[str, str], since: float,
                 lines: int = 3000) -> Dict[str, Optional[float]]:
    """{name: epoch seconds of the first line after `since` matching its pattern, or None}."""
    out = cluster.ssh(s, cluster.node_address(node), f"tail -n {lines} {LOG}", timeout=20).stdout
    year = datetime.datetime.now().year
    found: Dict[str, Optional[float]] = {name: None for name in patterns}
    for line in out.splitlines():
        when = _stamp(line, year)
        if when is None or when < since:
            continue
        for name, pattern in patterns.items():
            if found[name] is None and re.search(pattern, line):
                found[name] = when
    return found


def requested(operation: str, resource: str, node: str) -> str:
    """The line pacemaker-controld logs as it starts an operation on its own node."""
    return rf"Requesting local execution of {operation} operation for {resource} on {node}"


def succeeded(operation: str, resource: str, node: str) -> str:
    """The line pacemaker-controld logs when that operation returned ok."""
    return rf"Result of {operation} operation for {resource} on {node}: ok"
