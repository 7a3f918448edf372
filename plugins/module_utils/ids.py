# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's vocabulary, defined once: AWS id shapes, the tags it sets, the error codes that
mean "no such thing", and the scenario names (with the released names they replace).

Pure Python (no boto3, no Ansible): the cores, the modules and the agents on the nodes share it.
"""

from __future__ import annotations

import re
from typing import Dict, Iterable, Tuple

# ---- id shapes -----------------------------------------------------------------------------
INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8,17}$")
ENI_ID = re.compile(r"^eni-[0-9a-f]{8,17}$")
SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{8,17}$")
ROUTE_TABLE_ID = re.compile(r"^rtb-[0-9a-f]{8,17}$")
ALLOCATION_ID = re.compile(r"^eipalloc-[0-9a-f]{8,17}$")
# Route 53 ids are upper-case letters and digits (Z...; moto draws any letter); names are
# matched case-insensitively, so a lower-case or dotted value is always a name.
ZONE_ID = re.compile(r"^(?:/hostedzone/)?([A-Z0-9]{6,32})$")

# ---- tags ------------------------------------------------------------------------------------
NAME_TAG = "Name"
CLUSTER_TAG = "ec2ha:cluster"     # on every resource a cluster pair made or adopted
NODE_TAG = "ec2ha:node"           # on a node's instance and primary ENI: which node of the pair it is
LAB_HOST_TAG = "ec2ha:lab-host"   # what the deprecated lab_host option sets: the lab backs it with a host
OWN_TAGS = (CLUSTER_TAG, NODE_TAG)

# ---- "not found" answers ----------------------------------------------------------------------
# describe_addresses answers these when the address is not in this account and region.
ADDRESS_NOT_FOUND = frozenset((
    "InvalidAddress.NotFound", "InvalidAllocationID.NotFound", "InvalidAllocationID.Malformed",
    "InvalidParameterValue",
))
ZONE_NOT_FOUND = frozenset(("NoSuchHostedZone", "InvalidInput"))
IMAGE_NOT_FOUND = frozenset(("InvalidAMIID.NotFound", "InvalidAMIID.Malformed", "InvalidAMIID.Unavailable"))
KEY_PAIR_NOT_FOUND = frozenset(("InvalidKeyPair.NotFound",))
IAM_NOT_FOUND = frozenset(("NoSuchEntity",))

# ---- scenarios ---------------------------------------------------------------------------------
SCENARIOS = ("vip_route", "elastic_ip", "dns_record")
# Released in 1.0.0 under these names; still accepted (deprecated).
SCENARIO_ALIASES: Dict[str, str] = {"route_table": "vip_route", "route53": "dns_record"}


def scenario_names(names: Iterable[str]) -> Tuple[str, ...]:
    """The scenario names with every deprecated alias replaced by its name, in order, once each."""
    return tuple(dict.fromkeys(SCENARIO_ALIASES.get(n, n) for n in names))


def deprecated_scenarios(names: Iterable[str]) -> Tuple[str, ...]:
    """The deprecated aliases among ``names`` (for the caller's deprecation warning)."""
    return tuple(dict.fromkeys(n for n in names if n in SCENARIO_ALIASES))
