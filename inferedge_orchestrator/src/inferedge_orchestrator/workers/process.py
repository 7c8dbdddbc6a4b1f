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
creates, loads and warms up the task's real worker and runs its preprocessing, inference and
decoder (postprocessing); a failure there comes back as ChildError with the original type name.
A child that dies (a segfault in native code, os._exit, SIGKILL, an RLIMIT_AS breach) fails
only the job it ran, with WorkerCrashed (reason worker_crashed); the next job respawns it
(load and warm-up) after an exponential backoff. abort() kills a child whose job timed out, so
that the slot is free again at once. close() leaves no child and no segment behind; so does
the parent's death (SIGKILL): each child exits at once, also mid-job, and multiprocessing's
resource tracker unlinks the segments once the last of them is gone.
"""

from dataclasses import dataclass
import itertools
import logging
import multiprocessing
import os
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from inferedge_orchestrator.config.model import parse_cpus
from inferedge_orchestrator.contracts.errors import ChildError, PostprocessError, WorkerCrashed
from inferedge_orchestrator.contracts.inference import InferenceOutput
from inferedge_orchestrator.contracts.kinds import WORKERS
from inferedge_orchestrator.frames.frame import Frame
from inferedge_orchestrator.workers.base import Worker
from inferedge_orchestrator.workers.jobs import bound_decoder, bring_up, run_model
import numpy as np

LOGGER = logging.getLogger('inferedge_orchestrator')

_SEGMENT_NUMBERS = itertools.count()
BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 5.0
PARENT_GONE_EXIT_CODE = 4  # a child whose node died (3: out of its address space)


# The thread-count variables of the numeric libraries a worker may load (read at their import).
THREAD_VARIABLES = ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS')


@dataclass(frozen=True)
class ChildSettings:
    """What each child sets for itself before it loads the model (the pool's options)."""

    address_space_mb: int = 0  # RLIMIT_AS; 0: none
    cpus: str = ''  # CPU ids for os.sched_setaffinity, e.g. '0-3,6'; '': inherited
    threads: int = 0  # thread counts of the numeric libraries and of onnxruntime; 0: theirs
    os_policy: str = 'normal'  # the scheduling class of its threads: normal, batch, idle
    os_nice: int = 0  # the nice value of its threads (0-19; never raised above the parent's)


OS_POLICIES = {'normal': os.SCHED_OTHER, 'batch': os.SCHED_BATCH, 'idle': os.SCHED_IDLE}


def settle_threads(cpus: Tuple[int, ...], policy: str, nice: int) -> None:
    """
    Pin every thread of this process to cpus (if any), in the class policy, at nice at least.

    Linux schedules threads, not processes: each existing thread is set (numpy's import has
    started its BLAS threads already), and the threads made later (onnxruntime's, at the
    model's load) inherit their creator's settings. A thread already nicer keeps its value:
    priority is only ever lowered.
    """
    done = set()
    while True:
        threads = {int(tid) for tid in os.listdir('/proc/self/task')} - done
        if not threads:
            return
        for tid in threads:
            try:
                if cpus:
                    os.sched_setaffinity(tid, cpus)
                if policy != 'normal':
                    os.sched_setscheduler(tid, OS_POLICIES[policy], os.sched_param(0))
                if nice > os.getpriority(os.PRIO_PROCESS, tid):
                    os.setpriority(os.PRIO_PROCESS, tid, nice)
            except ProcessLookupError:
                pass  # the thread ended meanwhile
        done |= threads


def settle_child(settings: ChildSettings, kind: str, options: Dict[str, Any]) -> Dict[str, Any]:
    """Apply the child's limits, affinity, OS priority and thread counts; return its options."""
    if settings.address_space_mb:
        import resource
        limit = settings.address_space_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    settle_threads(parse_cpus(settings.cpus), settings.os_policy, settings.os_nice)
    if settings.threads:
        for variable in THREAD_VARIABLES:
            os.environ[variable] = str(settings.threads)
        if not options.get('intra_op_threads') and \
                'intra_op_threads' in WORKERS.cls(kind).OPTIONS:
            options = dict(options, intra_op_threads=settings.threads)
    return options


def exit_with_parent() -> None:
    """
    Exit this child at once when its parent dies, also in the middle of a job.

    A parent killed by SIGKILL (a crash, the OOM killer) closes the pipe, but the child reads
    it only between jobs: a long or stuck inference would go on as an orphan holding the
    model's memory while launch respawns the node, which loads it again. The spawn start
    method hands each child a sentinel that the parent's death makes readable; a thread waits
    on it. (PR_SET_PDEATHSIG would fire when the parent *thread* that started the child ends:
    a slot or respawn thread, not the node.)
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def wait_for_the_parent():
        parent.join()  # returns once the parent is gone
        os._exit(PARENT_GONE_EXIT_CODE)
    threading.Thread(target=wait_for_the_parent, name='inferedge-parent-watch',
                     daemon=True).start()


def _child_main(connection, kind: str, task_name: str, options: Dict[str, Any],
                decoder: Tuple[str, Dict[str, Any]], settings: ChildSettings) -> None:
    """Run in the child: make the real worker, then serve frames until the pipe closes."""
    from multiprocessing import shared_memory
    exit_with_parent()  # first: the settings below apply to its thread too
    options = settle_child(settings, kind, options)
    worker = WORKERS.create(kind, task_name, options, 1)
    try:
        bring_up(worker)
        model_info = worker.model_info()
        try:
            postprocess = bound_decoder(decoder[0], task_name, decoder[1], model_info)
        except ValueError:
            postprocess = None  # the engine binds it again with model_info and says why
    except BaseException as error:  # noqa: B902 - reported to the parent, which raises it
        connection.send(('load_error', f'{type(error).__name__}: {error}'))
        return
    connection.send(('ready', worker.expected_latency_s(), worker.fast_latency_s(),
                     model_info))
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
            output = run_model(lambda: worker.infer(frame), postprocess, frame)
            connection.send(('ok', output))
        except MemoryError:
            os._exit(3)  # out of its address space: its state is not to be trusted, respawn
        except BaseException as error:  # noqa: B902 - the job fails, the child goes on
            connection.send(('error', type(error).__name__, str(error)))
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
        self.backoff_s = 0.0  # the wait before its next respawn


class ProcessWorker(Worker):
    """The task's worker in child processes: the engine calls it like any worker."""

    kind = 'process'
    replaceable = False  # a crashed child is respawned in place

    def __init__(self, task_name: str, inner_kind: str, options: Dict[str, Any],
                 slots: int = 1, settings: ChildSettings = ChildSettings(),
                 on_respawn: Optional[Callable[[str, str], None]] = None,
                 decoder: Tuple[str, Dict[str, Any]] = ('none', {})):
        super().__init__(task_name, options, slots)
        self._on_respawn = on_respawn  # (task name, detail): the engine's decision
        self.inner_kind = inner_kind
        self.decoder = decoder  # (kind, options): the child decodes what its model outputs
        self._model_info = None
        self.settings = settings
        self._context = multiprocessing.get_context('spawn')
        self._free: List[_Child] = []
        self._all: List[_Child] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a child is free, or closing
        self._closing = threading.Event()
        self._respawning = 0  # children being started again after a crash
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

    def model_info(self):
        return self._model_info

    def close(self) -> None:
        with self._lock:
            self._closing.set()
            self._changed.notify_all()
            self._changed.wait_for(lambda: not self._respawning, timeout=30.0)
            children = list(self._all)
            self._all.clear()
            self._free.clear()
        for child in children:
            self._stop(child)

    def slots_down(self) -> int:
        """Return the children that cannot take a job now: dead, or being started again."""
        with self._lock:
            return self._respawning + sum(1 for c in self._free
                                          if c.process is None or not c.process.is_alive())

    # -- jobs -------------------------------------------------------------------------------

    def infer(self, frame) -> InferenceOutput:
        ident = threading.get_ident()
        with self._lock:
            # A crashed child is being started again: its slot's next job waits for it.
            self._changed.wait_for(lambda: self._free or not self._respawning or
                                   self._closing.is_set())
            if not self._free:
                raise RuntimeError(f'task {self.task_name}: more concurrent calls than its '
                                   f'{self.slots} child process(es), or closed')
            child = self._free.pop()
            self._running[ident] = child
        crashed = False
        try:
            if child.process is None or not child.process.is_alive():
                self._respawn(child)  # it died idle (killed from outside), or a respawn failed
            return self._run(child, frame)
        except WorkerCrashed:
            crashed = True
            raise
        finally:
            with self._lock:
                self._running.pop(ident, None)
                if child not in self._all:
                    pass  # closed meanwhile
                elif crashed and not self._closing.is_set():
                    self._respawning += 1  # at once, not when the next job comes
                    threading.Thread(target=self._respawn_soon, args=(child,), daemon=True,
                                     name=f'inferedge-respawn-{self.task_name}').start()
                else:
                    self._free.append(child)
                    self._changed.notify_all()

    def abort(self, thread_id: int) -> bool:
        """Kill the child that the slot thread thread_id waits on (its job timed out)."""
        with self._lock:
            child = self._running.get(thread_id)
        if child is None or child.process is None:
            return False
        child.process.kill()
        return True

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
            _, type_name, message = reply
            if type_name == PostprocessError.__name__:
                raise PostprocessError(message)
            raise ChildError(type_name, message)
        child.backoff_s = 0.0  # a job that ends well ends the backoff
        return reply[1]

    # -- children ---------------------------------------------------------------------------

    def _spawn(self, child: _Child) -> None:
        parent, remote = self._context.Pipe()
        process = self._context.Process(
            target=_child_main, name=f'worker-{self.task_name}',
            args=(remote, self.inner_kind, self.task_name, self.options, self.decoder,
                  self.settings), daemon=True)
        process.start()
        remote.close()
        try:
            reply = parent.recv()
        except EOFError:
            reply = None
        if reply is None or reply[0] != 'ready':
            process.join(timeout=5.0)
            detail = reply[1] if reply else f'the child exited with code {process.exitcode}'
            raise RuntimeError(f'task {self.task_name}: worker {self.inner_kind!r} failed to '
                               f'load in its child process: {detail}')
        child.process, child.connection = process, parent
        self._expected, self._fast, self._model_info = reply[1:]

    def _respawn_soon(self, child: _Child) -> None:
        """Start a crashed child again, off the slot thread; give it back to the slots."""
        try:
            self._respawn(child)
        except Exception as error:  # noqa: B902 - the next job tries again, and fails with it
            LOGGER.error('task %s: starting the crashed child process again failed: %s',
                         self.task_name, error)
        finally:
            with self._lock:
                self._respawning -= 1
                orphan = child not in self._all  # close() gave up waiting for it
                if not orphan and not self._closing.is_set():
                    self._free.append(child)
                self._changed.notify_all()  # close() stops the children it holds
            if orphan:
                self._stop(child)

    def _respawn(self, child: _Child) -> None:
        """
        Start a dead child again, after its backoff.

        The backoff is 0 after a crash that follows a job that ended well, then 0.1 s doubling
        up to 5 s while the child keeps crashing before it ends one.
        """
        waited = child.backoff_s
        if waited and self._closing.wait(waited):
            raise RuntimeError(f'task {self.task_name}: closed while waiting to respawn')
        self._stop(child, keep_segment=True)
        child.backoff_s = min(max(2.0 * child.backoff_s, BACKOFF_FIRST_S), BACKOFF_MAX_S)
        started = time.monotonic()
        self._spawn(child)
        self.respawns += 1
        if self._on_respawn is not None:
            self._on_respawn(self.task_name, f'child process started again (respawn '
                                             f'{self.respawns}; backoff {waited:.2f} s, load '
                                             f'and warm-up {time.monotonic() - started:.2f} s)')

    def _segment(self, child: _Child, size: int):
        from multiprocessing import shared_memory
        if child.segment is None or child.segment.size < size:
            if child.segment is not None:
                child.segment.close()
                child.segment.unlink()
            # Named after this process: whose it is shows in /dev/shm (and tests check it).
            child.segment = shared_memory.SharedMemory(
                name=f'inferedge_{os.getpid()}_frame{next(_SEGMENT_NUMBERS)}', create=True,
                size=max(size, 1))
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
