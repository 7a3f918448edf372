"""Reconcile latency of the data plane: API write -> kernel route / nft rule / DNS answer.

`python -m lab bench` reports it (lab/bench/lab_bench.py):

    measure_latencies(endpoint_url, names, samples)  # {kind: [seconds]}, API write -> data plane
    format_latencies(results)                         # one printable line per kind
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import boto3

from lab import helpers, topology
from lab.emulator.dataplane.kernel import NetworkError, kernel_route, run
from lab.emulator.dataplane.plan import INTERNET_ROUTER, NFT_TABLE, KernelRoute
from lab.emulator.dataplane.probe import ProbeError, resolve
from lab.emulator.dataplane.router import Namespaces
from lab.emulator.dataplane.snapshot import read_ec2


def _poll_change(observe: Callable[[], Any], before: Any, timeout: float) -> float:
    """Seconds until observe() differs from `before` (counting from this call)."""
    started = time.monotonic()
    if not helpers.poll(lambda: observe() != before, timeout, 0.01):
        raise NetworkError(f"the data plane did not follow within {timeout} s (still {before!r})")
    return time.monotonic() - started


def _points_at(route: Optional[KernelRoute], address: str) -> bool:
    return route is not None and (route.via == address or route.kind == "blackhole")


def _timed(write: Callable[[], Any], observe: Callable[[], Any], timeout: float) -> float:
    before = observe()
    write()
    return _poll_change(observe, before, timeout)


def measure_latencies(aws_endpoint_url: str, names: Namespaces = Namespaces(), samples: int = 5,
                      timeout: float = 5.0) -> Dict[str, List[float]]:
    """Time, per kind of change, from an API write's return to the data plane showing it.

    Needs a data plane that is being ticked (the lab daemon, or a test's ticker) and a running
    lab host in the primary lab VPC. Uses scratch objects it removes afterwards: a /32 route
    to 198.51.100.77 in the primary VPC's main table, an Elastic IP, a public hosted zone
    latency.lab.test. Observed: the kernel route (route, src/dst check), the nft DNAT rule
    (EIP), and the resolver's answer to the internet client (DNS). With two or more running
    lab hosts a sample moves the route / EIP from one to the next, as a failover does.
    """
    bench = _LatencyBench(aws_endpoint_url, names, timeout)
    try:
        return {"route": [bench.route_sample(i) for i in range(samples)],
                "src/dst check": [bench.check_sample(i) for i in range(samples)],
                "eip": [bench.eip_sample(i) for i in range(samples)],
                "dns": [bench.dns_sample(i) for i in range(samples)]}
    finally:
        bench.cleanup()


class _LatencyBench:
    """The scratch objects and observers behind measure_latencies."""

    DESTINATION = "198.51.100.77/32"
    ZONE = "latency.lab.test"
    NAME = "probe.latency.lab.test"

    def __init__(self, endpoint_url: str, names: Namespaces, timeout: float) -> None:
        session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing")
        self.ec2 = session.client("ec2", region_name=topology.PRIMARY_REGION, endpoint_url=endpoint_url)
        self.route53 = session.client("route53", region_name=topology.PRIMARY_REGION, endpoint_url=endpoint_url)
        self.names, self.timeout = names, timeout
        with ThreadPoolExecutor(max_workers=4) as pool:
            snap = read_ec2({topology.PRIMARY_REGION: self.ec2}, pool)
        primary = snap.primary_vpc()
        self.enis = [e for e in snap.enis if primary is not None and e.vpc_id == primary.id
                     and e.device_index == 0 and getattr(snap.instance(e.instance_id), "state", "") == "running"]
        self.table = next((t.id for t in snap.route_tables
                           if primary is not None and t.vpc_id == primary.id and t.main), None)
        if not self.enis or self.table is None:
            raise NetworkError("measuring needs a lab VPC with a running lab host (run `lab up` first)")
        self.eni = self.enis[0]
        self.flag = self.eni.source_dest_check
        self.routed = False
        self.allocation: Optional[str] = None
        self.public: Optional[str] = None
        self.zone_id: Optional[str] = None

    # -- observers -----------------------------------------------------------------------------

    def kernel(self) -> Optional[KernelRoute]:
        return kernel_route(self.names.router, self.table or "", self.DESTINATION)

    def dnat_target(self) -> Optional[str]:
        ruleset = run(["ip", "netns", "exec", self.names.router, "nft", "list", "table", "ip", NFT_TABLE]).stdout
        for line in ruleset.splitlines():
            if f"ip daddr {self.public} dnat to " in line:
                return line.split("dnat to ")[1].strip()
        return None

    def answer(self) -> Tuple[str, ...]:
        for _attempt in range(int(self.timeout)):
            try:   # a 1 s timeout, as the lab's resolv.conf gives glibc
                return resolve(self.names.internet, self.NAME, server=INTERNET_ROUTER, timeout=1.0).addresses
            except ProbeError:
                continue                      # lost under load: ask again
        raise NetworkError(f"the lab resolver did not answer within {self.timeout} s")

    # -- samples -------------------------------------------------------------------------------

    def _route_to(self, eni_id: str) -> None:
        # moto's create_route overwrites an existing destination (AWS would want replace_route).
        self.ec2.create_route(RouteTableId=self.table, DestinationCidrBlock=self.DESTINATION,
                              NetworkInterfaceId=eni_id)
        self.routed = True

    def _unroute(self) -> None:
        self.ec2.delete_route(RouteTableId=self.table, DestinationCidrBlock=self.DESTINATION)
        self.routed = False

    def route_sample(self, i: int) -> float:
        if i == 0:
            _timed(lambda: self._route_to(self.eni.id), self.kernel, self.timeout)
        if len(self.enis) > 1:
            target = self.enis[(i + 1) % len(self.enis)].id
            return _timed(lambda: self._route_to(target), self.kernel, self.timeout)
        return _timed(self._unroute if self.routed else lambda: self._route_to(self.eni.id),
                      self.kernel, self.timeout)

    def check_sample(self, i: int) -> float:
        if i == 0:                              # back onto the first ENI, then flip its check
            self._route_to(self.eni.id)
            _poll_change(lambda: _points_at(self.kernel(), self.eni.private_ip), False, self.timeout)
        value = (not self.flag) if i % 2 == 0 else self.flag
        return _timed(lambda: self.ec2.modify_network_interface_attribute(
            NetworkInterfaceId=self.eni.id, SourceDestCheck={"Value": value}), self.kernel, self.timeout)

    def _associate(self, eni_id: str) -> None:
        self.ec2.associate_address(AllocationId=self.allocation, NetworkInterfaceId=eni_id,
                                   AllowReassociation=True)

    def _disassociate(self) -> None:
        found = self.ec2.describe_addresses(AllocationIds=[self.allocation])["Addresses"]
        if found and found[0].get("AssociationId"):
            self.ec2.disassociate_address(AssociationId=found[0]["AssociationId"])

    def eip_sample(self, i: int) -> float:
        if self.allocation is None:
            allocation = self.ec2.allocate_address(Domain="vpc")
            self.allocation, self.public = allocation["AllocationId"], allocation["PublicIp"]
        if len(self.enis) > 1:
            target = self.enis[i % len(self.enis)].id
            return _timed(lambda: self._associate(target), self.dnat_target, self.timeout)
        associated = self.dnat_target() is not None
        return _timed(self._disassociate if associated else lambda: self._associate(self.eni.id),
                      self.dnat_target, self.timeout)

    def dns_sample(self, i: int) -> float:
        if self.zone_id is None:
            self.zone_id = self.route53.create_hosted_zone(
                Name=self.ZONE, CallerReference=f"latency-{time.time()}")["HostedZone"]["Id"]
        change = {"Action": "UPSERT", "ResourceRecordSet": {
            "Name": self.NAME, "Type": "A", "TTL": 1, "ResourceRecords": [{"Value": f"192.0.2.{i + 1}"}]}}
        return _timed(lambda: self.route53.change_resource_record_sets(
            HostedZoneId=self.zone_id, ChangeBatch={"Changes": [change]}), self.answer, self.timeout)

    # -- cleanup -------------------------------------------------------------------------------

    def _drop_zone(self) -> None:
        for record in self.route53.list_resource_record_sets(HostedZoneId=self.zone_id)["ResourceRecordSets"]:
            if record["Type"] not in ("NS", "SOA"):
                self.route53.change_resource_record_sets(HostedZoneId=self.zone_id, ChangeBatch={
                    "Changes": [{"Action": "DELETE", "ResourceRecordSet": record}]})
        self.route53.delete_hosted_zone(Id=self.zone_id)

    def _drop_address(self) -> None:
        self._disassociate()
        self.ec2.release_address(AllocationId=self.allocation)

    def cleanup(self) -> None:
        """Remove every scratch object; a failure is named and the rest still goes."""
        steps: List[Callable[[], Any]] = [
            lambda: self.ec2.modify_network_interface_attribute(
                NetworkInterfaceId=self.eni.id, SourceDestCheck={"Value": self.flag})]
        if self.routed:
            steps.append(self._unroute)
        if self.allocation is not None:
            steps.append(self._drop_address)
        if self.zone_id is not None:
            steps.append(self._drop_zone)
        for step in steps:
            try:
                step()
            except Exception as exc:  # cleanup goes on; the leftover is named
                print(f"lab network: cleanup after measuring: {exc}", file=sys.stderr)


def format_latencies(results: Mapping[str, List[float]]) -> str:
    """One line per kind: median and max in seconds."""
    lines = []
    for kind, values in results.items():
        if values:
            lines.append(f"{kind:>14}: median {helpers.median(values):.3f} s, max {max(values):.3f} s"
                         f" (n={len(values)})")
    return "\n".join(lines)
