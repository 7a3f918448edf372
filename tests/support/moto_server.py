#!/usr/bin/env python
"""Command-line entry (and old import path) of ec2ha_testkit.moto_server: start or stop a moto
server on loopback for the tests. `moto_server.py start STATE_DIR` / `moto_server.py stop STATE_DIR`."""

from __future__ import annotations

import sys

# The old import path: demo/demo.py and tests/lab import moto_server from here.
from ec2ha_testkit.moto_server import free_port, main, serve, start, stop  # noqa: F401 pylint: disable=unused-import

if __name__ == "__main__":
    main(sys.argv)
