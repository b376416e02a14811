"""Agents on demand: make a new agent instance from nothing, in one validated step.

`prodAgentd init NAME` writes `<workdir>/etc/prodagent.yaml` (sites, batch, components and
messaging settings copied from a template configuration when one is given), keeps the operator's
token in a file only the owner reads, creates the database and its tables, and registers the
agent with ProdManager (which proves the URL and the token). Nothing is written if the
configuration does not validate; a registration refused leaves the files for a second try.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from prodagent.config import AgentConfig, config_from_dict
from prodagent.errors import ConfigError

COPIED = ("messaging", "batch", "sites", "components", "logging", "supervisor")  # from a template


def instance_config(name: str, workdir: Path, url: str | None, token_file: Path, db_url: str | None,
                    template: Path | None) -> dict[str, Any]:
    """The new instance's configuration as a mapping (not validated yet)."""
    base: dict[str, Any] = {}
    if template is not None:
        try:
            base = yaml.safe_load(template.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read template {template}: {exc}") from None
    raw = {key: base[key] for key in COPIED if key in base}
    raw["agent"] = {"name": name, "workdir": str(workdir)}
    raw["database"] = {**{k: v for k, v in (base.get("database") or {}).items() if k != "url"}, "url": db_url}
    pm_url = url or (base.get("prodmanager") or {}).get("url")
    if not pm_url:
        raise ConfigError("init: give --prodmanager URL (or a --template that has one)")
    raw["prodmanager"] = {"url": pm_url, "token_file": str(token_file)}
    settings = (raw.get("components") or {}).get("settings") or {}
    if "ProdMgrInterface" in settings:  # sites announced by the template's agent are not this one's
        settings["ProdMgrInterface"] = {k: v for k, v in settings["ProdMgrInterface"].items() if k != "sites"}
    return raw


def make_instance(name: str, workdir: Path, url: str | None, token: str, db_url: str | None,
                  template: Path | None) -> tuple[Path, AgentConfig]:
    """Write, validate and prepare a new instance; returns its config path and configuration."""
    from prodagent.db.migrate import upgrade

    workdir = workdir.resolve()
    etc = workdir / "etc"
    path, token_file = etc / "prodagent.yaml", etc / "token"
    if path.exists():
        raise ConfigError(f"init: {path} exists already; an instance is made once")
    raw = instance_config(name, workdir, url, token_file, db_url, template)
    config = config_from_dict(raw, source=str(path))  # refused here: nothing written
    etc.mkdir(parents=True, exist_ok=True)
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token.strip() + "\n")
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    config.source = path
    upgrade(config.db_url)
    return path, config


def register(config: AgentConfig) -> None:
    """Register with ProdManager: proves the URL and the token before anything runs."""
    from prodmanager.client import ProdManagerClient

    token_file = config.prodmanager.token_file
    token = token_file.read_text().strip() if token_file else config.prodmanager.token
    client = ProdManagerClient(config.prodmanager.url, token)
    try:
        client.register_agent(config.agent.name, [s.name for s in config.sites] or ["local"], 1)
    finally:
        client.close()
