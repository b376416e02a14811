"""Entry point of one daemonized component: detach, write the pid file, run.

Usage: python -m prodagent.runtime.daemon_main --config FILE COMPONENT
"""

from __future__ import annotations

import argparse
import logging
import sys

import daemon

from prodagent.config import load_config
from prodagent.errors import ProdAgentError
from prodagent.runtime import pidfiles
from prodagent.runtime.logs import setup_logging
from prodagent.runtime.runner import ComponentRunner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("component")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
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
        except Exception:
            logging.getLogger(__name__).exception("%s crashed", args.component)
            raise
        finally:
            pidfiles.remove_pid(config, args.component)
    return 0


if __name__ == "__main__":
    sys.exit(main())
