"""The cluster pair that the tests of this package share: built once by playbooks/site.yml and
terminated after the package's last test (the lab removes the hosts), so the lab is left as it
was found. Each module starts from a healthy pair: `healthy_pair` rejoins a node an earlier
module left fenced, and waits until the standby streams in sync.
"""

from __future__ import annotations

import pytest

from lab.helpers import wait_for
from lab.pair import cluster, health


@pytest.fixture(scope="package")
def pair(lab_session):
    settings = health.ensure_cluster("test-site-1.log")
    yield settings
    ids = [i["InstanceId"] for i in cluster.node_instances(settings).values()]
    if ids:
        settings.client("ec2").terminate_instances(InstanceIds=ids)


@pytest.fixture(scope="module")
def healthy_pair(pair):
    """The pair with one primary and a standby in sync; a node left out by an earlier module
    (fenced, powered off) is rejoined first."""
    roles = health.pair_roles(pair)
    for name, _subnet, _address in cluster.NODES:
        if roles.get(name) not in ("Promoted", "Unpromoted") and list(roles.values()).count("Promoted") == 1:
            health.rejoin(pair, name)
    wait_for(lambda: health.healthy(pair), 180, 1, "a healthy pair: the standby streaming in sync")
    return pair
