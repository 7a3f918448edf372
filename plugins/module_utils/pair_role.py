# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cluster pair's IAM role ``<name>-node`` (EC2 trust, the one inline policy ``ec2ha-node``)
and the instance profile holding it. Pure boto3 through :class:`AwsSession`.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any, List, Sequence

from ansible_collections.ec2ha.cluster.plugins.module_utils import iam_policy
from ansible_collections.ec2ha.cluster.plugins.module_utils.aws import AwsCallError, AwsSession, InputError, tag_value
from ansible_collections.ec2ha.cluster.plugins.module_utils.ids import CLUSTER_TAG, IAM_NOT_FOUND
from ansible_collections.ec2ha.cluster.plugins.module_utils.pair_spec import POLICY_NAME, Pair, owned_elsewhere
from ansible_collections.ec2ha.cluster.plugins.module_utils.scenario import Action, apply


def read_or_none(aws: AwsSession, operation: str, resource: str, key: str, missing: Sequence[str],
                 service: str = "ec2", **params: Any) -> Any:
    """``key`` of the answer, or None when the call answers one of the ``missing`` codes."""
    try:
        return aws.call(service, operation, resource, **params).get(key)
    except AwsCallError as exc:
        if exc.code in missing:
            return None
        raise


def normalized(document: Any) -> str:
    # botocore decodes IAM's URL-encoded JSON; a raw answer (some stubs) is decoded here.
    if isinstance(document, str) and document.startswith("%"):
        document = urllib.parse.unquote(document)
    return iam_policy.normalized(document)


def read_iam(aws: AwsSession, pair: Pair) -> None:
    name = pair.spec.role_name
    pair.role = read_or_none(aws, "get_role", name, "Role", IAM_NOT_FOUND, service="iam", RoleName=name)
    if pair.role:
        owned_elsewhere("IAM role", name, pair.role.get("Tags"), pair.spec.name)
        answer = read_or_none(aws, "get_role_policy", name, "PolicyDocument", IAM_NOT_FOUND, service="iam",
                              RoleName=name, PolicyName=POLICY_NAME)
        pair.role_policy = normalized(answer) if answer else None
    pair.profile = read_or_none(aws, "get_instance_profile", name, "InstanceProfile", IAM_NOT_FOUND,
                                service="iam", InstanceProfileName=name)
    if pair.profile:
        owned_elsewhere("Instance profile", name, pair.profile.get("Tags"), pair.spec.name)
        others = [r["RoleName"] for r in pair.profile.get("Roles", []) if r["RoleName"] != name]
        if others:
            raise InputError(f"Instance profile {name} holds role {others[0]}: it can hold one role only, "
                             f"and it must be {name}.")


def plan_role(pair: Pair) -> List[Action]:
    """The writes on an existing role: its trust, its tag, its policy (the role itself: create_role)."""
    name, trust, actions = pair.spec.role_name, iam_policy.trust_policy(), []
    role = pair.role or {}
    if normalized(role.get("AssumeRolePolicyDocument") or "{}") != iam_policy.normalized(trust):
        actions.append(Action("update_assume_role_policy", name, {"RoleName": name, "PolicyDocument": json.dumps(trust)},
                              f"let only EC2 assume {name}", "iam"))
    if tag_value(role.get("Tags"), CLUSTER_TAG) is None:
        actions.append(Action("tag_role", name, {"RoleName": name, "Tags": pair.tags()}, f"tag IAM role {name}", "iam"))
    return actions


def ensure_role(aws: AwsSession, pair: Pair, check_mode: bool = False) -> List[Action]:
    """Role (EC2 trust), its one inline policy, the instance profile holding it; all tagged.
    Returns the writes made (or, in check mode, planned)."""
    name = pair.spec.role_name
    done: List[Action] = []
    if pair.role is None:
        create = Action("create_role", name, {
            "RoleName": name, "AssumeRolePolicyDocument": json.dumps(iam_policy.trust_policy()), "Tags": pair.tags(),
            "Description": f"ec2ha.cluster {pair.spec.name}: fencing and endpoint moves"},
            f"create IAM role {name}", "iam")
        done.append(create)
        pair.role = apply(aws, [create], check_mode)[0].get("Role") or {"RoleName": name}
    else:
        done += plan_role(pair)
        apply(aws, done, check_mode)
    policy = pair.policy
    if pair.role_policy != iam_policy.normalized(policy):
        done.append(Action("put_role_policy", name, {"RoleName": name, "PolicyName": POLICY_NAME,
                                                     "PolicyDocument": json.dumps(policy)},
                           f"put policy {POLICY_NAME} on {name}", "iam"))
        apply(aws, done[-1:], check_mode)
    if pair.profile is None:
        create = Action("create_instance_profile", name, {"InstanceProfileName": name, "Tags": pair.tags()},
                        f"create instance profile {name}", "iam")
        done.append(create)
        pair.profile = apply(aws, [create], check_mode)[0].get("InstanceProfile") or {
            "InstanceProfileName": name, "Roles": []}
    if not any(r["RoleName"] == name for r in pair.profile.get("Roles", [])):
        done.append(Action("add_role_to_instance_profile", name, {"InstanceProfileName": name, "RoleName": name},
                           f"put role {name} in instance profile {name}", "iam"))
        apply(aws, done[-1:], check_mode)
    return done
