"""A network partition between lab hosts while both stay up: the fault a two-node cluster fears most.

    cut(["10.0.1.10", "10.0.2.10"])   # every packet between those addresses is dropped
    heal()                             # the partition is gone
    active()                           # the address pairs cut now

The router namespace forwards all traffic between the lab's subnets, so a partition is one
nftables table there (`ip e2h-partition`, separate from the data plane's `ip e2h`, which
lab/network.py replaces on every change and must not take the partition with it). Only
traffic *between* the listed addresses is dropped: each host still reaches the AWS API
(topology.AWS_API_ADDRESS, on the router itself), its IMDS, and the clients, as when the
link between two Availability Zones fails and the AWS endpoints stay reachable.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
from typing import List, Sequence, Tuple

from lab import topology

TABLE = "e2h-partition"


def _nft(script: str, ns: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script,
                          capture_output=True, text=True, timeout=10, check=False)


def ruleset(addresses: Sequence[str]) -> str:
    """The partition table: drop forwarded packets from any listed address to another one."""
    listed = sorted({str(ipaddress.IPv4Address(a)) for a in addresses})
    if len(listed) < 2:
        raise ValueError(f"a partition needs two different addresses, got {list(addresses)}")
    members = ", ".join(listed)
    return (f"table ip {TABLE} {{\n"
            f"\tchain forward {{\n\t\ttype filter hook forward priority -10; policy accept;\n"
            f"\t\tip saddr {{ {members} }} ip daddr {{ {members} }} drop\n\t}}\n}}\n")


def cut(addresses: Sequence[str], ns: str = topology.ROUTER_NS) -> None:
    """Partition the listed hosts from each other (replaces any earlier partition, atomically)."""
    done = _nft(f"table ip {TABLE}\ndelete table ip {TABLE}\n{ruleset(addresses)}", ns)
    if done.returncode != 0:
        raise RuntimeError(f"partition in {ns} failed: {done.stderr.strip()}")


def heal(ns: str = topology.ROUTER_NS) -> None:
    """Remove the partition (nothing to do when there is none)."""
    done = _nft(f"table ip {TABLE}\ndelete table ip {TABLE}\n", ns)
    if done.returncode != 0:
        raise RuntimeError(f"healing the partition in {ns} failed: {done.stderr.strip()}")


def active(ns: str = topology.ROUTER_NS) -> List[Tuple[str, ...]]:
    """The address sets partitioned now ([] when the network is whole)."""
    done = subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "table", "ip", TABLE],
                          capture_output=True, text=True, timeout=10, check=False)
    if done.returncode != 0:
        return []
    return [tuple(a.strip() for a in m.split(","))
            for m in re.findall(r"ip saddr \{ ([^}]+) \}", done.stdout)]
