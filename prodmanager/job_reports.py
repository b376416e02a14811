"""Job detail that agents push with their reports (`POST /agents/{agent}/jobs`): each state
change of their jobs, with the log tail of every failed attempt.

Why pushed, not fetched: the monitor must show a failed job's log within seconds of the failure,
also after the agent's Cleanup archived and removed the work area, also while the agent is down
or behind a firewall. So ProdMgrInterface sends each change as it sees it (one call per tick,
with the other pull calls), ProdManager stores it (`pm_job_event`, `pm_job_log`), and the pages
read only ProdManager's database. Events are numbered by the agent (its transition ids) and
unique per agent, so a resend after a lost answer stores nothing twice; the answer's `last_seq`
tells a restarted agent where to go on.

The answer also names the allocations whose paused job an operator or the owner asked to
resubmit (`POST /requests/{id}/resubmit`); the agent resubmits them, and the job's next state
change clears the ask.

Agents also push the status of their components (`POST /agents/{agent}/status`, every
`status_every_s`), for the agents page and the dead letters in "why is this not done?".
"""

from __future__ import annotations

import time

from prodmanager.auth import Principal
from prodmanager.db import job_queries as jq
from prodmanager.db.engine import Database
from prodmanager.models import AgentStatus, JobReport, JobReportAck
from prodmanager.pull_service import PullService


class JobReports:
    def __init__(self, db: Database, pull: PullService) -> None:
        self.db = db
        self.pull = pull

    def report(self, principal: Principal, agent_name: str, body: JobReport) -> JobReportAck:
        self.pull.check_agent(principal, agent_name)
        stored = self.db.transaction(lambda conn: jq.store_events(conn, agent_name, body.events))
        last, resubmit = self.db.read(
            lambda conn: (jq.last_seq(conn, agent_name),
                          jq.resubmits_for(conn, agent_name, time.time()))
        )
        return JobReportAck(accepted=stored, last_seq=last, resubmit=resubmit)

    def status(self, principal: Principal, agent_name: str, body: AgentStatus) -> AgentStatus:
        """The agent's components (alive, heartbeat age, queue depth, dead letters), replacing
        what it sent before."""
        self.pull.check_agent(principal, agent_name)
        data = body.model_dump_json()
        self.db.transaction(lambda conn: jq.store_status(conn, agent_name, data, time.time()))
        return body
