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
Process isolation: a worker whose model lives in child processes, one per slot.

ProcessWorker stands in for the task's worker inside the engine: each slot thread hands its
frame to a child of its own (spawn start method) through a shared-memory segment (the image is
copied once into it, never pickled) and waits for the outputs and timings on a pipe. The child
creates, loads and warms up the task's real worker and runs its preprocessing and inference.
A child that dies (a segfault in native code, os._exit, SIGKILL, an RLIMIT_AS breach) fails
only the job it ran, with WorkerCrashed (reason worker_crashed); the next job respawns it
(load and warm-up) after an exponential backoff. abort() kills a child whose job timed out, so
that the slot is free again at once. close() leaves no child and no segment behind.
"""

import multiprocessing
import os
import threading
import time
from typing import Any, Callable, Dict, List, Optional

from inferedge_orchestrator.workers.base import InferenceOutput, Worker
import numpy as np

BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 5.0


class WorkerCrashed(RuntimeError):
    """The child process of a slot died while it held a job (reason worker_crashed)."""


def _child_main(connection, kind: str, task_name: str, options: Dict[str, Any],
                address_space_mb: int) -> None:
    """Run in the child: make the real worker, then serve frames until the pipe closes."""
    from multiprocessing import shared_memory
    from inferedge_orchestrator.frames.frame import Frame
    from inferedge_orchestrator.workers.registry import create_worker
    if address_space_mb:
        import resource
        limit = address_space_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    worker = create_worker(kind, task_name, options, 1)
    try:
        worker.load()
        worker.warmup(int(options.get('warmup', 0) or 0))
    except BaseException as error:  # noqa: B902 - reported to the parent, which raises it
        connection.send(('load_error', f'{type(error).__name__}: {error}'))
        return
    connection.send(('ready', worker.expected_latency_s(), worker.fast_latency_s()))
    segment = None
    while True:
        try:
            request = connection.recv()
        except EOFError:
            break
        if request is None:
            break
        name, shape, dtype, encoding, frame_fields = request
        if segment is None or segment.name != name:
            if segment is not None:
                segment.close()
            segment = shared_memory.SharedMemory(name=name)
        image = np.ndarray(shape, dtype=dtype, buffer=segment.buf)
        frame = Frame(*frame_fields, image=image, encoding=encoding)
        try:
            output = worker.infer(frame)
            connection.send(('ok', output.outputs, output.preprocess_s, output.inference_s,
                             output.geometry))
        except MemoryError:
            os._exit(3)  # out of its address space: its state is not to be trusted, respawn
        except BaseException as error:  # noqa: B902 - the job fails, the child goes on
            connection.send(('error', f'{type(error).__name__}: {error}'))
        del image, frame
    if segment is not None:
        segment.close()
    worker.close()


class _Child:
    """One slot's child process, its pipe and its shared-memory segment."""

    def __init__(self):
        self.process = None
        self.connection = None
        self.segment = None
        self.backoff_s = 0.0
        self.not_before = 0.0


class ProcessWorker(Worker):
    """The task's worker in child processes: the engine calls it like any worker."""

    kind = 'process'
    replaceable = False  # a crashed child is respawned in place

    def __init__(self, task_name: str, inner_kind: str, options: Dict[str, Any],
                 slots: int = 1, address_space_mb: int = 0,
                 on_respawn: Optional[Callable[[str, str], None]] = None):
        super().__init__(task_name, options, slots)
        self._on_respawn = on_respawn  # (task name, detail): the engine's decision
        self.inner_kind = inner_kind
        self.address_space_mb = address_space_mb
        self._context = multiprocessing.get_context('spawn')
        self._free: List[_Child] = []
        self._all: List[_Child] = []
        self._lock = threading.Lock()
        self._running: Dict[int, _Child] = {}  # thread id -> the child it waits on
        self._expected = self._fast = 0.0
        self.crashes = 0
        self.respawns = 0

    # -- lifecycle --------------------------------------------------------------------------

    def load(self) -> None:
        for _ in range(self.slots):
            child = _Child()
            self._spawn(child)
            self._all.append(child)
            self._free.append(child)

    def warmup(self, runs: int) -> None:
        """Do nothing: the children warmed up when they loaded (warmup is their option)."""

    def expected_latency_s(self) -> float:
        return self._expected

    def fast_latency_s(self) -> float:
        return self._fast

    def close(self) -> None:
        with self._lock:
            children = list(self._all)
            self._all.clear()
            self._free.clear()
        for child in children:
            self._stop(child)

    # -- jobs -------------------------------------------------------------------------------

    def infer(self, frame) -> InferenceOutput:
        with self._lock:
            if not self._free:
                raise RuntimeError(f'task {self.task_name}: more concurrent calls than its '
                                   f'{self.slots} child process(es)')
            child = self._free.pop()
            self._running[threading.get_ident()] = child
        try:
            if child.process is None or not child.process.is_alive():
                self._respawn(child)
            return self._run(child, frame)
        finally:
            with self._lock:
                self._running.pop(threading.get_ident(), None)
                if child in self._all:
                    self._free.append(child)

    def abort(self, thread_id: int) -> None:
        """Kill the child that the slot thread thread_id waits on (its job timed out)."""
        with self._lock:
            child = self._running.get(thread_id)
        if child is not None and child.process is not None:
            child.process.kill()

    def _run(self, child: _Child, frame) -> InferenceOutput:
        image = np.ascontiguousarray(frame.image)
        segment = self._segment(child, image.nbytes)
        np.ndarray(image.shape, dtype=image.dtype, buffer=segment.buf)[...] = image
        fields = (frame.input, frame.seq, frame.arrival, frame.age)
        try:
            child.connection.send((segment.name, image.shape, image.dtype.str, frame.encoding,
                                   fields))
            reply = child.connection.recv()
        except (EOFError, OSError, BrokenPipeError):
            reply = None
        if reply is None:
            child.process.join(timeout=1.0)
            self.crashes += 1
            code = child.process.exitcode
            raise WorkerCrashed(f'task {self.task_name}: its child process died (exit code '
                                f'{code}) while it ran frame {frame.seq}')
        if reply[0] == 'error':
            raise RuntimeError(reply[1])
        _, outputs, preprocess_s, inference_s, geometry = reply
        child.backoff_s = 0.0  # a job that ends well ends the backoff
        return InferenceOutput(outputs, preprocess_s, inference_s, geometry)

    # -- children ---------------------------------------------------------------------------

    def _spawn(self, child: _Child) -> None:
        parent, remote = self._context.Pipe()
        process = self._context.Process(
            target=_child_main, name=f'worker-{self.task_name}',
            args=(remote, self.inner_kind, self.task_name, self.options,
                  self.address_space_mb), daemon=True)
        process.start()
        remote.close()
        try:
            reply = parent.recv()
        except EOFError:
            reply = ('load_error', f'the child exited with code {process.exitcode}')
        if reply[0] != 'ready':
            process.join(timeout=5.0)
            raise RuntimeError(f'task {self.task_name}: worker {self.inner_kind!r} failed to '
                               f'load in its child process: {reply[1]}')
        child.process, child.connection = process, parent
        self._expected, self._fast = reply[1], reply[2]

    def _respawn(self, child: _Child) -> None:
        """Start a dead child again, after its backoff (doubling while respawns fail)."""
        wait = child.not_before - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._stop(child, keep_segment=True)
        child.backoff_s = min(max(2.0 * child.backoff_s, BACKOFF_FIRST_S), BACKOFF_MAX_S)
        child.not_before = time.monotonic() + child.backoff_s
        self._spawn(child)
        self.respawns += 1
        if self._on_respawn is not None:
            self._on_respawn(self.task_name, f'child process started again (respawn '
                                             f'{self.respawns}, after {child.backoff_s:g} s)')

    def _segment(self, child: _Child, size: int):
        from multiprocessing import shared_memory
        if child.segment is None or child.segment.size < size:
            if child.segment is not None:
                child.segment.close()
                child.segment.unlink()
            child.segment = shared_memory.SharedMemory(create=True, size=max(size, 1))
        return child.segment

    def _stop(self, child: _Child, keep_segment: bool = False) -> None:
        process = child.process
        if process is not None:
            try:
                child.connection.send(None)
            except (OSError, BrokenPipeError):
                pass
            process.join(timeout=2.0)
            if process.is_alive():
                process.kill()
                process.join(timeout=2.0)
            child.connection.close()
            child.process = child.connection = None
        if not keep_segment and child.segment is not None:
            child.segment.close()
            child.segment.unlink()
            child.segment = None


def pid_of_children(worker: ProcessWorker) -> List[Optional[int]]:
    """Return the child processes' ids (tests kill them from outside)."""
    return [c.process.pid if c.process is not None else None for c in worker._all]
