"""A network partition between lab hosts while both stay up: the fault a two-node cluster fears most.

    cut(["eni-0a…", "eni-0b…"])    # every packet between those network interfaces is dropped
    heal()                          # the partition is gone
    active()                        # the router links cut now

Every host's link is a port of a subnet bridge in the router namespace, and traffic between two
hosts crosses those ports, routed or bridged. A partition is one nftables table of the bridge
family there (`bridge e2h-partition`; the data plane's own `ip e2h` table is replaced on every
change and must not take it along): a packet entering from a listed host's port is marked with
that host, and dropped when it would leave through another listed host's port. Addresses would
not do: a standby streams from the VIP, whose route leads to the primary's port, and the primary
answers from the VIP. Only traffic *between* the listed hosts is dropped: each still reaches the
AWS API (topology.AWS_API_ADDRESS, on the router itself), its IMDS and the clients, as when the
link between two Availability Zones fails and the AWS endpoints stay reachable.
"""

from __future__ import annotations

import re
import subprocess
from typing import List, Sequence, Tuple

from lab import topology
from lab.emulator.dataplane.plan import host_link_name

TABLE = "e2h-partition"
MARK_BASE = 0x65320000          # the mark of listed host i is MARK_BASE + i + 1 (no other user of marks)
ENI_ID = re.compile(r"^eni-[0-9a-f]{8,17}$")


def _nft(script: str, ns: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script,
                          capture_output=True, text=True, timeout=10, check=False)


def ruleset(eni_ids: Sequence[str]) -> str:
    """The partition table: mark what enters from a listed host's port, drop it at another's."""
    bad = [e for e in eni_ids if not ENI_ID.match(e)]
    links = sorted({host_link_name(e) for e in eni_ids})
    if bad or len(links) < 2:
        raise ValueError(f"a partition needs two different ENI ids (eni-...), got {list(eni_ids)}")
    marks = {link: MARK_BASE + i + 1 for i, link in enumerate(links)}
    mark_in = "".join(f'\t\tiifname "{link}" meta mark set {mark:#x}\n' for link, mark in marks.items())
    drop_out = "".join(
        f'\t\toifname "{link}" meta mark {{ {", ".join(f"{m:#x}" for other, m in marks.items() if other != link)} }} drop\n'
        for link in links)
    return (f"table bridge {TABLE} {{\n"
            f"\tchain ingress {{\n\t\ttype filter hook prerouting priority -200; policy accept;\n{mark_in}\t}}\n"
            f"\tchain egress {{\n\t\ttype filter hook postrouting priority 0; policy accept;\n{drop_out}\t}}\n}}\n")


def cut(eni_ids: Sequence[str], ns: str = topology.ROUTER_NS) -> None:
    """Partition the listed hosts from each other (replaces any earlier partition, atomically)."""
    done = _nft(f"table bridge {TABLE}\ndelete table bridge {TABLE}\n{ruleset(eni_ids)}", ns)
    if done.returncode != 0:
        raise RuntimeError(f"partition in {ns} failed: {done.stderr.strip()}")


def heal(ns: str = topology.ROUTER_NS) -> None:
    """Remove the partition (nothing to do when there is none)."""
    done = _nft(f"table bridge {TABLE}\ndelete table bridge {TABLE}\n", ns)
    if done.returncode != 0:
        raise RuntimeError(f"healing the partition in {ns} failed: {done.stderr.strip()}")


def active(ns: str = topology.ROUTER_NS) -> List[Tuple[str, ...]]:
    """The router links partitioned from each other now ([] when the network is whole)."""
    done = subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "table", "bridge", TABLE],
                          capture_output=True, text=True, timeout=10, check=False)
    if done.returncode != 0:
        return []
    links = re.findall(r'iifname "([^"]+)" meta mark set', done.stdout)
    return [tuple(links)] if links else []
