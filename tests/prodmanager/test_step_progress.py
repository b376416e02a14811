"""Per-step progress of a multi-step request: the step outcomes agents push with each attempt's
end show in the request's detail and in `prodrequest show`."""

from __future__ import annotations

import time

import yaml
from click.testing import CliRunner

from prodmanager.client import ProdManagerClient
from prodmanager.models import JobEvent, StepOutcome
from prodrequest.cli import main as prodrequest_cli
from tests.prodmanager.conftest import WORKFLOWS, Server


def test_step_outcomes_pushed_by_agents_show_per_step(server: Server) -> None:
    doc = yaml.safe_load((WORKFLOWS / "minbias_demo.yaml").read_text())
    doc["name"] = "steps-progress"
    doc["output"] = {"dataset": "/Steps/reco-v1/MDST", "tier": "MDST"}
    doc["steps"] = [{"name": "reco", "transformation": "reconstruct", "version": "1"}]
    owner = ProdManagerClient(server.url, server.env.tokens["alice"])
    request_id = owner.submit(yaml.safe_dump(doc).encode()).request.id
    agent = ProdManagerClient(server.url, server.env.tokens["agent1"])
    agent.register_agent("agent1", sites=["T2_XY"], capacity=2)
    held = agent.acquire("agent1", jobs=1, lease_seconds=300)[0]
    now = time.time()
    failed = [StepOutcome(name="main", status="success"), StepOutcome(name="reco", status="failed")]
    retried = [StepOutcome(name="main", status="success", reused=True), StepOutcome(name="reco", status="success")]
    agent.report_jobs("agent1", [
        JobEvent(seq=1, allocation_id=held.allocation_id, job_name="s-1", retry=0, from_state="running",
                 to_state="jobfailed", at=now, steps=failed),
        JobEvent(seq=2, allocation_id=held.allocation_id, job_name="s-1", retry=1, from_state="running",
                 to_state="success", at=now, steps=retried),
    ])
    assert owner.get(request_id).steps == {"main": {"ran": 1, "reused": 1, "failed": 0},
                                           "reco": {"ran": 1, "reused": 0, "failed": 1}}
    shown = CliRunner().invoke(prodrequest_cli, ["--url", server.url, "--token", server.env.tokens["alice"],
                                                 "show", str(request_id)])
    assert "step reco" in shown.output and "failed 1, ran 1" in shown.output, shown.output
