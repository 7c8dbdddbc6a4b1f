# Copyright The inferedge_orchestrator_ros Authors
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""
SIGINT and SIGTERM: one graceful shutdown, which a second signal does not interrupt.

Ctrl-C on `ros2 launch` signals the whole process group and launch forwards one more SIGINT,
so the node gets two in a row. The first asks for the shutdown (the main loop sees
`requested`); a later one while it runs is logged and ignored, unless it is the third, or it
comes after grace_s: then the node flushes what it can and exits at once with 128 + the signal
number (130 for SIGINT). No rclpy here: the node installs it instead of rclpy's handlers.
"""

import os
import signal
import sys
import threading
import time
from typing import Callable, Optional

FORCE_AFTER_SIGNALS = 3


def flush_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def exit_if_threads_stuck(code: int, log: Callable[[str], None]) -> None:
    """
    Exit now with code when a non-daemon thread is still alive after the shutdown.

    Such a thread is a slot stuck in a worker call that never returns (a hang in native code):
    the interpreter would wait for it at exit for good, so the node would never end by itself.
    """
    stuck = [t.name for t in threading.enumerate()
             if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if stuck:
        log(f'threads still stuck in worker calls after the shutdown: {", ".join(stuck)}; '
            f'exiting without waiting for them')
        flush_streams()
        os._exit(code)


class GracefulSignals:
    """The process's SIGINT and SIGTERM handlers (install() once, from the main thread)."""

    def __init__(self, grace_s: Callable[[], float], log: Callable[[str], None],
                 flush: Optional[Callable[[], None]] = None):
        self._grace_s = grace_s  # read when a later signal comes (a parameter may change)
        self._log = log
        self._flush = flush
        self.requested = threading.Event()
        self.count = 0
        self.first_at = 0.0

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self.handle)

    def handle(self, signum: int, frame=None) -> None:
        now = time.monotonic()
        self.count += 1
        name = signal.Signals(signum).name
        if self.count == 1:
            self.first_at = now
            self.requested.set()
            return
        waited = now - self.first_at
        grace = self._grace_s()
        if self.count < FORCE_AFTER_SIGNALS and waited <= grace:
            self._log(f'{name} while shutting down ({waited:.1f} s in): ignored; one after '
                      f'{grace:g} s, or a third signal, exits at once')
            return
        self._log(f'{name} ({self.count} signals, {waited:.1f} s into the shutdown): exiting '
                  f'at once with code {128 + signum}')
        try:
            if self._flush is not None:
                self._flush()
        finally:
            flush_streams()
            os._exit(128 + signum)
