# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The boto3/botocore these tests run on is one the collection declares: at least the minimums of
requirements.txt, and exactly them under make unit-boto-min (EC2HA_BOTO_MIN=1), where the cores'
tests meet the versions Debian 12 installs on the nodes."""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path
from typing import Dict, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[4]


def version(text: str) -> Tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def declared_minimums() -> Dict[str, Tuple[int, ...]]:
    found = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        match = re.match(r"^(boto3|botocore)>=([0-9.]+)\s*(#.*)?$", line.strip())
        if match:
            found[match.group(1)] = version(match.group(2))
    return found


@pytest.mark.parametrize("name", ["boto3", "botocore"])
def test_tests_run_on_a_declared_version(name: str) -> None:
    running = version(importlib.import_module(name).__version__)
    minimum = declared_minimums()[name]
    if os.environ.get("EC2HA_BOTO_MIN"):
        assert running == minimum, f"make unit-boto-min runs {name} {running}, requirements.txt declares {minimum}"
    else:
        assert running >= minimum, f"{name} {running} is older than the {minimum} requirements.txt declares"
