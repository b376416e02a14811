"""Failure injection: which jobs fail is a pure, reproducible function of seed and salt."""

from __future__ import annotations

import argparse

import pytest

from prodagent.payload import faults


def test_draw_is_deterministic_and_close_to_the_rate() -> None:
    first = [faults.draw(seed, "0", 0.3) for seed in range(1, 2001)]
    again = [faults.draw(seed, "0", 0.3) for seed in range(1, 2001)]
    assert first == again
    assert 0.25 < sum(first) / len(first) < 0.35


def test_extreme_rates() -> None:
    assert not any(faults.draw(seed, "", 0.0) for seed in range(1, 200))
    assert all(faults.draw(seed, "", 1.0) for seed in range(1, 200))


def test_a_new_salt_draws_again_so_a_retry_can_succeed() -> None:
    retry0 = {s for s in range(1, 500) if faults.draw(s, "0", 0.5)}
    retry1 = {s for s in range(1, 500) if faults.draw(s, "1", 0.5)}
    assert retry0 - retry1, "some job that failed on try 0 must succeed on try 1"
    assert retry0 != retry1


def parse(argv: list[str], seed: int = 5) -> faults.FailurePlan:
    parser = argparse.ArgumentParser()
    faults.add_arguments(parser)
    return faults.plan_from_args(parser, parser.parse_args(argv), seed)


def test_environment_supplies_the_knobs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYLOAD_FAIL_MODE", "fatal")
    monkeypatch.setenv("PAYLOAD_FAIL_CODE", "71")
    monkeypatch.setenv("PAYLOAD_FAIL_AFTER", "30")
    plan = parse([])
    assert (plan.mode, plan.code, plan.after) == ("fatal", 71, 30)
    assert parse(["--fail-code", "72"]).code == 72  # an argument beats the environment


def test_no_mode_means_no_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PAYLOAD_FAIL_MODE", raising=False)
    assert parse(["--fail-rate", "1"]).mode is None
    assert parse(["--fail-mode", "exit", "--fail-rate", "0"]).mode is None


@pytest.mark.parametrize(
    "argv",
    [["--fail-mode", "exit", "--fail-rate", "2"], ["--fail-mode", "exit", "--fail-code", "0"]],
)
def test_bad_knobs_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse(argv)
    assert exc.value.code == 2


def test_bad_mode_from_the_environment_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYLOAD_FAIL_MODE", "explode")
    with pytest.raises(SystemExit) as exc:
        parse([])
    assert exc.value.code == 2
