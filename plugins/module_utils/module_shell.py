# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one place the modules meet Ansible: shared options, settings, the error boundary.

Every module is a thin shell: argument spec -> core plan -> apply -> one exit_json. Typed
errors (:class:`Ec2haError`) are caught once here and become one fail_json sentence, with the
AWS calls made so far.
"""

from __future__ import annotations

from typing import Any, Callable, Dict

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib

from ansible_collections.ec2ha.cluster.plugins.module_utils.aws import (
    BOTO3_IMPORT_ERROR,
    HAS_BOTO3,
    AwsSession,
    ConnectionSettings,
    Ec2haError,
)

AWS_ARGUMENT_SPEC: Dict[str, Any] = dict(
    access_key=dict(type="str", aliases=["aws_access_key_id", "aws_access_key"], no_log=False,
                    fallback=(env_fallback, ["AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY"])),
    secret_key=dict(type="str", aliases=["aws_secret_access_key", "aws_secret_key"], no_log=True,
                    fallback=(env_fallback, ["AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY"])),
    session_token=dict(type="str", aliases=["aws_session_token"], no_log=True,
                       fallback=(env_fallback, ["AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"])),
    profile=dict(type="str", aliases=["aws_profile"], fallback=(env_fallback, ["AWS_PROFILE"])),
    region=dict(type="str", aliases=["aws_region"], fallback=(env_fallback, ["AWS_REGION", "AWS_DEFAULT_REGION"])),
    endpoint_url=dict(type="str", aliases=["aws_endpoint_url"], fallback=(env_fallback, ["AWS_ENDPOINT_URL"])),
    retry_mode=dict(type="str", default="standard", choices=["standard", "adaptive", "legacy"]),
    max_attempts=dict(type="int", default=5),
    connect_timeout=dict(type="float", default=5.0),
    read_timeout=dict(type="float", default=10.0),
)


def new_module(argument_spec: Dict[str, Any], **kwargs: Any) -> AnsibleModule:
    """An AnsibleModule with the shared AWS options; fails cleanly without boto3."""
    spec = dict(AWS_ARGUMENT_SPEC)
    spec.update(argument_spec)
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True, **kwargs)
    if not HAS_BOTO3:
        module.fail_json(msg=missing_required_lib("boto3 and botocore"), exception=str(BOTO3_IMPORT_ERROR))
    return module


def aws_session(module: AnsibleModule) -> AwsSession:
    p = module.params
    return AwsSession(ConnectionSettings(
        access_key=p["access_key"], secret_key=p["secret_key"], session_token=p["session_token"],
        profile=p["profile"], region=p["region"], endpoint_url=p["endpoint_url"],
        retry_mode=p["retry_mode"], max_attempts=p["max_attempts"],
        connect_timeout=p["connect_timeout"], read_timeout=p["read_timeout"],
    ))


def run_module(module: AnsibleModule, body: Callable[[AwsSession], Dict[str, Any]]) -> None:
    """Run ``body`` and exit once: its result plus the AWS calls (and, with ``--diff``, its
    before/after as the diff), or one error sentence."""
    try:
        aws = aws_session(module)
    except Ec2haError as exc:
        module.fail_json(msg=str(exc), aws_calls=[])
    try:
        result = body(aws)
    except Ec2haError as exc:
        module.fail_json(msg=str(exc), aws_calls=[c.as_dict() for c in aws.calls])
    result["aws_calls"] = [c.as_dict() for c in aws.calls]
    if module._diff and "before" in result and "after" in result:
        result["diff"] = {"before": result["before"], "after": result["after"]}
    module.exit_json(**result)
