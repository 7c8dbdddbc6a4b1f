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
A process pool whose parent is killed (SIGKILL, as a crash): nothing of it is left.

The parent is a process of its own (the engine of this test process must not die): it runs a
process pool of two children, one of them inside a 60 s job, and is killed. Both children
exit within seconds, not when the job would have ended, and the frame segments named after
the parent are gone from /dev/shm (multiprocessing's resource tracker unlinks them once the
last child has exited).
"""

import glob
import json
import os
import signal
import subprocess
import sys
import time

PARENT = """
import glob, json, os, sys, time
import numpy as np
from inferedge_orchestrator.engine.engine import Engine
from inferedge_orchestrator.workers.process import pid_of_children
engine = Engine({'orchestrator': {'pools': {'cpu': {'slots': 2, 'isolation': 'process'}},
                                  'telemetry': {'resources': False}},
                 'tasks': [{'name': 'task', 'latency_budget_ms': 100000.0,
                            'worker_options': {'latency_ms': 60000.0}}]})
engine.start()
engine.submit('camera', np.zeros((24, 32, 3), np.uint8), age_s=0.0)
while not glob.glob(f'/dev/shm/inferedge_{os.getpid()}_*'):  # the frame is on its way
    time.sleep(0.01)
print(json.dumps(pid_of_children(engine.tasks['task'].worker)), flush=True)
time.sleep(600.0)
"""


def alive(pid: int) -> bool:
    """Whether pid runs (a zombie is not alive: its parent has not reaped it yet)."""
    try:
        with open(f'/proc/{pid}/stat', encoding='ascii') as stream:
            return stream.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


def left_after(find, timeout_s: float):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end and find():
        time.sleep(0.05)
    return find()


def test_children_and_segments_go_with_a_killed_parent():
    parent = subprocess.Popen([sys.executable, '-c', PARENT], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        line = parent.stdout.readline()
        assert line, parent.stderr.read()
        children = json.loads(line)
        segments = glob.glob(f'/dev/shm/inferedge_{parent.pid}_*')
        assert len(children) == 2 and all(alive(pid) for pid in children)
        assert len(segments) == 1  # the busy slot's frame
        time.sleep(0.2)  # inside the 60 s job
        killed = time.monotonic()
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10.0)
        # Orphans are re-parented (to init or a subreaper) and reaped there.
        assert left_after(lambda: [pid for pid in children if alive(pid)], 10.0) == []
        gone_s = time.monotonic() - killed
        assert left_after(lambda: glob.glob(f'/dev/shm/inferedge_{parent.pid}_*'), 10.0) == []
        print(f'children gone {gone_s:.2f} s after the SIGKILL of their parent')
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10.0)
