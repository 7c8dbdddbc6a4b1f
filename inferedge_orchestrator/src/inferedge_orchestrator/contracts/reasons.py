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

"""The closed vocabularies used verbatim in results, telemetry, decisions and messages."""

# Why a routed frame left a task queue without running.
QUEUE_OVERFLOW = 'queue_overflow'
EXPIRED = 'expired'
PREDICTED_LATE = 'predicted_late'
RATE_LIMITED = 'rate_limited'
DISABLED = 'disabled'
QUEUE_RESIZED = 'queue_resized'
DEACTIVATED = 'deactivated'
SHUTDOWN = 'shutdown'
# A server pool's circuit breaker is open (a frame dropped at dispatch), or a job's request
# could not reach the server (a failure).
SERVER_UNAVAILABLE = 'server_unavailable'
DROP_REASONS = (QUEUE_OVERFLOW, EXPIRED, PREDICTED_LATE, RATE_LIMITED, DISABLED,
                QUEUE_RESIZED, DEACTIVATED, SHUTDOWN, SERVER_UNAVAILABLE)

# Why a frame was rejected by an input before routing (counted per input as malformed).
UNKNOWN_INPUT = 'unknown_input'
UNKNOWN_ENCODING = 'unknown_encoding'
ZERO_SIZE = 'zero_size'
STEP_TOO_SMALL = 'step_too_small'
DATA_TOO_SHORT = 'data_too_short'
TOO_MANY_PIXELS = 'too_many_pixels'
BAD_ARRAY = 'bad_array'
# A known encoding that needs a converter which is not available (cv_bridge, OpenCV), or
# that cannot pass through as it is (the ROS node's convert_to: passthrough).
UNSUPPORTED_ENCODING = 'unsupported_encoding'
DECODE_ERROR = 'decode_error'
MALFORMED_REASONS = (UNKNOWN_INPUT, UNKNOWN_ENCODING, ZERO_SIZE, STEP_TOO_SMALL, DATA_TOO_SHORT,
                     TOO_MANY_PIXELS, BAD_ARRAY, UNSUPPORTED_ENCODING, DECODE_ERROR)

# Why a job that a worker took did not produce a result.
TIMEOUT = 'timeout'
WORKER_ERROR = 'worker_error'
POSTPROCESS_ERROR = 'postprocess_error'  # a decoder could not read the model's outputs
WORKER_CRASHED = 'worker_crashed'  # process isolation: the slot's child process died
FAILURE_REASONS = (TIMEOUT, WORKER_ERROR, DECODE_ERROR, POSTPROCESS_ERROR, WORKER_CRASHED,
                   SERVER_UNAVAILABLE)

# Result status.
OK = 'OK'
FAILED = 'FAILED'
TIMED_OUT = 'TIMED_OUT'

# What put a higher-priority task at risk: the reason of SHED_START and LIMIT decisions. A
# loss (LOSS_REASONS) or a p95 (LATENCY_P95) counts only when blocking by lower-priority work
# explains it; BACKLOG only while the task's frames were blocked (shedding.py).
DEADLINE_MISS = 'deadline_miss'
LATENCY_P95 = 'latency_p95'
BACKLOG = 'backlog'
LOSS_REASONS = (EXPIRED, PREDICTED_LATE, QUEUE_OVERFLOW, DEADLINE_MISS)
RISK_REASONS = LOSS_REASONS + (LATENCY_P95, BACKLOG)
# The other decision reasons.
RECOVERED = 'recovered'
PARAM_CHANGE = 'param_change'
SLOT_RETIRED = 'slot_retired'
RESPAWNED = 'respawned'
BATCH_COST = 'batch_cost'  # the measured costs of a task's batch sizes chose another size
DECISION_REASONS = tuple(dict.fromkeys(
    DROP_REASONS + FAILURE_REASONS + (DEADLINE_MISS, LATENCY_P95, BACKLOG, RECOVERED,
                                      PARAM_CHANGE, SLOT_RETIRED, RESPAWNED, BATCH_COST)))

# Decision events.
SHED_START = 'SHED_START'
SHED_STOP = 'SHED_STOP'
LIMIT = 'LIMIT'
DROP = 'DROP'
PARAM_CHANGE_EVENT = 'PARAM_CHANGE'
WORKER_ERROR_EVENT = 'WORKER_ERROR'
WORKER_TIMEOUT_EVENT = 'WORKER_TIMEOUT'
WORKER_CRASH_EVENT = 'WORKER_CRASH'  # process isolation: a slot's child process died
WORKER_RESPAWN_EVENT = 'WORKER_RESPAWN'  # ... and was started again (loaded, warmed up)
SERVER_DOWN = 'SERVER_DOWN'  # a server pool's circuit breaker opened (server_unavailable)
SERVER_UP = 'SERVER_UP'  # ... and closed: a health probe found the server ready (recovered)
BATCH_SIZE = 'BATCH_SIZE'  # the size a task's batches take changed (batch_cost)
EVENTS = (SHED_START, SHED_STOP, LIMIT, DROP, PARAM_CHANGE_EVENT, WORKER_ERROR_EVENT,
          WORKER_TIMEOUT_EVENT, WORKER_CRASH_EVENT, WORKER_RESPAWN_EVENT, SERVER_DOWN,
          SERVER_UP, BATCH_SIZE)
