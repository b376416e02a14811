"""The agent's configuration: one YAML file, validated on load.

An unknown key or a wrong type stops start-up with a message naming the key and the file.
`PRODAGENT_DB_URL` overrides the database URL. Each component validates its own section
(`components.settings.<Name>`) with the `Settings` model it declares, so defaults live in one
place: the model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from prodagent.errors import ConfigError
from prodagent.storage.settings import StorageSection

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "etc" / "prodagent.yaml"
DEFAULT_COMPONENTS = [
    "ProdMgrInterface",
    "ResourceMonitor",
    "JobCreator",
    "JobSubmitter",
    "JobTracker",
    "ErrorHandler",
    "MergeSensor",
    "Cleanup",
]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AgentSection(Section):
    name: str = Field("agent", pattern=r"^[A-Za-z0-9_-]{1,40}$")
    workdir: Path = Path("work/agent")


class DatabaseSection(Section):
    url: str | None = None  # default: SQLite file in the work directory
    connect_retries: int = Field(30, ge=0)  # attempts while the database is down
    retry_wait_s: float = Field(1.0, gt=0)


class MessagingSection(Section):
    batch_size: int = Field(100, ge=1, le=10000)
    max_deliveries: int = Field(5, ge=1)  # deliveries before a message goes to the dead letters
    lease_s: float = Field(60.0, gt=0)  # a claimed message comes back after this long
    retry_backoff_s: float = Field(1.0, ge=0)  # delay before a failed message is tried again
    poll_min_s: float = Field(0.005, gt=0)
    poll_max_s: float = Field(0.5, gt=0)
    heartbeat_s: float = Field(5.0, gt=0)
    # A heartbeat older than this is stale (frozen or hung process); null: 3 x heartbeat_s.
    heartbeat_stale_s: float | None = Field(None, gt=0)
    history: bool = True  # keep handled messages in ms_history
    history_hours: float = Field(72.0, ge=0)  # purge policy: older history rows are dropped

    @property
    def stale_after_s(self) -> float:
        return self.heartbeat_stale_s or 3 * self.heartbeat_s


class SupervisorSection(Section):
    """The watchdog `prodAgentd start` leaves running: it brings back components that die."""

    restart_min_s: float = Field(1.0, gt=0)  # first restart delay, doubled on each further death
    restart_max_s: float = Field(300.0, gt=0)
    stable_s: float = Field(60.0, gt=0)  # alive this long after a restart: the delay starts over
    poll_s: float = Field(0.5, gt=0)
    stop_timeout_s: float = Field(10.0, gt=0)  # SIGTERM grace before SIGKILL on `stop`


class BatchSection(Section):
    plugin: str = "local"
    options: dict[str, Any] = Field(default_factory=dict)


class SiteSection(Section):
    """One site the agent feeds: its batch plugin and queue, its slots and its storage."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")  # the request's site lists name these
    plugin: str = "local"
    options: dict[str, Any] = Field(default_factory=dict)  # the plugin's own (queue, partition, ...)
    slots: int | None = Field(None, ge=1)  # null: what the batch system reports
    storage: str | None = None  # the site's storage element (issue 11); not used by placement


class ProdManagerSection(Section):
    url: str = "http://127.0.0.1:8765"
    token: str | None = None
    token_file: Path | None = None


class ComponentsSection(Section):
    enabled: list[str] = Field(default_factory=lambda: list(DEFAULT_COMPONENTS))
    settings: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # Extra components by name: {"MyComponent": "package.module:Class"}.
    plugins: dict[str, str] = Field(default_factory=dict)


class LoggingSection(Section):
    level: str = Field("INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    max_bytes: int = Field(10_000_000, ge=10_000)
    backups: int = Field(3, ge=0)


class AgentConfig(Section):
    agent: AgentSection = Field(default_factory=AgentSection)
    database: DatabaseSection = Field(default_factory=DatabaseSection)
    messaging: MessagingSection = Field(default_factory=MessagingSection)
    batch: BatchSection = Field(default_factory=BatchSection)
    # Several sites, each with its own plugin; when given, `batch` is not used.
    sites: list[SiteSection] = Field(default_factory=list, max_length=200)
    prodmanager: ProdManagerSection = Field(default_factory=ProdManagerSection)
    components: ComponentsSection = Field(default_factory=ComponentsSection)
    logging: LoggingSection = Field(default_factory=LoggingSection)
    supervisor: SupervisorSection = Field(default_factory=SupervisorSection)
    storage: StorageSection = Field(default_factory=StorageSection)

    source: Path | None = Field(None, exclude=True)

    @field_validator("sites")
    @classmethod
    def _unique_sites(cls, sites: list[SiteSection]) -> list[SiteSection]:
        names = [s.name for s in sites]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"site names given twice: {', '.join(twice)}")
        return sites

    @property
    def db_url(self) -> str:
        env = os.environ.get("PRODAGENT_DB_URL")
        if env:
            return env
        if self.database.url:
            return self.database.url
        return f"sqlite:///{self.workdir / 'prodagent.db'}"

    @property
    def workdir(self) -> Path:
        return self.agent.workdir

    def component_settings(self, name: str, model: type[BaseModel]) -> Any:
        """This component's section, validated by its own model."""
        try:
            return model.model_validate(self.components.settings.get(name, {}))
        except ValidationError as exc:
            raise ConfigError.from_validation(
                exc, prefix=f"components.settings.{name}", source=str(self.source)
            ) from None


def load_config(path: str | Path | None = None) -> AgentConfig:
    """Load and validate a config file (default: $PRODAGENT_CONFIG, then etc/prodagent.yaml).

    Relative work directories are resolved against the config file's directory's parent when the
    file lives in an `etc/` folder, otherwise against the file's directory.
    """
    chosen = Path(path or os.environ.get("PRODAGENT_CONFIG") or DEFAULT_CONFIG)
    try:
        text = chosen.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read configuration {chosen}: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML in {chosen}: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"invalid configuration in {chosen}: the top level must be a mapping")
    try:
        config = AgentConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError.from_validation(exc, source=str(chosen)) from None
    config.source = chosen.resolve()
    if not config.agent.workdir.is_absolute():
        base = config.source.parent
        if base.name == "etc":
            base = base.parent
        config.agent.workdir = (base / config.agent.workdir).resolve()
    return config


def config_from_dict(raw: dict[str, Any], source: str = "<dict>") -> AgentConfig:
    """Validate a configuration given as a mapping (tests and benchmarks)."""
    try:
        config = AgentConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError.from_validation(exc, source=source) from None
    config.agent.workdir = config.agent.workdir.resolve()
    return config
