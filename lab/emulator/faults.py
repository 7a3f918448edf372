"""Fault injection for the lab's moto: chosen AWS calls fail, answer late, lose their answer or
read differently, on the same server, switched over HTTP.

    faults.inject(endpoint_url, {"action": "ReplaceRoute", "params": {"RouteTableId": "rtb-0abc"},
                                 "error": "RequestLimitExceeded", "count": 3})
    faults.inject(endpoint_url, {"action": "GetChange", "rewrite": {"INSYNC": "PENDING"}})
    faults.inject(endpoint_url, {"service": "ec2", "drop": True})     # the EC2 API unreachable
    faults.rules(endpoint_url)     # every rule with its hits and what is left of its count
    faults.clear(endpoint_url)     # a healthy API again

A rule matches a request by any of: `service` (from the request's SigV4 scope: ec2, route53...),
`action` (EC2 and other Query APIs: the `Action=` field; Route 53: its REST path and method, see
ROUTE53_OPERATIONS), `params` (every name given must have that value: form and query fields,
Route 53 path ids such as `Id` or `HostedZoneId`) and `client` (the caller's address: the hosts'
calls reach the TLS front from their own addresses, the controller's come from 127.0.0.1). It
applies to the next `count` matching requests, or until removed. Its effect: an optional `delay`
(seconds, before anything else), then at most one of `error` (an AWS-shaped error: a code, or
{"code", "status", "message"}), `drop` (the connection is closed unanswered, the call never
reaches moto) or `rewrite` (moto answers, then each old text of its body is replaced by the new).

Control plane, JSON over HTTP on the same server: GET /_ec2ha/faults lists the rules, POST adds
one, DELETE clears them all, DELETE /_ec2ha/faults/<id> removes one.

The table is an object per app (no module state). The lab daemon hands one table to both of its
fronts (HTTP and TLS), so a rule injected by the controller also hits the hosts' calls.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any, Callable, Iterable
from xml.sax.saxutils import escape

CONTROL_PATH = "/_ec2ha/faults"
RULE_KEYS = frozenset(("service", "action", "params", "client", "count",
                       "delay", "error", "drop", "rewrite"))
# HTTP status of an injected error when the rule names only its code.
ERROR_STATUS = {"ServiceUnavailable": 503, "Unavailable": 503, "InternalError": 500,
                "InternalFailure": 500}
# Route 53 is a REST API: its action is the method and path (as botocore sends them).
ROUTE53_OPERATIONS = (
    ("GET", r"/2013-04-01/change/(?P<Id>[^/]+)", "GetChange"),
    ("POST", r"/2013-04-01/hostedzone/(?P<HostedZoneId>[^/]+)/rrset", "ChangeResourceRecordSets"),
    ("GET", r"/2013-04-01/hostedzone/(?P<HostedZoneId>[^/]+)/rrset", "ListResourceRecordSets"),
    ("GET", r"/2013-04-01/hostedzone/(?P<Id>[^/]+)", "GetHostedZone"),
    ("DELETE", r"/2013-04-01/hostedzone/(?P<Id>[^/]+)", "DeleteHostedZone"),
    ("GET", r"/2013-04-01/hostedzonesbyname", "ListHostedZonesByName"),
    ("GET", r"/2013-04-01/hostedzone", "ListHostedZones"),
    ("POST", r"/2013-04-01/hostedzone", "CreateHostedZone"),
)
SIGV4_SCOPE = re.compile(r"Credential=[^/,]+/[^/,]+/[^/,]+/([^/,]+)/aws4_request")


# ---------------------------------------------------------------- requests and rules

@dataclasses.dataclass(frozen=True)
class Request:
    """What a rule can match on, read once from the WSGI environ."""

    service: str | None
    action: str | None
    params: dict[str, str]
    client: str | None


def service_of(environ: dict) -> str | None:
    """The service a request is for: its SigV4 credential scope, else the Host's first label."""
    found = SIGV4_SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    if found:
        return found.group(1)
    host = environ.get("HTTP_HOST", "").split(":")[0]
    label = host.split(".")[0]
    return label if host.endswith(".amazonaws.com") else None


def request_of(environ: dict, body: bytes) -> Request:
    service = service_of(environ)
    params = {k: v[0] for k, v in urllib.parse.parse_qs(environ.get("QUERY_STRING", "")).items()}
    if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        params.update({k: v[0] for k, v in urllib.parse.parse_qs(body.decode(errors="replace")).items()})
    action = params.get("Action")
    if service == "route53":
        action, path_params = route53_operation(environ.get("REQUEST_METHOD", ""),
                                                environ.get("PATH_INFO", ""))
        params.update(path_params)
    return Request(service, action, params, environ.get("REMOTE_ADDR"))


def route53_operation(method: str, path: str) -> tuple[str | None, dict[str, str]]:
    trimmed = path.rstrip("/")
    for verb, pattern, name in ROUTE53_OPERATIONS:
        found = re.fullmatch(pattern, trimmed)
        if verb == method and found:
            return name, found.groupdict()
    return None, {}


@dataclasses.dataclass(frozen=True)
class ErrorSpec:
    code: str
    status: int
    message: str


@dataclasses.dataclass
class Rule:
    id: int
    service: str | None = None
    action: str | None = None
    params: dict[str, str] = dataclasses.field(default_factory=dict)
    client: str | None = None
    count: int | None = None          # matching requests still to answer; None: until removed
    delay: float = 0.0
    error: ErrorSpec | None = None
    drop: bool = False
    rewrite: dict[str, str] = dataclasses.field(default_factory=dict)
    hits: int = 0

    @property
    def live(self) -> bool:
        return self.count is None or self.count > 0

    def matches(self, request: Request) -> bool:
        return (self.live
                and self.service in (None, request.service)
                and self.action in (None, request.action)
                and self.client in (None, request.client)
                and all(request.params.get(k) == v for k, v in self.params.items()))

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return {k: v for k, v in data.items() if v not in (None, {}, False) or k in ("id", "hits", "count")}


def parse_rule(data: Any, rule_id: int) -> Rule:
    """A rule from its JSON form; ValueError (one sentence) for anything malformed."""
    if not isinstance(data, dict):
        raise ValueError("A fault rule is a JSON object.")
    unknown = sorted(set(data) - RULE_KEYS)
    if unknown:
        raise ValueError(f"Unknown fault rule keys {unknown}: expected some of {sorted(RULE_KEYS)}.")
    effects = [k for k in ("error", "drop", "rewrite") if data.get(k)]
    if len(effects) > 1:
        raise ValueError(f"A fault rule has one effect, not {' and '.join(effects)}.")
    if not effects and not data.get("delay"):
        raise ValueError("A fault rule needs an effect: error, drop, rewrite or delay.")
    count = data.get("count")
    if count is not None and (not isinstance(count, int) or count < 1):
        raise ValueError(f"count {count!r} must be a positive integer (or left out: until removed).")
    return Rule(rule_id, service=data.get("service"), action=data.get("action"),
                params={str(k): str(v) for k, v in (data.get("params") or {}).items()},
                client=data.get("client"), count=count, delay=float(data.get("delay") or 0),
                error=parse_error(data["error"]) if data.get("error") else None,
                drop=bool(data.get("drop")),
                rewrite={str(k): str(v) for k, v in (data.get("rewrite") or {}).items()})


def parse_error(spec: Any) -> ErrorSpec:
    if isinstance(spec, str):
        spec = {"code": spec}
    if not isinstance(spec, dict) or not spec.get("code"):
        raise ValueError(f"error {spec!r} must be an error code or {{\"code\", \"status\", \"message\"}}.")
    code = str(spec["code"])
    return ErrorSpec(code, int(spec.get("status") or ERROR_STATUS.get(code, 400)),
                     str(spec.get("message") or f"Injected {code} (lab fault)"))


class FaultTable:
    """The rules of one app (or of the fronts that share it); thread-safe, since werkzeug serves
    each request in its own thread and moto's lock is taken only by what reaches moto."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self._next_id = 1

    def add(self, data: Any) -> Rule:
        with self._lock:
            rule = parse_rule(data, self._next_id)
            self._next_id += 1
            self._rules.append(rule)
            return rule

    def remove(self, rule_id: int) -> bool:
        with self._lock:
            kept = [r for r in self._rules if r.id != rule_id]
            removed = len(kept) != len(self._rules)
            self._rules = kept
            return removed

    def clear(self) -> int:
        with self._lock:
            count, self._rules = len(self._rules), []
            return count

    def listing(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.as_dict() for r in self._rules]

    def active(self) -> bool:
        """Any rule still live (without one, requests pass untouched: no body is read)."""
        with self._lock:
            return any(r.live for r in self._rules)

    def take(self, request: Request) -> Rule | None:
        """The first live rule matching the request, counted (hits up, count down) in one step,
        so "the next N requests" are exactly N even when requests arrive together."""
        with self._lock:
            rule = next((r for r in self._rules if r.matches(request)), None)
            if rule is None:
                return None
            rule.hits += 1
            if rule.count is not None:
                rule.count -= 1
            return dataclasses.replace(rule)


# ---------------------------------------------------------------- answers

def error_body(service: str | None, error: ErrorSpec) -> bytes:
    """The error document botocore parses for the service: EC2's own Response/Errors form, and
    the ErrorResponse form of Route 53 (REST-XML) and the other Query APIs (STS, IAM)."""
    request_id = str(uuid.uuid4())
    code, message = escape(error.code), escape(error.message)
    if service == "ec2":
        return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{code}</Code>'
                f"<Message>{message}</Message></Error></Errors><RequestID>{request_id}</RequestID>"
                "</Response>").encode()
    kind = "Sender" if error.status < 500 else "Receiver"
    namespace = ' xmlns="https://route53.amazonaws.com/doc/2013-04-01/"' if service == "route53" else ""
    return (f'<?xml version="1.0"?>\n<ErrorResponse{namespace}><Error><Type>{kind}</Type><Code>{code}</Code>'
            f"<Message>{message}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>").encode()


def answer(start_response: Callable, status: int, body: bytes, content_type: str) -> list[bytes]:
    reason = {200: "OK", 201: "Created", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
              500: "Internal Server Error", 503: "Service Unavailable"}.get(status, "Error")
    start_response(f"{status} {reason}", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def drop(environ: dict) -> None:
    """Close the connection unanswered: the client sees it cut (botocore: ConnectionClosedError).
    werkzeug takes a ConnectionError from the app as a dropped connection and writes nothing."""
    sock = environ.get("werkzeug.socket")
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    raise ConnectionAbortedError("lab fault: connection dropped")


def rewritten(app: Callable, environ: dict, start_response: Callable, replace: dict[str, str]) -> list[bytes]:
    """moto's answer with each old text replaced by the new one, its length corrected."""
    captured: dict[str, Any] = {}
    chunks: list[bytes] = []

    def capture(status: str, headers: list, exc_info: Any = None) -> Callable[[bytes], None]:
        captured["status"], captured["headers"] = status, headers
        return chunks.append

    chunks.extend(app(environ, capture))
    text = b"".join(chunks).decode()
    for old, new in replace.items():
        text = text.replace(old, new)
    body = text.encode()
    headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
    start_response(captured["status"], headers + [("Content-Length", str(len(body)))])
    return [body]


def read_body(environ: dict) -> bytes:
    """The request body, read once and put back for moto."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


# ---------------------------------------------------------------- the middleware

def middleware(table: FaultTable, app: Callable) -> Callable:
    """Wrap moto's WSGI app. It sits outside moto's one-request-at-a-time lock: a delayed or
    dropped call never holds up the others, and only what reaches moto takes the lock."""
    def faulty(environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == CONTROL_PATH or path.startswith(CONTROL_PATH + "/"):
            return control(table, environ, start_response)
        if not table.active():
            return app(environ, start_response)
        request = request_of(environ, read_body(environ))
        rule = table.take(request)
        if rule is None:
            return app(environ, start_response)
        if rule.delay:
            time.sleep(rule.delay)
        if rule.drop:
            drop(environ)
        if rule.error is not None:
            return answer(start_response, rule.error.status, error_body(request.service, rule.error), "text/xml")
        if rule.rewrite:
            return rewritten(app, environ, start_response, rule.rewrite)
        return app(environ, start_response)
    return faulty


def control(table: FaultTable, environ: dict, start_response: Callable) -> list[bytes]:
    method = environ.get("REQUEST_METHOD", "GET")
    rest = environ.get("PATH_INFO", "")[len(CONTROL_PATH):].strip("/")

    def reply(status: int, data: Any) -> list[bytes]:
        return answer(start_response, status, json.dumps(data).encode(), "application/json")

    try:
        if not rest and method == "GET":
            return reply(200, {"rules": table.listing()})
        if not rest and method == "POST":
            return reply(201, table.add(json.loads(read_body(environ) or b"null")).as_dict())
        if not rest and method == "DELETE":
            return reply(200, {"cleared": table.clear()})
        if rest.isdigit() and method == "DELETE":
            return reply(200 if table.remove(int(rest)) else 404, {"removed": int(rest)})
    except ValueError as exc:           # a malformed rule, JSON included
        return reply(400, {"error": str(exc)})
    return reply(405, {"error": f"{method} {CONTROL_PATH}/{rest} is not a fault-control request."})


# ---------------------------------------------------------------- client helpers

def _control_call(endpoint_url: str, method: str, suffix: str = "", data: Any = None,
                  timeout: float = 5.0) -> Any:
    body = None if data is None else json.dumps(data).encode()
    request = urllib.request.Request(endpoint_url.rstrip("/") + CONTROL_PATH + suffix, data=body, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = json.loads(exc.read() or b"{}").get("error", exc.reason)
        raise ValueError(f"Fault control {method} {CONTROL_PATH}{suffix} answered {exc.code}: {detail}") from None


def inject(endpoint_url: str, rule: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """Add a rule; returns it as stored (with its id). ValueError if the server refuses it."""
    return _control_call(endpoint_url, "POST", data=rule, timeout=timeout)


def rules(endpoint_url: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    """Every rule with its hits and its remaining count."""
    return _control_call(endpoint_url, "GET", timeout=timeout)["rules"]


def remove(endpoint_url: str, rule_id: int, timeout: float = 5.0) -> None:
    _control_call(endpoint_url, "DELETE", f"/{rule_id}", timeout=timeout)


def clear(endpoint_url: str, timeout: float = 5.0) -> int:
    """Remove every rule; returns how many there were."""
    return _control_call(endpoint_url, "DELETE", timeout=timeout)["cleared"]
