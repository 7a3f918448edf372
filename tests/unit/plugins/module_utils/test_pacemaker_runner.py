# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pacemaker.runner bounds every command and fails in one sentence; pacemaker.state waits for a
DC through crm_mon's XML, bounded, under a fake clock."""

from __future__ import annotations

from typing import List

import pytest

from ansible_collections.ec2ha.cluster.plugins.module_utils.pacemaker.runner import Completed, PacemakerError, Runner
from ansible_collections.ec2ha.cluster.plugins.module_utils.pacemaker.state import dc_name, wait_for_dc
from ec2ha_testkit.clock import FakeClock

NO_DC = '<pacemaker-result><summary><current_dc present="false"/></summary></pacemaker-result>'
DC = '<pacemaker-result><summary><current_dc present="true" name="alpha" id="1"/></summary></pacemaker-result>'


def test_a_command_that_outlives_its_bound_fails_in_one_sentence():
    with pytest.raises(PacemakerError, match=r"^sleep 5 did not answer within 0.2 s\.$"):
        Runner(timeout=0.2).run(["sleep", "5"])


def test_an_unexpected_exit_code_names_the_command_and_its_first_error_line():
    with pytest.raises(PacemakerError, match=r"^sh -c echo boom >&2; exit 3 failed with exit code 3: boom$"):
        Runner().run(["sh", "-c", "echo boom >&2; exit 3"])
    assert Runner().run(["sh", "-c", "exit 1"], ok=(0, 1)).rc == 1


def test_a_missing_tool_names_its_package():
    with pytest.raises(PacemakerError, match="not-a-pacemaker-tool is not installed"):
        Runner().run(["not-a-pacemaker-tool"])


def test_cib_file_points_every_command_at_a_file():
    assert Runner(cib_file="/tmp/x.xml", env={"PATH": "/usr/bin:/bin"}).run(["sh", "-c", "echo $CIB_file"]).stdout == "/tmp/x.xml\n"


class Answers(Runner):
    """crm_mon answering in turn: an error (the CIB not up yet), then the XML given."""

    def __init__(self, answers: List[object]) -> None:
        super().__init__()
        self.answers = list(answers)

    def run(self, argv, ok=(0,), stdin=None):
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return Completed(tuple(argv), 0, answer, "")


def test_dc_name_reads_crm_mon_xml():
    assert dc_name(DC) == "alpha"
    assert dc_name(NO_DC) is None
    assert dc_name("Could not connect to the CIB") is None


def test_wait_for_dc_polls_until_a_dc_is_elected():
    clock = FakeClock()
    runner = Answers([PacemakerError("crm_mon failed with exit code 102: Not connected."), NO_DC, DC])
    assert wait_for_dc(runner, timeout=30, interval=2, clock=clock, sleep=clock.sleep) == "alpha"
    assert clock.slept == [2, 2]


def test_wait_for_dc_gives_up_in_time_with_the_last_answer():
    clock = FakeClock()
    with pytest.raises(PacemakerError, match=r"did not elect a DC within 10 s \(no DC is elected yet\)\.$"):
        wait_for_dc(Answers([NO_DC]), timeout=10, interval=2, clock=clock, sleep=clock.sleep)
    assert sum(clock.slept) <= 10
