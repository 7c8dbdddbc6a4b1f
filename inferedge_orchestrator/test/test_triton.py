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
The triton worker against a real Triton Inference Server that the tests start.

The server is the tritonserver of the nvidia-pytriton wheel in a virtual environment of its
own (tools/local_triton.py: INFEREDGE_TRITON_VENV or .ci/triton-venv, which .ci/run makes),
with HTTP, gRPC and metrics on 127.0.0.1. Its models are python-backend models that run ONNX
files made here with the onnx helper API. The tests skip, saying why, where the wheel cannot
install (another architecture, an older glibc) and where no server environment was made and
INFEREDGE_TRITON_VENV is unset (local_triton.skip_reason); where it is set, as .ci/run does, a
missing environment is an error.
"""

import glob
import os
import subprocess
import threading
import time

from inferedge_orchestrator.contracts import reasons
from inferedge_orchestrator.contracts.errors import WorkerLoadError
from inferedge_orchestrator.engine.engine import Engine
from inferedge_orchestrator.frames.frame import Frame
from inferedge_orchestrator.telemetry.invariants import check_invariants
from inferedge_orchestrator.tools import local_triton
from inferedge_orchestrator.workers.triton import TritonWorker
import numpy as np
import pytest

from .onnx_models import channel_sum_model, require_onnx

SIZE = [24, 32]  # the models' input height and width (their H and W are dynamic)
# The slow model's queue: two priority levels, and request timeouts that may lower 60 s.
QUEUE = ('priority_levels: 2\n  default_priority_level: 2\n  default_queue_policy { '
         'timeout_action: REJECT allow_timeout_override: true '
         'default_timeout_microseconds: 60000000 }')
SLOW_S = 0.3
# The growing model (synthetic): 20 ms + 4 ms for each frame of a batch after the first.
GROWING_S, PER_ITEM_S = 0.020, 0.004


@pytest.fixture(scope='session')
def triton_install():
    """Return the server's install; skip where local_triton.skip_reason() says why."""
    reason = local_triton.skip_reason()
    if reason:
        pytest.skip(reason)
    require_onnx()
    try:
        import tritonclient.grpc  # noqa: F401
        import tritonclient.http  # noqa: F401
    except ImportError:
        pytest.fail("tritonclient is missing: pip install 'tritonclient[grpc,http]' (the "
                    'extra [triton]; .ci/run installs it)')
    return local_triton.find_install()  # ServerMissing: an error, with how to install


@pytest.fixture(scope='session')
def model_path(tmp_path_factory):
    require_onnx()
    return channel_sum_model(tmp_path_factory.mktemp('onnx'))


def repository(folder, model_path):
    """
    Write the test models: sum (y = the channel sum of x), spare (the same), slow, growing.

    slow: one frame a request, SLOW_S each; growing: batches of up to 4, each costing
    GROWING_S + PER_ITEM_S per frame after the first.
    """
    repo = str(folder / 'models')
    local_triton.write_onnx_model(repo, 'sum', model_path)
    local_triton.write_onnx_model(repo, 'spare', model_path)
    local_triton.write_onnx_model(repo, 'slow', model_path, max_batch_size=1,
                                  dynamic_batching=QUEUE, delay_s=SLOW_S)
    local_triton.write_onnx_model(repo, 'growing', channel_sum_model(folder, batch='n'),
                                  max_batch_size=4,
                                  dynamic_batching=QUEUE, delay_s=GROWING_S,
                                  delay_per_item_s=PER_ITEM_S)
    return repo


@pytest.fixture(scope='session')
def server(triton_install, model_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp('triton')
    triton = local_triton.LocalTriton(repository(folder, model_path), str(folder),
                                      triton_install)
    triton.start()
    yield triton
    triton.stop()


def options(server, protocol='grpc', model='sum', **more):
    url = server.grpc_url if protocol == 'grpc' else server.http_url
    return dict({'url': url, 'protocol': protocol, 'model_name': model, 'input_size': SIZE,
                 'warmup': 2}, **more)


def worker(server, protocol='grpc', **more):
    made = TritonWorker('remote', TritonWorker.validate_options(
        options(server, protocol, **more), 'worker_options'))
    made.load()
    made.warmup(made.options['warmup'])
    return made


def frames(count, seed=0):
    generator = np.random.default_rng(seed)
    return [generator.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(count)]


def engine_config(remote_options, slots=2, local_options=None, remote_tasks=None, **pool):
    """Return a config: a local task on pool cpu, remote task(s) on pool server."""
    local = {'name': 'local', 'pool': 'cpu', 'priority': 50, 'latency_budget_ms': 10000.0,
             'queue_size': 32}
    local.update({'worker': 'onnxruntime', 'worker_options': local_options}
                 if local_options else {'worker_options': {'latency_ms': 1.0}})
    tasks = remote_tasks or [{'name': 'remote', 'priority': 10,
                              'latency_budget_ms': 10000.0, 'queue_size': 32,
                              'worker_options': remote_options}]
    for task in tasks:
        task.update(pool='server', worker='triton')
    return {'orchestrator': {'pools': {'cpu': {'slots': 1},
                                       'server': dict({'slots': slots}, **pool)},
                             'telemetry': {'resources': False, 'period_s': 0.2}},
            'inputs': {'camera': {}, 'other': {}},
            'tasks': [local] + tasks}


def shm_segments():
    return set(glob.glob(f'/dev/shm/inferedge_{os.getpid()}_*'))


def assert_loopback_only(triton):
    sockets = triton.listening()
    ports = {port for _, port in sockets}
    assert {triton.http_port, triton.grpc_port, triton.metrics_port} <= ports, sockets
    assert all(local_triton.is_loopback(address) for address, _ in sockets), sockets


def test_the_server_listens_on_loopback_only(server):
    assert_loopback_only(server)


@pytest.mark.parametrize('protocol', ['grpc', 'http'])
def test_outputs_equal_the_local_onnxruntime_workers_on_the_same_frames(
        server, model_path, protocol):
    preprocessing = {'input_size': SIZE, 'mean': [0.5, 0.4, 0.3], 'std': [0.2, 0.3, 0.25]}
    remote = dict(options(server, protocol), **preprocessing)
    local = dict({'model_path': model_path, 'warmup': 1}, **preprocessing)
    results = []
    engine = Engine(engine_config(remote, local_options=local), on_result=results.append)
    engine.start()
    try:
        for image in frames(12):
            engine.submit('camera', image, age_s=0.0)
            assert engine.drain(30.0)
        snapshot = engine.snapshot()
    finally:
        engine.close()
    by_task = {(r.task, r.seq): r for r in results}
    for seq in range(1, 13):
        ours, theirs = by_task[('remote', seq)], by_task[('local', seq)]
        assert ours.status == theirs.status == reasons.OK, (ours.detail, theirs.detail)
        np.testing.assert_array_equal(ours.outputs['y'], theirs.outputs['y'])
        assert ours.outputs['y'].shape == (1, 1, *SIZE)
    assert check_invariants(snapshot) == []
    pool = snapshot.pools['server']
    assert (pool.backend, pool.slots, pool.server_down) == ('server', 2, False)
    assert snapshot.pools['cpu'].backend == 'thread'


@pytest.mark.parametrize('protocol', ['grpc', 'http'])
def test_shared_memory_on_and_off_give_the_same_outputs_and_leave_no_segment_behind(
        server, protocol):
    from tritonclient.grpc import InferenceServerClient
    before = shm_segments()
    plain, shared = worker(server, protocol), worker(server, protocol, shared_memory=True)
    outputs = {}
    try:
        for image in frames(5, seed=3):
            frame = Frame('camera', 1, 0.0, 0.0, image=image)
            for made in (plain, shared):
                outputs.setdefault(id(made), []).append(made.infer(frame).outputs['y'])
        assert len(shm_segments() - before) == 2  # the input and the output of one thread
    finally:
        plain.close()
        shared.close()
    for a, b in zip(outputs[id(plain)], outputs[id(shared)]):
        np.testing.assert_array_equal(a, b)
    assert shm_segments() == before
    status = InferenceServerClient(server.grpc_url).get_system_shared_memory_status(
        as_json=True)
    assert not status.get('regions'), status  # nothing left registered either


def test_a_queued_high_priority_request_overtakes_a_queued_low_priority_one(server):
    slow = options(server, model='slow', warmup=0)
    tasks = [{'name': 'low', 'inputs': ['camera'], 'priority': 10, 'latency_budget_ms': 5000.0,
              'queue_size': 4, 'worker_options': slow},
             {'name': 'high', 'inputs': ['other'], 'priority': 90, 'latency_budget_ms': 5000.0,
              'queue_size': 4, 'worker_options': dict(slow)}]
    results = []
    engine = Engine(engine_config(None, slots=3, remote_tasks=tasks), on_result=results.append)
    engine.start()
    try:
        image = frames(1)[0]
        engine.submit('camera', image, age_s=0.0)  # runs at once on the model's one instance
        time.sleep(0.1)
        engine.submit('camera', image, age_s=0.0)  # queued in the server at level 2
        time.sleep(0.1)
        engine.submit('other', image, age_s=0.0)  # queued later, at level 1
        assert engine.drain(10.0)
        snapshot = engine.snapshot()
        assert engine.tasks['high'].worker.priority_levels == 2
    finally:
        engine.close()
    finished = {(r.task, r.seq): r.finished for r in results
                if r.status == reasons.OK and r.task != 'local'}
    assert len(finished) == 3, [(r.task, r.status, r.detail) for r in results]
    assert finished[('low', 1)] < finished[('high', 3)] < finished[('low', 2)]
    assert check_invariants(snapshot) == []


def test_a_request_whose_budget_runs_out_in_the_server_queue_is_dropped_expired(server):
    slow = options(server, model='slow', warmup=0)
    decisions, results = [], []
    # The pool's slots are free, so the engine sends each frame at once: its budget (0.5 s)
    # outlasts its service (0.3 s), not the 0.6 s of the two requests ahead of the third.
    cfg = engine_config(None, slots=3, remote_tasks=[
        {'name': 'remote', 'inputs': ['other'], 'priority': 10, 'latency_budget_ms': 500.0,
         'queue_size': 4, 'worker_options': slow}])
    engine = Engine(cfg, on_result=results.append, on_decision=decisions.append)
    engine.start()
    try:
        for _ in range(3):
            engine.submit('other', frames(1)[0], age_s=0.0)
            time.sleep(0.02)
        assert engine.drain(10.0)
        time.sleep(0.4)  # the DROP decision of the period
        snapshot = engine.snapshot()
    finally:
        engine.close()
    remote = snapshot.tasks['remote']
    # The last one expires; the second may too (when this Triton's batcher wakes late).
    expired = remote.dropped_by_reason.get(reasons.EXPIRED, 0)
    assert expired >= 1 and remote.dropped == expired, remote
    assert remote.executed == 3 - expired >= 1 and remote.failed == 0
    drop = next(d for d in decisions if d.event == reasons.DROP and d.task == 'remote')
    assert drop.reason == reasons.EXPIRED and 'Request timeout expired' in drop.detail
    assert check_invariants(snapshot) == []


def test_a_hung_request_is_timed_out_by_client_timeout_and_the_server_stays_up(server):
    results, decisions = [], []
    cfg = engine_config(options(server, model='slow', warmup=0, client_timeout_ms=100.0))
    engine = Engine(cfg, on_result=results.append, on_decision=decisions.append)
    engine.start()
    try:
        engine.submit('camera', frames(1)[0], age_s=0.0)
        assert engine.drain(10.0)
        deadline = time.monotonic() + 5.0
        while not any(r.task == 'remote' for r in results) and time.monotonic() < deadline:
            time.sleep(0.01)
        snapshot = engine.snapshot()
    finally:
        engine.close()
    time.sleep(SLOW_S)  # the server still runs it: the next test's request must not queue
    remote = [r for r in results if r.task == 'remote']
    assert [(r.status, r.reason) for r in remote] == [(reasons.TIMED_OUT, reasons.TIMEOUT)]
    assert 'client_timeout_ms 100' in remote[0].detail
    assert any(d.event == reasons.WORKER_TIMEOUT_EVENT for d in decisions)
    assert not snapshot.pools['server'].server_down
    assert check_invariants(snapshot) == []


def test_a_job_past_timeout_ms_is_cancelled_and_its_slot_is_free_at_once(server):
    results, decisions = [], []
    remote = options(server, model='slow', warmup=1)  # its first frame's imports are done
    cfg = engine_config(None, slots=1, remote_tasks=[
        {'name': 'remote', 'inputs': ['other'], 'latency_budget_ms': 10000.0, 'queue_size': 4,
         'timeout_ms': 100.0, 'worker_options': remote}])
    engine = Engine(cfg, on_result=results.append, on_decision=decisions.append)
    engine.start()
    try:
        engine.submit('other', frames(1)[0], age_s=0.0)
        deadline = time.monotonic() + 5.0
        while not results and time.monotonic() < deadline:
            time.sleep(0.005)
        # The gRPC request was cancelled: its slot thread comes back at once, not when the
        # server would have answered (0.3 s).
        while engine.snapshot().pools['server'].busy and time.monotonic() < deadline:
            time.sleep(0.005)
        freed = time.monotonic()
        assert engine.snapshot().tasks['remote'].in_flight == 0
        engine.update_task('remote', timeout_ms=0.0)
        engine.submit('other', frames(1)[0], age_s=0.0)
        assert engine.drain(10.0)
        snapshot = engine.snapshot()
    finally:
        engine.close()
    assert [(r.status, r.reason) for r in results] == [(reasons.TIMED_OUT, reasons.TIMEOUT),
                                                       (reasons.OK, '')]
    assert results[0].detail == 'no result after 100 ms'
    assert freed - results[0].finished < SLOW_S / 2
    assert results[1].queue_wait_s < 0.05  # it found its slot free
    assert snapshot.tasks['remote'].failed_by_reason == {reasons.TIMEOUT: 1}
    assert check_invariants(snapshot) == []


def requests_served(server, model):
    from tritonclient.grpc import InferenceServerClient
    stats = InferenceServerClient(server.grpc_url).get_inference_statistics(
        model, as_json=True)['model_stats'][0]['inference_stats']
    return sum(int(stats[kind].get('count', 0)) for kind in ('success', 'fail'))


def test_a_job_that_times_out_before_its_request_is_sent_sends_none(server):
    made = worker(server, warmup=0)
    prepare = made.preprocess

    class SlowPreparation:
        """The worker's preprocessing, 0.3 s slower: the timeout comes meanwhile."""

        def __getattr__(self, name):
            return getattr(prepare, name)

        def __call__(self, *args):
            time.sleep(0.3)
            return prepare(*args)
    frame = Frame('camera', 1, 0.0, 0.0, image=frames(1)[0])
    errors, before = [], requests_served(server, 'sum')

    def job():
        try:
            made.infer(frame)
        except Exception as error:  # noqa: B902 - collected for the assertion
            errors.append(error)
    made.preprocess = SlowPreparation()
    try:
        thread = threading.Thread(target=job)
        thread.start()
        time.sleep(0.1)
        assert made.abort(thread.ident) is False  # nothing in flight to cancel yet
        thread.join(10.0)
        assert [str(e) for e in errors] == ['the job timed out before its request was sent: '
                                            'not sent']
        assert requests_served(server, 'sum') == before
        made.preprocess = prepare
        job()  # another thread's next job is sent as usual
        # The server counts a request when it releases it, which may follow its response.
        deadline = time.monotonic() + 5.0
        while requests_served(server, 'sum') < before + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(errors) == 1 and requests_served(server, 'sum') == before + 1
    finally:
        made.close()


def test_an_unloaded_model_and_a_shape_mismatch_fail_with_the_servers_message(server):
    from tritonclient.grpc import InferenceServerClient
    client = InferenceServerClient(server.grpc_url)
    results = []
    # gray: one channel where the model takes three, as the overridden shape says.
    mismatch = options(server, channel_order='gray', input_shape=[1, 1, -1, -1], warmup=0)
    tasks = [{'name': 'spare', 'inputs': ['camera'],
              'worker_options': options(server, model='spare')},
             {'name': 'mismatch', 'inputs': ['other'], 'worker_options': mismatch}]
    engine = Engine(engine_config(None, remote_tasks=tasks), on_result=results.append)
    engine.start()
    try:
        client.unload_model('spare')
        deadline = time.monotonic() + 10.0
        while client.is_model_ready('spare') and time.monotonic() < deadline:
            time.sleep(0.05)
        engine.submit('camera', frames(1)[0], age_s=0.0)
        engine.submit('other', frames(1)[0], age_s=0.0)
        assert engine.drain(10.0)
        snapshot = engine.snapshot()
    finally:
        engine.close()
        client.load_model('spare')
    failed = {r.task: r for r in results if r.task in ('spare', 'mismatch')}
    assert failed['spare'].status == reasons.FAILED
    assert failed['spare'].reason == reasons.WORKER_ERROR
    assert "'spare'" in failed['spare'].detail and 'available' in failed['spare'].detail
    assert failed['mismatch'].reason == reasons.WORKER_ERROR
    assert 'unexpected shape' in failed['mismatch'].detail
    assert not snapshot.pools['server'].server_down  # the server answered: no outage
    assert check_invariants(snapshot) == []


def test_a_server_not_ready_at_configure_is_an_error_naming_the_url_and_its_answer(server):
    closed = f'127.0.0.1:{local_triton.free_port()}'
    cfg = engine_config(dict(options(server), url=closed))
    with pytest.raises(WorkerLoadError, match=rf'triton server {closed} \(grpc\) is not ready '
                                              r"for model 'sum': StatusCode.UNAVAILABLE"):
        Engine(cfg).load()
    start = time.monotonic()
    cfg = engine_config(dict(options(server, 'http'), url=closed, wait_ready_s=0.6))
    with pytest.raises(WorkerLoadError, match=r'after waiting 0.6 s: ConnectionRefusedError'):
        Engine(cfg).load()
    assert time.monotonic() - start >= 0.6
    cfg = engine_config(options(server, model='nosuch'))
    with pytest.raises(WorkerLoadError, match=r"model 'nosuch' is not ready"):
        Engine(cfg).load()


def run_for(engine, seconds, hz=20.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        engine.submit('camera', frames(1)[0], age_s=0.0)
        time.sleep(1.0 / hz)


@pytest.mark.parametrize('protocol', ['grpc', 'http'])
def test_server_killed_with_sigkill_mid_run_and_restarted(triton_install, model_path,
                                                          tmp_path, protocol):
    triton = local_triton.LocalTriton(repository(tmp_path, model_path), str(tmp_path),
                                      triton_install)
    triton.start()
    decisions, results = [], []
    remote = options(triton, protocol, shared_memory=True, client_timeout_ms=2000.0)
    cfg = engine_config(remote, probe_backoff_s=0.1, probe_backoff_max_s=0.8)
    engine = Engine(cfg, on_result=results.append, on_decision=decisions.append)
    engine.start()
    sessions = triton.sessions
    try:
        run_for(engine, 1.0)
        killed = time.monotonic()
        triton.kill()
        run_for(engine, 1.5)
        down = engine.snapshot()
        restarted = time.monotonic()
        triton.start()
        assert_loopback_only(triton)
        end = time.monotonic() + 20.0
        while not any(d.event == reasons.SERVER_UP for d in decisions) and \
                time.monotonic() < end:
            run_for(engine, 0.2)
        up_at = time.monotonic()
        back = sum(1 for r in results if r.task == 'remote' and r.status == reasons.OK)
        run_for(engine, 1.0)
        assert engine.drain(10.0)
        snapshot = engine.snapshot()
    finally:
        engine.close()
        triton.stop()
    task, local, pool = snapshot.tasks['remote'], snapshot.tasks['local'], snapshot.pools['server']
    assert down.pools['server'].server_down and down.tasks['remote'].slots_down == 2
    assert 1 <= task.failed_by_reason.get(reasons.SERVER_UNAVAILABLE, 0) <= 2
    assert task.failed == task.failed_by_reason[reasons.SERVER_UNAVAILABLE]
    assert task.dropped_by_reason.get(reasons.SERVER_UNAVAILABLE, 0) >= 20  # 1.5 s at 20 Hz
    # Results came back after the restart, and the other task never missed a frame.
    ok_after = sum(1 for r in results if r.task == 'remote' and r.status == reasons.OK) - back
    assert ok_after >= 10, ok_after
    assert local.failed == local.dropped == 0 and local.executed == local.routed
    events = [d.event for d in decisions]
    assert events.count(reasons.SERVER_DOWN) == 1 and events.count(reasons.SERVER_UP) == 1
    assert (pool.outages, pool.server_down) == (1, False)
    # One probe per backoff period (0.1 s doubling, capped at 0.8 s) over the outage.
    outage = up_at - killed
    assert 1 <= pool.probes <= 4 + outage / 0.8, (pool.probes, outage, restarted - killed)
    assert check_invariants(snapshot) == []
    assert shm_segments() == set()
    # Nothing of either server is left: the killed one's python backend stubs included.
    assert all(local_triton.session_members(session) == [] for session in sessions)


def certificates(folder):
    """Make a CA, a server certificate for 127.0.0.1 and a client certificate (openssl)."""
    def run(*args):
        subprocess.run(['openssl', *args], check=True, capture_output=True, cwd=folder)
    run('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem',
        '-days', '1', '-subj', '/CN=inferedge test CA')
    with open(os.path.join(folder, 'server.ext'), 'w') as stream:
        stream.write('subjectAltName=IP:127.0.0.1,DNS:localhost\n')
    for name, extension in (('server', ['-extfile', 'server.ext']), ('client', [])):
        run('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f'{name}.key', '-out',
            f'{name}.csr', '-subj', f'/CN={name}')
        run('x509', '-req', '-in', f'{name}.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key',
            '-CAcreateserial', '-out', f'{name}.pem', '-days', '1', *extension)
    return {name: os.path.join(folder, name) for name in
            ('ca.pem', 'server.pem', 'server.key', 'client.pem', 'client.key')}


def test_grpc_over_mutual_tls_with_a_certificate_made_by_the_test(triton_install, model_path,
                                                                  tmp_path):
    files = certificates(str(tmp_path))
    args = ['--grpc-use-ssl-mutual=true', f'--grpc-server-cert={files["server.pem"]}',
            f'--grpc-server-key={files["server.key"]}', f'--grpc-root-cert={files["ca.pem"]}',
            '--grpc-restricted-protocol=inference:x-token=secret']
    triton = local_triton.LocalTriton(repository(tmp_path, model_path), str(tmp_path),
                                      triton_install, args)
    triton.start()
    try:
        assert_loopback_only(triton)
        tls = options(triton, ssl=True, root_certificates=files['ca.pem'],
                      private_key=files['client.key'], certificate_chain=files['client.pem'])
        results = []
        # Triton's gRPC restriction header is its key behind triton-grpc-protocol-.
        token = {'Triton-GRPC-Protocol-X-Token': 'secret'}
        tasks = [{'name': 'token', 'inputs': ['camera'],
                  'worker_options': dict(tls, headers=token)},
                 {'name': 'notoken', 'inputs': ['other'], 'worker_options': dict(tls, warmup=0)}]
        engine = Engine(engine_config(None, remote_tasks=tasks), on_result=results.append)
        engine.start()
        try:
            engine.submit('camera', frames(1)[0], age_s=0.0)
            engine.submit('other', frames(1)[0], age_s=0.0)
            assert engine.drain(10.0)
        finally:
            engine.close()
        outcome = {r.task: r for r in results}
        assert outcome['token'].status == reasons.OK
        assert outcome['token'].outputs['y'].shape == (1, 1, *SIZE)
        assert outcome['notoken'].reason == reasons.WORKER_ERROR  # the server refused it
        assert 'x-token' in outcome['notoken'].detail
        # Without TLS, or with a certificate the server did not sign, it cannot be reached.
        with pytest.raises(WorkerLoadError, match=r'is not ready for model'):
            Engine(engine_config(options(triton))).load()
    finally:
        triton.stop()


def test_concurrent_slot_threads_each_get_their_own_client(server):
    """Each slot thread has its own client: concurrent requests of one worker all answer."""
    made = worker(server, 'http')
    errors = []

    def send():
        try:
            for image in frames(5):
                made.infer(Frame('camera', 1, 0.0, 0.0, image=image))
        except Exception as error:  # noqa: B902 - collected for the assertion
            errors.append(error)
    threads = [threading.Thread(target=send) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30.0)
    made.close()
    assert errors == []


def test_a_model_without_dynamic_batching_is_warned_about_once(server, core_log):
    made = worker(server, warmup=0)
    made.close()
    warnings = [r for r in core_log if 'lacks dynamic_batching' in r.getMessage()]
    assert len(warnings) == 1 and (made.priority_levels, made.sends_timeout) == (0, False)
    slow = worker(server, model='slow', warmup=0)
    slow.close()
    assert (slow.priority_levels, slow.sends_timeout) == (2, True)
    assert len([r for r in core_log if 'lacks' in r.getMessage()]) == 1


def test_a_batch_is_one_request_split_into_each_frames_outputs(server):
    remote = worker(server, model='growing')
    try:
        assert remote.batch_limit() == 4  # the model config's max_batch_size
        images = frames(3)
        outputs = remote.infer_batch([Frame('camera', i, 0.0, 0.0, image=image,
                                            encoding='rgb8') for i, image in enumerate(images)])
        for image, output in zip(images, outputs):
            single = remote.infer(Frame('camera', 9, 0.0, 0.0, image=image, encoding='rgb8'))
            assert output.outputs['y'].shape == (1, 1, *SIZE)
            np.testing.assert_array_equal(output.outputs['y'], single.outputs['y'])
        remote.warmup_batches([2, 4], 3)
        # The synthetic cost, as the server's python model sleeps it (plus the round trip).
        assert remote.expected_batch_latency_s(4) >= GROWING_S + 3 * PER_ITEM_S
        assert remote.expected_batch_latency_s(2) < remote.expected_batch_latency_s(4)
    finally:
        remote.close()
    plain = worker(server)  # max_batch_size 0: one frame a request
    try:
        assert plain.batch_limit() == 1
    finally:
        plain.close()
    shared = TritonWorker('remote', TritonWorker.validate_options(
        options(server, model='growing', shared_memory=True), 'worker_options'))
    shared.load()
    try:
        with pytest.raises(ValueError, match='set shared_memory false'):
            shared.batch_limit()
    finally:
        shared.close()


def test_four_cameras_batch_on_the_server_and_each_frame_is_accounted(server):
    """4 cameras x 30 fps into one task on the growing model: batches of several frames."""
    cameras = [f'cam{index}' for index in range(4)]
    task = {'name': 'remote', 'inputs': cameras, 'priority': 10, 'latency_budget_ms': 200.0,
            'max_batch': 4, 'worker_options': options(server, model='growing')}
    config = engine_config(None, slots=1, remote_tasks=[task])
    config['inputs'] = {name: {} for name in ['camera'] + cameras}
    results = []
    engine = Engine(config, on_result=results.append)
    engine.start()
    try:
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            for camera in cameras:
                engine.submit(camera, frames(1)[0], age_s=0.0)
            time.sleep(1.0 / 30.0)
        assert engine.drain(10.0)
        snapshot = engine.snapshot()
    finally:
        engine.close()
    stats = snapshot.tasks['remote']
    assert check_invariants(snapshot) == []
    assert sum(stats.batch_jobs[1:]) > 0, stats.batch_jobs
    assert stats.batch_cost_ms[3] > 0
    executed = [r for r in results if r.task == 'remote' and r.status == reasons.OK]
    assert len(executed) == stats.executed
    assert {r.input for r in executed if r.batch_size > 1} == set(cameras)
