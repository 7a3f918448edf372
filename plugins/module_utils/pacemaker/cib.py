# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Change the CIB by difference: read the live CIB, stage into a copy, ``crm_verify`` the copy,
``crm_diff`` it against what was read, and ``cibadmin --patch`` only when they differ.

The patch is versioned (it names the epoch it was made from), so a CIB that moved on since it
was read refuses it: nothing is overwritten, the caller runs again. No Ansible import.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import tempfile
import xml.etree.ElementTree as ET
from typing import Dict, List, Optional

from ansible_collections.ec2ha.cluster.plugins.module_utils.pacemaker.runner import PacemakerError, Runner
from ansible_collections.ec2ha.cluster.plugins.module_utils.pacemaker.staging import (
    Change,
    Desired,
    redacted,
    stage,
)


@dataclasses.dataclass
class PushResult:
    """What a push found and did. ``changed`` is crm_diff's verdict; ``patched`` is false in check mode."""

    changed: bool
    patched: bool
    changes: List[Change]
    verify_messages: List[str]

    def diff(self) -> Dict[str, str]:
        """Before and after of every staged difference, the values of secret objects masked."""
        return {"before": _render([c.before for c in self.changes], [c.secret for c in self.changes]),
                "after": _render([c.after for c in self.changes], [c.secret for c in self.changes])}


class VerifyFailed(PacemakerError):
    """crm_verify found errors in the staged copy; ``messages`` holds all it said."""

    def __init__(self, message: str, messages: List[str]) -> None:
        super().__init__(message)
        self.messages = messages


class Cib:
    """The CIB's tools, each run once through ``runner`` (bounded in time)."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    def query(self) -> str:
        return self.runner.run(["cibadmin", "--query"]).stdout

    def verify(self, path: str) -> List[str]:
        """crm_verify's complaints; raise when it found errors (warnings only describe the cluster's
        state, a node down or no quorum, not the staged configuration)."""
        done = self.runner.run(["crm_verify", "--verbose", "--xml-file", path], ok=range(0, 256))
        messages = [line for line in done.stderr.splitlines() if line.strip()] if done.rc else []
        if done.rc and "Errors found" in done.stderr:
            errors = [m for m in messages if "error" in m.lower()] or messages
            raise VerifyFailed(f"crm_verify refused the staged CIB: {errors[0].strip()}", messages)
        return messages

    def differs(self, live: str, new: str) -> bool:
        done = self.runner.run(["crm_diff", "--no-version", "--original", live, "--new", new], ok=(0, 1))
        return done.rc == 1

    def patch(self, live: str, new: str) -> None:
        patch = self.runner.run(["crm_diff", "--original", live, "--new", new], ok=(1,)).stdout
        try:
            self.runner.run(["cibadmin", "--patch", "--xml-pipe"], stdin=patch)
        except PacemakerError as exc:
            raise PacemakerError(f"The live CIB refused the patch, it may have changed since it was read "
                                 f"(run again): {exc}") from None


def push(runner: Runner, desired: Desired, check_mode: bool) -> PushResult:
    """Stage ``desired`` into a copy of the live CIB and patch the difference (not in check mode).

    In check mode an earlier call's objects were not pushed (the fence device that stonith-enabled
    needs, say), so crm_verify's errors are returned as messages, not raised.
    """
    cib = Cib(runner)
    live_text = cib.query()
    try:
        live = ET.fromstring(live_text)
    except ET.ParseError as exc:
        raise PacemakerError(f"cibadmin --query answered something that is not XML ({exc}).") from None
    new = copy.deepcopy(live)
    changes = stage(new, desired)
    if changes:
        # As cibadmin does to a file: the copy is one configuration change newer.
        new.set("epoch", str(int(live.get("epoch", "0")) + 1))
        new.set("num_updates", "0")
    with tempfile.TemporaryDirectory(prefix="ec2ha-cib-") as scratch:
        live_path = _write(scratch, "live.xml", live_text)
        new_path = _write(scratch, "new.xml", ET.tostring(new, encoding="unicode"))
        try:
            messages = cib.verify(new_path)
        except VerifyFailed as exc:
            if not check_mode:
                raise
            messages = exc.messages
        changed = bool(changes) and cib.differs(live_path, new_path)
        if changed and not check_mode:
            cib.patch(live_path, new_path)
    return PushResult(changed, changed and not check_mode, changes if changed else [], messages)


def _write(directory: str, name: str, text: str) -> str:
    # The staged CIB may hold secrets (a fence agent's key): readable by the owner only.
    path = os.path.join(directory, name)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


def _render(elements: List[Optional[ET.Element]], secret: List[bool]) -> str:
    out = []
    for element, masked in zip(elements, secret):
        if element is None:
            continue
        shown = redacted(element) if masked else copy.deepcopy(element)
        shown.tail = None
        ET.indent(shown)
        out.append(ET.tostring(shown, encoding="unicode"))
    return "\n".join(out) + ("\n" if out else "")
