"""The lab's moto app (lab.control), in this process: it serves one request at a time.

moto 5.2.5 is not safe under concurrent requests (see lab.control._one_request_at_a_time): the
data-plane test once met its HTML 500 ("dictionary changed size during iteration") while the API
was written and the ticker polled. That race is too narrow to provoke on demand (ten rounds of a
first CreateVpcPeeringConnection against four readers never met it), so the test proves what
rules it out: no two requests are ever inside moto at once. No root and no lab needed.
"""

from __future__ import annotations

import threading
import time
from typing import Iterator

import boto3
import pytest

from lab.emulator import control

CALLERS = 4


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = control.start_moto("127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        control.stop_server(server)


def ec2(endpoint: str):
    return boto3.client("ec2", endpoint_url=endpoint, region_name="eu-west-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def test_moto_serves_one_request_at_a_time(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Four clients call DescribeRouteTables at once; moto's backend is never entered by two."""
    from moto.ec2.models.route_tables import RouteBackend

    original = RouteBackend.describe_route_tables
    inside, most = [0], [0]
    counting = threading.Lock()

    def slow_describe(self, *args, **kwargs):
        with counting:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.2)             # long enough for every caller to arrive meanwhile
        with counting:
            inside[0] -= 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(RouteBackend, "describe_route_tables", slow_describe)
    clients = [ec2(endpoint) for _caller in range(CALLERS)]
    answers: list = []
    threads = [threading.Thread(target=lambda c=c: answers.append(c.describe_route_tables()))
               for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(answers) == CALLERS
    assert most[0] == 1, f"{most[0]} requests were inside moto at once"
