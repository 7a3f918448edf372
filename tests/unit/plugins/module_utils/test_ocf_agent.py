# -*- coding: utf-8 -*-
"""The OCF agents against a moto server on loopback and a stand-in IMDS on loopback; the server's
fault injection (lab/faults.py) throttles, cuts or rewrites chosen calls.

The VIP's local address goes into a network namespace this test makes (a PATH shim runs the
real `ip` there), so nothing touches the machine's own network.
"""

from __future__ import annotations

import datetime
import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Dict, Iterator, List

import boto3
import pytest

from ansible_collections.ec2ha.cluster.plugins.module_utils import ocf_agent, ocf_runtime

from ec2ha_testkit import world as world_builder
from lab.emulator import faults  # the lab's fault injection on the tests' moto

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"),
                                reason="needs root and iproute2 for the test's network namespace")


class Imds(http.server.ThreadingHTTPServer):
    """IMDSv2 stand-in: a token, then the identity of whichever node the test says we are."""

    identity: Dict[str, str] = {}


class ImdsHandler(http.server.BaseHTTPRequestHandler):
    def do_PUT(self) -> None:
        self._answer("token-1" if self.path == "/latest/api/token" else None)

    def do_GET(self) -> None:
        if self.headers.get("X-aws-ec2-metadata-token") != "token-1":
            self.send_response(401)
            self.end_headers()
            return
        self._answer(self.server.identity.get(self.path.replace("/latest/meta-data/", "")))

    def _answer(self, body: Any) -> None:
        self.send_response(200 if body is not None else 404)
        self.end_headers()
        if body is not None:
            self.wfile.write(str(body).encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def imds() -> Iterator[Imds]:
    server = Imds(("127.0.0.1", 0), ImdsHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def netns(tmp_path: Path) -> Iterator[str]:
    name = "e2h-agent-" + uuid.uuid4().hex[:6]
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


@pytest.fixture
def env(endpoint: str, imds: Imds, netns: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Dict[str, str]:
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "ip").write_text(f"#!/bin/sh\nexec {shutil.which('ip')} -n {netns} \"$@\"\n")
    (shim / "ip").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim}:{os.environ['PATH']}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return {"OCF_RESKEY_endpoint_url": endpoint, "OCF_RESKEY_imds_url": f"http://127.0.0.1:{imds.server_port}",
            "EC2HA_RUN_DIR": str(tmp_path / "run"), "OCF_RESOURCE_INSTANCE": "endpoint"}


@pytest.fixture
def world(endpoint: str) -> Dict[str, Any]:
    return world_builder.build(endpoint, "us-east-1", "a" + uuid.uuid4().hex[:8])


def be(imds: Imds, node: Dict[str, Any]) -> None:
    imds.identity = {"instance-id": node["id"], "placement/region": "us-east-1"}


def ec2(world: Dict[str, Any]) -> Any:
    return boto3.client("ec2", endpoint_url=world["endpoint_url"], region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def vip_targets(world: Dict[str, Any]) -> Dict[str, str]:
    tables = ec2(world).describe_route_tables(RouteTableIds=list(world["route_tables"].values()))["RouteTables"]
    return {t["RouteTableId"]: next(r.get("NetworkInterfaceId") for r in t["Routes"]
                                    if r.get("DestinationCidrBlock") == world["vip"] + "/32") for t in tables}


def local_addresses(netns: str) -> str:
    return subprocess.run(["ip", "-n", netns, "-o", "-4", "addr", "show", "dev", "lo"],
                          check=True, capture_output=True, text=True).stdout


def run(agent: str, action: str, env: Dict[str, str], **params: str) -> int:
    full = dict(env, **{f"OCF_RESKEY_{k}": v for k, v in params.items()})
    return ocf_agent.main(agent, [action], full)


def test_vip_route_start_monitor_repair_stop(world: Dict[str, Any], env: Dict[str, str], imds: Imds,
                                             netns: str) -> None:
    be(imds, world["node2"])
    assert run("vip_route", "monitor", env, vip=world["vip"]) == ocf_runtime.OCF_NOT_RUNNING
    assert run("vip_route", "start", env, vip=world["vip"]) == ocf_runtime.OCF_SUCCESS
    assert set(vip_targets(world).values()) == {world["node2"]["eni"]}
    assert f" {world['vip']}/32 " in local_addresses(netns)
    assert run("vip_route", "monitor", env, vip=world["vip"]) == ocf_runtime.OCF_SUCCESS

    # Someone moves one table back to node1: the monitor repairs it in place and stays running.
    ec2(world).replace_route(RouteTableId=world["route_tables"]["a"], DestinationCidrBlock=world["vip"] + "/32",
                             NetworkInterfaceId=world["node1"]["eni"])
    assert run("vip_route", "monitor", env, vip=world["vip"]) == ocf_runtime.OCF_SUCCESS
    assert set(vip_targets(world).values()) == {world["node2"]["eni"]}

    # Stop is local only: the address leaves, the routes stay until the other node starts.
    assert run("vip_route", "stop", env, vip=world["vip"]) == ocf_runtime.OCF_SUCCESS
    assert f" {world['vip']}/32 " not in local_addresses(netns)
    assert set(vip_targets(world).values()) == {world["node2"]["eni"]}
    assert run("vip_route", "monitor", env, vip=world["vip"]) == ocf_runtime.OCF_NOT_RUNNING


def test_vip_route_bad_vip_is_a_configuration_error_and_changes_nothing(
        world: Dict[str, Any], env: Dict[str, str], imds: Imds) -> None:
    be(imds, world["node2"])
    inside = world["node1"]["private_ip"]
    before = vip_targets(world)
    assert run("vip_route", "start", env, vip=inside) == ocf_runtime.OCF_ERR_CONFIGURED
    assert run("vip_route", "start", env) == ocf_runtime.OCF_ERR_CONFIGURED
    assert vip_targets(world) == before


def test_monitor_answers_unknown_as_running_when_the_api_does_not_answer(
        world: Dict[str, Any], env: Dict[str, str], imds: Imds) -> None:
    be(imds, world["node2"])
    assert run("vip_route", "start", env, vip=world["vip"]) == ocf_runtime.OCF_SUCCESS
    # A 4 s operation timeout: the start below tries again until its deadline (2 s) before it fails.
    closed = dict(env, OCF_RESKEY_endpoint_url="http://127.0.0.1:9", OCF_RESKEY_max_attempts="1",
                  OCF_RESKEY_api_timeout="1", OCF_RESKEY_CRM_meta_timeout="4000")
    assert run("vip_route", "monitor", closed, vip=world["vip"]) == ocf_runtime.OCF_SUCCESS
    # A start cannot succeed without the API: it fails rather than pretend.
    assert run("vip_route", "stop", env, vip=world["vip"]) == ocf_runtime.OCF_SUCCESS
    assert run("vip_route", "start", closed, vip=world["vip"]) == ocf_runtime.OCF_ERR_GENERIC


def test_elastic_ip_moves_to_the_starting_node(world: Dict[str, Any], env: Dict[str, str], imds: Imds) -> None:
    be(imds, world["node2"])
    params = {"public_ip": world["eip"]["public_ip"]}
    assert run("elastic_ip", "start", env, **params) == ocf_runtime.OCF_SUCCESS
    address = ec2(world).describe_addresses(AllocationIds=[world["eip"]["allocation_id"]])["Addresses"][0]
    assert address["NetworkInterfaceId"] == world["node2"]["eni"]
    assert run("elastic_ip", "monitor", env, **params) == ocf_runtime.OCF_SUCCESS
    assert run("elastic_ip", "validate-all", env) == ocf_runtime.OCF_ERR_CONFIGURED


def test_dns_record_points_at_the_starting_node(world: Dict[str, Any], env: Dict[str, str], imds: Imds) -> None:
    be(imds, world["node2"])
    params = {"zone": world["private_zone"]["name"], "record": world["record"], "ttl": "30"}
    assert run("dns_record", "start", env, **params) == ocf_runtime.OCF_SUCCESS
    r53 = boto3.client("route53", endpoint_url=world["endpoint_url"], region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    sets = r53.list_resource_record_sets(HostedZoneId=world["private_zone"]["id"],
                                         StartRecordName=world["record"])["ResourceRecordSets"]
    record = next(s for s in sets if s["Name"].rstrip(".") == world["record"])
    assert [r["Value"] for r in record["ResourceRecords"]] == [world["node2"]["private_ip"]]
    assert record["TTL"] == 30
    assert run("dns_record", "monitor", env, **params) == ocf_runtime.OCF_SUCCESS


@pytest.mark.parametrize("agent", sorted(ocf_agent.AGENTS))
def test_meta_data_is_valid_xml_naming_every_parameter(agent: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert ocf_agent.main(agent, ["meta-data"], {}) == ocf_runtime.OCF_SUCCESS
    root = ET.fromstring(capsys.readouterr().out)
    names = {p.get("name") for p in root.iter("parameter")}
    assert {"region", "endpoint_url", "api_timeout"} <= names
    assert {a.get("name") for a in root.iter("action")} >= {"start", "stop", "monitor", "meta-data"}
    assert ocf_agent.main(agent, ["promote"], {}) == ocf_runtime.OCF_ERR_UNIMPLEMENTED


# --- faults on the API: throttling, a PENDING change, an API that stays away --------------------------

@pytest.fixture
def fault_url(endpoint: str) -> Iterator[str]:
    """The moto endpoint, its fault rules cleared after the test."""
    yield endpoint
    faults.clear(endpoint)


def run_as_pacemaker(agent: str, action: str, env: Dict[str, str], timeout_ms: int,
                     **params: str) -> subprocess.CompletedProcess:
    """The agent as Pacemaker runs it: its own process, told its timeout (OCF_RESKEY_CRM_meta_timeout),
    killed when the timeout passes (subprocess.TimeoutExpired fails the test)."""
    full = dict(os.environ, **env, OCF_RESKEY_CRM_meta_timeout=str(timeout_ms),
                **{f"OCF_RESKEY_{k}": v for k, v in params.items()})
    top = next(p for p in Path(ocf_agent.__file__).parents if p.name == "ansible_collections").parent
    full["PYTHONPATH"] = str(top)
    code = ("import sys; from ansible_collections.ec2ha.cluster.plugins.module_utils.ocf_agent import main; "
            "sys.exit(main(sys.argv[1], sys.argv[2:]))")
    return subprocess.run([sys.executable, "-c", code, agent, action], env=full, capture_output=True, text=True,
                          timeout=timeout_ms / 1000, check=False)


def exit_reason(stderr: str) -> str:
    """What Pacemaker shows as the failed action's reason: the last ocf-exit-reason: line."""
    return [line for line in stderr.splitlines() if line.startswith("ocf-exit-reason:")][-1]


def route53(world: Dict[str, Any]) -> Any:
    return boto3.client("route53", endpoint_url=world["endpoint_url"], region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def record_sets(world: Dict[str, Any]) -> Dict[str, List[str]]:
    """Every record set at the record's name: type -> values."""
    sets = route53(world).list_resource_record_sets(HostedZoneId=world["private_zone"]["id"],
                                                    StartRecordName=world["record"])["ResourceRecordSets"]
    return {s["Type"]: [r["Value"] for r in s.get("ResourceRecords", [])]
            for s in sets if s["Name"].rstrip(".") == world["record"]}


def put_record(world: Dict[str, Any], kind: str, value: str) -> None:
    route53(world).change_resource_record_sets(HostedZoneId=world["private_zone"]["id"], ChangeBatch={"Changes": [{
        "Action": "UPSERT", "ResourceRecordSet": {"Name": world["record"], "Type": kind, "TTL": 60,
                                                  "ResourceRecords": [{"Value": value}]}}]})


def dns_params(world: Dict[str, Any]) -> Dict[str, str]:
    return {"zone": world["private_zone"]["name"], "record": world["record"], "ttl": "60"}


def test_start_retries_a_throttled_replace_route_on_the_second_table(
        world: Dict[str, Any], env: Dict[str, str], imds: Imds, fault_url: str) -> None:
    be(imds, world["node2"])
    tables = [world["route_tables"]["a"], world["route_tables"]["b"]]
    # More throttles than one call's attempts (max_attempts 3): the first converge moves table a, then fails.
    rule = faults.inject(fault_url, {"action": "ReplaceRoute", "params": {"RouteTableId": tables[1]},
                                     "error": "RequestLimitExceeded", "count": 3})
    assert run("vip_route", "start", env, vip=world["vip"], route_tables=",".join(tables)) == ocf_runtime.OCF_SUCCESS
    targets = vip_targets(world)
    assert [targets[t] for t in tables] == [world["node2"]["eni"]] * 2
    assert [r["hits"] for r in faults.rules(fault_url) if r["id"] == rule["id"]] == [3]


def test_a_throttle_that_does_not_end_fails_the_start_within_its_timeout_saying_why(
        world: Dict[str, Any], env: Dict[str, str], imds: Imds, fault_url: str) -> None:
    be(imds, world["node2"])
    tables = [world["route_tables"]["a"], world["route_tables"]["b"]]
    faults.inject(fault_url, {"action": "ReplaceRoute", "params": {"RouteTableId": tables[1]},
                              "error": "RequestLimitExceeded"})
    done = run_as_pacemaker("vip_route", "start", env, 10000, vip=world["vip"], route_tables=",".join(tables))
    assert done.returncode == ocf_runtime.OCF_ERR_GENERIC
    reason = exit_reason(done.stderr)
    assert f"ec2:ReplaceRoute on {tables[1]} failed with RequestLimitExceeded" in reason
    assert vip_targets(world)[tables[1]] == world["node1"]["eni"]


def test_monitor_recreates_a_route_deleted_by_hand(world: Dict[str, Any], env: Dict[str, str], imds: Imds) -> None:
    be(imds, world["node2"])
    tables = [world["route_tables"]["a"], world["route_tables"]["b"]]
    params = {"vip": world["vip"], "route_tables": ",".join(tables)}
    assert run("vip_route", "start", env, **params) == ocf_runtime.OCF_SUCCESS
    ec2(world).delete_route(RouteTableId=tables[1], DestinationCidrBlock=world["vip"] + "/32")
    assert run("vip_route", "monitor", env, **params) == ocf_runtime.OCF_SUCCESS
    targets = vip_targets(world)
    assert [targets[t] for t in tables] == [world["node2"]["eni"]] * 2


def test_dns_record_starts_and_monitors_beside_txt_and_aaaa_records(
        world: Dict[str, Any], env: Dict[str, str], imds: Imds) -> None:
    be(imds, world["node2"])
    put_record(world, "TXT", '"owner=db-team"')
    put_record(world, "AAAA", "2001:db8::10")
    assert run("dns_record", "start", env, **dns_params(world)) == ocf_runtime.OCF_SUCCESS
    assert run("dns_record", "monitor", env, **dns_params(world)) == ocf_runtime.OCF_SUCCESS
    assert record_sets(world) == {"A": [world["node2"]["private_ip"]], "TXT": ['"owner=db-team"'],
                                  "AAAA": ["2001:db8::10"]}


def test_a_cname_taking_the_name_fails_the_monitor_softly_and_is_left_alone(
        world: Dict[str, Any], env: Dict[str, str], imds: Imds) -> None:
    """The monitor cannot repair it (the record is not ours to delete): it fails, but not with
    OCF_ERR_CONFIGURED, which would stop the endpoint on every node; Pacemaker recovers it here and the
    start says whether the configuration still holds."""
    be(imds, world["node2"])
    assert run("dns_record", "start", env, **dns_params(world)) == ocf_runtime.OCF_SUCCESS
    put_record(world, "CNAME", "elsewhere.example.")
    assert run("dns_record", "monitor", env, **dns_params(world)) == ocf_runtime.OCF_ERR_GENERIC
    assert record_sets(world)["CNAME"] == ["elsewhere.example."]


def test_dns_start_and_repair_with_a_pending_change_end_within_their_timeouts(
        world: Dict[str, Any], env: Dict[str, str], imds: Imds, fault_url: str) -> None:
    be(imds, world["node2"])
    for action in ("ChangeResourceRecordSets", "GetChange"):
        faults.inject(fault_url, {"action": action, "rewrite": {"INSYNC": "PENDING"}})
    started = run_as_pacemaker("dns_record", "start", env, 10000, **dns_params(world))
    # Written and read back but not INSYNC at the deadline: started, with a warning (see DnsRecordAgent).
    assert started.returncode == ocf_runtime.OCF_SUCCESS, started.stderr
    assert "not yet INSYNC" in started.stderr
    assert record_sets(world)["A"] == [world["node2"]["private_ip"]]

    put_record(world, "A", world["node1"]["private_ip"])
    repaired = run_as_pacemaker("dns_record", "monitor", env, 8000, **dns_params(world))
    assert repaired.returncode == ocf_runtime.OCF_SUCCESS, repaired.stderr
    assert record_sets(world)["A"] == [world["node2"]["private_ip"]]


def offline_cib(path: Path, node: str) -> Path:
    """A CIB file with ``node`` joined, for crm_attribute through CIB_file (no cluster runs here)."""
    blank = subprocess.run(["cibadmin", "--empty"], capture_output=True, text=True, check=True).stdout
    path.write_text(blank.replace("<nodes/>", f'<nodes><node id="1" uname="{node}"/></nodes>').replace(
        "<status/>", f'<status><node_state id="1" uname="{node}" in_ccm="true" crmd="online" join="member" '
                     'expected="member"/></status>'))
    return path


def node_attributes(cib: Path) -> str:
    """The Node Attributes section as crm_mon -A shows it."""
    shown = subprocess.run(["crm_mon", "-1", "-A"], env=dict(os.environ, CIB_file=str(cib)), capture_output=True,
                           text=True, check=False).stdout
    return shown.partition("Node Attributes:")[2]


@pytest.mark.skipif(not shutil.which("crm_attribute") or not shutil.which("crm_mon"),
                    reason="needs pacemaker-cli-utils (crm_attribute, crm_mon)")
def test_monitors_left_unanswered_are_reported_in_a_node_attribute_until_the_api_answers(
        world: Dict[str, Any], env: Dict[str, str], imds: Imds, fault_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    be(imds, world["node2"])
    cib = offline_cib(tmp_path / "cib.xml", "alpha")
    monkeypatch.setenv("CIB_file", str(cib))
    here = dict(env, OCF_RESKEY_CRM_meta_on_node="alpha", OCF_RESKEY_max_attempts="1", OCF_RESKEY_api_timeout="1")
    params = {"vip": world["vip"], "unknown_limit": "3"}
    assert run("vip_route", "start", here, **params) == ocf_runtime.OCF_SUCCESS
    faults.inject(fault_url, {"service": "ec2", "drop": True})
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    for _interval in range(2):
        assert run("vip_route", "monitor", here, **params) == ocf_runtime.OCF_SUCCESS
    assert "endpoint-aws" not in node_attributes(cib)

    assert run("vip_route", "monitor", here, **params) == ocf_runtime.OCF_SUCCESS
    shown = node_attributes(cib)
    assert "* Node: alpha:" in shown
    value = shown.split("endpoint-aws", 1)[1].split(":", 1)[1].strip()
    count, since_and_error = value.split(" unanswered monitors since ")
    since, error = since_and_error.split(": ", 1)
    assert count == "3" and "\n" not in value
    assert datetime.datetime.fromisoformat(since.replace("Z", "+00:00")) >= before
    assert "ec2:DescribeRouteTables" in error and "ConnectionClosedError" in error

    faults.clear(fault_url)
    assert run("vip_route", "monitor", here, **params) == ocf_runtime.OCF_SUCCESS
    assert "endpoint-aws" not in node_attributes(cib)


@pytest.mark.parametrize("action, timeout_ms, budget", [
    ("start", "60000", 54.0),      # 10 % margin
    ("monitor", "10000", 8.0),     # 2 s margin
    ("monitor", "3000", 1.5),      # the margin is at most half
    ("start", None, 54.0),         # no timeout from Pacemaker: the meta-data's 60 s
    ("monitor", "soon", 27.0),
])
def test_each_action_has_one_deadline_from_its_pacemaker_timeout(action, timeout_ms, budget):
    env = {} if timeout_ms is None else {"OCF_RESKEY_CRM_meta_timeout": timeout_ms}
    assert ocf_runtime.action_deadline(action, env).left() == pytest.approx(budget, abs=0.5)


@pytest.mark.parametrize("crm_attribute", ["exec sleep 30", "echo 'Could not connect to attrd' >&2; exit 102"])
def test_a_node_attribute_that_cannot_be_written_neither_fails_nor_stalls_the_monitor(
        world: Dict[str, Any], env: Dict[str, str], imds: Imds, fault_url: str, tmp_path: Path,
        crm_attribute: str) -> None:
    be(imds, world["node2"])
    shim = tmp_path / "bin" / "crm_attribute"        # the env fixture's PATH shim folder
    shim.write_text(f"#!/bin/sh\n{crm_attribute}\n")
    shim.chmod(0o755)
    here = dict(env, OCF_RESKEY_max_attempts="1", OCF_RESKEY_api_timeout="1")
    params = {"vip": world["vip"], "unknown_limit": "1"}
    assert run("vip_route", "start", here, **params) == ocf_runtime.OCF_SUCCESS
    faults.inject(fault_url, {"service": "ec2", "drop": True})
    done = run_as_pacemaker("vip_route", "monitor", here, 10000, **params)
    assert done.returncode == ocf_runtime.OCF_SUCCESS
    assert "could not set node attribute endpoint-aws" in done.stderr


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("agent", ["vip_route", "elastic_ip"])
def test_a_started_endpoint_s_monitor_holds_while_imds_is_down(agent: str, world: Dict[str, Any], env: Dict[str, str],
                                                               imds: Imds, netns: str) -> None:
    # The fault matrix's imds_down: before, every monitor read the region from IMDS again, failed
    # on the unanswered read, and Pacemaker moved the primary off a node whose endpoints were fine.
    be(imds, world["node2"])
    params = {"vip": world["vip"]} if agent == "vip_route" else {"public_ip": world["eip"]["public_ip"]}
    assert run(agent, "start", env, **params) == ocf_runtime.OCF_SUCCESS
    down = dict(env, OCF_RESKEY_imds_url=f"http://127.0.0.1:{closed_port()}")
    assert run(agent, "monitor", down, **params) == ocf_runtime.OCF_SUCCESS
    assert run(agent, "stop", down, **params) == ocf_runtime.OCF_SUCCESS
