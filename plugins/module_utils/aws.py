# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""AWS client layer shared by the modules and the OCF agents on the nodes.

Pure boto3: nothing here imports Ansible, so a Pacemaker agent can import the very same
code. Every call goes through :class:`AwsSession.call`, which records it (for the modules'
``aws_calls`` return value) and turns any botocore failure into one :class:`AwsCallError`
whose message is a single sentence naming the call, the resource and the error code.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, List, Optional

try:
    import boto3
    import botocore.config
    import botocore.exceptions
    HAS_BOTO3 = True
    BOTO3_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - reported by the module shell
    HAS_BOTO3 = False
    BOTO3_IMPORT_ERROR = exc

# Error codes that mean "the API did not answer this time", not "the state is wrong".
TRANSIENT_CODES = frozenset((
    "Throttling", "ThrottlingException", "ThrottledException", "RequestLimitExceeded",
    "TooManyRequestsException", "PriorRequestNotComplete", "RequestThrottled",
    "RequestThrottledException", "SlowDown", "ServiceUnavailable", "InternalError",
    "InternalFailure", "Unavailable", "RequestTimeout", "RequestTimeoutException",
))
DENIED_CODES = frozenset(("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"))

DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 10.0


class Ec2haError(Exception):
    """Base of every error this collection raises on purpose; str() is one sentence."""


class InputError(Ec2haError):
    """The caller's input is wrong; raised before any write."""


class AwsCallError(Ec2haError):
    """An AWS API call failed; the message names the call, the resource and the code."""

    def __init__(self, message: str, service: str, operation: str, code: str, transient: bool):
        super().__init__(message)
        self.service = service
        self.operation = operation
        self.code = code
        self.transient = transient


class VerifyError(Ec2haError):
    """A write was accepted but re-reading the state did not show the expected result."""


@dataclasses.dataclass
class ConnectionSettings:
    """Where and how to reach AWS. ``None`` means: let boto3 decide (env, profile, IMDS)."""

    access_key: Optional[str] = None
    secret_key: Optional[str] = None
    session_token: Optional[str] = None
    profile: Optional[str] = None
    region: Optional[str] = None
    endpoint_url: Optional[str] = None
    retry_mode: str = "standard"
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT

    def validate(self) -> None:
        if self.retry_mode not in ("standard", "adaptive", "legacy"):
            raise InputError(f"retry_mode '{self.retry_mode}' is not one of standard, adaptive, legacy.")
        if not 1 <= int(self.max_attempts) <= 20:
            raise InputError(f"max_attempts {self.max_attempts} must be between 1 and 20.")
        for name in ("connect_timeout", "read_timeout"):
            seconds = float(getattr(self, name))
            if math.isnan(seconds) or seconds <= 0:
                raise InputError(f"{name} {getattr(self, name)} must be a positive number of seconds.")


@dataclasses.dataclass
class AwsCall:
    """One AWS API call, made or (in check mode) planned."""

    service: str
    operation: str
    resource: str
    params: Dict[str, Any]
    planned: bool = False

    def as_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


class AwsSession:
    """Clients for one set of connection settings, plus the log of calls made through them."""

    def __init__(self, settings: ConnectionSettings, session: Any = None):
        settings.validate()
        self.settings = settings
        self.calls: List[AwsCall] = []
        self._session = session
        self._clients: Dict[str, Any] = {}

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self._boto_session().client(
                service,
                region_name=self.settings.region or self._default_region(service),
                endpoint_url=self.settings.endpoint_url,
                config=botocore.config.Config(
                    retries={"mode": self.settings.retry_mode, "total_max_attempts": int(self.settings.max_attempts)},
                    connect_timeout=float(self.settings.connect_timeout),
                    read_timeout=float(self.settings.read_timeout),
                    user_agent_extra="ec2ha.cluster",
                ),
            )
        return self._clients[service]

    def set_client(self, service: str, client: Any) -> None:
        """Use a ready-made client (unit tests wrap one in botocore's Stubber)."""
        self._clients[service] = client

    def call(self, service: str, operation: str, resource: str = "", **params: Any) -> Dict[str, Any]:
        """Make one API call (a snake_case boto3 operation) and record it."""
        self.calls.append(AwsCall(service, operation, resource, params))
        try:
            return getattr(self.client(service), operation)(**params)
        except botocore.exceptions.ClientError as exc:
            raise call_error(service, operation, resource, exc) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise call_error(service, operation, resource, exc) from None

    def plan(self, service: str, operation: str, resource: str = "", **params: Any) -> None:
        """Record a write that check mode would make."""
        self.calls.append(AwsCall(service, operation, resource, params, planned=True))

    def paginate(self, service: str, operation: str, key: str, resource: str = "", **params: Any) -> List[Any]:
        """All items under ``key`` across the pages of a paginated read."""
        self.calls.append(AwsCall(service, operation, resource, params))
        try:
            items: List[Any] = []
            for page in self.client(service).get_paginator(operation).paginate(**params):
                items.extend(page.get(key, []))
            return items
        except botocore.exceptions.ClientError as exc:
            raise call_error(service, operation, resource, exc) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise call_error(service, operation, resource, exc) from None

    def _boto_session(self) -> Any:
        if self._session is None:
            s = self.settings
            self._session = boto3.session.Session(
                aws_access_key_id=s.access_key,
                aws_secret_access_key=s.secret_key,
                aws_session_token=s.session_token,
                profile_name=s.profile,
            )
        return self._session

    def _default_region(self, service: str) -> Optional[str]:
        region = self._boto_session().region_name
        if region is None and service in ("route53", "iam", "sts"):
            return "us-east-1"
        if region is None:
            raise InputError("No AWS region: set the region option or AWS_REGION.")
        return region


def api_name(operation: str) -> str:
    """snake_case boto3 method -> the API's CamelCase action name (replace_route -> ReplaceRoute)."""
    return "".join(part.capitalize() for part in operation.split("_"))


def call_error(service: str, operation: str, resource: str, exc: Exception) -> AwsCallError:
    """One sentence for a failed call: the call, the resource, the code, what it means."""
    action = f"{service}:{api_name(operation)}"
    where = f" on {resource}" if resource else ""
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        detail = str(error.get("Message", "")).strip().rstrip(".")
        if code in DENIED_CODES:
            text = f"{action}{where} was denied ({code}): the credentials lack permission for {action}."
        else:
            text = f"{action}{where} failed with {code}" + (f": {detail}." if detail else ".")
        return AwsCallError(text, service, operation, code, code in TRANSIENT_CODES)
    code = type(exc).__name__
    detail = str(exc).strip().rstrip(".")
    text = f"{action}{where} failed with {code}: {detail}."
    # No answer (refused, timed out, cut) is transient; missing credentials or bad parameters are not.
    transient = isinstance(exc, (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError))
    return AwsCallError(text, service, operation, code, transient)


def tag_value(tags: Optional[List[Dict[str, str]]], key: str) -> Optional[str]:
    for tag in tags or []:
        if tag.get("Key") == key:
            return tag.get("Value")
    return None
