# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Answers at botocore's HTTP layer. Stubber bypasses botocore's retries; a ``before-send`` handler
does not, so throttling is answered here to test that the session's retry mode resends."""

from __future__ import annotations

from typing import Any, Iterator, List, Sequence, Tuple

import botocore.awsrequest

from ansible_collections.ec2ha.cluster.plugins.module_utils.aws import AwsSession, ConnectionSettings

EC2_NS = 'xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"'
THROTTLED = (b"<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded."
             b"</Message></Error></Errors><RequestID>r1</RequestID></Response>")


class RawBody:
    """Just enough of urllib3's response for botocore.awsrequest.AWSResponse."""

    def __init__(self, body: bytes):
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


class Answers:
    """Answers the client's requests in order with (status, body); ``sent`` keeps each request."""

    def __init__(self, answers: Sequence[Tuple[int, bytes]], repeat_last: bool = False):
        self.answers: List[Tuple[int, bytes]] = list(answers)
        self.repeat_last = repeat_last
        self.sent: List[Any] = []

    def __call__(self, request: Any, **_: Any) -> botocore.awsrequest.AWSResponse:
        self.sent.append(request)
        status, body = self.answers[0] if self.repeat_last and len(self.answers) == 1 else self.answers.pop(0)
        return botocore.awsrequest.AWSResponse(request.url, status, {}, RawBody(body))

    def on(self, client: Any, service: str = "ec2") -> "Answers":
        client.meta.events.register(f"before-send.{service}", self)
        return self


def answered_session(answers: "Answers", max_attempts: int = 3, service: str = "ec2") -> AwsSession:
    """A session whose ``service`` client is answered by ``answers`` (nothing reaches the network:
    the endpoint is a closed loopback port), with botocore's own retries as configured."""
    aws = AwsSession(ConnectionSettings(region="us-east-1", access_key="testing", secret_key="testing",
                                        endpoint_url="http://127.0.0.1:9", max_attempts=max_attempts))
    answers.on(aws.client(service), service)
    return aws
