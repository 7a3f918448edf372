# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures for the offline role checks (helpers live in roletools.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, List, Mapping

import pytest

# roletools sits next to this file: pytest puts this folder (no __init__.py) on the path.
from roletools import Inventory, OfflineCib, require


@pytest.fixture
def inventory_factory() -> Callable[..., Inventory]:
    def make(common: Mapping[str, Any] | None = None, **per_host: Mapping[str, Any]) -> Inventory:
        base = {
            "alpha": {"heartbeat_node_addr": "127.0.0.1", "heartbeat_instance_id": "i-0aaaaaaaaaaaaaaa1"},
            "bravo": {"heartbeat_node_addr": "127.0.0.2", "heartbeat_instance_id": "i-0bbbbbbbbbbbbbbb2"},
        }
        for host, values in per_host.items():
            base.setdefault(host, {}).update(values)
        settings = {"heartbeat_fence_region": "us-east-1", "replication_vip": "192.168.100.10",
                    "replication_password": "s3cret'pw"}
        settings.update(common or {})
        return Inventory(base, settings)
    return make


@pytest.fixture
def offline_cib(tmp_path: Path) -> Callable[[List[str]], OfflineCib]:
    require("cibadmin", "crm_verify", "crm_diff", "crm_attribute")
    return lambda names: OfflineCib(tmp_path, names)
