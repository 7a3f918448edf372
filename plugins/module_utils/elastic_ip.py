# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Elastic IP recovery scenario: the EIP follows the active node's ENI / private IP.

Pure boto3 through :class:`AwsSession` (no Ansible import): the module ``elastic_ip`` and the
OCF agent on the nodes run this same code.

    target, address = resolve_target(aws, EipSpec(...))  # validates, reads the EIP and the node
    result = converge(aws, target, check_mode, address)  # plan -> apply (or record) -> re-read, verify
    status = monitor(aws, target)                         # ok / wrong / unknown, one read

Only ``describe_addresses`` is read back after a move: it is the one source that EC2 (and moto)
keep exact right after a re-association; the instance's and ENI's association views lag.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from ansible_collections.ec2ha.cluster.plugins.module_utils.aws import (
    AwsCallError,
    AwsSession,
    InputError,
    VerifyError,
)
from ansible_collections.ec2ha.cluster.plugins.module_utils.nodes import find_node, require_ipv4
from ansible_collections.ec2ha.cluster.plugins.module_utils.ids import ADDRESS_NOT_FOUND, ALLOCATION_ID
from ansible_collections.ec2ha.cluster.plugins.module_utils.scenario import (
    Action,
    Status,
    apply,
    monitor_reading,
    reread_until,
)

NOT_FOUND_CODES = ADDRESS_NOT_FOUND
DEFAULT_VERIFY_TIMEOUT = 10.0


@dataclasses.dataclass(frozen=True)
class EipSpec:
    """What the caller asks for: this EIP on this node (ENI, private IP)."""

    node: str
    public_ip: Optional[str] = None
    allocation_id: Optional[str] = None
    interface: Union[str, int, None] = None
    private_ip: Optional[str] = None

    def validate(self) -> None:
        """Checks that need no AWS call."""
        if bool(self.public_ip) == bool(self.allocation_id):
            raise InputError("Give exactly one of public_ip and allocation_id to name the Elastic IP.")
        if self.public_ip:
            require_ipv4("public_ip", self.public_ip)
        if self.allocation_id and not ALLOCATION_ID.match(self.allocation_id):
            raise InputError(f"allocation_id '{self.allocation_id}' is not an allocation id (eipalloc-...).")
        if self.private_ip:
            require_ipv4("private_ip", self.private_ip)


@dataclasses.dataclass(frozen=True)
class EipHolder:
    """Where an EIP is associated: an ENI and one of its private IPs (instance id if EC2 says)."""

    eni_id: str
    private_ip: str
    instance_id: Optional[str] = None

    def as_dict(self) -> Dict[str, Any]:
        return {"network_interface_id": self.eni_id, "private_ip": self.private_ip,
                "instance_id": self.instance_id}

    def same_place(self, other: Optional["EipHolder"]) -> bool:
        return other is not None and (self.eni_id, self.private_ip) == (other.eni_id, other.private_ip)

    def __str__(self) -> str:
        return f"{self.eni_id} ({self.private_ip})"


@dataclasses.dataclass(frozen=True)
class ElasticIp:
    public_ip: str
    allocation_id: str
    domain: str
    holder: Optional[EipHolder]

    def as_dict(self) -> Dict[str, Any]:
        """The holder view used for ``before`` / ``after`` and --diff."""
        held = self.holder.as_dict() if self.holder else {
            "network_interface_id": None, "private_ip": None, "instance_id": None}
        return {"public_ip": self.public_ip, "allocation_id": self.allocation_id, **held}


@dataclasses.dataclass(frozen=True)
class EipTarget:
    """Where the EIP must be: validated once, then planned against (or monitored) as often as needed."""

    public_ip: str
    allocation_id: str
    eni_id: str
    private_ip: str
    instance_id: str
    node_name: Optional[str]
    node_label: str

    @property
    def holder(self) -> EipHolder:
        return EipHolder(self.eni_id, self.private_ip, self.instance_id)

    def describe(self) -> str:
        return f"{self.eni_id} ({self.private_ip}) of node {self.node_label}"


@dataclasses.dataclass
class ConvergeResult:
    changed: bool
    actions: List[Action]
    before: ElasticIp
    after: ElasticIp
    target: EipTarget

    def as_dict(self) -> Dict[str, Any]:
        """The module's result keys (without aws_calls, which the shell adds)."""
        return {
            "changed": self.changed,
            "public_ip": self.target.public_ip,
            "allocation_id": self.target.allocation_id,
            "network_interface_id": self.target.eni_id,
            "private_ip": self.target.private_ip,
            "node": {"instance_id": self.target.instance_id, "name": self.target.node_name},
            "before": self.before.as_dict(),
            "after": self.after.as_dict(),
            "actions": [a.summary for a in self.actions],
        }


# ---------------------------------------------------------------------------------------------
# Reading and input validation (everything here runs before any write)


def read_address(aws: AwsSession, public_ip: Optional[str] = None,
                 allocation_id: Optional[str] = None) -> ElasticIp:
    """The EIP and its holder, from describe_addresses; InputError if it is not ours or not VPC."""
    label = public_ip or allocation_id or ""
    query = {"PublicIps": [public_ip]} if public_ip else {"AllocationIds": [allocation_id]}
    try:
        found = aws.call("ec2", "describe_addresses", label, **query).get("Addresses", [])
    except AwsCallError as exc:
        if exc.code in NOT_FOUND_CODES:
            raise InputError(_not_found(aws, label)) from None
        raise
    if not found:
        raise InputError(_not_found(aws, label))
    address = found[0]
    domain = address.get("Domain", "vpc")
    if domain != "vpc" or not address.get("AllocationId"):
        raise InputError(f"Elastic IP {label} is an EC2-Classic (domain '{domain}') address: only a VPC "
                         "Elastic IP can be associated with a network interface.")
    holder = None
    if address.get("NetworkInterfaceId"):
        holder = EipHolder(address["NetworkInterfaceId"], address.get("PrivateIpAddress", ""),
                           address.get("InstanceId") or None)
    return ElasticIp(address["PublicIp"], address["AllocationId"], domain, holder)


def _not_found(aws: AwsSession, label: str) -> str:
    return (f"Elastic IP {label} is not allocated in this account and region "
            f"({aws.settings.region or 'default region'}).")


def resolve_target(aws: AwsSession, spec: EipSpec) -> Tuple[EipTarget, ElasticIp]:
    """Validate the input against AWS; returns the target and the EIP as read.

    Raises InputError (one sentence) for an unknown or non-VPC EIP, an unknown or stopped node,
    an ambiguous or unknown interface, or a private_ip that is not on that interface.
    """
    spec.validate()
    address = read_address(aws, spec.public_ip, spec.allocation_id)
    node = find_node(aws, spec.node)
    iface = node.interface(spec.interface)
    private_ip = spec.private_ip or iface.private_ip
    if private_ip not in iface.private_ips:
        raise InputError(f"private_ip {private_ip} is not an address of {iface.eni_id} on node {node.label} "
                         f"(it has {', '.join(iface.private_ips)}).")
    target = EipTarget(address.public_ip, address.allocation_id, iface.eni_id, private_ip,
                       node.instance_id, node.name, node.label)
    return target, address


# ---------------------------------------------------------------------------------------------
# Classifying, planning, applying


def classify(address: ElasticIp, target: EipTarget) -> Status:
    """ok when the EIP is on the target ENI and private IP."""
    if target.holder.same_place(address.holder):
        return Status("ok", [])
    where = f"is on {address.holder}" if address.holder else "is not associated"
    return Status("wrong", [f"Elastic IP {address.public_ip} {where}, expected {target.describe()}"])


def plan(address: ElasticIp, target: EipTarget) -> List[Action]:
    """Nothing if the EIP is already on the target ENI / private IP, else one AssociateAddress."""
    if target.holder.same_place(address.holder):
        return []
    # AllowReassociation: a failover takes the EIP from the other node in one call, with no
    # unassociated gap and no DisassociateAddress race.
    return [Action(
        "associate_address", address.public_ip,
        {"AllocationId": address.allocation_id, "NetworkInterfaceId": target.eni_id,
         "PrivateIpAddress": target.private_ip, "AllowReassociation": True},
        f"associate {address.public_ip} with {target.describe()}",
    )]


def verify(aws: AwsSession, target: EipTarget, timeout: float = DEFAULT_VERIFY_TIMEOUT,
           clock: Callable[[], float] = time.monotonic,
           sleep: Callable[[float], None] = time.sleep) -> ElasticIp:
    """Re-read with describe_addresses until the EIP shows on the target (bounded: EC2 reads are
    eventually consistent); VerifyError if it does not."""
    address, status = reread_until(lambda: read_address(aws, allocation_id=target.allocation_id),
                                   lambda a: classify(a, target), timeout, clock, sleep)
    if not status.ok:
        raise VerifyError(f"After AssociateAddress, {status.details[0]} (re-read for {timeout:g} s).")
    return address


def converge(aws: AwsSession, target: EipTarget, check_mode: bool = False,
             address: Optional[ElasticIp] = None, verify_timeout: float = DEFAULT_VERIFY_TIMEOUT,
             clock: Callable[[], float] = time.monotonic,
             sleep: Callable[[float], None] = time.sleep) -> ConvergeResult:
    """Put the EIP on the target ENI / private IP; write only if it is elsewhere.

    ``address`` (as read by resolve_target) saves a read. Check mode records the planned write
    (``aws.plan``) and predicts "after"; a real run re-reads and raises VerifyError on a mismatch.
    """
    before = address or read_address(aws, allocation_id=target.allocation_id)
    actions = plan(before, target)
    if not actions:
        return ConvergeResult(False, [], before, before, target)
    apply(aws, actions, check_mode)
    if check_mode:
        return ConvergeResult(True, actions, before, dataclasses.replace(before, holder=target.holder), target)
    after = verify(aws, target, verify_timeout, clock, sleep)
    return ConvergeResult(True, actions, before, after, target)


def monitor(aws: AwsSession, target: EipTarget) -> Status:
    """Read-only check for an agent (one describe_addresses): ok, wrong, or unknown when the API did
    not answer (throttling, timeout: not a failure, check again next interval)."""
    # A released EIP reads as InputError: wrong, not an agent failure.
    return monitor_reading(lambda: read_address(aws, allocation_id=target.allocation_id),
                           lambda address: classify(address, target))
