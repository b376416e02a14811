"""The web monitor in a real browser, against real processes: `prodmanager serve`, one agent's
daemons with the local executor running Pythia, Chromium driven by Playwright.

One small production (6 jobs of 100 events; job 1 fails once, job 2 hits a fatal error and is
paused for an operator) is watched on its page without reloading it; its failed attempt's log
is read; a request no agent can run explains why; a requester is refused another's request;
an operator aborts.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from prodagent.demo.stack import AgentProcesses, Manager, write_agent_config

pytestmark = pytest.mark.timeout(240)
JOBS = 6
PER_JOB = 100


def workflow(name: str, **extra: Any) -> dict[str, Any]:
    doc = {
        "kind": "montecarlo", "name": name,
        "payload": {"transformation": "pythia", "version": "8.317",
                    "parameters": {"process": "minbias", "ecm": 13000.0,
                                   "fail_plan": "1:exit,2:fatal"}},
        "events": {"total": JOBS * PER_JOB, "per_job": PER_JOB},
        "seeds": {"policy": "sequential", "base": 7},
        "output": {"dataset": f"/MinBias/{name}/GEN", "tier": "GEN"},
        "merge": {"enabled": False},
        "retry": {"max_retries": 2, "cooloff": "linear", "base_s": 1},
        "resources": {"memory_mb": 600, "time_s": 300},
    }
    doc.update(extra)
    return doc


class Stack:
    def __init__(self, root: Path) -> None:
        self.manager = Manager(root / "pm", f"sqlite:///{root / 'pm.db'}", lease_s=120)
        self.manager.start()
        config = write_agent_config(root / "agent.yaml", root / "agent", self.manager, slots=2)
        self.agent = AgentProcesses(config)
        self.url = self.manager.url

    def token(self, role: str, name: str) -> str:
        return self.manager.token(role, name)

    def close(self) -> None:
        self.agent.stop()
        self.manager.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    found = Stack(tmp_path_factory.mktemp("monitor"))
    try:
        found.agent.start()
        yield found
    finally:
        found.close()


def signed_in(browser: Any, stack: Stack, role: str, name: str) -> Any:
    """A page of a fresh browser context, signed in with a token of `role`."""
    page = browser.new_context().new_page()
    page.goto(stack.url + "/requests")
    assert page.url.endswith("/login")  # no session: the sign-in page
    page.fill("#token", stack.token(role, name))
    page.click("#sign-in")
    page.wait_for_url(re.compile(r"/requests$"))
    assert name in page.inner_text("#who")
    return page


def test_submit_watch_progress_and_read_a_failed_jobs_log(browser, stack, shot) -> None:
    page = signed_in(browser, stack, "requester", "alice")
    cookie = next(c for c in page.context.cookies() if c["name"] == "pm_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    # A document with an error: the validator names the field beside the input, before submit.
    bad = workflow("web-live")
    bad["events"]["per_job"] = 0
    page.goto(stack.url + "/submit")
    page.fill("#document", yaml.safe_dump(bad, sort_keys=False))
    page.click("#validate")
    error = page.locator('#field-errors [data-path="events.per_job"]')
    error.wait_for()
    said = error.inner_text()
    assert said.startswith("events.per_job") and "(got 0)" in said  # the field, and what was wrong
    shot(page, "field-error")

    # The good one is accepted; the browser lands on its page.
    page.fill("#document", yaml.safe_dump(workflow("web-live"), sort_keys=False))
    page.locator("#valid").wait_for()
    page.click("#submit")
    page.wait_for_url(re.compile(r"/requests/\d+$"))
    request_id = int(page.url.rsplit("/", 1)[1])
    page.evaluate("window.__notReloaded = true")
    first = int(page.inner_text("#events-produced"))

    # The progress bar advances while the page stays loaded (htmx swaps the live section).
    page.wait_for_function(
        f"() => Number(document.querySelector('#events-produced').textContent) >= {3 * PER_JOB}",
        timeout=150_000,
    )
    produced = float(page.get_attribute("#progress", "data-produced") or 0)
    assert produced >= 50.0 > first
    assert page.evaluate("window.__notReloaded") is True
    bar = page.locator("#progress .produced").evaluate("e => e.style.width")
    assert float(bar.rstrip("%")) == produced
    page.locator("#plot-events canvas").first.wait_for()  # uPlot drew the finished jobs
    shot(page, "progress")

    # Job 2 is paused for an operator: the page says so, with the numbers.
    page.locator('#why [data-code="jobs_paused"]').wait_for(timeout=120_000)
    assert "1 job(s) wait for an operator (1 paused)" in page.inner_text("#why")
    shot(page, "why-paused")
    # The owner resubmits it by its class; the agent learns it at its next report.
    page.on("dialog", lambda dialog: dialog.accept())
    page.click('button.resubmit[data-class="FatalError"]')
    page.wait_for_url(re.compile(rf"/requests/{request_id}$"))
    page.locator('#why [data-code="jobs_paused"]').wait_for(state="detached", timeout=60_000)

    # The failed attempt of job 1: its class and site in the grid, its log in the browser.
    page.goto(f"{stack.url}/jobs?request={request_id}&error_class=PayloadError")
    page.locator("#jobs a[href^='/jobs/']").first.click()
    page.wait_for_url(re.compile(r"/jobs/\d+$"))
    log = page.locator("pre.log").first
    assert "injected failure (exit)" in log.inner_text()
    assert "jobfailed" in page.inner_text("#transitions")
    shot(page, "failed-job-log")
    page.goto(f"{stack.url}/requests/{request_id}")
    grid = page.inner_text("#error-grid")
    assert "PayloadError" in grid and "FatalError" in grid


def test_why_not_done_when_no_agent_matches(browser, stack, shot) -> None:
    client = stack.manager.client("requester", "bob")
    spec = workflow("web-nowhere", sites={"whitelist": ["T0_NOWHERE"], "blacklist": []})
    request_id = client.submit(spec).request.id
    page = signed_in(browser, stack, "requester", "bob")
    page.goto(f"{stack.url}/requests/{request_id}")
    page.locator('#why [data-code="no_agent"]').wait_for()
    text = page.inner_text('#why [data-code="no_agent"]')
    assert "T0_NOWHERE" in text and "agent1" in text and "free" in text
    shot(page, "why-no-agent")


def test_requester_refused_on_anothers_request_operator_aborts(browser, stack, shot) -> None:
    client = stack.manager.client("requester", "carol")
    spec = workflow("web-abort", sites={"whitelist": ["T0_NOWHERE"], "blacklist": []})
    request_id = client.submit(spec).request.id

    # Another requester: the page is a 404, and a forged action changes nothing.
    page = signed_in(browser, stack, "requester", "alice")
    response = page.goto(f"{stack.url}/requests/{request_id}")
    assert response is not None and response.status == 404
    page.goto(stack.url + "/submit")
    csrf = page.get_attribute("input[name=csrf]", "value")
    answer = page.request.post(
        f"{stack.url}/requests/{request_id}/abort", form={"csrf": csrf or "", "reason": "mine"}
    )
    assert answer.status == 404
    assert client.get(request_id).state == "new"
    shot(page, "refused")

    # The operator aborts with the button, after confirming.
    ops = signed_in(browser, stack, "operator", "ops")
    ops.goto(f"{stack.url}/requests/{request_id}")
    ops.on("dialog", lambda dialog: dialog.accept())
    ops.fill("form[action$='/abort'] input[name=reason]", "wrong whitelist")
    ops.click("#action-abort")
    ops.wait_for_url(re.compile(rf"/requests/{request_id}$"))
    assert ops.inner_text("#state") == "aborted"
    assert "wrong whitelist" in ops.inner_text("#history")
    assert client.get(request_id).state == "aborted"
    shot(ops, "aborted")

    # The agent pushed its components' status: the operator sees them.
    ops.goto(f"{stack.url}/agents")
    assert "ProdMgrInterface" in ops.inner_text("table.components")
    shot(ops, "agents")
