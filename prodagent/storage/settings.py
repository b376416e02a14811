"""The `storage` section of the agent's configuration: elements, which one each site writes to,
the optional archive element, and the stage-out retry policy.

With no `default` and no `sites`, outputs stay in the agent's work area as before (the embedded
default: a single-machine agent needs no storage configuration).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from prodagent.storage.base import ElementSpec

ElementName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
SiteName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]


class StageOutPolicy(BaseModel):
    """How the job wrapper retries a stage-out: exponential backoff from `backoff_s` up to
    `backoff_max_s`, at most `attempts` tries and at most `max_s` seconds in all."""

    model_config = ConfigDict(extra="forbid")
    attempts: int = Field(8, ge=1, le=100)
    backoff_s: float = Field(1.0, ge=0, le=600)
    backoff_max_s: float = Field(10.0, ge=0, le=3600)
    max_s: float = Field(300.0, gt=0, le=86_400)


class StorageSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    elements: dict[ElementName, ElementSpec] = Field(default_factory=dict)
    sites: dict[SiteName, ElementName] = Field(default_factory=dict)  # site -> element its jobs write to
    default: ElementName | None = None  # element of the sites not listed; null: the work area
    archive: ElementName | None = None  # merged files are copied there and verified before cleanup
    stageout: StageOutPolicy = Field(default_factory=StageOutPolicy)

    @model_validator(mode="after")
    def _names_exist(self) -> StorageSection:
        from prodagent.storage.registry import PLUGINS

        for name, spec in self.elements.items():
            if spec.plugin not in PLUGINS:
                raise ValueError(f"elements.{name}.plugin: unknown plugin {spec.plugin!r}; known: {sorted(PLUGINS)}")
        used = {"default": self.default, "archive": self.archive} | {f"sites.{k}": v for k, v in self.sites.items()}
        for where, name in used.items():
            if name is not None and name not in self.elements:
                raise ValueError(f"{where}: no element named {name!r} (elements: {sorted(self.elements)})")
        if self.archive is not None and self.archive in {self.default, *self.sites.values()}:
            raise ValueError(f"archive: {self.archive!r} is also where jobs write; the archive must be a second element")
        return self

    @property
    def enabled(self) -> bool:
        return self.default is not None or bool(self.sites)

    def element_map(self) -> dict[str, ElementSpec]:
        """{site: element spec} with "*" for the sites not listed (when there is a default)."""
        chosen = {site: self.elements[name] for site, name in self.sites.items()}
        if self.default is not None:
            chosen["*"] = self.elements[self.default]
        return chosen
