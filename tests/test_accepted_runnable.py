"""Accepted means runnable: every workflow the service accepts builds its jobs in the agent.

Each accepted example under etc/workflows/ and each workflow document the tests, benchmarks and
demo submit goes through the service (validation, submit and acquire on a real ProdManager
database), then through the agent's JobCreator on a real agent database, as ProdMgrInterface
records and announces allocations: every allocation must become `active` with its jobs, each
with a job.json the wrapper reads and turns into a command line. The refusals at the door that
keep it so are tested here too, and a poison allocation fails alone.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from prodagent.components.job_creator import JobCreator
from prodagent.config import config_from_dict
from prodagent.db.schema import pa_allocation, pa_job
from prodagent.jobs.layout import Layout
from prodagent.messaging.service import MessageService
from prodagent.payload.jobspec import read_spec
from prodagent.payload.transformations import build_argv
from prodagent.runtime.component import Context
from prodagent.runtime.runner import open_service, wait_for_database
from prodmanager.auth import Principal
from prodmanager.db import migrate
from prodmanager.db.engine import Database
from prodmanager.models import AcquireRequest, AgentRegistration, Allocation, Role
from prodmanager.pull_service import PullService
from prodmanager.request_service import RequestService
from prodrequest.loader import WorkflowInvalid, load_workflow, validate_workflow
from prodrequest.spec import MonteCarloWorkflow

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "etc" / "workflows").glob("*.yaml"))
#: examples the service refuses on purpose, and the field it names
REFUSED_EXAMPLES: dict[str, str] = {}
AGENT = "ar"


# -- the documents -----------------------------------------------------------------------------

def submitted_documents() -> list[tuple[str, dict[str, Any]]]:
    """Every accepted workflow document the tests, benchmarks and demo submit."""
    from bench.agent_scale import workflow as scale_workflow
    from prodagent.demo.__main__ import DEFAULT_WORKFLOW, FAIL_PLAN
    from prodagent.demo.__main__ import load_workflow as demo_workflow
    from tests.components.merge_env import workflow as merge_workflow
    from tests.e2e.test_production import workflow as e2e_workflow
    from tests.prodmanager.conftest import mc_workflow

    return [
        ("mc_workflow", mc_workflow("docs", 300, 100)),
        ("mc_workflow_seeds", mc_workflow("carry", 1050, 100, seeds={"policy": "sequential", "base": 500},
                                          run_number=77)),
        ("mc_workflow_run_lumi", mc_workflow("lumi", 300, 100, seeds={"policy": "run_lumi"}, run_number=5)),
        ("mc_workflow_sites", mc_workflow("cern_only", 200, 100, sites={"whitelist": ["CERN"]})),
        ("mc_workflow_whole", mc_workflow("bound", 100, 100)),
        ("merge_env", merge_workflow()),
        ("e2e", e2e_workflow("e2e")),
        ("e2e_kills", e2e_workflow("e2e-kills", fail_plan="1:exit,3:nooutput,5:memory", jobs=16)),
        ("e2e_abort", e2e_workflow("e2e-abort", fail_plan="")),
        ("agent_scale", scale_workflow("scale", 12, (2, 4))),
        ("bench_allocation", {"kind": "montecarlo", "name": "bench",
                              "payload": {"transformation": "pythia", "version": "8.317"},
                              "events": {"total": 50, "per_job": 10},
                              "output": {"dataset": "/Bench/bench-v1/GEN", "tier": "GEN"}}),
        ("demo", demo_workflow(DEFAULT_WORKFLOW, FAIL_PLAN)),
        ("stepchain", {"kind": "montecarlo", "name": "gen_reco",
                       "payload": {"transformation": "pythia", "version": "8.317"},
                       "steps": [{"name": "reco", "transformation": "reconstruct", "version": "1",
                                  "parameters": {"radius": 0.6, "fail_plan": "1:exit"}}],
                       "events": {"total": 40, "per_job": 10},
                       "output": {"dataset": "/Steps/gen-reco-v1/MDST", "tier": "MDST"}}),
        ("command", {"kind": "montecarlo", "name": "cmd",
                     "payload": {"command": ["sh", "-c", "echo hi"], "version": "1",
                                 "parameters": {"fail_plan": [{"job": 1, "mode": "exit", "attempts": 2}]}},
                     "events": {"total": 30, "per_job": 10},
                     "output": {"dataset": "/Cmd/cmd-v1/GEN", "tier": "GEN"}}),
    ]


def accepted_documents() -> list[tuple[str, dict[str, Any]]]:
    examples = [(p.name, yaml.safe_load(p.read_text())) for p in EXAMPLES if p.name not in REFUSED_EXAMPLES]
    return examples + submitted_documents()


DOCUMENTS = accepted_documents()


# -- ProdManager and the agent, on real databases ------------------------------------------------

@dataclass
class Manager:
    db: Database
    requests: RequestService
    pull: PullService

    def lease(self, doc: dict[str, Any]) -> list[Allocation]:
        """Submit `doc` as a requester would (an operator: a `command` payload), and lease all
        of its allocations."""
        role = Role.OPERATOR if "command" in doc["payload"] else Role.REQUESTER
        self.requests.submit(Principal("alice", role), validate_workflow(doc))
        agent = Principal("agent-token", Role.AGENT)
        out: list[Allocation] = []
        while batch := self.pull.acquire(agent, AGENT, AcquireRequest(jobs=100)).allocations:
            out += batch
        return out


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[Manager]:
    db = Database(f"sqlite:///{tmp_path / 'pm.db'}")
    migrate.upgrade(db.engine)
    pull = PullService(db)
    pull.register(Principal("agent-token", Role.AGENT), AgentRegistration(name=AGENT, capacity=10_000, sites=["CERN"]))
    yield Manager(db, RequestService(db), pull)
    db.dispose()


class Agent:
    """An agent's database and its JobCreator, driven directly (no processes)."""

    def __init__(self, tmp_path: Path, db_url: str) -> None:
        self.config = config_from_dict({
            "agent": {"name": AGENT, "workdir": str(tmp_path / "agent")},
            "database": {"url": db_url, "connect_retries": 10, "retry_wait_s": 0.5},
            "components": {"enabled": ["JobCreator"]},
        })
        wait_for_database(self.config)
        self.service: MessageService = open_service(self.config)
        self.creator = JobCreator(self.config, self.service)
        self.creator.setup()
        self.layout = Layout(self.config)

    def close(self) -> None:
        self.creator.teardown()
        self.service.engine.dispose()

    def tx(self, work: Any) -> Any:
        return self.service.tx.run(work)

    def record(self, allocations: list[Allocation], workflow_text: dict[int, str] | None = None) -> list[str]:
        """Record leased allocations as ProdMgrInterface does (the spec as JSON text); a request's
        text may be replaced, as a document stored by an older, laxer service would be."""
        now = time.time()
        rows = [{
            "id": f"{a.allocation_id}.{a.lease_epoch}", "agent": AGENT, "request_id": str(a.request_id),
            "request_name": a.request_name, "lease_token": a.lease_token, "lease_expires_at": a.lease_expires,
            "workflow": (workflow_text or {}).get(a.request_id) or json.dumps(a.spec),
            "first_event": a.first_event, "n_events": a.n_events, "n_jobs": a.n_jobs, "run": a.run_number,
            "seed": a.seed, "job_index": a.job_index, "input_files": json.dumps([f.model_dump() for f in a.input_files]),
            "state": "acquired", "acquired_at": now, "updated_at": now,
        } for a in allocations]
        self.tx(lambda conn: conn.execute(pa_allocation.insert(), rows))
        return [r["id"] for r in rows]

    def create(self, allocation_ids: list[str]) -> list[Any]:
        """JobCreator's AllocationAcquired handler in one transaction; what it publishes."""
        def work(conn: sa.Connection) -> list[Any]:
            ctx = Context(conn)
            self.creator.on_allocation(ctx, {"allocation_ids": allocation_ids})
            return ctx.outbox
        return self.tx(work)

    def allocations(self) -> dict[str, Any]:
        return {r.id: r for r in self.tx(lambda conn: list(conn.execute(sa.select(pa_allocation))))}

    def jobs(self) -> list[Any]:
        return self.tx(lambda conn: list(conn.execute(sa.select(pa_job).order_by(pa_job.c.id))))


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    made = Agent(tmp_path, f"sqlite:///{tmp_path / 'agent.db'}")
    yield made
    made.close()


# -- every accepted document builds ---------------------------------------------------------------

def test_examples_are_accepted_or_refused_on_purpose() -> None:
    refused = {}
    for path in EXAMPLES:
        try:
            load_workflow(path.read_bytes())
        except WorkflowInvalid as exc:
            refused[path.name] = {e.path for e in exc.errors}
    assert set(refused) == set(REFUSED_EXAMPLES)
    for name, field in REFUSED_EXAMPLES.items():
        assert field in refused[name], refused[name]
    assert len(DOCUMENTS) >= len(EXAMPLES) - len(REFUSED_EXAMPLES) + 10


@pytest.mark.parametrize(("name", "doc"), DOCUMENTS, ids=[d[0] for d in DOCUMENTS])
def test_every_accepted_document_builds_its_jobs(name: str, doc: dict[str, Any], manager: Manager,
                                                 agent: Agent) -> None:
    workflow = validate_workflow(doc)
    leased = manager.lease(doc)
    assert len(leased) == workflow.jobs
    ids = agent.record(leased)
    outbox = agent.create(ids)

    allocations = agent.allocations()
    assert {allocations[i].state for i in ids} == {"active"}, [allocations[i].reason for i in ids]
    jobs = agent.jobs()
    if isinstance(workflow, MonteCarloWorkflow):
        per_job = workflow.events.per_job
        assert len(jobs) == sum(math.ceil(a.n_events / per_job) for a in leased)
    else:  # one job per group of files, over exactly those files
        assert len(jobs) == len(leased)
        files = {str(a.job_index): [f.lfn for f in a.input_files] for a in leased}
        for job in jobs:
            spec = read_spec(Layout.attempt_dir(job.workdir, 0))
            assert spec.inputs == files[str(job.job_index)]
    assert [m.payload for m in outbox if m.msg_type == "JobCreated"] == [{"job_ids": [j.id for j in jobs]}]
    knobs = workflow.payload.typed_parameters
    for job in jobs:
        spec = read_spec(Layout.attempt_dir(job.workdir, 0))  # the wrapper's own reading
        assert (spec.job_id, spec.events, spec.seed, spec.run) == (job.name, job.n_events, job.seed, job.run)
        assert spec.memory_mb == workflow.resources.memory_mb
        assert build_argv(spec)  # the wrapper can make the command line
        planned = {item.job: item.mode for item in knobs.fail_plan}
        if job.job_index in planned:
            assert spec.fail is not None and spec.fail.mode == planned[job.job_index]
        else:
            assert spec.fail == knobs.fail
    for job in jobs:  # each further step in the spec, with its own parameters and failures
        steps = read_spec(Layout.attempt_dir(job.workdir, 0)).steps
        assert [(s.name, s.transformation) for s in steps] == [(s.name, s.transformation) for s in workflow.steps]
    if workflow.steps:
        assert [read_spec(Layout.attempt_dir(j.workdir, 0)).steps[0].fail is not None for j in jobs] == [
            j.job_index == 1 for j in jobs]
    if workflow.payload.command is not None:
        assert {read_spec(Layout.attempt_dir(j.workdir, 0)).transformation for j in jobs} == {"command"}


# -- refusals at the door -------------------------------------------------------------------------

GOOD = """\
kind: montecarlo
name: door_check
payload:
  transformation: pythia
  version: "8.317"
  parameters: {process: minbias, ecm: 13000.0}
events: {total: 1000, per_job: 100}
output: {dataset: /MinBias/door-v1/GEN, tier: GEN}
"""


def refusal(text: str, content_type: str | None = None) -> dict[str, str]:
    with pytest.raises(WorkflowInvalid) as info:
        load_workflow(text.encode(), content_type)
    return {e.path: e.message for e in info.value.errors}


def test_the_good_document_is_accepted() -> None:
    assert load_workflow(GOOD.encode()).payload.transformation_params()["ecm"] == 13000.0


@pytest.mark.parametrize(("old", "new", "path", "words"), [
    # a scalar where the failure plan needs items
    ("ecm: 13000.0}", "ecm: 13000.0, fail_plan: 3}", "payload.parameters.fail_plan", "valid list"),
    ("ecm: 13000.0}", "ecm: 13000.0, fail_plan: '3:explode'}", "payload.parameters.fail_plan[0].mode", "'exit'"),
    ("ecm: 13000.0}", "ecm: 13000.0, fail_plan: '10:exit'}", "payload.parameters.fail_plan[0].job", "beyond"),
    ("ecm: 13000.0}", "ecm: 13000.0, fail_plan: '1:exit,1:memory'}", "payload.parameters.fail_plan", "more than once"),
    ("ecm: 13000.0}", "ecm: 13000.0, fail_plan: 'one:exit'}", "payload.parameters.fail_plan", "JOB:MODE"),
    ("ecm: 13000.0}", "ecm: 13000.0, fail: {mode: exit, rate: 2}}", "payload.parameters.fail.rate", "less than"),
    ("ecm: 13000.0}", "ecm: 13000.0, merge_drop_events: -1}", "payload.parameters.merge_drop_events", "greater"),
    # NaN and infinities, alone or inside a list or a mapping
    ("ecm: 13000.0}", "ecm: 13000.0, tune: [1.0, .nan]}", "payload.parameters", "nan"),
    ("ecm: 13000.0}", "ecm: .inf}", "payload.parameters", "inf"),
    ("ecm: 13000.0}", "ecm: 13000.0, weights: {a: .nan}}", "payload.parameters", "nan"),
    # parameters the transformation's own model refuses
    ("ecm: 13000.0}", "ecm: -5.0}", "payload.parameters.ecm", "greater than 0"),
    ("process: minbias", "process: ttbar", "payload.parameters.process", "'hardqcd'"),
    ("ecm: 13000.0}", "ecm: '13000'}", "payload.parameters.ecm", "valid number"),
    ("ecm: 13000.0}", "ecm: 13000.0, chunk: 0}", "payload.parameters.chunk", "greater than or equal to 1"),
    ("ecm: 13000.0}", "ecm: 13000.0, tune: 14}", "payload.parameters.tune", "allowed parameters: chunk, ecm"),
    # an unknown transformation
    ("transformation: pythia", "transformation: reco", "payload.transformation", "unknown transformation"),
    # per_job above total
    ("per_job: 100}", "per_job: 5000}", "events.per_job", "larger than total"),
])
def test_refused_at_the_door_naming_the_field(old: str, new: str, path: str, words: str) -> None:
    assert old in GOOD
    errors = refusal(GOOD.replace(old, new))
    matching = [p for p in errors if p.startswith(path)]
    assert matching, errors
    assert any(words.lower() in errors[p].lower() for p in matching), errors


def test_nan_in_json_is_refused() -> None:
    doc = yaml.safe_load(GOOD)
    text = json.dumps(doc).replace('"ecm": 13000.0', '"ecm": 13000.0, "tune": [1.0, NaN]')
    assert "NaN" in text
    errors = refusal(text, "application/json")
    assert any(p.startswith("payload.parameters") for p in errors), errors


def test_command_payloads_take_only_the_test_knobs() -> None:
    doc = GOOD.replace("transformation: pythia", "command: [sh, -c, 'true']")
    errors = refusal(doc)
    assert "unknown parameter" in errors["payload.parameters.process"]
    assert "allowed parameters: fail, fail_plan, merge_drop_events" in errors["payload.parameters.process"]
    ok = doc.replace("parameters: {process: minbias, ecm: 13000.0}", "parameters: {fail_plan: '2:segv:3'}")
    item = load_workflow(ok.encode()).payload.typed_parameters.fail_plan[0]
    assert (item.job, item.mode, item.attempts) == (2, "segv", 3)


def test_processing_needs_a_transformation_that_reads_input() -> None:
    text = (ROOT / "etc" / "workflows" / "reprocess_files.yaml").read_text()
    errors = refusal(text.replace("transformation: reconstruct", "transformation: pythia").replace(
        "  parameters:\n    radius: 0.4\n", ""))
    assert list(errors) == ["payload.transformation"]
    assert "reads no input files" in errors["payload.transformation"]


# -- a poison allocation fails alone --------------------------------------------------------------

def poisoned(text: str, edit: Any) -> str:
    spec = json.loads(text)
    edit(spec)
    return json.dumps(spec)


POISONS = {
    # documents an older, laxer service accepted (and stored, NaN as null)
    "fail_plan_scalar": (lambda s: s["payload"]["parameters"].update(fail_plan=3), "payload.parameters.fail_plan"),
    "null_in_list": (lambda s: s["payload"]["parameters"].update(tune=[1.0, None]), "payload.parameters"),
    "pythia_refuses": (lambda s: s["payload"]["parameters"].update(ecm=-1.0), "payload.parameters.ecm"),
    "processing": (lambda s: s.update(kind="processing", input={"files_per_job": 1}), "events"),
}


@pytest.mark.parametrize("poison", sorted(POISONS))
def test_a_poison_workflow_fails_alone(poison: str, manager: Manager, agent: Agent) -> None:
    from tests.prodmanager.conftest import mc_workflow

    edit, field = POISONS[poison]
    leased = []
    for name in ("first", "poison", "last"):
        leased += manager.lease(mc_workflow(name, 200, 100))
    poison_request = next(a.request_id for a in leased if a.request_name == "poison")
    text = {poison_request: poisoned(json.dumps(next(a for a in leased if a.request_id == poison_request).spec), edit)}
    ids = agent.record(leased, text)
    outbox = agent.create(ids)

    allocations = agent.allocations()
    bad = sorted(i for i in ids if allocations[i].request_id == str(poison_request))
    good = sorted(set(ids) - set(bad))
    assert len(bad) == 2 and len(good) == 4
    for i in bad:
        assert allocations[i].state == "unrunnable"
        assert allocations[i].reason.startswith(f"invalid workflow: {field}"), allocations[i].reason
    assert {allocations[i].state for i in good} == {"active"}
    jobs = agent.jobs()
    assert sorted({j.allocation_id for j in jobs}) == good
    assert [m.payload["job_ids"] for m in outbox if m.msg_type == "JobCreated"] == [[j.id for j in jobs]]


@pytest.fixture
def any_agent(tmp_path: Path, db_url: str) -> Iterator[Agent]:
    made = Agent(tmp_path, db_url)
    yield made
    made.close()


def test_an_allocation_whose_rows_cannot_be_written_fails_alone(manager: Manager, any_agent: Agent) -> None:
    """The batch insert fails (a job name already taken): each allocation is recorded alone, in
    its own savepoint, and only the one at fault is given up."""
    from tests.prodmanager.conftest import mc_workflow

    agent = any_agent
    leased = manager.lease(mc_workflow("rows", 500, 100))
    ids = agent.record(leased)
    victim = ids[2]
    taken = f"{AGENT}-r{leased[2].request_id}-a{victim}-0"
    agent.tx(lambda conn: conn.execute(pa_job.insert().values(
        agent=AGENT, name=taken, job_type="production", request_id="other", state="created",
        workdir="/nonexistent", created_at=time.time(), updated_at=time.time())))
    outbox = agent.create(ids)

    allocations = agent.allocations()
    assert allocations[victim].state == "unrunnable"
    assert allocations[victim].reason.startswith("job building failed: IntegrityError"), allocations[victim].reason
    assert {allocations[i].state for i in ids if i != victim} == {"active"}
    jobs = [j for j in agent.jobs() if j.name != taken]
    assert sorted(j.allocation_id for j in jobs) == sorted(i for i in ids if i != victim)
    assert [m.payload["job_ids"] for m in outbox if m.msg_type == "JobCreated"] == [[j.id for j in jobs]]
    for job in jobs:
        assert read_spec(Layout.attempt_dir(job.workdir, 0)).job_id == job.name


def test_an_allocation_whose_specs_cannot_be_written_fails_alone(manager: Manager, agent: Agent) -> None:
    """Writing one allocation's job.json fails (its job directory is blocked by a file): that
    allocation alone is given up, with no job rows; the others get jobs and specs."""
    from tests.prodmanager.conftest import mc_workflow

    leased = manager.lease(mc_workflow("disk", 300, 100))
    ids = agent.record(leased)
    victim = ids[1]
    blocked = agent.layout.job_dir(str(leased[1].request_id), f"{AGENT}-r{leased[1].request_id}-a{victim}-0")
    blocked.parent.mkdir(parents=True, exist_ok=True)
    blocked.write_text("in the way")
    outbox = agent.create(ids)

    allocations = agent.allocations()
    assert allocations[victim].state == "unrunnable"
    assert allocations[victim].reason.startswith("job building failed: "), allocations[victim].reason
    jobs = agent.jobs()
    assert sorted(j.allocation_id for j in jobs) == sorted(i for i in ids if i != victim)
    assert {allocations[i].state for i in ids if i != victim} == {"active"}
    assert [m.payload["job_ids"] for m in outbox if m.msg_type == "JobCreated"] == [[j.id for j in jobs]]
    assert blocked.read_text() == "in the way"


def test_a_second_delivery_changes_nothing(manager: Manager, agent: Agent) -> None:
    from tests.prodmanager.conftest import mc_workflow

    ids = agent.record(manager.lease(mc_workflow("twice", 300, 100)))
    first = agent.create(ids)
    assert len(first) == 1 and len(agent.jobs()) == 3
    assert agent.create(ids) == [] and len(agent.jobs()) == 3
