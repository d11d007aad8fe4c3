"""Shared test configuration.

The whole suite runs with `jax_numpy_rank_promotion="raise"` (klax must never
rely on implicit rank promotion). Tests default to float32; use the `x64`
fixture (or `with jax.enable_x64(True):`) for float64 checks.
"""

import os

import jax
import jax.random as jr
import pytest
from hypothesis import HealthCheck, settings

jax.config.update("jax_numpy_rank_promotion", "raise")

settings.register_profile(
    "klax",
    deadline=None,
    max_examples=int(os.environ.get("KLAX_HYPOTHESIS_EXAMPLES", "15")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=True,
)
settings.load_profile("klax")


@pytest.fixture
def x64():
    """Run the test body with 64-bit floats enabled."""
    with jax.enable_x64(True):
        yield


@pytest.fixture
def getkey():
    """Return a function producing fresh, deterministic keys."""
    counter = iter(range(10**9))
    base = jr.key(1234)
    return lambda: jr.fold_in(base, next(counter))
