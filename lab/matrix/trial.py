"""One run of a fault as the fault saw it (a Trial, for the invariants), and the helpers every
fault of lab/matrix/catalogue.py and lab/matrix/switchover_faults.py shares."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from lab import helpers
from lab.matrix.invariants import Before
from lab.pair import client


@dataclass
class Trial:
    """What one run of a fault saw, for the invariants."""

    before: Before
    at: float                                   # the fault injected, epoch s
    writes: List[client.Write]
    failover: Optional[bool]                    # the standby must now be primary / must not / either
    quiet: bool                                 # nothing may fail or be fenced
    figures: Dict[str, Any] = field(default_factory=dict)
    violations: List[str] = field(default_factory=list)


def more_writes(writer: client.Writer, count: int = 5, timeout: float = 60) -> None:
    since = time.time()
    helpers.wait_for(lambda: len([w for w in writer.snapshot() if w.ok and w.t0 > since]) >= count,
                     timeout, 0.2, "writes acknowledged again")
