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
What the property tests of the scheduling rules share: their settings and a tail quantile.

The examples are derandomized (the same in every run); PROPERTY_SEED=N draws others.
"""

import math
import os

from hypothesis import HealthCheck
from hypothesis import seed
from hypothesis import settings

OTHER_SEED = os.environ.get('PROPERTY_SEED')
SETTINGS = settings(max_examples=100, derandomize=OTHER_SEED is None, deadline=None,
                    database=None, suppress_health_check=[HealthCheck.too_slow])
Z99 = 2.326  # the standard normal's 99th percentile


def property_test(test):
    """Apply the settings, and PROPERTY_SEED when given."""
    test = SETTINGS(test)
    return seed(int(OTHER_SEED))(test) if OTHER_SEED else test


def p99_ms(mean, jitter):
    """Return the 99th percentile of the lognormal with this mean and standard deviation."""
    if jitter <= 0.0:
        return mean
    sigma2 = math.log1p((jitter / mean) ** 2)
    return math.exp(math.log(mean) - sigma2 / 2.0 + math.sqrt(sigma2) * Z99)
