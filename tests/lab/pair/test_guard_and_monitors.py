"""What the cluster does about its own watchers: a sync guard that stops deciding, and an endpoint
changed by hand. Neither may move the primary (issue 8, items 5 and 10)."""

from __future__ import annotations

import re
import time

from lab.helpers import wait_for
from lab.pair import cluster, cluster_state, health

GUARD = "pgsql-sync-guard"
STATUS = "ec2ha-pgsql-replication"        # the replication role's replication_status_attribute


def _status(pair, primary: str) -> str:
    return health.node_attribute(pair, primary, primary, STATUS, "reboot") or ""


def _guard_pid(pair, primary: str) -> str:
    return cluster_state.run(pair, primary, f"cat /run/{GUARD}.pid 2>/dev/null; true").strip()


def test_a_stuck_sync_guard_is_reported_and_restarted_without_moving_the_primary(healthy_pair):
    # Before: a guard that kept running but no longer decided left "sync" on display for good.
    pair = healthy_pair
    primary = cluster.promoted_node(pair)
    stuck = _guard_pid(pair, primary)
    assert stuck and _status(pair, primary) == "sync"
    cluster_state.run(pair, primary, f"kill -STOP {stuck}")
    seen = set()

    def restarted() -> bool:
        seen.add(_status(pair, primary))
        return _guard_pid(pair, primary) not in ("", stuck) and _status(pair, primary) == "sync"

    try:
        wait_for(restarted, 120, 1, "the stuck guard to be replaced by a new one")
    finally:
        cluster_state.run(pair, primary, f"kill -CONT {stuck} 2>/dev/null; true")
    assert "unknown" in seen                         # published by the failing monitor hook
    assert cluster.promoted_node(pair) == primary    # the primary never moved
    failures = cluster_state.run(pair, primary, "crm_mon -1 --output-as=xml")
    assert re.search(rf'<failure op_key="{GUARD}_monitor_\d+"', failures)
    cluster_state.run(pair, primary, f"crm_resource --cleanup --resource {GUARD}")


def test_a_route_deleted_by_hand_is_put_back_by_the_monitor(healthy_pair):
    # Before: the monitor answered OCF_ERR_CONFIGURED (fatal): the VIP was stopped on every node.
    pair = healthy_pair
    primary = cluster.promoted_node(pair)
    pair.client("ec2").delete_route(RouteTableId=pair.route_tables[0], DestinationCidrBlock=f"{cluster.VIP}/32")
    deleted = time.monotonic()
    assert cluster.endpoint_holders(pair)["vip"] is None
    wait_for(lambda: cluster.endpoint_holders(pair)["vip"] == primary, 40, 1,
             "the monitor to route the VIP to the primary again")
    print(f"\nroute re-created {time.monotonic() - deleted:.1f} s after it was deleted")
    assert cluster.promoted_node(pair) == primary
    assert health.who_serves("e2h-client", cluster.VIP) == primary
    status = cluster_state.run(pair, primary, "crm_mon -1 --output-as=xml")
    assert 'id="ec2ha-vip-route" resource_agent="ocf:ec2ha:vip_route" role="Started"' in status
    assert 'op_key="ec2ha-vip-route_monitor' not in status          # repaired, not failed
