# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What an AwsSession called, as the tests judge it."""

from __future__ import annotations

from typing import Any, List, Optional

READ_PREFIXES = ("describe_", "get_", "list_")


def operations(aws: Any, planned: Optional[bool] = None) -> List[str]:
    """Every call's operation in order; ``planned`` True/False keeps only planned / made ones."""
    return [c.operation for c in aws.calls if planned is None or c.planned == planned]


def writes(aws: Any) -> List[str]:
    """The writes really made (a planned write of check mode is not one), in order."""
    return [c.operation for c in aws.calls if not c.operation.startswith(READ_PREFIXES) and not c.planned]
