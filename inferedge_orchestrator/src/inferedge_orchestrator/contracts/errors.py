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


"""The exceptions that cross layers: configuration, loading, jobs, servers and decoding."""


class ConfigError(ValueError):
    """A configuration value is invalid: the message names the field, value and what is allowed."""


class WorkerLoadError(RuntimeError):
    """A worker failed to load or warm up; the message names the task."""


class WorkerRuntimeMissing(RuntimeError):
    """The worker's runtime library is not installed; the message says what to install."""


class DecodeError(RuntimeError):
    """Encoded bytes could not be decoded into an image."""


class PostprocessError(ValueError):
    """A model output a decoder cannot read (that frame fails: reason postprocess_error)."""


class ServerUnavailable(RuntimeError):
    """A remote worker's request did not reach its server (reason server_unavailable)."""


class RequestDropped(RuntimeError):
    """
    The server dropped a request by its own queue policy, without running it.

    reason: expired (the request's timeout, the frame's remaining budget, passed while it was
    queued there) or queue_overflow (the server's queue was full); the message is the server's.
    """

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class RequestTimedOut(RuntimeError):
    """A remote worker's request got no answer within its transport timeout (reason timeout)."""


class WorkerCrashed(RuntimeError):
    """The child process of a slot died while it held a job (reason worker_crashed)."""


class ChildError(RuntimeError):
    """A job failed inside the child: the exception's type name and message, as raised there."""

    def __init__(self, type_name: str, message: str):
        super().__init__(message)
        self.type_name = type_name
