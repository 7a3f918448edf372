# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Find a cluster node (an EC2 instance) and the network interface an endpoint moves to.

Pure boto3 through :class:`AwsSession`; shared by every scenario core.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any, Dict, List, Optional, Union

from ansible_collections.ec2ha.cluster.plugins.module_utils.aws import AwsSession, InputError, tag_value
from ansible_collections.ec2ha.cluster.plugins.module_utils.ids import INSTANCE_ID, NAME_TAG

USABLE_STATES = ("pending", "running")


@dataclasses.dataclass
class Interface:
    eni_id: str
    device_index: int
    private_ip: str
    private_ips: List[str]
    public_ip: Optional[str]
    subnet_id: str
    source_dest_check: bool


@dataclasses.dataclass
class Node:
    instance_id: str
    name: Optional[str]
    state: str
    vpc_id: str
    subnet_id: str
    private_ip: str
    public_ip: Optional[str]
    availability_zone: str
    interfaces: List[Interface]
    tags: Dict[str, str]

    @property
    def label(self) -> str:
        return f"{self.instance_id} ({self.name})" if self.name else self.instance_id

    def interface(self, selector: Union[str, int, None] = None) -> Interface:
        """The ENI an endpoint moves to: by ENI id or device index, or the node's only ENI."""
        if selector is None or selector == "":
            if len(self.interfaces) != 1:
                ids = ", ".join(i.eni_id for i in self.interfaces)
                raise InputError(
                    f"Node {self.label} has {len(self.interfaces)} network interfaces ({ids}): "
                    "set interface to an ENI id or a device index."
                )
            return self.interfaces[0]
        text = str(selector)
        for iface in self.interfaces:
            if text == iface.eni_id or (text.isdigit() and int(text) == iface.device_index):
                return iface
        raise InputError(f"Node {self.label} has no network interface '{text}' (an ENI id or device index).")


def require_ipv4(what: str, value: str) -> None:
    """InputError naming ``what`` unless ``value`` is one IPv4 address."""
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise InputError(f"{what} '{value}' is not an IPv4 address.") from None


def node_from_instance(instance: Dict[str, Any]) -> Node:
    interfaces = []
    for eni in instance.get("NetworkInterfaces", []):
        addresses = eni.get("PrivateIpAddresses") or []
        primary = eni.get("PrivateIpAddress") or next(
            (a["PrivateIpAddress"] for a in addresses if a.get("Primary")), "")
        interfaces.append(Interface(
            eni_id=eni["NetworkInterfaceId"],
            device_index=int(eni.get("Attachment", {}).get("DeviceIndex", 0)),
            private_ip=primary,
            private_ips=[a["PrivateIpAddress"] for a in addresses] or [primary],
            public_ip=(eni.get("Association") or {}).get("PublicIp"),
            subnet_id=eni.get("SubnetId", ""),
            source_dest_check=bool(eni.get("SourceDestCheck", True)),
        ))
    interfaces.sort(key=lambda i: i.device_index)
    tags = {t["Key"]: t["Value"] for t in instance.get("Tags", []) or []}
    return Node(
        instance_id=instance["InstanceId"],
        name=tag_value(instance.get("Tags"), NAME_TAG),
        state=instance.get("State", {}).get("Name", "unknown"),
        vpc_id=instance.get("VpcId", ""),
        subnet_id=instance.get("SubnetId", ""),
        private_ip=instance.get("PrivateIpAddress", ""),
        public_ip=instance.get("PublicIpAddress"),
        availability_zone=instance.get("Placement", {}).get("AvailabilityZone", ""),
        interfaces=interfaces,
        tags=tags,
    )


def describe_nodes(aws: AwsSession, filters: List[Dict[str, Any]], resource: str) -> List[Node]:
    reservations = aws.paginate("ec2", "describe_instances", "Reservations", resource, Filters=filters)
    nodes = [node_from_instance(i) for r in reservations for i in r.get("Instances", [])]
    return [n for n in nodes if n.state not in ("terminated", "shutting-down")]


def describe_tagged(aws: AwsSession, key: str, value: str) -> List[Node]:
    """Live instances whose tag ``key`` is exactly ``value``.

    The tag filter only narrows the read: in a filter value ``*`` and ``?`` are wildcards, so a
    name like ``b*`` would also match ``b1`` and ``bx``. Equality is checked here, after the read.
    """
    found = describe_nodes(aws, [{"Name": f"tag:{key}", "Values": [value]}], value)
    return [n for n in found if n.tags.get(key) == value]


def find_node(aws: AwsSession, node: str, require_running: bool = True) -> Node:
    """The one live instance named by id or exactly by its Name tag; an InputError otherwise."""
    text = str(node or "").strip()
    if not text:
        raise InputError("node is empty: give an instance id (i-...) or the instance's Name tag.")
    if INSTANCE_ID.match(text):
        found = describe_nodes(aws, [{"Name": "instance-id", "Values": [text]}], text)
    else:
        found = describe_tagged(aws, NAME_TAG, text)
    if not found:
        raise InputError(f"Node '{text}' matches no live EC2 instance (by instance id or exact Name tag).")
    if len(found) > 1:
        ids = ", ".join(n.instance_id for n in found)
        raise InputError(f"Node '{text}' matches {len(found)} instances ({ids}): use an instance id.")
    result = found[0]
    if require_running and result.state not in USABLE_STATES:
        raise InputError(f"Node {result.label} is {result.state}, not running: an endpoint cannot move to it.")
    return result
