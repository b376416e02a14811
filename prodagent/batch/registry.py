"""Which module implements which batch plugin; the configuration picks one by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from prodagent.batch.base import BatchPlugin
from prodagent.config import AgentConfig
from prodagent.errors import ConfigError
from prodagent.plugins import load_class

PLUGINS: dict[str, str] = {
    "local": "prodagent.batch.local:LocalExecutor",
    "slurm": "prodagent.batch.slurm:SlurmPlugin",
    "htcondor": "prodagent.batch.htcondor:HTCondorPlugin",
    "emulator": "prodagent.batch.emulator:JobEmulator",
}


def plugin_class(name: str) -> type[BatchPlugin]:
    return load_class(PLUGINS, name, "batch.plugin")


def load_plugin(name: str, options: dict[str, Any], workdir: Path) -> BatchPlugin:
    """Build the named plugin with its options validated by the plugin's own model."""
    cls = plugin_class(name)
    try:
        parsed = cls.Options.model_validate(options)
    except ValidationError as exc:
        raise ConfigError.from_validation(exc, prefix="batch.options") from None
    return cls(parsed, workdir)


def configured_plugin(config: AgentConfig) -> BatchPlugin:
    """The plugin the agent's `batch` section names, with its options; or, when the config lists
    `sites`, one plugin per site behind `MultiSite`."""
    if not config.sites:
        return load_plugin(config.batch.plugin, config.batch.options, config.workdir)
    from prodagent.batch.multisite import MultiSite

    plugins = {}
    for site in config.sites:
        options = dict(site.options)
        fields = plugin_class(site.plugin).Options.model_fields
        if "site" in fields:
            options.setdefault("site", site.name)
        if "slots" in fields and site.slots:
            options.setdefault("slots", site.slots)
        try:
            plugins[site.name] = load_plugin(site.plugin, options, config.workdir / "sites" / site.name)
        except ConfigError as exc:
            raise ConfigError(f"sites[{site.name}]: {exc}") from None
    return MultiSite(config.sites, plugins, config.workdir)
