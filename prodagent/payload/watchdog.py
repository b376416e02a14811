"""Watches a running payload from a thread: resident memory and wall time against the spec's
limits, and a stop request from the wrapper's signal handler. It kills the payload's whole
process tree when one is crossed, and remembers why.

Sampling every half second costs a few /proc reads; the main thread meanwhile blocks in
wait4, so the wrapper learns of the payload's exit at once.
"""

from __future__ import annotations

import signal
import threading
import time

import psutil

from prodagent.payload import codes

POLL_S = 0.5
#: after asking the payload to stop, how long it has before SIGKILL
STOP_GRACE_S = 10.0


class Watchdog(threading.Thread):
    def __init__(self, pid: int, memory_mb: int | None, time_limit_s: float | None) -> None:
        super().__init__(name=f"watchdog-{pid}", daemon=True)
        self._pid = pid
        self._memory_mb = memory_mb
        self._time_limit_s = time_limit_s
        self._t0 = time.monotonic()
        self._done = threading.Event()
        self._stop_requested_at: float | None = None
        self.peak_rss_mb = 0.0
        self.limit_code: int | None = None
        self.limit_reason: str | None = None

    def finish(self) -> None:
        """The payload has ended: stop watching."""
        self._done.set()
        if self.is_alive():
            self.join()

    def request_stop(self, signum: int) -> None:
        """Called from the wrapper's signal handler: pass the signal on, then SIGKILL later."""
        if self.limit_code is None:
            self.limit_code = codes.TERMINATED
            self.limit_reason = f"wrapper received {signal.Signals(signum).name}"
        self._stop_requested_at = time.monotonic()
        self._signal_tree(signal.SIGTERM)

    def run(self) -> None:
        while not self._done.wait(POLL_S):
            self._check()

    def _check(self) -> None:
        rss_mb = self._tree_rss_mb()
        self.peak_rss_mb = max(self.peak_rss_mb, rss_mb)
        elapsed = time.monotonic() - self._t0
        if self._stop_requested_at is not None:
            if time.monotonic() - self._stop_requested_at > STOP_GRACE_S:
                self._signal_tree(signal.SIGKILL)
            return
        if self._memory_mb is not None and rss_mb > self._memory_mb:
            self._kill(
                codes.MEMORY_LIMIT,
                f"resident memory {rss_mb:.0f} MB above the limit of {self._memory_mb} MB",
            )
        elif self._time_limit_s is not None and elapsed > self._time_limit_s:
            self._kill(
                codes.TIME_LIMIT,
                f"wall time {elapsed:.0f} s above the limit of {self._time_limit_s:g} s",
            )

    def _kill(self, code: int, reason: str) -> None:
        if self.limit_code is None:
            self.limit_code, self.limit_reason = code, reason
        self._signal_tree(signal.SIGKILL)

    def _processes(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self._pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def _tree_rss_mb(self) -> float:
        total = 0
        for proc in self._processes():
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        return total / 2**20

    def _signal_tree(self, signum: int) -> None:
        # children first, so that a parent shell cannot respawn them
        for proc in reversed(self._processes()):
            try:
                proc.send_signal(signum)
            except psutil.Error:
                continue
