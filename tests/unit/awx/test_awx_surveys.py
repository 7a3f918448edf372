# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every shipped survey passes AWX's own rules for saving a survey and for launching a job
(ec2ha_testkit.awx_survey), and those rules refuse what AWX refuses."""

from __future__ import annotations

import copy
from typing import Any, Dict

import pytest
from ec2ha_testkit import awx_runner
from ec2ha_testkit.awx_survey import answer_errors, launch_extra_vars, survey_spec_errors

SURVEYED = [p for p in awx_runner.job_template_paths() if awx_runner.load(p).get("survey_enabled")]


def test_the_switchover_and_the_rejoin_have_surveys_the_build_out_none(job_templates):
    assert sorted(job_templates) == ["build_out", "rejoin", "switchover"]
    assert {name for name, jt in job_templates.items() if jt["survey_enabled"]} == {"rejoin", "switchover"}
    assert "survey_spec" not in job_templates["build_out"]


@pytest.mark.parametrize("path", SURVEYED, ids=lambda p: p.stem)
def test_a_shipped_survey_is_one_awx_saves(path):
    assert survey_spec_errors(awx_runner.load(path)["survey_spec"]) == []


@pytest.mark.parametrize("path", SURVEYED, ids=lambda p: p.stem)
def test_every_default_passes_its_own_question(path):
    """A default its question refuses is silently dropped by AWX at launch: none of ours is, but
    the empty default of a required node name, which makes AWX ask for one."""
    for question in awx_runner.load(path)["survey_spec"]["spec"]:
        errors = answer_errors(question, {question["variable"]: question["default"]})
        if question["type"] == "text" and question["required"]:
            assert question["default"] == "" and "too small" in " ".join(errors), question
        else:
            assert errors == [], question


def switchover_spec() -> Dict[str, Any]:
    return copy.deepcopy(awx_runner.load(awx_runner.AWX_DIR / "job_templates" / "switchover.yml")["survey_spec"])


def broken(change) -> Dict[str, Any]:
    spec = switchover_spec()
    change(spec)
    return spec


def question(spec: Dict[str, Any], variable: str) -> Dict[str, Any]:
    return next(q for q in spec["spec"] if q["variable"] == variable)


@pytest.mark.parametrize("change, words", [
    (lambda s: s["spec"][1].update(variable=s["spec"][0]["variable"]), "'ec2ha_switchover_target' duplicated"),
    (lambda s: question(s, "ec2ha_switchover_force").update(default="yes"), "must be answered from the choices"),
    (lambda s: question(s, "ec2ha_switchover_force").update(default="false\ntrue"), "only have one default"),
    (lambda s: question(s, "ec2ha_switchover_force").pop("choices"), "must specify choices"),
    (lambda s: question(s, "ec2ha_switchover_force").update(type="boolean"), "'boolean' in survey question 2 is not one of"),
    (lambda s: question(s, "ec2ha_switchover_target").pop("question_name"), "'question_name' missing from survey question 0"),
    (lambda s: question(s, "ec2ha_switchover_target").pop("required"), "'required' missing"),
    (lambda s: question(s, "ec2ha_switchover_target").update(required="yes"), "'required' in survey question 0 expected to be boolean"),
    (lambda s: question(s, "ec2ha_switchover_max_lag_bytes").update(default="0"), "expected to be integer"),
    (lambda s: question(s, "ec2ha_switchover_max_lag_bytes").update(min="0"), "min limit in survey question 1 expected to be integer"),
    (lambda s: question(s, "ec2ha_switchover_target").update(default="$encrypted$"), "reserved keyword for password"),
    (lambda s: question(s, "ec2ha_switchover_target").update(type="password", default="$encrypted$"),
     "may not be used for new default"),
    (lambda s: s.pop("description"), "Field 'description' is missing"),
    (lambda s: s.update(spec=[]), "doesn't contain any items"),
    (lambda s: s.update(spec={"q": 1}), "Expected list of items for field 'spec'"),
])
def test_awx_rules_refuse_a_broken_survey(change, words):
    errors = survey_spec_errors(broken(change))
    assert any(words in e for e in errors), errors


def test_choices_may_be_one_string_of_lines_but_a_default_must_be_a_whole_line():
    spec = broken(lambda s: question(s, "ec2ha_switchover_force").update(choices="false\n\ntrue\n"))
    assert survey_spec_errors(spec) == []
    question(spec, "ec2ha_switchover_force")["default"] = "fal"
    assert survey_spec_errors(spec), "a substring of a choice is no choice"


def test_a_stored_password_default_may_stay_encrypted():
    old = broken(lambda s: question(s, "ec2ha_switchover_target").update(type="password", default="$encrypted$abc"))
    assert survey_spec_errors(old, old_spec=old) == []


@pytest.mark.parametrize("answers, words", [
    ({}, "'ec2ha_switchover_target' value missing"),
    ({"ec2ha_switchover_target": ""}, "too small"),
    ({"ec2ha_switchover_target": "n" * 257}, "too large"),
    ({"ec2ha_switchover_target": 2}, "expected to be a string"),
    ({"ec2ha_switchover_target": "pg2", "ec2ha_switchover_max_lag_bytes": -1}, "too small (must be at least 0)"),
    ({"ec2ha_switchover_target": "pg2", "ec2ha_switchover_max_lag_bytes": "0"}, "expected to be an integer"),
    ({"ec2ha_switchover_target": "pg2", "ec2ha_switchover_max_lag_bytes": True}, "expected to be an integer"),
    ({"ec2ha_switchover_target": "pg2", "ec2ha_switchover_force": True}, "expected to be one of ['false', 'true']"),
    ({"ec2ha_switchover_target": "pg2", "ec2ha_switchover_tiemout": 5}, "Variables ec2ha_switchover_tiemout are not allowed on launch"),
])
def test_awx_refuses_a_launch_the_survey_does_not_allow(job_templates, answers, words):
    errors = launch_extra_vars(job_templates["switchover"], answers).errors
    assert any(words in e for e in errors), errors


def test_a_launch_gets_the_survey_defaults_under_the_answers(job_templates):
    launch = launch_extra_vars(job_templates["switchover"], {"ec2ha_switchover_target": "pg2"})
    assert launch.errors == []
    assert launch.extra_vars == {"ec2ha_switchover_target": "pg2", "ec2ha_switchover_max_lag_bytes": 0,
                                 "ec2ha_switchover_force": "false"}
    forced = launch_extra_vars(job_templates["switchover"], {"ec2ha_switchover_target": "pg2", "ec2ha_switchover_force": "true"})
    assert forced.errors == [] and forced.extra_vars["ec2ha_switchover_force"] == "true"


def test_the_build_out_takes_no_variable_on_launch(job_templates):
    assert launch_extra_vars(job_templates["build_out"], {}).errors == []
    assert "not allowed on launch" in " ".join(launch_extra_vars(job_templates["build_out"], {"ec2ha_lab": True}).errors)
