# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The credential types of extensions/awx are ones AWX saves, and what AWX renders from them is
what the modules read: the AWS_* environment through the modules' own fallbacks (module_shell's
AWS_ARGUMENT_SPEC), the endpoint through botocore's config file, proven against moto."""

from __future__ import annotations

import copy
from typing import Dict, Optional

import pytest
import yaml
from ec2ha_testkit import awx_runner
from ec2ha_testkit.awx_runner import credential_type_errors, render_credential

from ansible_collections.ec2ha.cluster.plugins.module_utils.aws import AwsSession, ConnectionSettings
from ansible_collections.ec2ha.cluster.plugins.module_utils.module_shell import AWS_ARGUMENT_SPEC

ROOT = awx_runner.ROOT
AWS = awx_runner.load(awx_runner.credential_type_path("ec2ha_aws"))
NODE_KEYS = awx_runner.load(awx_runner.credential_type_path("ec2ha_node_keys"))
KEYS = {"access_key_id": "AKIAEXAMPLE", "secret_access_key": "testing", "region": "eu-west-1"}
# What botocore itself reads from the environment, beside the modules' fallbacks.
BOTOCORE_ENV = {"AWS_CONFIG_FILE", "AWS_DEFAULT_REGION"}


def module_settings(env: Dict[str, str]) -> ConnectionSettings:
    """The connection settings a module builds when the playbook leaves the AWS options unset:
    each option from the first of its fallback variables present (Ansible's env_fallback)."""
    values: Dict[str, Optional[str]] = {}
    for option, spec in AWS_ARGUMENT_SPEC.items():
        names = spec.get("fallback", (None, []))[1]
        values[option] = next((env[n] for n in names if n in env), spec.get("default"))
    return ConnectionSettings(**values)


@pytest.mark.parametrize("path", awx_runner.credential_type_paths(), ids=lambda p: p.stem)
def test_a_shipped_credential_type_is_one_awx_saves(path):
    assert credential_type_errors(awx_runner.load(path)) == []


def broken(change) -> dict:
    ctype = copy.deepcopy(AWS)
    change(ctype)
    return ctype


@pytest.mark.parametrize("change, words", [
    (lambda t: t["injectors"]["env"].update(ANSIBLE_COLLECTIONS_PATH="/x"), "may affect Ansible configuration"),
    (lambda t: t["injectors"]["env"].update(PATH="{{ region }}"), "PATH is not allowed"),
    (lambda t: t["injectors"]["env"].update(AWS_PROFILE="{{ profile }}"), "AWS_PROFILE uses an undefined field"),
    (lambda t: t["injectors"]["env"].update(AWS_X="{{ tower.filename.nope }}"), "uses an undefined field"),
    (lambda t: t["injectors"]["env"].update(AWS_X="{{ region "), "Syntax error"),
    (lambda t: t["injectors"]["file"].update(template="x"), "multi-file syntax"),
    (lambda t: t["inputs"]["fields"].append(dict(t["inputs"]["fields"][0])), "field IDs must be unique (access_key_id)"),
    (lambda t: t["inputs"]["fields"].append({"id": "tower", "label": "x"}), '"tower" is a reserved field name'),
    (lambda t: t["inputs"]["fields"].append({"id": "9lives", "label": "x"}), "9lives is an invalid variable name"),
    (lambda t: t["inputs"]["fields"].append({"id": "flag", "label": "x", "type": "boolean", "secret": True}),
     "secret not allowed for boolean type (flag)"),
    (lambda t: t["inputs"]["fields"].append({"id": "n", "label": "x", "default": 3}), "3 is not a string"),
    (lambda t: t["inputs"]["required"].append("profile"), "required names profile"),
    (lambda t: t["inputs"].update(dependencies={"session_token": ["access_key_id"]}), "'dependencies' is not supported"),
    (lambda t: t.update(kind="ssh"), "a custom credential type is cloud or net"),
])
def test_awx_rules_refuse_a_broken_credential_type(change, words):
    errors = credential_type_errors(broken(change))
    assert any(words in e for e in errors), errors


def test_every_injected_variable_is_one_the_modules_or_botocore_read():
    fallbacks = {n for spec in AWS_ARGUMENT_SPEC.values() for n in spec.get("fallback", (None, []))[1]}
    assert set(AWS["injectors"]["env"]) <= fallbacks | BOTOCORE_ENV
    assert "AWS_ENDPOINT_URL" not in AWS["injectors"]["env"]


def test_the_keys_token_and_region_reach_the_modules(env_dir):
    injected = render_credential(AWS, {**KEYS, "session_token": "token-1"}, env_dir)
    settings = module_settings(injected.env)
    assert (settings.access_key, settings.secret_key, settings.session_token, settings.region) == (
        "AKIAEXAMPLE", "testing", "token-1", "eu-west-1")
    assert injected.env["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert settings.endpoint_url is None


def test_an_empty_optional_input_renders_as_an_empty_string(env_dir):
    """AWX leaves an empty input out of the namespace: an env injector of it is still set, to ""."""
    injected = render_credential(AWS, {**KEYS, "session_token": "", "endpoint_url": ""}, env_dir)
    assert injected.env["AWS_SESSION_TOKEN"] == ""
    config = injected.files["template.aws_config"].read_text()
    assert injected.env["AWS_CONFIG_FILE"] == str(injected.files["template.aws_config"])
    assert "endpoint_url" not in config and "region = eu-west-1" in config


def test_an_empty_endpoint_url_in_the_environment_would_break_every_module():
    """Why the endpoint is no env injector: AWS_ENDPOINT_URL="" reaches the modules as an endpoint."""
    aws = AwsSession(module_settings({"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b", "AWS_REGION": "eu-west-1",
                                      "AWS_ENDPOINT_URL": ""}))
    with pytest.raises(ValueError, match="Invalid endpoint"):
        aws.client("ec2")


def test_without_an_endpoint_the_clients_go_to_aws(env_dir, no_aws_env, monkeypatch):
    injected = render_credential(AWS, KEYS, env_dir)
    for name, value in injected.env.items():
        monkeypatch.setenv(name, value)
    aws = AwsSession(module_settings(injected.env))
    assert aws.client("ec2").meta.endpoint_url == "https://ec2.eu-west-1.amazonaws.com"


def test_the_endpoint_and_keys_reach_moto_through_the_modules(env_dir, no_aws_env, monkeypatch, endpoint):
    """The credential as AWX injects it, the session as a module builds it, a real call answered."""
    injected = render_credential(AWS, {**KEYS, "endpoint_url": endpoint}, env_dir)
    for name, value in injected.env.items():
        monkeypatch.setenv(name, value)
    aws = AwsSession(module_settings(injected.env))
    for service in ("ec2", "route53", "iam", "sts"):
        assert aws.client(service).meta.endpoint_url == endpoint, service
    assert aws.call("sts", "get_caller_identity")["Account"]
    assert aws.call("ec2", "describe_availability_zones")["AvailabilityZones"][0]["RegionName"] == "eu-west-1"


def test_the_node_keys_are_the_variables_site_yml_and_heartbeat_read(env_dir):
    injected = render_credential(NODE_KEYS, {"node_access_key_id": "AKIANODE", "node_secret_access_key": "s"}, env_dir)
    assert injected.env == {} and injected.extra_vars == {
        "ec2ha_node_access_key": "AKIANODE", "ec2ha_node_secret_key": "s",
        "heartbeat_fence_access_key": "AKIANODE", "heartbeat_fence_secret_key": "s"}
    site = (ROOT / "playbooks" / "site.yml").read_text()
    heartbeat = yaml.safe_load((ROOT / "roles" / "heartbeat" / "defaults" / "main.yml").read_text())
    for name in injected.extra_vars:
        assert name in site or name in heartbeat, name


def test_a_required_input_left_empty_is_refused(env_dir):
    with pytest.raises(ValueError, match="secret_access_key"):
        render_credential(AWS, {**KEYS, "secret_access_key": ""}, env_dir)
