"""ResourceMonitor: reads slots per site from the batch plugin and publishes them.

The figures land in `pa_site` (JobSubmitter and ProdMgrInterface read them) and in a
`ResourcesAvailable` message, so that ProdMgrInterface acquires work as soon as room appears.
The batch system is asked with no transaction open; the figures are recorded in a short one.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from prodagent.batch.base import BatchPlugin
from prodagent.batch.registry import configured_plugin
from prodagent.jobs import store
from prodagent.runtime.component import Component, Context


class ResourceMonitorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tick_s: float = Field(5.0, gt=0)


class ResourceMonitor(Component):
    name = "ResourceMonitor"
    Settings = ResourceMonitorSettings
    tick_in_transaction = False  # the batch system is asked with no transaction open

    def setup(self) -> None:
        self.plugin: BatchPlugin = configured_plugin(self.config)
        self.last_free: dict[str, int] | None = None

    def teardown(self) -> None:
        self.plugin.close()

    def tick(self, _ctx: Context | None = None) -> None:
        sites = self.plugin.capacity()
        free = {site.site: site.free for site in sites}

        def record(ctx: Context) -> None:
            for site in sites:
                store.upsert_site(ctx.conn, self.config.agent.name, site.site, site.slots, site.running, site.queued)
            if free != self.last_free:
                ctx.publish("ResourcesAvailable", {"free": free})

        self.transaction(record)
        self.last_free = free  # only once recorded: a failed transaction publishes again next time
