"""Which class implements which component; `components.plugins` in the config adds more."""

from __future__ import annotations

import importlib

from prodagent.config import AgentConfig
from prodagent.errors import ConfigError
from prodagent.runtime.component import Component

BUILTIN: dict[str, str] = {
    "Ping": "prodagent.components.ping:Ping",
    "Echo": "prodagent.components.ping:Echo",
    "ProdMgrInterface": "prodagent.components.prodmgr_interface:ProdMgrInterface",
    "ResourceMonitor": "prodagent.components.resource_monitor:ResourceMonitor",
    "JobCreator": "prodagent.components.job_creator:JobCreator",
    "JobSubmitter": "prodagent.components.job_submitter:JobSubmitter",
    "JobTracker": "prodagent.components.job_tracker:JobTracker",
    "ErrorHandler": "prodagent.components.error_handler:ErrorHandler",
    "MergeSensor": "prodagent.components.merge_sensor:MergeSensor",
    "Cleanup": "prodagent.components.cleanup:Cleanup",
    "MetricsExporter": "prodagent.components.metrics_exporter:MetricsExporter",
}


def component_class(config: AgentConfig, name: str) -> type[Component]:
    target = config.components.plugins.get(name) or BUILTIN.get(name)
    if target is None:
        known = sorted({*BUILTIN, *config.components.plugins})
        raise ConfigError(f"components: unknown component {name!r}; known: {', '.join(known)}")
    module_name, _, class_name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"components.plugins.{name}: cannot load {target!r}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Component)):
        raise ConfigError(f"components.plugins.{name}: {target!r} is not a Component")
    return cls


def enabled_classes(config: AgentConfig) -> dict[str, type[Component]]:
    return {name: component_class(config, name) for name in config.components.enabled}
