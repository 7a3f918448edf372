# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A job template of extensions/awx/ run the way AWX runs a job, without AWX: ansible-runner on a
private data dir that holds what AWX would put there.

- ``project/``       the collection checkout (AWX syncs the project there);
- ``inventory/``     the inventory given (a mapping written as JSON, or a file or directory);
- ``env/extravars``  the launch's extra vars as AWX composes them (awx_survey.launch_extra_vars:
                     the template's, the survey defaults that pass, the caller's answers), plus the
                     awx_* / tower_* job variables AWX adds;
- ``env/envvars``    the credentials' env injectors rendered over their inputs, the collections
                     path (the checkout, as make collection links it), and what the caller adds;
- ``env/<file>``     the credentials' file injectors; their extra_vars injectors go in a file
                     passed with ``-e @file``, as AWX does.

Credential types follow AWX (ansible/awx), restated: ``credential_type_errors`` the rules of
``CredentialTypeInputField.validate`` and ``CredentialTypeInjectorField.validate`` in
awx/main/fields.py (``ENV_BLOCKLIST`` of awx/main/constants.py), ``render_credential`` the
rendering of ``CredentialType.inject_credential`` in awx/main/models/credential/__init__.py: Jinja
in an immutable sandbox over the inputs the credential holds, an empty input left out of the
namespace (so it renders as "" in a template), a file injector written under env/ and its path
in ``tower.filename``.

The run inherits this process's environment, as ansible-runner's does: a test that wants none of
its AWS_* variables removes them first (monkeypatch.delenv).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import ansible_runner
import jinja2
import yaml
from jinja2 import sandbox

from ec2ha_testkit import awx_survey

ROOT = Path(__file__).resolve().parents[3]
AWX_DIR = ROOT / "extensions" / "awx"
COLLECTIONS_PATH = ROOT / ".build" / "collections"

# CredentialTypeInputField's schema: what an input field may hold.
FIELD_KEYS = {"id", "label", "type", "format", "choices", "help_text", "multiline", "secret", "ask_at_runtime", "default"}
NAME = re.compile(r"^[a-zA-Z_]+[a-zA-Z0-9_]*$")
FILE_TEMPLATE = re.compile(r"^template(\.[a-zA-Z_]+[a-zA-Z0-9_]*)?$")
# ENV_BLOCKLIST (awx/main/constants.py): variables AWX itself sets; ANSIBLE_* is refused as well.
ENV_BLOCKLIST = frozenset((
    "VIRTUAL_ENV", "PATH", "PYTHONPATH", "JOB_ID", "INVENTORY_ID", "INVENTORY_SOURCE_ID", "INVENTORY_UPDATE_ID",
    "AD_HOC_COMMAND_ID", "REST_API_URL", "REST_API_TOKEN", "MAX_EVENT_RES", "CALLBACK_QUEUE",
    "CALLBACK_CONNECTION", "CACHE", "JOB_CALLBACK_DEBUG", "INVENTORY_HOSTVARS", "AWX_HOST", "PROJECT_REVISION",
    "SUPERVISOR_WEB_CONFIG_PATH",
))
KINDS_FOR_CUSTOM_TYPES = ("cloud", "net")


class LaunchRefused(Exception):
    """AWX would refuse this launch (the survey or the prompts): the reasons, as AWX words them."""

    def __init__(self, errors: Sequence[str]):
        super().__init__("; ".join(errors))
        self.errors = list(errors)


@dataclasses.dataclass
class Injected:
    """A credential's contribution to a job: environment, extra vars, the files written."""

    env: Dict[str, str]
    extra_vars: Dict[str, str]
    files: Dict[str, Path]


@dataclasses.dataclass
class RunnerResult:
    """The job as ansible-runner ran it."""

    rc: int
    status: str
    events: List[Dict[str, Any]]
    stdout: str
    extravars: Dict[str, Any]
    envvars: Dict[str, str]
    private_data_dir: Path

    def stats(self) -> Dict[str, Any]:
        """The event_data of the playbook_on_stats event: ok/changed/failures/dark per host, and
        the set_stats record under artifact_data."""
        [stats] = [e.get("event_data", {}) for e in self.events if e.get("event") == "playbook_on_stats"]
        return stats

    def failures(self) -> List[Dict[str, Any]]:
        """The event_data of each runner_on_failed event (task, host, res)."""
        return [e.get("event_data", {}) for e in self.events if e.get("event") == "runner_on_failed"]


def load(path: Union[str, Path]) -> Dict[str, Any]:
    return yaml.safe_load(Path(path).read_text())


def credential_type_path(name: str) -> Path:
    """credential_types/<name>.yml of extensions/awx."""
    return AWX_DIR / "credential_types" / f"{name}.yml"


def job_template_paths() -> List[Path]:
    """Every job template file of extensions/awx, in name order."""
    return sorted((AWX_DIR / "job_templates").glob("*.yml"))


def credential_type_paths() -> List[Path]:
    """Every credential type file of extensions/awx, in name order."""
    return sorted((AWX_DIR / "credential_types").glob("*.yml"))


def _render_check_namespace(ctype: Mapping[str, Any]) -> Dict[str, Any]:
    """What AWX renders each injector over when it saves the type: every field 'EXAMPLE', and
    ``tower.filename`` only as the file injectors define it."""
    names = [k for k in (ctype.get("injectors") or {}).get("file", {}) if k.startswith("template")]
    if "template" in names:
        filename: Any = "EXAMPLE_FILENAME"
    else:
        filename = SimpleNamespace(**{n.split(".", 1)[1]: "EXAMPLE_FILENAME" for n in names})
    namespace: Dict[str, Any] = {f["id"]: "EXAMPLE" for f in (ctype.get("inputs") or {}).get("fields", [])}
    namespace["tower"] = SimpleNamespace(filename=filename)
    return namespace


def _input_errors(inputs: Mapping[str, Any]) -> List[str]:
    errors = []
    if set(inputs) - {"fields", "required"}:
        errors.append(f"inputs: unknown keys {sorted(set(inputs) - {'fields', 'required'})}")
    if "dependencies" in inputs:
        errors.append("'dependencies' is not supported for custom credentials.")
    ids: List[str] = []
    for field in inputs.get("fields", []):
        fid, ftype = field.get("id"), field.get("type", "string")
        if "id" not in field or "label" not in field:
            errors.append(f"field {field}: 'id' and 'label' are required")
        if set(field) - FIELD_KEYS:
            errors.append(f"field {fid}: unknown keys {sorted(set(field) - FIELD_KEYS)}")
        if not isinstance(fid, str) or not NAME.match(fid):
            errors.append(f"{fid} is an invalid variable name")
        if fid == "tower":
            errors.append('"tower" is a reserved field name')
        if fid in ids:
            errors.append(f"field IDs must be unique ({fid})")
        ids.append(fid)
        if ftype not in ("string", "boolean"):
            errors.append(f"field {fid}: type {ftype!r} is not string or boolean")
            continue
        # AWX compares the default's type exactly; only a bool is a boolean, and a bool is no string.
        if "default" in field and not isinstance(field["default"], {"string": str, "boolean": bool}[ftype]):
            errors.append(f"{field['default']} is not a {ftype}")
        if field.get("format") not in (None, "ssh_private_key", "url"):
            errors.append(f"field {fid}: format {field['format']!r} is not ssh_private_key or url")
        errors += [f"{key} not allowed for {ftype} type ({fid})"
                   for key in ("choices", "multiline", "format", "secret") if key in field and ftype != "string"]
    errors += [f"required names {name}, which is no field" for name in inputs.get("required", []) if name not in ids]
    return errors


def _injector_errors(ctype: Mapping[str, Any]) -> List[str]:
    injectors = ctype.get("injectors") or {}
    errors = [f"injectors: unknown kind {kind!r}" for kind in injectors if kind not in ("file", "env", "extra_vars")]
    names = list(injectors.get("file", {}))
    errors += [f"file injector {n!r} is not template or template.<name>" for n in names if not FILE_TEMPLATE.match(n)]
    if "template" in names and len(names) > 1:
        errors.append("Must use multi-file syntax when injecting multiple files")
    for var in injectors.get("env", {}):
        if not NAME.match(var):
            errors.append(f"env injector {var!r} is not a variable name")
        if var.startswith("ANSIBLE_"):
            errors.append(f"Environment variable {var} may affect Ansible configuration so its use is not allowed in credentials.")
        if var in ENV_BLOCKLIST:
            errors.append(f"Environment variable {var} is not allowed to be used in credentials.")
    errors += [f"extra_vars injector {v!r} is not a variable name" for v in injectors.get("extra_vars", {}) if not NAME.match(v)]
    strict = sandbox.ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined)
    namespace = _render_check_namespace(ctype)
    for kind, templates in injectors.items():
        for key, template in (templates or {}).items():
            if not isinstance(template, str):
                errors.append(f"{kind} injector {key}: not a string")
                continue
            if kind == "env" and not template.isascii():
                errors.append(f"env injector {key}: not ASCII")
            try:
                strict.from_string(template).render(namespace)
            except jinja2.UndefinedError as exc:
                errors.append(f"{key} uses an undefined field ({exc})")
            except jinja2.TemplateSyntaxError as exc:
                errors.append(f"Syntax error rendering template for {key} inside of {kind} ({exc})")
    return errors


def credential_type_errors(ctype: Mapping[str, Any]) -> List[str]:
    """Why AWX would refuse to save ``ctype`` as a custom credential type (empty: it accepts it)."""
    errors = [f"missing {key}" for key in ("name", "kind", "inputs", "injectors") if key not in ctype]
    if ctype.get("kind") not in KINDS_FOR_CUSTOM_TYPES:
        errors.append(f"kind {ctype.get('kind')!r}: a custom credential type is cloud or net")
    errors += _input_errors(ctype.get("inputs") or {})
    if errors:
        # AWX checks the injectors' templates only against valid inputs.
        return errors
    return _injector_errors(ctype)


def render_credential(ctype: Mapping[str, Any], inputs: Mapping[str, Any], env_dir: Path) -> Injected:
    """What a credential of type ``ctype`` holding ``inputs`` injects into a job, rendered as AWX
    renders it; file injectors are written under ``env_dir`` (the private data dir's env/)."""
    fields = (ctype.get("inputs") or {}).get("fields", [])
    missing = [name for name in (ctype.get("inputs") or {}).get("required", []) if inputs.get(name) in (None, "")]
    if missing:
        raise ValueError(f"credential of type {ctype.get('name')} lacks its required inputs {missing}")
    namespace: Dict[str, Any] = {}
    for name, value in inputs.items():
        if isinstance(value, bool) or len(value):
            namespace[name] = value
    for field in fields:
        if field.get("type") == "boolean" and field["id"] not in inputs:
            namespace[field["id"]] = False
        if field.get("format") == "ssh_private_key" and field["id"] in namespace and not namespace[field["id"]].endswith("\n"):
            namespace[field["id"]] += "\n"
    jinja = sandbox.ImmutableSandboxedEnvironment()
    injectors = ctype.get("injectors") or {}
    tower = SimpleNamespace()
    files: Dict[str, Path] = {}
    for label, template in injectors.get("file", {}).items():
        handle, name = tempfile.mkstemp(dir=env_dir)
        with os.fdopen(handle, "w") as out:
            out.write(jinja.from_string(template).render(**namespace, tower=tower))
        os.chmod(name, 0o600)
        files[label] = Path(name)
        if "." in label:
            if not isinstance(getattr(tower, "filename", None), SimpleNamespace):
                tower.filename = SimpleNamespace()
            setattr(tower.filename, label.split(".", 1)[1], name)
        else:
            tower.filename = name
    env = {k: jinja.from_string(t).render(**namespace, tower=tower) for k, t in injectors.get("env", {}).items()}
    extra_vars = {k: jinja.from_string(t).render(**namespace, tower=tower)
                  for k, t in injectors.get("extra_vars", {}).items()}
    return Injected(env=env, extra_vars=extra_vars, files=files)


def controller_inventory(**hostvars: Any) -> Dict[str, Any]:
    """An inventory of the controller alone (localhost, local connection, this Python), holding
    ``hostvars`` as the controller's variables, as site.yml's inventory does."""
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    return {"all": {"hosts": {"localhost": {**local, **hostvars}}}}


# The controller's AWS access in a site.yml inventory; under AWX the ec2ha_aws credential brings it.
CONTROLLER_AWS_VARS = ("ec2ha_access_key", "ec2ha_secret_key", "ec2ha_endpoint_url")


def awx_inventory(path: Union[str, Path]) -> Dict[str, Any]:
    """A site.yml inventory file as an AWX inventory holds it: the same hosts and variables
    without the controller's AWS keys and endpoint (CONTROLLER_AWS_VARS)."""
    inventory = yaml.safe_load(Path(path).read_text())
    controller = inventory.get("all", {}).get("hosts", {}).get("localhost") or {}
    for name in CONTROLLER_AWS_VARS:
        controller.pop(name, None)
    return inventory


def _write_inventory(pdd: Path, inventory: Union[None, Mapping[str, Any], str, Path]) -> None:
    target = pdd / "inventory"
    if inventory is None:
        inventory = controller_inventory()
    if isinstance(inventory, Mapping):
        target.mkdir()
        (target / "hosts.json").write_text(json.dumps(inventory, indent=2))
    else:
        target.symlink_to(Path(inventory).resolve())


def _job_vars(template: Mapping[str, Any], user: str) -> Dict[str, Any]:
    """The job variables AWX adds to every job (awx_meta_vars), under both of its prefixes."""
    names = {"job_id": 1, "job_launch_type": "manual", "job_template_name": template["name"], "user_name": user}
    return {f"{prefix}_{key}": value for prefix in ("awx", "tower") for key, value in names.items()}


def run_job_template(template_path: Union[str, Path], extravars: Optional[Mapping[str, Any]] = None,
                     credential_inputs: Optional[Mapping[str, Mapping[str, Any]]] = None,
                     inventory: Union[None, Mapping[str, Any], str, Path] = None,
                     workdir: Union[str, Path, None] = None, *, job_type: Optional[str] = None,
                     launch_checks: bool = True, envvars: Optional[Mapping[str, str]] = None,
                     user: str = "ec2ha-test", collections_path: Union[str, Path] = COLLECTIONS_PATH,
                     timeout: int = 600) -> RunnerResult:
    """Run a job template file of extensions/awx/job_templates/ through ansible-runner.

    ``extravars`` are the launch's (survey answers, other prompts); ``credential_inputs`` maps a
    credential type of extensions/awx/credential_types/ (its file name without .yml, e.g.
    ``ec2ha_aws``) to the inputs of the credential attached; ``inventory`` is a mapping (written
    as JSON), or a file or directory (default: the controller alone); ``job_type`` "check" runs
    with --check, as AWX's check job type does. With ``launch_checks`` (default) a launch AWX would
    refuse raises LaunchRefused before anything runs; without, the playbook gets what it is given.
    ``workdir`` is where the private data dir is made (default: a new temporary directory)."""
    template = load(template_path)
    launch = awx_survey.launch_extra_vars(template, extravars)
    errors = list(launch.errors)
    job_type = job_type or template.get("job_type", "run")
    if job_type != template.get("job_type", "run") and not template.get("ask_job_type_on_launch"):
        errors.append("job_type: Field is not allowed on launch.")
    if launch_checks and errors:
        raise LaunchRefused(errors)
    pdd = Path(tempfile.mkdtemp(prefix="awx_job_", dir=workdir))
    (pdd / "env").mkdir()
    (pdd / "project").symlink_to(ROOT)
    _write_inventory(pdd, inventory)
    # This Python's ansible-playbook first on PATH, as the job's execution environment has its own.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", os.defpath)])
    env: Dict[str, str] = {"ANSIBLE_COLLECTIONS_PATH": str(collections_path), "ANSIBLE_NOCOLOR": "1", "PATH": path}
    cmdline: List[str] = ["--check"] if job_type == "check" else []
    for index, (type_name, inputs) in enumerate(sorted((credential_inputs or {}).items())):
        injected = render_credential(load(credential_type_path(type_name)), inputs, pdd / "env")
        env.update(injected.env)
        if injected.extra_vars:
            path = pdd / "env" / f"credential_{index}_extravars.json"
            path.write_text(json.dumps(injected.extra_vars))
            cmdline += ["-e", f"@{path}"]
    env.update(envvars or {})
    extra = {**launch.extra_vars, **_job_vars(template, user)}
    (pdd / "env" / "extravars").write_text(json.dumps(extra, indent=2))
    (pdd / "env" / "envvars").write_text(json.dumps(env, indent=2))
    runner = ansible_runner.run(
        private_data_dir=str(pdd), playbook=template["playbook"], verbosity=template.get("verbosity") or None,
        cmdline=" ".join(cmdline) or None, timeout=timeout, quiet=True)
    return RunnerResult(rc=runner.rc, status=runner.status, events=list(runner.events),
                        stdout=runner.stdout.read(), extravars=extra, envvars=env, private_data_dir=pdd)
