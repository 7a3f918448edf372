"""`python -m lab up|down|status|bench|partition|heal` — the lab's command line.

`up` installs the lab's Debian packages (once), starts the lab daemon (lab/emulator/daemon.py) and
waits, bounded, until it has written lab/state/lab.json; a failed `up` stops what it started.
`down` signals the daemon by its recorded PID and waits for it; whatever a crashed daemon left
(hosts recorded by PID, namespaces) is swept by PID and by name. Both can be repeated at once.
`partition ENI ENI...` drops every packet between those hosts (both stay up and keep
reaching AWS); `heal` ends it (lab/emulator/dataplane/partition.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from lab import topology
from lab.bench import lab_bench
from lab.emulator import daemon
from lab.emulator.dataplane import partition
from lab.emulator.lifecycle import LabError, cli_lock, down, lab_info, leftovers, up


def status() -> dict:
    info = lab_info()
    if not info:
        return {"up": False, "left": leftovers()}
    return {"up": True, "endpoint_url": info["endpoint_url"], "hosts": lab_bench.host_table(),
            "memory_mib": lab_bench.lab_memory_mib(info["pid"])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("command", choices=["up", "down", "status", "bench", "daemon", "partition", "heal"])
    parser.add_argument("eni_ids", nargs="*", help="partition: the network interfaces (eni-...) of the hosts")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("lab: must run as root (network namespaces, mounts)", file=sys.stderr)
        return 2
    if args.command == "daemon":
        code = daemon.main()
        sys.stdout.flush()
        sys.stderr.flush()
        # Everything the daemon started is stopped by now; skip freeing moto's heap object by
        # object at interpreter exit, which alone took seconds of `lab down`.
        os._exit(code)
    try:
        if args.command == "up":
            with cli_lock():
                result = up()
        elif args.command == "down":
            with cli_lock():
                result = down()
        elif args.command == "status":
            result = status()
        elif args.command in ("partition", "heal"):
            if args.command == "partition":
                partition.cut(args.eni_ids)
            else:
                partition.heal()
            result = {"partitioned": partition.active()}
        else:
            result = lab_bench.run()
    except LabError as exc:
        print(f"lab {args.command}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2) if args.json else render(args.command, result))
    return 1 if args.command == "down" and result.get("left") else 0


def render(command: str, result: dict) -> str:
    if command == "up":
        if result.get("already_up"):
            return f"lab already up: {result['endpoint_url']}"
        return (f"lab up in {result['up_seconds']:.2f} s: moto {result['endpoint_url']}, "
                f"AWS API https://{result['aws_api_address']} in {topology.ROUTER_NS}\n"
                f"  env: . {topology.STATE_DIR / 'env.sh'}\n"
                f"  ssh: ssh -F {result['ssh_config']} <private ip | instance id | Name>\n"
                f"  inventory: {result['inventory']}")
    if command == "down":
        return f"lab down in {result['down_seconds']:.2f} s" + (
            "" if result["was_up"] else " (was not up)")
    if command in ("partition", "heal"):
        cut = result["partitioned"]
        return "partitioned: " + "; ".join(" | ".join(group) for group in cut) if cut else "network whole"
    if command == "status":
        if not result["up"]:
            return "lab is down" + ("; still present: " + ", ".join(result["left"])
                                    if result["left"] else "")
        memory = result["memory_mib"]
        lines = [f"lab up: moto {result['endpoint_url']}; memory {memory['total']} MiB "
                 f"(daemon {memory['daemon']}, hosts {memory['hosts']}, "
                 f"{memory['processes']} processes)"]
        lines += [f"  {h['instance_id']:<22} {h['power']:<4} {h['netns']}" for h in result["hosts"]]
        return "\n".join(lines)
    return json.dumps(result, indent=2)
