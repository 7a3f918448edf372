# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stubber response builders: the smallest answers EC2 and Route 53 give that the cores read."""

from __future__ import annotations

from typing import Any, Dict, List, Optional


def route_table(rtb: str, vpc: str, destination: str, eni: Optional[str]) -> Dict[str, Any]:
    """A route table with one route for ``destination`` to ``eni`` (none when ``eni`` is None)."""
    routes = [{"DestinationCidrBlock": destination, "NetworkInterfaceId": eni, "State": "active",
               "Origin": "CreateRoute"}] if eni else []
    return {"RouteTableId": rtb, "VpcId": vpc, "Routes": routes}


def interface(eni: str, instance: str, source_dest_check: bool) -> Dict[str, Any]:
    return {"NetworkInterfaceId": eni, "SourceDestCheck": source_dest_check,
            "Attachment": {"InstanceId": instance, "DeviceIndex": 0}}


def address(public_ip: str, allocation_id: str, eni: Optional[str], private_ip: Optional[str] = None,
            instance: Optional[str] = None) -> Dict[str, Any]:
    """An Elastic IP as describe_addresses shows it, associated with ``eni`` (or not)."""
    item: Dict[str, Any] = {"PublicIp": public_ip, "AllocationId": allocation_id, "Domain": "vpc"}
    if eni:
        item.update(NetworkInterfaceId=eni, PrivateIpAddress=private_ip or "")
        if instance:
            item["InstanceId"] = instance
    return item


def a_record(name: str, values: List[str], ttl: int = 60) -> Dict[str, Any]:
    return {"Name": name, "Type": "A", "TTL": ttl, "ResourceRecords": [{"Value": v} for v in values]}


def record_sets(sets: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {"ResourceRecordSets": sets, "IsTruncated": False, "MaxItems": "100"}
