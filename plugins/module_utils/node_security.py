# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every node of a pair must have: instance metadata through IMDSv2 only, one hop away, and
an encrypted root volume. Pure boto3 through :class:`AwsSession`; ``cluster_pair`` applies it.

A session token (IMDSv2) stops the classic SSRF read of the role's credentials, and a hop limit of
1 keeps them from containers or anything routed through the node. EBS cannot encrypt a volume in
place, so an existing node's unencrypted root volume is reported, never changed.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Sequence

from ansible_collections.ec2ha.cluster.plugins.module_utils.aws import AwsSession, InputError

# The instance metadata options every node gets (RunInstances) or is converged to.
METADATA_OPTIONS: Dict[str, Any] = {"HttpTokens": "required", "HttpPutResponseHopLimit": 1, "HttpEndpoint": "enabled"}
# What RunInstances' Ebs.KmsKeyId accepts: a key id, a multi-Region key id, an alias, or their ARNs.
KMS_KEY_ID = re.compile(
    r"^(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32}|alias/[A-Za-z0-9/_-]{1,250}"
    r"|arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(?:key/(?:[0-9a-f-]{36}|mrk-[0-9a-f]{32})|alias/[A-Za-z0-9/_-]{1,250}))$")


def check_kms_key_id(kms_key_id: Optional[str], encrypt: bool) -> None:
    if kms_key_id is None:
        return
    if not encrypt:
        raise InputError("kms_key_id is set but encrypt_root_volume is false: a key only encrypts an encrypted volume.")
    if not KMS_KEY_ID.match(kms_key_id):
        raise InputError(f"kms_key_id '{kms_key_id}' is not a KMS key id, key ARN, alias name or alias ARN.")


def metadata_difference(instance: Dict[str, Any]) -> List[str]:
    """The metadata options (by API name) whose value on ``instance`` is not the wanted one."""
    have = instance.get("MetadataOptions") or {}
    return [key for key, value in METADATA_OPTIONS.items() if have.get(key) != value]


def metadata_summary(instance: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    have = (instance or {}).get("MetadataOptions") or {}
    return {"http_tokens": have.get("HttpTokens"), "http_put_response_hop_limit": have.get("HttpPutResponseHopLimit"),
            "http_endpoint": have.get("HttpEndpoint")}


def wanted_metadata_summary() -> Dict[str, Any]:
    return metadata_summary({"MetadataOptions": METADATA_OPTIONS})


def root_device_mapping(image: Dict[str, Any], kms_key_id: Optional[str]) -> Dict[str, Any]:
    """The RunInstances block device mapping that encrypts the image's root volume.

    The unnamed settings (volume type, delete on termination) stay the image's. The size is the
    image's own: EC2 does not need it, moto 5.2.5 refuses an Ebs mapping without size or snapshot.
    """
    root = image.get("RootDeviceName")
    mapping = next((m for m in image.get("BlockDeviceMappings", []) if m.get("DeviceName") == root), None)
    if image.get("RootDeviceType", "ebs") != "ebs" or not mapping or "Ebs" not in mapping:
        raise InputError(f"image_id {image.get('ImageId')} has no EBS root volume to encrypt: use an EBS-backed "
                         "image or set encrypt_root_volume to false.")
    ebs: Dict[str, Any] = {"Encrypted": True}
    if mapping["Ebs"].get("VolumeSize"):
        ebs["VolumeSize"] = mapping["Ebs"]["VolumeSize"]
    if kms_key_id:
        ebs["KmsKeyId"] = kms_key_id
    return {"DeviceName": root, "Ebs": ebs}


def root_volume_id(instance: Dict[str, Any]) -> Optional[str]:
    root = instance.get("RootDeviceName")
    for mapping in instance.get("BlockDeviceMappings", []):
        if mapping.get("DeviceName") == root:
            return (mapping.get("Ebs") or {}).get("VolumeId")
    return None


def read_root_volumes(aws: AwsSession, instances: Sequence[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """The root volumes of ``instances`` by instance id, in one read (instance-store roots are absent)."""
    ids = {i["InstanceId"]: root_volume_id(i) for i in instances}
    volume_ids = sorted({v for v in ids.values() if v})
    if not volume_ids:
        return {}
    found = aws.paginate("ec2", "describe_volumes", "Volumes", ", ".join(volume_ids),
                         Filters=[{"Name": "volume-id", "Values": volume_ids}])
    by_id = {v["VolumeId"]: v for v in found}
    return {iid: by_id[vid] for iid, vid in ids.items() if vid in by_id}


def unencrypted_warning(label: str, volume: Optional[Dict[str, Any]]) -> Optional[str]:
    """The warning for an existing node whose root volume is not encrypted (None when it is, or is unknown)."""
    if volume is None or volume.get("Encrypted"):
        return None
    return (f"Node {label}: its root volume {volume['VolumeId']} is not encrypted and EBS cannot encrypt a volume "
            "in place; replace the node from an encrypted copy to encrypt it.")
