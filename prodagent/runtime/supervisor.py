"""The supervisor: a daemon per agent work directory that brings back components that die.

    python -m prodagent.runtime.supervisor --config FILE     (launched by `prodAgentd start`)

Every `supervisor.poll_s` it looks at the components an operator asked to run
(`run/supervised.json`). One whose process is gone (crash, SIGKILL, OOM killer) is started again
after a delay: `restart_min_s`, doubling on each further death up to `restart_max_s`, back to
the minimum once a restarted component has lived `stable_s`. A start refused because another
agent runs the component under this agent's name is not retried. What it did is written to
`run/supervisor.json` for `prodAgentd status`. A frozen component (alive, stale heartbeat) is
reported by `status`, not killed: freezing is what debuggers and operators do on purpose.
`prodAgentd stop` takes components off the list (or stops the supervisor) before stopping them.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from types import FrameType

import daemon as python_daemon

from prodagent.config import AgentConfig, load_config
from prodagent.errors import ProdAgentError
from prodagent.runtime import daemon, pidfiles, watchlist
from prodagent.runtime.logs import setup_logging

log = logging.getLogger("prodagent.supervisor")


class Supervisor:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.settings = config.supervisor
        self.stop_event = threading.Event()
        self.record = watchlist.SupervisorRecord(pid=os.getpid(), started_at=time.time())

    def request_stop(self, signum: int | None = None, _frame: FrameType | None = None) -> None:
        log.info("supervisor: signal %s, stopping (components keep running)", signum)
        self.stop_event.set()

    def run(self) -> None:
        log.info("supervisor started (pid %d) for agent %s in %s",
                 os.getpid(), self.config.agent.name, self.config.workdir)
        watchlist.write_record(self.config, self.record)
        while not self.stop_event.is_set():
            try:
                if self.check_once():
                    watchlist.write_record(self.config, self.record)
            except Exception:  # noqa: BLE001 - the watchdog must outlive its own errors
                log.exception("supervisor: check failed")
            self.stop_event.wait(self.settings.poll_s)
        log.info("supervisor stopped")

    def check_once(self) -> bool:
        """One look at every wanted component; True if the record changed."""
        changed = False
        for name in watchlist.wanted(self.config):
            if self.stop_event.is_set():
                break
            rec = self.record.components.setdefault(name, watchlist.Record(backoff_s=self.settings.restart_min_s))
            changed |= self._check(name, rec)
        return changed

    def _check(self, name: str, rec: watchlist.Record) -> bool:
        now = time.time()
        state = pidfiles.read_pid(self.config, name)
        if state.alive:
            changed = rec.down_since is not None or rec.refused is not None
            rec.down_since = rec.next_retry_at = rec.refused = None  # (re)started by an operator too
            if (rec.last_restart_at and rec.backoff_s > self.settings.restart_min_s
                    and now - rec.last_restart_at >= self.settings.stable_s):
                rec.backoff_s = self.settings.restart_min_s  # it has been stable: start over
                changed = True
            return changed
        if rec.refused:
            return False
        if rec.down_since is None:
            rec.down_since = rec.last_exit_at = now
            rec.last_exit_pid = state.pid
            rec.next_retry_at = now + rec.backoff_s
            log.warning("supervisor: %s (pid %s) is gone; restart in %.1fs", name, state.pid, rec.backoff_s)
            return True
        if rec.next_retry_at is not None and now < rec.next_retry_at:
            return False
        result = daemon.start(self.config, name, still_wanted=lambda: name in watchlist.wanted(self.config))
        if result.skipped:
            self.record.components.pop(name, None)
            return True
        rec.backoff_s = min(rec.backoff_s * 2, self.settings.restart_max_s)
        if result.ok:
            rec.restarts += 1
            rec.last_restart_at = time.time()
            rec.down_since = rec.next_retry_at = None
            rec.last_error = None
            log.warning("supervisor: %s restarted (restart %d): %s", name, rec.restarts, result.text)
        elif result.refused:
            rec.refused = result.text
            rec.next_retry_at = None
            watchlist.update_wanted(self.config, remove=[name])
            log.error("supervisor: %s refused, not retried: %s", name, result.text)
        else:
            rec.last_error = result.text.strip().splitlines()[-1]  # the whole of it is in the log
            rec.next_retry_at = time.time() + rec.backoff_s
            log.error("supervisor: %s did not start (%s); next try in %.0fs", name, result.text, rec.backoff_s)
        return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True)
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ProdAgentError as exc:
        print(exc, file=sys.stderr)
        return 2
    config.workdir.mkdir(parents=True, exist_ok=True)
    with python_daemon.DaemonContext(working_directory=str(config.workdir), umask=0o022):
        setup_logging(config, daemon.SUPERVISOR)
        pidfiles.write_pid(config, daemon.SUPERVISOR)
        supervisor = Supervisor(config)
        signal.signal(signal.SIGTERM, supervisor.request_stop)
        signal.signal(signal.SIGINT, supervisor.request_stop)
        try:
            supervisor.run()
        finally:
            pidfiles.remove_pid(config, daemon.SUPERVISOR)
    return 0


if __name__ == "__main__":
    sys.exit(main())
