# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The test world: a small, fresh EC2 / Route 53 world (VPC, two subnets, nodes, VIP routes, an
Elastic IP, zones) built in a moto server.

The builder itself is the file the integration target setup_world runs
(tests/integration/targets/setup_world/files/world.py): a target must carry its own files, so
the unit tests load that very file here instead of keeping a copy.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any, Dict

BUILDER = Path(__file__).resolve().parents[2] / "integration" / "targets" / "setup_world" / "files" / "world.py"


def _builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ec2ha_testkit._world_builder", BUILDER)
    assert spec is not None and spec.loader is not None, f"no world builder at {BUILDER}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_BUILD = _builder().build


def build(endpoint_url: str, region: str, name: str) -> Dict[str, Any]:
    """A new world named ``name`` (names keep worlds apart) and its ids."""
    return _BUILD(endpoint_url, region, name)
