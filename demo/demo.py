"""make demo: an AWS control plane (moto on loopback), a small VPC with two nodes, and a playbook
that moves all three client endpoints from one node to the other and back.

The moto server is started here and stopped by its PID whatever happens.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ec2ha_testkit import moto_server, world  # the tests' support (make demo-moto puts it on PYTHONPATH)

REPO = Path(__file__).resolve().parent.parent

STATE = REPO / ".build" / "demo"


def main() -> int:
    url = moto_server.start(STATE)
    try:
        print(f"AWS control plane: moto at {url}")
        ids = world.build(url, "us-east-1", "demo")
        (STATE / "world.json").write_text(json.dumps(ids, indent=2))
        print(f"VPC {ids['vpc_id']} ({ids['vpc_cidr']}), nodes {ids['node1']['name']} and {ids['node2']['name']}")
        aws = {"endpoint_url": url, "access_key": "testing", "secret_key": "testing", "region": "us-east-1"}
        extra = {"world": ids, "aws": aws}
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / ".build" / "collections"),
                   ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
        cmd = [str(Path(sys.executable).parent / "ansible-playbook"), str(REPO / "demo" / "move_endpoints.yml"),
               "-e", json.dumps(extra)]
        return subprocess.call(cmd, env=env)
    finally:
        moto_server.stop(STATE)


if __name__ == "__main__":
    sys.exit(main())
