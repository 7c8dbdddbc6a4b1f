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

"""The core's Python log records on the node's logger (rosout), rate-limited."""

import logging
import math
import time
from typing import Any, Dict

CORE_LOGGER = 'inferedge_orchestrator'


class RosLogHandler(logging.Handler):
    """Forward the core's Python log records to the node's logger, one per second per kind."""

    LEVELS = ((logging.ERROR, 'error'), (logging.WARNING, 'warning'), (logging.INFO, 'info'),
              (0, 'debug'))

    def __init__(self, logger):
        super().__init__(logging.INFO)
        self._logger = logger
        self._last: Dict[Any, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        now = time.monotonic()
        key = (record.name, record.msg)
        if now - self._last.get(key, -math.inf) < 1.0:
            return
        self._last[key] = now
        method = next(name for level, name in self.LEVELS if record.levelno >= level)
        try:
            getattr(self._logger, method)(self.format(record))
        except Exception:  # noqa: B902 - logging after shutdown must not raise
            pass

    def attach(self) -> None:
        """Forward the core's records from now on (one handler per node)."""
        core = logging.getLogger(CORE_LOGGER)
        core.addHandler(self)
        core.setLevel(logging.INFO)
        core.propagate = False

    def detach(self) -> None:
        logging.getLogger(CORE_LOGGER).removeHandler(self)
