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
Deterministic random draws: a value is a function of (seed, names, sequence number).

The dummy worker's service times and the simulation's transport ages are drawn from here, so
that two modes or configs replaying the same scenario see the same draw for the same frame and
can be compared frame by frame, whatever order the frames are served in.
"""

import math
from statistics import NormalDist
import zlib

_MASK = (1 << 64) - 1
_STANDARD_NORMAL = NormalDist()


def _mix(value: int) -> int:
    """Return splitmix64's finaliser of value: a well-spread 64-bit hash."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK
    return value ^ (value >> 31)


def name_key(name: str) -> int:
    """Return the stable key of a name (the same in every process and run)."""
    return zlib.crc32(name.encode('utf-8'))


def unit(seed: int, key: int, sequence: int) -> float:
    """Return a uniform draw in (0, 1) for (seed, key, sequence)."""
    value = _mix(_mix(_mix(seed & _MASK) ^ key) ^ (sequence & _MASK))
    return ((value >> 11) + 0.5) / float(1 << 53)


def sample(distribution: str, mean: float, jitter: float, u: float) -> float:
    """
    Return the u-quantile of a distribution with the given mean and spread, clipped at 0.

    uniform: mean +- jitter; normal: standard deviation jitter; lognormal: mean and standard
    deviation jitter (a right tail, as service times and transport delays have).
    """
    if distribution == 'fixed' or jitter <= 0.0:
        return max(0.0, mean)
    if distribution == 'uniform':
        return max(0.0, mean - jitter + 2.0 * jitter * u)
    z = _STANDARD_NORMAL.inv_cdf(u)
    if distribution == 'normal':
        return max(0.0, mean + jitter * z)
    if mean <= 0.0:
        return 0.0
    sigma2 = math.log1p((jitter / mean) ** 2)
    return math.exp(math.log(mean) - sigma2 / 2.0 + math.sqrt(sigma2) * z)


class TransportAge:
    """
    Draws the transport ages (stamp -> arrival, s) of one input's frames, in sequence.

    config is an InputConfig: age_ms (0: none), age_jitter_ms, age_distribution.
    """

    def __init__(self, config, seed: int = 0):
        self.config = config
        self._key = name_key(config.name)
        self._seed = seed
        self._index = 0

    def draw(self) -> float:
        config = self.config
        if not config.age_ms:
            return 0.0
        u = unit(self._seed, self._key, self._index)
        self._index += 1
        return sample(config.age_distribution, config.age_ms, config.age_jitter_ms, u) / 1000.0
