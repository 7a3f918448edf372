# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures of the extensions/awx tests: the shipped job templates and credential types, an
environment without the developer's AWS_* variables, and the awx.awx collection for the checks
of apply.yml."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Dict, Iterator

import pytest
from ec2ha_testkit import awx_runner

ROOT = awx_runner.ROOT

# Galaxy is out of reach here; the community package "ansible" on PyPI bundles awx.awx. 12.3.0 is
# the one built for ansible-core 2.19 (the checkout's pin) and holds awx.awx 24.6.1.
AWX_BUNDLE = "ansible==12.3.0"
AWX_COLLECTIONS = ROOT / ".build" / "awx-collections"


@pytest.fixture
def no_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No AWS_* variable of the developer's shell reaches a run: only what a credential injects."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)


def _unpack_awx(wheel: Path, target: Path) -> None:
    prefix = "ansible_collections/awx/awx/"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target, [n for n in archive.namelist() if n.startswith(prefix)])


@pytest.fixture(scope="session")
def awx_collections() -> Path:
    """A collections path holding awx.awx (only for the checks of apply.yml): unpacked once under
    .build/awx-collections from the ansible package's wheel; the test skips when pip cannot have it."""
    if (AWX_COLLECTIONS / "ansible_collections" / "awx" / "awx" / "MANIFEST.json").is_file():
        return AWX_COLLECTIONS
    download = ROOT / ".build" / "awx-download"
    done = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                           "-d", str(download), AWX_BUNDLE], capture_output=True, text=True, timeout=600, check=False)
    wheels = sorted(download.glob("ansible-*.whl"))
    if done.returncode != 0 or not wheels:
        pytest.skip(f"awx.awx cannot be had: Galaxy is unreachable here and pip download {AWX_BUNDLE} "
                    f"(which bundles awx.awx) failed: {done.stderr.strip()[-300:]}")
    _unpack_awx(wheels[-1], AWX_COLLECTIONS)
    return AWX_COLLECTIONS


@pytest.fixture(scope="session")
def job_templates() -> Dict[str, Dict]:
    return {p.stem: awx_runner.load(p) for p in awx_runner.job_template_paths()}


@pytest.fixture
def env_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "env"
    path.mkdir()
    yield path
