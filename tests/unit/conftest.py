# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared unit-test fixtures: an AwsSession whose clients are real botocore clients under Stubber,
and a moto server on loopback per test module (``endpoint``)."""

from __future__ import annotations

from typing import Dict, Iterator

import boto3
import pytest
from botocore.stub import Stubber
from ec2ha_testkit import moto_server

from ansible_collections.ec2ha.cluster.plugins.module_utils.aws import AwsSession, ConnectionSettings


class StubbedAws:
    """``aws`` is the session under test; ``stub(service)`` is that service's active Stubber."""

    def __init__(self, session: "boto3.session.Session") -> None:
        self.aws = AwsSession(ConnectionSettings(region="us-east-1"), session=session)
        self._stubbers: Dict[str, Stubber] = {}

    def stub(self, service: str) -> Stubber:
        if service not in self._stubbers:
            # A real client (real parameter validation and response parsing); Stubber answers, no network.
            stubber = Stubber(self.aws.client(service))
            stubber.activate()
            self._stubbers[service] = stubber
        return self._stubbers[service]

    def close(self) -> None:
        for stubber in self._stubbers.values():
            stubber.deactivate()

    def assert_all_used(self) -> None:
        for stubber in self._stubbers.values():
            stubber.assert_no_pending_responses()


@pytest.fixture(scope="session")
def boto_session() -> "boto3.session.Session":
    """One boto3 session for the run: its loader caches the service models (about 0.5 s per client)."""
    return boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                 region_name="us-east-1")


@pytest.fixture
def stubbed(boto_session: "boto3.session.Session") -> Iterator[StubbedAws]:
    """A stubbed AwsSession; a call with no queued response fails the test (Stubber raises)."""
    holder = StubbedAws(boto_session)
    yield holder
    holder.close()


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a moto server of this test module's own (the lab's moto app, on loopback)."""
    with moto_server.running(tmp_path_factory.mktemp("moto")) as url:
        yield url
