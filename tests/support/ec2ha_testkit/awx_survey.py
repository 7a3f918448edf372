# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""AWX's survey rules, restated for the tests of extensions/awx/ (there is no AWX here).

Two moments of a survey, each following AWX's source (ansible/awx), in our own words:

- Saving a survey (POST .../job_templates/N/survey_spec/): ``survey_spec_errors`` follows
  ``JobTemplateSurveySpec._validate_spec_data`` in awx/api/views/__init__.py, with the question
  types and default types of ``SURVEY_TYPE_MAPPING`` in awx/main/constants.py.
- Launching a job (the answers, the defaults, the other extra vars): ``answer_errors`` follows
  ``SurveyJobTemplateMixin._survey_element_validation``, ``launch_extra_vars`` follows
  ``_accept_or_ignore_variables`` (which launch variables are accepted) and
  ``_update_unified_job_kwargs`` (the job's extra vars: the template's, then each survey default
  that passes its own question, then the launch's) in awx/main/models/mixins.py.

Where AWX stops at the first problem, these list every one; a spec AWX accepts gives an empty list.
One deliberate difference: for a multiple choice given as one newline-separated string, AWX checks
the default with ``in`` on that string (a substring test); here a default must be one whole line,
as the launch-time check compares it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

# SURVEY_TYPE_MAPPING: each question type and the Python type its default must have. bool is an
# int in Python, so AWX takes True as an integer default too; so does this.
QUESTION_TYPES: Dict[str, Tuple[type, ...]] = {
    "text": (str,),
    "textarea": (str,),
    "password": (str,),
    "multiplechoice": (str,),
    "multiselect": (str,),
    "integer": (int,),
    "float": (float, int),
}
# Every question must carry these, with these types.
REQUIRED_QUESTION_KEYS: Dict[str, type] = {"type": str, "question_name": str, "variable": str, "required": bool}
ENCRYPTED = "$encrypted$"


def choice_list(choices: Any) -> List[str]:
    """A question's choices as a list: AWX takes a list, or one string of newline-separated lines
    (blank lines dropped)."""
    if isinstance(choices, str):
        return [line for line in choices.splitlines() if line.strip()]
    return list(choices or [])


def _spec_shape_errors(spec: Any) -> List[str]:
    if not isinstance(spec, Mapping):
        return [f"the survey spec is a {type(spec).__name__}, not a mapping"]
    errors = []
    for field, kind, label in (("name", str, "string"), ("description", str, "string"), ("spec", list, "list of items")):
        if field not in spec:
            errors.append(f"Field '{field}' is missing from survey spec.")
        elif not isinstance(spec[field], kind):
            errors.append(f"Expected {label} for field '{field}', received {type(spec[field]).__name__} type.")
    if isinstance(spec.get("spec"), list) and not spec["spec"]:
        errors.append("'spec' doesn't contain any items.")
    return errors


def _default_errors(idx: int, question: Mapping[str, Any], old_question: Mapping[str, Any]) -> List[str]:
    qtype = question["type"]
    if "default" not in question:
        return []
    default = question["default"]
    errors = []
    # An empty string is every type's "no default".
    if default != "" and not isinstance(default, QUESTION_TYPES[qtype]):
        label = qtype if qtype in ("integer", "float") else "string"
        errors.append(f"Default value {default!r} in survey question {idx} expected to be {label}.")
    if isinstance(default, str) and default.startswith(ENCRYPTED):
        # $encrypted$ stands for a password default already stored; only a password can use it,
        # and only when the template's current survey has one for that variable.
        if qtype != "password":
            errors.append(f"$encrypted$ is a reserved keyword for password question defaults, "
                          f"survey question {idx} is type {qtype}.")
        elif not (isinstance(old_question.get("default"), str)
                  and (old_question["default"].startswith(ENCRYPTED) or old_question["default"] == "")):
            errors.append(f"$encrypted$ is a reserved keyword, may not be used for new default in position {idx}.")
    return errors


def _choice_errors(idx: int, question: Mapping[str, Any]) -> List[str]:
    qtype = question["type"]
    if qtype not in ("multiplechoice", "multiselect"):
        return []
    if "choices" not in question:
        return [f"Survey question {idx} of type {qtype} must specify choices."]
    choices = choice_list(question["choices"])
    if "default" not in question:
        return []
    default = question["default"]
    defaults = choice_list(default) if isinstance(default, str) else list(default)
    errors = []
    if qtype == "multiplechoice" and len(defaults) > 1:
        errors.append(f"Survey question {idx}: a multiple choice (single select) can only have one default value.")
    if any(item not in choices for item in defaults):
        errors.append(f"Survey question {idx}: the default must be answered from the choices listed ({choices}).")
    return errors


def survey_spec_errors(spec: Any, old_spec: Optional[Mapping[str, Any]] = None) -> List[str]:
    """Why AWX would refuse to save ``spec`` as a job template's survey (an empty list: it accepts
    it). ``old_spec`` is the survey the template has now (for ``$encrypted$`` password defaults)."""
    errors = _spec_shape_errors(spec)
    if errors:
        return errors
    old = {q.get("variable"): q for q in (old_spec or {}).get("spec", []) if isinstance(q, Mapping)}
    seen = set()
    for idx, question in enumerate(spec["spec"]):
        if not isinstance(question, Mapping):
            errors.append(f"Survey question {idx} is not a json object.")
            continue
        missing = [k for k in REQUIRED_QUESTION_KEYS if k not in question]
        if missing:
            errors.append(f"'{missing[0]}' missing from survey question {idx}")
            continue
        wrong = [k for k, kind in REQUIRED_QUESTION_KEYS.items() if not isinstance(question[k], kind)]
        if wrong:
            label = "boolean" if wrong[0] == "required" else "string"
            errors.append(f"'{wrong[0]}' in survey question {idx} expected to be {label}.")
            continue
        if question["variable"] in seen:
            errors.append(f"'variable' '{question['variable']}' duplicated in survey question {idx}.")
        seen.add(question["variable"])
        if question["type"] not in QUESTION_TYPES:
            errors.append(f"'{question['type']}' in survey question {idx} is not one of "
                          f"'{', '.join(QUESTION_TYPES)}' allowed question types.")
            continue
        errors += _default_errors(idx, question, old.get(question["variable"], {}))
        for key in ("min", "max"):
            if question.get(key) is not None and not isinstance(question[key], int):
                errors.append(f"The {key} limit in survey question {idx} expected to be integer.")
        errors += _choice_errors(idx, question)
    return errors


def _limit(question: Mapping[str, Any], key: str) -> Optional[Any]:
    value = question.get(key)
    return None if value in ("", None) else value


def _length_errors(question: Mapping[str, Any], value: str) -> List[str]:
    name, low, high = question["variable"], _limit(question, "min"), _limit(question, "max")
    errors = []
    if low is not None and len(value) < int(low):
        errors.append(f"'{name}' value {value} is too small (length is {len(value)} must be at least {low}).")
    if high is not None and len(value) > int(high):
        errors.append(f"'{name}' value {value} is too large (must be no more than {high}).")
    return errors


def _range_errors(question: Mapping[str, Any], value: Any, cast: type) -> List[str]:
    name, low, high = question["variable"], _limit(question, "min"), _limit(question, "max")
    errors = []
    if low is not None and value < cast(low):
        errors.append(f"'{name}' value {value} is too small (must be at least {low}).")
    if high is not None and value > cast(high):
        errors.append(f"'{name}' value {value} is too large (must be no more than {high}).")
    return errors


def answer_errors(question: Mapping[str, Any], answers: Mapping[str, Any], validate_required: bool = True) -> List[str]:
    """Why AWX would refuse the launch's ``answers`` for this one question (an empty list: fine)."""
    name, qtype = question["variable"], question["type"]
    if qtype == "password" and answers.get(name) == ENCRYPTED:
        # The stored default stands in; only a required question without one is missing.
        missing = question.get("default") is None and question["required"] and validate_required
        return [f"'{name}' value missing"] if missing else []
    if name not in answers:
        return [f"'{name}' value missing"] if question["required"] and validate_required else []
    value = answers[name]
    if qtype in ("text", "textarea", "password"):
        if not isinstance(value, str):
            return [f"Value {value} for '{name}' expected to be a string."]
        return _length_errors(question, value)
    if qtype == "integer":
        if isinstance(value, bool) or not isinstance(value, int):  # AWX compares the type exactly: True is no integer
            return [f"Value {value} for '{name}' expected to be an integer."]
        return _range_errors(question, value, int)
    if qtype == "float":
        if isinstance(value, bool) or not isinstance(value, (float, int)):
            return [f"Value {value} for '{name}' expected to be a numeric type."]
        return _range_errors(question, value, float)
    choices = choice_list(question.get("choices"))
    if qtype == "multiselect":
        if not isinstance(value, list):
            return [f"'{name}' value is expected to be a list."]
        return [f"Value {v} for '{name}' expected to be one of {choices}." for v in value if v not in choices]
    if qtype == "multiplechoice" and value not in choices:
        return [f"Value {value} for '{name}' expected to be one of {choices}."]
    return []


@dataclasses.dataclass
class Launch:
    """What AWX makes of a launch: the job's extra vars, and why it would refuse the launch."""

    extra_vars: Dict[str, Any]
    errors: List[str]


def launch_extra_vars(template: Mapping[str, Any], runtime: Optional[Mapping[str, Any]] = None) -> Launch:
    """The extra vars of a job launched from ``template`` (a job template as the files of
    extensions/awx/job_templates/ hold it) with ``runtime`` extra vars, and the errors for which
    AWX would refuse that launch: a survey answer its question refuses or a required one missing,
    a variable neither in the survey nor allowed by ask_variables_on_launch."""
    runtime = dict(runtime or {})
    survey = template.get("survey_spec") or {}
    questions = survey.get("spec", []) if template.get("survey_enabled") else []
    errors: List[str] = []
    leftover = dict(runtime)
    for question in questions:
        errors += answer_errors(question, runtime)
        leftover.pop(question["variable"], None)
    template_vars = dict(template.get("extra_vars") or {})
    if not template.get("ask_variables_on_launch"):
        # A variable the template already holds with the same value is no prompt.
        leftover = {k: v for k, v in leftover.items() if template_vars.get(k, object()) != v}
        if leftover:
            errors.append(f"Variables {', '.join(map(str, leftover))} are not allowed on launch. Check the "
                          "Prompt on Launch setting on the Job Template to include Extra Variables.")
    defaults = {q["variable"]: q["default"] for q in questions
                if q.get("default") is not None and not answer_errors(q, {q["variable"]: q["default"]})}
    return Launch(extra_vars={**template_vars, **defaults, **runtime}, errors=errors)


def survey_variables(template: Mapping[str, Any]) -> Sequence[str]:
    """The variables a template's survey sets."""
    return [q["variable"] for q in (template.get("survey_spec") or {}).get("spec", [])]
