"""Entry point of one daemonized component: check the name is free, detach, write the pid file, run.

Usage: python -m prodagent.runtime.daemon_main --config FILE COMPONENT

Before detaching it refuses a component whose settings are wrong (exit 2) or that another agent
already runs under this agent's name (exit 3), the reason on stderr, so `prodAgentd start` can say so; the component checks
again once it runs (see `liveness`).
"""

from __future__ import annotations

import argparse
import logging
import sys

import daemon
import sqlalchemy as sa

from prodagent.components.registry import component_class
from prodagent.config import AgentConfig, load_config
from prodagent.db.engine import make_engine
from prodagent.errors import DatabaseUnavailable, ProdAgentError
from prodagent.messaging.retry import TransactionRunner
from prodagent.runtime import pidfiles
from prodagent.runtime.liveness import REFUSED_EXIT, AgentNameInUse, check_name_free
from prodagent.runtime.logs import setup_logging
from prodagent.runtime.runner import ComponentRunner


def precheck(config: AgentConfig, component: str) -> None:
    """Raise ConfigError if the component or its settings are wrong (so `start` fails, with why,
    instead of a daemon dying after it detached), AgentNameInUse if another agent runs this
    component; an unreachable database is left to the component, which waits for it."""
    cls = component_class(config, component)
    config.component_settings(component, cls.Settings)
    engine = make_engine(config.db_url, pool_size=1)
    try:
        check_name_free(TransactionRunner(engine, connect_retries=0), config, component)
    except (sa.exc.SQLAlchemyError, DatabaseUnavailable):
        pass
    finally:
        engine.dispose()  # no connection may cross the fork into the daemon


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("component")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        precheck(config, args.component)
    except AgentNameInUse as exc:
        print(exc, file=sys.stderr)
        return REFUSED_EXIT
    except ProdAgentError as exc:
        print(exc, file=sys.stderr)
        return 2
    config.workdir.mkdir(parents=True, exist_ok=True)
    with daemon.DaemonContext(working_directory=str(config.workdir), umask=0o022):
        setup_logging(config, args.component)
        pidfiles.write_pid(config, args.component)
        runner = ComponentRunner(config, args.component)
        runner.install_signal_handlers()
        try:
            runner.run()
        except AgentNameInUse as exc:
            logging.getLogger(__name__).error("%s", exc)
            return REFUSED_EXIT
        except Exception:
            logging.getLogger(__name__).exception("%s crashed", args.component)
            raise
        finally:
            pidfiles.remove_pid(config, args.component)
    return 0


if __name__ == "__main__":
    sys.exit(main())
