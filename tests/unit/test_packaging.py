# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Packaging promises no sanity test checks: `module_defaults: group/ec2ha.cluster.aws` covers every
module, and every module takes the shared AWS options from the `ec2ha.cluster.aws` doc fragment."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any, Dict, List

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(p.stem for p in (ROOT / "plugins" / "modules").glob("*.py") if p.stem != "__init__")


def aws_action_group() -> List[str]:
    runtime = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text())
    return list(runtime.get("action_groups", {}).get("aws", []))


def module_documentation(name: str) -> Dict[str, Any]:
    """The module's DOCUMENTATION, read from its source without importing it."""
    tree = ast.parse((ROOT / "plugins" / "modules" / f"{name}.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "DOCUMENTATION" for t in node.targets):
            return yaml.safe_load(ast.literal_eval(node.value))
    raise AssertionError(f"plugins/modules/{name}.py has no DOCUMENTATION")


def test_collection_has_modules() -> None:
    assert MODULES, "plugins/modules holds no module"


@pytest.mark.parametrize("name", MODULES)
def test_module_is_in_the_aws_action_group(name: str) -> None:
    assert name in aws_action_group(), f"meta/runtime.yml action_groups.aws lacks {name}"


@pytest.mark.parametrize("name", aws_action_group())
def test_action_group_entry_is_a_module(name: str) -> None:
    assert name in MODULES, f"meta/runtime.yml action_groups.aws names {name}, which is not in plugins/modules"


@pytest.mark.parametrize("name", MODULES)
def test_module_takes_the_shared_aws_options(name: str) -> None:
    doc = module_documentation(name)
    assert doc["module"] == name
    assert "ec2ha.cluster.aws" in doc.get("extends_documentation_fragment", []), (
        f"{name} does not extend the ec2ha.cluster.aws doc fragment"
    )
