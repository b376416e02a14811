"""Several sites behind one plugin interface: each configured site has its own batch plugin.

JobSubmitter places each job on a site (`BatchJob.site`); this plugin hands it to that site's
plugin, with the site cleared so the plugin submits to its own configured queue (partition,
schedd, emulated site). Queries, kills and crash recovery ask every site: a job id is unique
across sites, and a site that does not know a job answers LOST for it, so the answer of the
site that does know it wins. Capacity is reported per configured site name.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from prodagent.batch.base import (
    BatchJob,
    BatchPlugin,
    BatchState,
    BatchStatus,
    PluginOptions,
    SiteSlots,
)
from prodagent.config import SiteSection


class MultiSite(BatchPlugin):
    name = "multisite"

    def __init__(self, sites: Sequence[SiteSection], plugins: dict[str, BatchPlugin], workdir: Path) -> None:
        super().__init__(PluginOptions(), workdir)
        self.sites = {s.name: s for s in sites}
        self.plugins = plugins

    def close(self) -> None:
        for plugin in self.plugins.values():
            plugin.close()

    def submit(self, jobs: Sequence[BatchJob]) -> dict[str, str]:
        by_site: dict[str, list[BatchJob]] = defaultdict(list)
        for job in jobs:
            if job.site in self.plugins:
                by_site[job.site].append(dataclasses.replace(job, site=None))
        accepted: dict[str, str] = {}
        for site, group in by_site.items():
            accepted.update(self.plugins[site].submit(group))
        return accepted  # a job for an unknown site is missing: refused

    def query(self, job_ids: Iterable[str]) -> dict[str, BatchStatus]:
        ids = list(job_ids)
        result: dict[str, BatchStatus] = {}
        for plugin in self.plugins.values():
            for job_id, status in plugin.query(ids).items():
                if status.state is not BatchState.LOST or job_id not in result:
                    result[job_id] = status
        return result

    def kill(self, job_ids: Iterable[str]) -> None:
        ids = list(job_ids)
        for plugin in self.plugins.values():
            plugin.kill(ids)

    def find_submitted(self, job_ids: Iterable[str]) -> dict[str, str]:
        ids = list(job_ids)
        found: dict[str, str] = {}
        for plugin in self.plugins.values():
            found.update(plugin.find_submitted(ids))
        return found

    def site_of(self, job_ids: Iterable[str]) -> dict[str, str]:
        """Which site holds each of these jobs (crash recovery records the right site)."""
        ids = list(job_ids)
        return {j: site for site, plugin in self.plugins.items() for j in plugin.find_submitted(ids)}

    def capacity(self) -> list[SiteSlots]:
        out = []
        for name, plugin in self.plugins.items():
            parts = plugin.capacity()
            slots = self.sites[name].slots or sum(p.slots for p in parts)
            out.append(SiteSlots(name, slots, sum(p.running for p in parts), sum(p.queued for p in parts)))
        return out
