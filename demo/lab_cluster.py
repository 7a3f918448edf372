"""`make lab-cluster`: the lab up with the pair built by playbooks/site.yml, left running for a
person to try things by hand (a switchover first), with what to type next; `make lab-down` ends it.

    .venv/bin/python -m demo.lab_cluster
"""

from __future__ import annotations

import shlex
import sys

from lab import topology
from lab.helpers import wait_for
from lab.pair import client, cluster, health


def instructions(s: cluster.Settings) -> list:
    ssh = f"ssh -F {s.info['ssh_config']}"
    env = (f"ANSIBLE_COLLECTIONS_PATH={cluster.COLLECTIONS} ANSIBLE_HOST_KEY_CHECKING=False "
           f"{topology.REPO / '.venv/bin/ansible-playbook'} -i {s.inventory}")
    roles = health.pair_roles(s)
    primary, standby = cluster.primary_and_standby(s)
    lines = ["", "The pair is up and left running:"]
    lines += [f"  {name}: {roles.get(name, '?')}, {address}   enter it: {ssh} {address}"
              for name, _subnet, address in cluster.NODES]
    lines += [f"  endpoints: VIP {cluster.VIP} (route table), EIP {s.public_ip}, A record {cluster.RECORD}",
              f"  inventory: {s.inventory}",
              "",
              "Try next:",
              f"  {ssh} {cluster.node_address(primary)} crm_mon -1 -A        # who is Promoted, the sync attribute",
              f"  ip netns exec {topology.CLIENT_NS} psql {shlex.quote(client.conninfo())} -c 'SELECT lab_node()'",
              f"  {env} {topology.REPO / 'playbooks/switchover.yml'} -e ec2ha_switchover_target={standby} --check",
              f"  {env} {topology.REPO / 'playbooks/switchover.yml'} -e ec2ha_switchover_target={standby}",
              f"  {env} {topology.REPO / 'playbooks/switchover.yml'} -e ec2ha_switchover_target={standby}"
              "   # again: changed=0",
              "",
              "End it: make lab-down"]
    return lines


def main() -> int:
    print("lab up, then playbooks/site.yml builds the pair (several minutes the first time)", flush=True)
    settings = health.ensure_cluster("lab-cluster-site.log")
    wait_for(lambda: health.healthy(settings), 300, 1, "a promoted PostgreSQL and a standby in sync")
    client.prepare_table(settings, cluster.promoted_node(settings))
    print("\n".join(instructions(settings)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
