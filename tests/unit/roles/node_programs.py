# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Commands that run the collection's node programs the way a node runs them: the system python3
executing the line of the recovery_kit role's program.j2, with the checkout's module_utils (made
importable by `make collection`) in place of the node's installed copy."""

from __future__ import annotations

import re
from pathlib import Path
from typing import List, Optional

import jinja2

REPO = Path(__file__).resolve().parents[3]
COLLECTIONS = REPO / ".build" / "collections"
PROGRAM = REPO / "roles" / "recovery_kit" / "templates" / "program.j2"


def render_program(name: str, module: str, python_dir: Path = COLLECTIONS,
                   metadata: Optional[Path] = None) -> str:
    """program.j2 as the role writes it for the program ``name`` running ``module``.main, with the
    node code under ``python_dir`` (and, for an OCF agent, its meta-data file)."""
    item = {"name": name, "module": module, **({"metadata": str(metadata)} if metadata else {})}
    return jinja2.Template(PROGRAM.read_text(), keep_trailing_newline=True).render(
        item=item, recovery_kit_python_dir=str(python_dir), ansible_managed="test")


def program_command(name: str, module: str, *args: str) -> List[str]:
    """argv of the program ``name`` (running ``module``.main) as program.j2 writes it."""
    code = re.search(r"-c '([^']+)'", render_program(name, module)).group(1)
    return ["/usr/bin/python3", "-c", code, *args]


def guard_command(settings: Path, *args: str) -> List[str]:
    """The sync guard with this settings file."""
    return program_command("ec2ha-pgsql-sync-guard", "sync_guard", "--settings", str(settings), *args)
