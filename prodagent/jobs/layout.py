"""Where things live on disk, and the logical file names (LFNs) of outputs.

    <workdir>/jobs/<request>/<job name>/attempt-<n>/   job.json, job.log, report.json, batch.*
    <workdir>/data/unmerged/<dataset path>/<job name>.root
    <workdir>/data/merged/<dataset path>/<merge job name>.root
    <workdir>/logs/archive/<request>/<job name>.tar.gz   (kept after cleanup)
"""

from __future__ import annotations

from pathlib import Path

from prodagent.config import AgentConfig


class Layout:
    def __init__(self, config: AgentConfig) -> None:
        self.root = config.workdir
        self.storage = config.storage  # where outputs go beyond the work area (if anywhere)

    def job_dir(self, request_id: str | None, job_name: str) -> Path:
        return self.root / "jobs" / str(request_id or "none") / job_name

    @staticmethod
    def attempt_dir(job_dir: str | Path, retry: int) -> Path:
        return Path(job_dir) / f"attempt-{retry}"

    @staticmethod
    def batch_name(job_name: str, retry: int) -> str:
        """The id the batch system knows an attempt by: unique per attempt, so a retry is new."""
        return f"{job_name}.{retry}"

    def _dataset_dir(self, kind: str, dataset: str) -> Path:
        return self.root / "data" / kind / dataset.strip("/")

    def unmerged_path(self, dataset: str, job_name: str) -> Path:
        return self._dataset_dir("unmerged", dataset) / f"{job_name}.root"

    def merged_path(self, dataset: str, job_name: str) -> Path:
        return self._dataset_dir("merged", dataset) / f"{job_name}.root"

    def unmerged_area(self) -> Path:
        return self.root / "data" / "unmerged"

    def log_archive(self, request_id: str | None, job_name: str) -> Path:
        return self.root / "logs" / "archive" / str(request_id or "none") / f"{job_name}.tar.gz"

    @staticmethod
    def lfn(dataset: str, kind: str, job_name: str) -> str:
        return f"/store{dataset}/{kind}/{job_name}.root"
