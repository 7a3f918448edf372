#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: switchover
short_description: Move the promoted PostgreSQL and every endpoint to the other node, on purpose
version_added: 1.1.0
description:
  - A planned switchover of the pair, run on the current primary's node (C(delegate_to) it). Gates first, all
    read before any change; then a temporary move of the promoted role with a lifetime, a bounded wait until
    O(target) is Promoted and every endpoint resource runs on it, and the move constraint removed again.
  - "Gates, in order: O(target) is a member of the cluster; every node online and the cluster quorate; no node
    in standby or maintenance; the cluster not in maintenance-mode; stonith-enabled and every fencing device
    started; one primary, on the node the module runs on; O(target) streaming from it in pg_stat_replication
    with a replay lag of at most O(max_lag_bytes); no failed action on the database or an endpoint; no move
    constraint left from an earlier move (C(cli-) from C(crm_resource --move), or this module's own)."
  - A failed gate fails the module with one sentence naming the gate and the value it read; the CIB is left as
    it was.
  - When O(target) is already Promoted and every endpoint runs on it, nothing is changed.
  - One switchover at a time. The whole run, check mode included, holds a lock on the node it runs on (an
    C(flock) of C(/run/ec2ha/switchover.lock), released when the module's process ends, however it ends). A
    second switchover on that node (two AWX jobs at once) is refused by the gate C(one switchover at a time),
    naming the running one; one run from the other node meets the running one's move constraint and is refused
    by the gate C(no leftover move constraint), before its move or at it, leaving the other's constraint alone.
  - The move constraint (C(ec2ha-move-<clone>)) prefers O(target) for the Promoted role only until O(timeout)
    plus a minute from now, so a run that dies midway cannot pin the primary for good. It is removed when the
    move is done, or has failed.
  - Afterwards it waits, at most O(standby_timeout) seconds, until the old primary streams again and, in sync
    mode, the sync guard has marked it in sync.
author: ec2ha.cluster developers (@ec2ha)
options:
  target:
    description: The node to become the primary (its Pacemaker name).
    type: str
    required: true
  clone_id:
    description: The promotable clone of PostgreSQL (the replication role's C(replication_clone_id)).
    type: str
    default: pgsqld-clone
  endpoints:
    description: The endpoint resources that must follow; empty means every resource of provider C(ec2ha).
    type: list
    elements: str
    default: []
  max_lag_bytes:
    description: The largest replay lag of O(target), in bytes, the lag gate lets through.
    type: int
    default: 0
  force:
    description: Skip the lag gate (the target must still stream). Never skips the fencing or quorum gates.
    type: bool
    default: false
  timeout:
    description: Seconds from placing the move constraint until the target is Promoted and every endpoint started.
    type: int
    default: 120
  standby_timeout:
    description: Seconds for the old primary to stream again (and, in sync mode, be in sync) afterwards.
    type: int
    default: 120
  replication_mode:
    description: The replication role's C(replication_mode); in V(sync) the old primary must be in sync again.
    type: str
    choices: [sync, async]
    default: sync
  sync_attribute:
    description: The node attribute the sync guard sets to V(1) on a node in sync (C(replication_sync_attribute)).
    type: str
    default: ec2ha-pgsql-sync
  pg_socket_dir:
    description: PostgreSQL's socket directory on the node.
    type: path
    default: /run/postgresql
  pg_port:
    description: PostgreSQL's port.
    type: int
    default: 5432
  command_timeout:
    description: Seconds each Pacemaker or psql command may take.
    type: float
    default: 30
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Runs every gate and returns in RV(planned) what crm_simulate plans for the move on a copy of the CIB;
      writes nothing.
  diff_mode:
    support: full
    details: Before and after hold the primary and the node of each endpoint.
  platform:
    platforms: posix
requirements:
  - Pacemaker command-line tools and psql on the node; run as root.
notes:
  - The replication role and the recovery kit configure what this module moves; C(playbooks/switchover.yml)
    runs it on the primary and checks the endpoints from AWS before and after.
seealso:
  - module: ec2ha.cluster.cib_objects
  - module: ec2ha.cluster.endpoint_info
"""

EXAMPLES = r"""
- name: Move the primary to pg2
  ec2ha.cluster.switchover:
    target: pg2
  delegate_to: pg1            # the current primary
  run_once: true

- name: Dry run (every gate, the plan, no change)
  ec2ha.cluster.switchover:
    target: pg2
  delegate_to: pg1
  run_once: true
  check_mode: true
"""

RETURN = r"""
gates:
  description: Every gate, in order, with what it read.
  returned: success
  type: list
  elements: dict
  sample: [{"name": "fencing", "ok": true, "value": "stonith-enabled=true; devices: fence-aws; stopped: none",
            "message": ""}]
before:
  description: The primary and the node of each endpoint before the run.
  returned: success
  type: dict
  sample: {"primary": "pg1", "endpoints": {"ec2ha-vip-route": "pg1", "ec2ha-elastic-ip": "pg1"}}
after:
  description: The same after the run (planned, in check mode).
  returned: success
  type: dict
  sample: {"primary": "pg2", "endpoints": {"ec2ha-vip-route": "pg2", "ec2ha-elastic-ip": "pg2"}}
timeline:
  description: Each step with its time since the constraint was placed (C(t), seconds) and its UTC time.
  returned: changed and not check mode
  type: list
  elements: dict
  sample: [{"event": "constraint placed", "t": 0.0, "at": "2026-12-02T10:00:00.000+00:00"},
           {"event": "promoted pg2", "t": 3.2, "at": "2026-12-02T10:00:03.200+00:00"}]
planned:
  description: In check mode, the actions crm_simulate plans for the move.
  returned: check mode
  type: list
  elements: str
  sample: ["* Promote pgsqld:1 ( Unpromoted -> Promoted pg2 )"]
"""

from typing import Any, Dict

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ec2ha.cluster.plugins.module_utils.pacemaker.runner import PacemakerError
from ansible_collections.ec2ha.cluster.plugins.module_utils.switchover import SwitchoverError, SwitchoverSpec, run, session

ARGUMENT_SPEC: Dict[str, Any] = dict(
    target=dict(type="str", required=True),
    clone_id=dict(type="str", default="pgsqld-clone"),
    endpoints=dict(type="list", elements="str", default=[]),
    max_lag_bytes=dict(type="int", default=0),
    force=dict(type="bool", default=False),
    timeout=dict(type="int", default=120),
    standby_timeout=dict(type="int", default=120),
    replication_mode=dict(type="str", choices=["sync", "async"], default="sync"),
    sync_attribute=dict(type="str", default="ec2ha-pgsql-sync"),
    pg_socket_dir=dict(type="path", default="/run/postgresql"),
    pg_port=dict(type="int", default=5432),
    command_timeout=dict(type="float", default=30),
)


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    p = module.params
    if p["max_lag_bytes"] < 0 or p["timeout"] <= 0 or p["standby_timeout"] <= 0:
        module.fail_json(msg=f"max_lag_bytes {p['max_lag_bytes']} must be 0 or more, timeout {p['timeout']} and "
                             f"standby_timeout {p['standby_timeout']} more than 0.")
    spec = SwitchoverSpec(target=p["target"], clone=p["clone_id"], endpoints=tuple(p["endpoints"]),
                          max_lag_bytes=p["max_lag_bytes"], force=p["force"], timeout=p["timeout"],
                          standby_timeout=p["standby_timeout"], mode=p["replication_mode"],
                          sync_attribute=p["sync_attribute"], pghost=p["pg_socket_dir"], pgport=p["pg_port"])
    try:
        outcome = run(session(spec, p["command_timeout"]), module.check_mode)
    except SwitchoverError as exc:
        module.fail_json(msg=str(exc), gates=[g.as_dict() for g in exc.gates])
    except PacemakerError as exc:
        module.fail_json(msg=str(exc))
    result = outcome.as_dict()
    if module._diff:
        result["diff"] = {"before": result["before"], "after": result["after"]}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
