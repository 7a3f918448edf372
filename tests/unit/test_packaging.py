# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Packaging promises no sanity test checks: `module_defaults: group/ec2ha.cluster.aws` covers every
AWS module, and every AWS module takes the shared AWS options from the `ec2ha.cluster.aws` doc
fragment, while the modules that run on a cluster node (Pacemaker, no AWS call) are in neither;
ansible-builder reads files the collection ships (requirements.txt holding exactly what the plugins
import, bindep.txt), the declared boto3/botocore minimums agree everywhere, development pins stay out
of the tarball, and role docs render (make package-check runs the tools themselves)."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Set

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(p.stem for p in (ROOT / "plugins" / "modules").glob("*.py") if p.stem != "__init__")
# AWS modules are built on module_shell (the shared AWS options, one error boundary); the others
# (cib_objects, switchover) run on a cluster node and call no AWS API.
AWS_MODULES = [m for m in MODULES if "module_utils.module_shell import" in (
    ROOT / "plugins" / "modules" / f"{m}.py").read_text()]
NODE_MODULES = [m for m in MODULES if m not in AWS_MODULES]


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


def test_the_node_modules_are_the_pacemaker_ones() -> None:
    assert NODE_MODULES == ["cib_objects", "switchover"]


@pytest.mark.parametrize("name", AWS_MODULES)
def test_module_is_in_the_aws_action_group(name: str) -> None:
    assert name in aws_action_group(), f"meta/runtime.yml action_groups.aws lacks {name}"


@pytest.mark.parametrize("name", aws_action_group())
def test_action_group_entry_is_an_aws_module(name: str) -> None:
    assert name in AWS_MODULES, f"meta/runtime.yml action_groups.aws names {name}, which is not an AWS module"


@pytest.mark.parametrize("name", NODE_MODULES)
def test_a_node_module_takes_no_aws_options(name: str) -> None:
    assert "ec2ha.cluster.aws" not in module_documentation(name).get("extends_documentation_fragment", [])


@pytest.mark.parametrize("name", AWS_MODULES)
def test_module_takes_the_shared_aws_options(name: str) -> None:
    doc = module_documentation(name)
    assert doc["module"] == name
    assert "ec2ha.cluster.aws" in doc.get("extends_documentation_fragment", []), (
        f"{name} does not extend the ec2ha.cluster.aws doc fragment"
    )


def third_party_imports() -> Set[str]:
    """Top-level names the collection's plugins import, less the standard library and Ansible."""
    names: Set[str] = set()
    for path in (ROOT / "plugins").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("__future__", "ansible", "ansible_collections")}


def requirement_lines(name: str) -> List[str]:
    return [line.strip() for line in (ROOT / name).read_text().splitlines() if line.strip() and not line.startswith("#")]


def declared_minimums() -> Dict[str, str]:
    """requirements.txt as {package: minimum}; every line must be NAME>=VERSION."""
    found = {}
    for line in requirement_lines("requirements.txt"):
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", line)
        assert match, f"requirements.txt: {line!r} is not NAME>=VERSION (a collection states minimums, never pins)"
        found[match.group(1)] = match.group(2)
    return found


def test_execution_environment_file_names_files_of_the_collection() -> None:
    ee = yaml.safe_load((ROOT / "meta" / "execution-environment.yml").read_text())
    deps = ee["dependencies"]
    assert set(deps) == {"python", "system"}, deps
    for kind, name in deps.items():
        # ansible-builder's introspection wants a path relative to the collection, not a list.
        assert isinstance(name, str) and not Path(name).is_absolute(), f"{kind}: {name!r}"
        assert (ROOT / name).is_file(), f"meta/execution-environment.yml names {name}, which does not exist"
    assert deps == {"python": "requirements.txt", "system": "bindep.txt"}


def test_controller_requirements_are_what_the_plugins_import() -> None:
    assert set(declared_minimums()) == third_party_imports() == {"boto3", "botocore"}


def test_doc_fragment_requirements_are_the_declared_minimums() -> None:
    tree = ast.parse((ROOT / "plugins" / "doc_fragments" / "aws.py").read_text())
    doc = next(yaml.safe_load(ast.literal_eval(n.value)) for c in tree.body if isinstance(c, ast.ClassDef)
               for n in c.body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "DOCUMENTATION")
    listed = {m.group(1): m.group(2) for m in (re.fullmatch(r"(\S+) >= (\S+)", r) for r in doc["requirements"]) if m}
    assert {k: v for k, v in listed.items() if k != "python"} == declared_minimums()


def test_development_pins_stay_out_of_the_tarball() -> None:
    ignored = yaml.safe_load((ROOT / "galaxy.yml").read_text())["build_ignore"]
    for name in ("requirements-dev.txt", "requirements-test.txt", "requirements-packaging.txt", ".ansible-lint"):
        assert name in ignored, f"galaxy.yml build_ignore lacks {name}"
    assert any(line.startswith("ansible-core==") for line in requirement_lines("requirements-dev.txt"))
    assert not any(line.startswith("ansible") for line in requirement_lines("requirements.txt"))


ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "meta" / "argument_specs.yml").is_file())


@pytest.mark.parametrize("role", ROLES)
def test_role_has_a_readme(role: str) -> None:
    assert (ROOT / "roles" / role / "README.md").is_file(), f"roles/{role} has no README.md (galaxy-importer refuses it)"


@pytest.mark.parametrize("role", ROLES)
def test_role_spec_defaults_render_and_match_defaults_main(role: str) -> None:
    """A spec default documents the value of defaults/main.yml. A template cannot document an int,
    float, bool or dict option (antsibull-docs refuses it and the role's docs do not render): such a
    computed default is described in words instead, without `default:`."""
    spec = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]
    defaults = yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text()) or {}
    for name, option in spec["options"].items():
        value = defaults.get(name)
        if isinstance(value, str) and "{{" in value and option.get("type") in ("int", "float", "bool", "dict"):
            assert "default" not in option, f"{role}: {name} ({option['type']}) documents the template {value!r} as its default"
            words = " ".join(option["description"]) if isinstance(option["description"], list) else option["description"]
            assert "Default" in words, f"{role}: {name} is computed ({value!r}); its description must say how"
        elif "default" in option:
            assert option["default"] == value, f"{role}: {name} spec default {option['default']!r}, defaults/main.yml {value!r}"
