"""The message vocabulary: declared once, enforced on publish and on subscription."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from prodagent.components.registry import BUILTIN, component_class
from prodagent.config import config_from_dict
from prodagent.db.schema import ms_message
from prodagent.messaging import types
from prodagent.messaging.message import Outgoing
from prodagent.messaging.types import MessageTypeError
from prodagent.runtime.component import Component, Context, handles
from tests.messaging.conftest import Agent


def builtin_classes() -> dict[str, type[Component]]:
    config = config_from_dict({"agent": {"name": "vocab"}})
    return {name: component_class(config, name) for name in BUILTIN}


def test_every_agent_type_has_a_consumer_and_known_producers() -> None:
    assert types.AGENT_TYPES  # the built-in vocabulary is there
    for name in types.AGENT_TYPES:
        spec = types.get(name)
        assert spec.consumers, name
        assert spec.producers, f"{name}: nothing in the agent publishes it"
        assert spec.producers <= set(BUILTIN) | {types.OPERATOR}, name
        assert spec.consumers <= set(BUILTIN), name


def test_declared_consumers_are_exactly_the_components_that_handle_each_type() -> None:
    handled: dict[str, set[str]] = {}
    for name, cls in builtin_classes().items():
        for msg_type in cls.handler_table():
            handled.setdefault(msg_type, set()).add(name)
    assert set(handled) == set(types.AGENT_TYPES)  # no component handles an undeclared type
    for msg_type, consumers in handled.items():
        assert types.get(msg_type).consumers == consumers, msg_type


def test_cleanup_done_is_gone() -> None:
    with pytest.raises(MessageTypeError, match="not declared"):
        types.get("CleanupDone")


def _rows(agent: Agent) -> int:
    with agent.service.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(ms_message)).scalar_one())


def test_publishing_an_undeclared_type_is_an_error(agent: Agent) -> None:
    with pytest.raises(MessageTypeError, match="'Wrok' is not declared"):
        agent.service.send("Wrok", {"key": "typo"})
    # In a batch, one undeclared type refuses the whole publish: nothing of it is written.
    with pytest.raises(MessageTypeError):
        agent.service.tx.run(lambda conn: agent.service.publish_many(
            conn, [Outgoing("Work", {"key": "ok"}), Outgoing("CleanupDone", {})]))
    assert _rows(agent) == 0
    assert agent.service.send("Work", {"key": "ok"}) == 1


@pytest.mark.parametrize("payload", [
    {}, {"job_ids": []}, {"job_ids": ["seven"]}, {"job_ids": [1], "extra": True}, {"jobs": [1]},
])
def test_a_payload_its_model_refuses_is_an_error(agent: Agent, payload: dict) -> None:
    svc = agent.service
    with pytest.raises(MessageTypeError, match="JobFailed payload refused"):
        svc.tx.run(lambda conn: svc.publish(conn, "JobFailed", payload, source="JobTracker"))
    assert svc.tx.run(lambda conn: svc.publish(conn, "JobFailed", {"job_ids": [1, 2]}, source="JobTracker")) == 0
    assert _rows(agent) == 0  # JobFailed has no subscriber in this agent: checked, then dropped


def test_only_a_declared_producer_may_publish(agent: Agent) -> None:
    svc = agent.service
    with pytest.raises(MessageTypeError, match="JobTracker is not a declared producer of RetryJob"):
        svc.tx.run(lambda conn: svc.publish(conn, "RetryJob", {"job_ids": [1]}, source="JobTracker"))
    svc.tx.run(lambda conn: svc.publish(conn, "RetryJob", {"job_ids": [1], "reason": "r"}, source=types.OPERATOR))


def test_a_handler_of_an_undeclared_type_is_refused() -> None:
    class Stray(Component):
        name = "Stray"

        @handles("Nobody")
        def on_nobody(self, ctx: Context, payload: dict) -> None:
            pass

    with pytest.raises(MessageTypeError, match="'Nobody' is not declared"):
        Stray.subscriptions()


def test_subscribing_to_an_undeclared_type_is_refused(agent: Agent) -> None:
    with pytest.raises(MessageTypeError):
        agent.service.declare("Recorder", ["Work", "Wrok"])


def test_a_type_declared_twice_differently_is_refused() -> None:
    types.declare("Work", types.Anything, (), {"Recorder", "Crasher"})  # the same again: fine
    with pytest.raises(MessageTypeError, match="declared twice"):
        types.declare("Work", types.Anything, (), {"Recorder"})
    with pytest.raises(MessageTypeError, match="no consumer"):
        types.declare("Orphan", types.Anything, {"Ping"}, ())
