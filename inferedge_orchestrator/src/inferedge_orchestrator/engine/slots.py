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
A slot's thread: it runs the jobs its pool's back-end hands it and reports each to the engine.

The slot holds no scheduling state and makes no decision: it calls the model (the back-end's
call, then the task's decoder: workers/jobs.py) and reports the job with its output or error;
the engine then accounts for it and decides what runs next.
"""

from typing import Callable, Optional

from inferedge_orchestrator.engine.pool import Job, Slot
from inferedge_orchestrator.workers.jobs import run_batch, run_model

# (job, its output: a batch's list of them, or None on error, the error)
Report = Callable[[Job, object, Optional[BaseException]], None]


class SlotRunner:
    """The loop of every slot thread of an engine."""

    def __init__(self, clock: Callable[[], float], report: Report,
                 retired: Callable[[Job], None]):
        self._clock = clock
        self._report = report  # the engine's complete()
        self._retired = retired  # after the last job of a retired slot: close its worker

    def run(self, slot: Slot) -> None:
        """Run the jobs the pool's back-end hands slot until it says stop (None)."""
        backend = slot.pool.backend
        clock = self._clock
        while True:
            job = backend.next_job(slot)
            if job is None:
                return
            output, error = None, None
            try:
                if job.batch is None:
                    output = run_model(lambda: backend.call(job, job.deadline - clock()),
                                       job.task.decoder, job.frame)
                else:
                    output = run_batch(lambda: backend.call_batch(job, job.deadline - clock()),
                                       job.task.decoder, [m.frame for m in job.batch])
            except BaseException as exc:  # noqa: B902 - a worker never kills the engine
                error = exc
            self._report(job, output, error)
            if slot.retired:
                self._retired(job)
                return
