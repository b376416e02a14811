"""The job spec and the error-code table: validation and round trips, no payload runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from prodagent.payload import codes
from prodagent.payload.jobspec import JobSpec, PythiaParams, read_spec, write_spec


def pythia_spec(**overrides: object) -> dict:
    spec = dict(
        job_id="j1",
        job_type="production",
        transformation="pythia",
        params={"process": "hardqcd", "pthatmin": 30},
        events=100,
        seed=42,
        run=3,
        first_event=201,
        output_path="out.root",
        fail={"mode": "exit", "rate": 0.5, "code": 70},
    )
    spec.update(overrides)
    return spec


def test_round_trip_through_a_job_directory(tmp_path: Path) -> None:
    spec = JobSpec(**pythia_spec())
    written = write_spec(tmp_path, spec)
    assert written == tmp_path / "job.json"
    assert read_spec(tmp_path) == spec
    params = spec.typed_params()
    assert isinstance(params, PythiaParams)
    assert (params.process, params.pthatmin, params.ecm) == ("hardqcd", 30, 13000.0)
    assert list(tmp_path.iterdir()) == [written]  # no temporary file left behind


@pytest.mark.parametrize(
    "overrides",
    [
        {"colour": "red"},  # unknown key
        {"events": None},  # a pythia job needs events
        {"output_path": None},
        {"params": {"process": "ttbar"}},
        {"params": {"tune": 14}},  # unknown param
        {"seed": 0},  # Pythia would pick a time-based seed
        {"fail": {"mode": "explode"}},
        {"transformation": "merge"},  # a merge needs inputs
        {"inputs": ["a.root"], "input_events": [1, 2]},
        {"transformation": "merge", "inputs": ["out.root"]},  # would overwrite its input
    ],
)
def test_invalid_specs_are_refused(overrides: dict) -> None:
    with pytest.raises(ValidationError):
        JobSpec(**pythia_spec(**overrides))


def test_read_spec_refuses_unknown_keys_in_the_file(tmp_path: Path) -> None:
    (tmp_path / "job.json").write_text(json.dumps({**pythia_spec(), "priority": 1}))
    with pytest.raises(ValueError, match="priority"):
        read_spec(tmp_path)


def test_expected_events_and_fail_salt() -> None:
    merge = JobSpec(
        job_id="m",
        job_type="merge",
        transformation="merge",
        inputs=["a.root", "b.root"],
        input_events=[10, 32],
        output_path="merged.root",
        retry=2,
        fail={"mode": "exit"},
    )
    assert merge.expected_events() == 42
    assert merge.fail_salt() == "2"  # no salt given: the retry number
    assert JobSpec(**pythia_spec(fail={"mode": "exit", "salt": "x"})).fail_salt() == "x"


def test_wrapper_exit_status_table() -> None:
    assert codes.wrapper_exit_status(0, None) == 0
    assert codes.wrapper_exit_status(70, 70) == 70
    assert codes.wrapper_exit_status(0, codes.MISSING_OUTPUT) == 82
    assert codes.wrapper_exit_status(137, codes.MEMORY_LIMIT) == 90
    statuses = list(codes.WRAPPER_EXIT_STATUS.values())
    assert len(set(statuses)) == len(statuses)
    assert all(1 <= s <= 255 for s in statuses)


def test_fail_modes_are_the_ones_faults_implements() -> None:
    from typing import get_args

    from prodagent.payload.faults import MODES
    from prodagent.payload.jobspec import FailMode

    assert sorted(get_args(FailMode)) == sorted(MODES)


@pytest.mark.parametrize(
    "overrides",
    [
        {"params": {"ecm": float("inf")}},  # Pythia cannot run at infinite energy
        {"params": {"pthatmin": float("nan")}},
        {"fail": {"mode": "exit", "message": "line\nbreak"}},  # becomes an env variable / argument
        {"fail": {"mode": "exit", "salt": "x" * 201}},
        {"transformation": "command", "params": {"argv": ["echo", ""]}},  # an empty argument
    ],
)
def test_values_a_child_cannot_take_are_refused(overrides: dict) -> None:
    with pytest.raises(ValidationError):
        JobSpec(**pythia_spec(**overrides))


def test_the_service_checks_parameters_with_the_jobspec_models() -> None:
    """One definition: the workflow's `pythia` parameters are the job spec's PythiaParams."""
    from prodrequest.spec import TRANSFORMATIONS

    assert issubclass(TRANSFORMATIONS["pythia"], PythiaParams)
    assert set(PythiaParams.model_fields) <= set(TRANSFORMATIONS["pythia"].model_fields)
