"""The cluster pair that the tests of this package share: built once by playbooks/site.yml and
terminated after the package's last test (the lab removes the hosts), so the lab is left as it
was found. Each module starts from a healthy pair: `healthy_pair` rejoins a node an earlier
module left fenced, and waits until the standby streams in sync.
"""

from __future__ import annotations

import os

import pytest
from ec2ha_testkit import awx_runner

from lab.pair import cluster, health


@pytest.fixture(scope="package")
def pair(lab_session):
    settings = health.ensure_cluster("test-site-1.log")
    yield settings
    ids = [i["InstanceId"] for i in cluster.node_instances(settings).values()]
    if ids:
        settings.client("ec2").terminate_instances(InstanceIds=ids)


@pytest.fixture(scope="module")
def healthy_pair(pair):
    """The pair with one primary and a standby in sync; a node left out by an earlier module
    (fenced, powered off) is rejoined first."""
    health.make_whole(pair, cleanup=False)
    return pair


@pytest.fixture
def as_awx(pair, tmp_path, monkeypatch):
    """run(template, extravars) -> RunnerResult: a job template of extensions/awx/job_templates
    through ansible-runner, as AWX runs it, with the ec2ha_aws credential holding the lab's AWS
    access and the pair's inventory as AWX holds it (awx_runner.awx_inventory); none of this
    process's AWS_* variables reach the job."""
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    info = pair.info
    aws = {"access_key_id": info["aws_access_key_id"], "secret_access_key": info["aws_secret_access_key"],
           "region": info["region"], "endpoint_url": info["endpoint_url"]}

    def run(template: str, extravars: dict) -> awx_runner.RunnerResult:
        result = awx_runner.run_job_template(awx_runner.AWX_DIR / "job_templates" / template, extravars,
                                             credential_inputs={"ec2ha_aws": aws},
                                             inventory=awx_runner.awx_inventory(pair.inventory),
                                             workdir=tmp_path, timeout=1500)
        print(f"\nAWX {template}: rc {result.rc}, status {result.status}")
        return result
    return run
