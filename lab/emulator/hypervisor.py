"""The hypervisor: makes lab hosts follow the EC2 instances tagged topology.LAB_HOST_TAG=true.

It reads moto's backends in-process (the daemon runs moto) and is woken by the power hooks of
lab/emulator/control.py the moment StartInstances/StopInstances/RebootInstances/TerminateInstances
land, with a poll every 0.2 s as the floor (tags added later, instances gone after a reset).
running -> host booted (again, if the power generation moved: reboot or stop+start);
stopped -> PID 1 killed; terminated or untagged -> host removed (namespace and disk).
A host that dies on its own is an instance-initiated shutdown: the instance is stopped.
"""

from __future__ import annotations

import ipaddress
import json
import threading
import time
import traceback
from pathlib import Path

from lab import topology
from lab.emulator import control, faults, hosts, imds

RUNNING = ("pending", "running")
TERMINATED = ("shutting-down", "terminated")
SSH_CONFIG = topology.STATE_DIR / "ssh_config"
INVENTORY = topology.STATE_DIR / "inventory.yml"


def lab_instances() -> list[tuple[object, object]]:
    """(instance, backend) for every instance tagged as a lab host, in every account/region.
    Read under moto's request lock: a RunInstances landing meanwhile would change the dicts."""
    from moto.ec2.models import ec2_backends

    with control.MOTO_LOCK:
        return [(instance, backend)
                for account in ec2_backends.values() for backend in account.values()
                for reservation in backend.reservations.values() for instance in reservation.instances
                if imds._tags(instance).get(topology.LAB_HOST_TAG) == "true"]


def resolver_for(backend, instance) -> str:
    """The VPC's Route 53 Resolver address: VPC base + 2, as in AWS."""
    vpc = backend.get_vpc(instance.nics[0].subnet.vpc_id)
    return str(ipaddress.ip_network(vpc.cidr_block).network_address + 2)


def spec_for(instance, backend) -> hosts.HostSpec:
    # The ENIs' private IPs, and the link-local IMDS address the lab serves on the host's lo.
    keep = tuple(a["PrivateIpAddress"] for eni in instance.nics.values()
                 for a in eni.private_ip_addresses) + (topology.IMDS_ADDRESS,)
    return hosts.HostSpec(instance_id=instance.id, hostname=imds.host_name(instance),
                          private_ip=instance.private_ip, resolver=resolver_for(backend, instance),
                          keep_addresses=keep)


class Hypervisor:
    """Lab hosts by instance id, with their IMDS servers."""

    def __init__(self, ca_pem: bytes, authorized_key: str, ssh_key: Path,
                 fault_table: faults.FaultTable | None = None) -> None:
        self.ca_pem = ca_pem
        self.fault_table = fault_table
        self.authorized_key = authorized_key
        self.ssh_key = ssh_key
        self.hosts: dict[str, hosts.Host] = {}
        self.imds: dict[str, imds.ImdsServer] = {}
        self.regions: dict[str, str] = {}
        self.wake = threading.Event()
        self._inventory_key: tuple = ()

    # -- lookups used by IMDS
    def find(self, instance_id: str) -> tuple | None:
        for instance, backend in lab_instances():
            if instance.id == instance_id:
                return instance, backend
        return None

    # -- the loop
    def run(self, stop: threading.Event, interval: float = 0.2) -> None:
        last_error = ""
        while not stop.is_set():
            self.wake.wait(interval)
            self.wake.clear()
            if stop.is_set():
                break
            try:
                self.reconcile()
                last_error = ""
            except Exception as exc:  # one bad host must not stop the others: log it once
                if repr(exc) != last_error:
                    traceback.print_exc()
                    last_error = repr(exc)

    def reconcile(self) -> None:
        seen = set()
        for instance, backend in lab_instances():
            seen.add(instance.id)
            self._converge(instance, backend)
        for instance_id in [i for i in self.hosts if i not in seen]:
            self._remove(instance_id)
        self._write_inventory()

    def _converge(self, instance, backend) -> None:
        state = instance._state.name
        generation = getattr(instance, "lab_power_generation", 0)
        host = self.hosts.get(instance.id)
        if state in TERMINATED:
            if host is not None:
                self._remove(instance.id)
            return
        if host is None:
            host = hosts.Host(spec_for(instance, backend), generation=-1)
            self.hosts[instance.id] = host
            self.regions[instance.id] = backend.region_name
        if state in RUNNING:
            if host.running() and host.generation == generation:
                self._ensure_imds(instance.id)
                return
            if host.process is not None and not host.running() and host.generation == generation:
                self._died(host, instance, backend)     # crashed or shut down from inside
                return
            if host.running():
                hosts.power_off(host)
                self._mark(host, "off")
            host.spec = spec_for(instance, backend)
            host.generation = generation
            hosts.boot(host, self.ca_pem, self.authorized_key)
            self._mark(host, "on")
            self._ensure_imds(instance.id)
        elif host.running() or host.process is not None:
            hosts.power_off(host)
            host.generation = generation
            self._mark(host, "off")

    def _ensure_imds(self, instance_id: str) -> None:
        """The host's IMDS lives in its namespace across power cycles; made once per host."""
        if instance_id not in self.imds:
            # The metadata walk reads moto's dicts too: under the same lock as lab_instances().
            self.imds[instance_id] = imds.ImdsServer(instance_id, self.find, control.MOTO_LOCK,
                                                     self.fault_table)

    def _died(self, host: hosts.Host, instance, backend) -> None:
        # Said in daemon.log: a host that dies during its boot looks the same to EC2, and the
        # console tail is what tells the two apart.
        tail = hosts.console_tail(instance.id, 3)
        print(f"host {instance.id} ({host.spec.hostname}) died on its own, exit status "
              f"{host.process.returncode}: instance stopped; console: {' | '.join(tail) or 'empty'}",
              flush=True)
        host.process = None
        self._mark(host, "off")
        backend.stop_instances([instance.id])
        host.generation = getattr(instance, "lab_power_generation", 0)

    def _mark(self, host: hosts.Host, power: str) -> None:
        """Record the power change with the system-wide monotonic clock (read by `lab bench`)."""
        path = hosts.host_dir(host.spec.instance_id)
        path.mkdir(parents=True, exist_ok=True)
        (path / "power").write_text(f"{power} {time.monotonic():.6f} {host.generation}\n")

    def _remove(self, instance_id: str) -> None:
        server = self.imds.pop(instance_id, None)
        if server is not None:
            server.stop()
        host = self.hosts.pop(instance_id, None)
        self.regions.pop(instance_id, None)
        if host is not None:
            hosts.remove(host)

    def shutdown(self) -> None:
        for instance_id in list(self.hosts):
            self._remove(instance_id)

    # -- controller access
    def _write_inventory(self) -> None:
        entries = sorted((h.spec.hostname, h.spec.private_ip, i, self.regions.get(i, ""))
                         for i, h in self.hosts.items())
        if tuple(entries) == self._inventory_key and SSH_CONFIG.exists():
            return
        self._inventory_key = tuple(entries)
        write_access_files(entries, self.ssh_key)


def write_access_files(entries: list[tuple[str, str, str, str]], ssh_key: Path) -> None:
    """ssh_config (ProxyCommand into the host's namespace) and an Ansible inventory, by private IP.

    The proxy enters the host's own network namespace and connects to its sshd on loopback, so
    the controller reaches a host whatever the state of the lab's data plane, as a management
    path (think SSM) separate from the network under test.
    """
    lines = ["# Written by the lab daemon: lab hosts by private IP, instance id and Name.\n"]
    hosts_yaml = []
    for name, ip, instance_id, region in entries:
        lines.append(
            f"Host {ip} {instance_id} {name}\n"
            f"  User root\n  IdentityFile {ssh_key}\n  IdentitiesOnly yes\n"
            f"  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n"
            f"  ProxyCommand ip netns exec {topology.host_netns(instance_id)} nc 127.0.0.1 %p\n\n")
        hosts_yaml.append(
            f"    {json.dumps(name)}:\n      ansible_host: {ip}\n"
            f"      ec2_instance_id: {instance_id}\n      ec2_region: {region}\n")
    tmp = SSH_CONFIG.with_suffix(".tmp")
    tmp.write_text("".join(lines))
    tmp.replace(SSH_CONFIG)
    inventory = (
        "# Written by the lab daemon.\nlab_hosts:\n  vars:\n    ansible_user: root\n"
        f"    ansible_ssh_common_args: -F {SSH_CONFIG}\n"
        "    ansible_python_interpreter: /usr/bin/python3\n"
        + ("  hosts:\n" + "".join(hosts_yaml) if hosts_yaml else "  hosts: {}\n"))
    tmp = INVENTORY.with_suffix(".tmp")
    tmp.write_text(inventory)
    tmp.replace(INVENTORY)
