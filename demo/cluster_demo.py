"""The cluster demo in the lab: lab up -> playbooks/site.yml -> a client writing through the VIP ->
the active node powered off -> a timeline of what the client saw and what Pacemaker did ->
the fenced node rejoined as a standby.

    .venv/bin/python -m demo.cluster_demo [--keep]       # from the checkout (what `make demo` runs)

The lab is taken down at the end when this demo brought it up (unless --keep); a lab that was
already up is left up, with the pair in it.
"""

from __future__ import annotations

import sys
import time

from lab.bench import failover_bench
from lab.emulator import lifecycle
from lab.helpers import wait_for
from lab.pair import cluster, health


def step(text: str) -> float:
    print(f"\n== {text}", flush=True)
    return time.monotonic()


def main(argv: list[str]) -> int:
    brought_up = not lifecycle.lab_info()
    try:
        started = step("lab up, then playbooks/site.yml builds the pair (several minutes the first time)")
        settings = health.ensure_cluster("demo-site.log")
        print(f"built in {time.monotonic() - started:.0f} s; log {cluster.WORK_DIR / 'demo-site.log'}")
        wait_for(lambda: health.healthy(settings), 300, 1,
                 "a promoted PostgreSQL and a standby in sync")
        roles = health.pair_roles(settings)
        print("Pacemaker: " + ", ".join(f"{n} {r}" for n, r in sorted(roles.items())))
        print(f"endpoints: VIP {cluster.VIP} (route table), EIP {settings.public_ip}, "
              f"A record {cluster.RECORD}")

        step("client in e2h-client writes one row per transaction through the VIP; "
             "the promoted node is powered off")
        timeline = failover_bench.failover_once(settings)
        for line in timeline.lines():
            print("  " + line)
        holders = cluster.endpoint_holders(settings)
        print("  AWS, as endpoint_info reads it: " + ", ".join(f"{k} on {v}" for k, v in holders.items()))

        step(f"{timeline.failed} is started again and rejoins (playbooks/rejoin.yml)")
        timeline.rejoined_as = health.rejoin(settings, timeline.failed)
        roles = health.pair_roles(settings)
        print("Pacemaker: " + ", ".join(f"{n} {r}" for n, r in sorted(roles.items())))
        ok = (not timeline.missing and timeline.served_by == timeline.survivor
              and timeline.eip_serves == timeline.survivor
              and timeline.dns_answer == [cluster.node_address(timeline.survivor)]
              and set(holders.values()) == {timeline.survivor}
              and list(roles.values()).count("Promoted") == 1)
        print("\nresult: " + ("every acknowledged row present, all three endpoints on the new primary"
                              if ok else "NOT all checks passed (see above)"))
        return 0 if ok else 1
    finally:
        if brought_up and "--keep" not in argv:
            step("lab down")
            down = health.cli_command("down")
            print((down.stdout.strip().splitlines() or [down.stderr.strip()])[-1])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
