"""`load_model` and the dtype of a saved model: float64 needs x64, else it warns."""

import json
import warnings

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import klax.mechanics as km

CONFIG = {"model": "mooney-rivlin"}
F = np.array([[1.2, 0.1, 0.0], [0.0, 0.9, 0.2], [0.1, 0.0, 1.0]])


def _dtypes(model):
    return {x.dtype for x in jax.tree.leaves(model) if isinstance(x, jax.Array)}


@pytest.fixture
def float64_model(tmp_path):
    with jax.enable_x64(True):
        model = km.build_model(CONFIG, key=jr.key(0))
        assert _dtypes(model) == {jnp.dtype("float64")}
        km.save_model(tmp_path, model, dict(CONFIG))
        stress = np.asarray(km.first_piola(km.load_model(tmp_path), F))
    assert json.loads((tmp_path / "model.json").read_text())["dtype"] == "float64"
    return tmp_path, stress


def test_float64_model_without_x64_warns_and_loads_float32(float64_model):
    directory, stress64 = float64_model
    with pytest.warns(UserWarning, match="float64 model, loaded as float32"):
        model = km.load_model(directory)
    assert _dtypes(model) == {jnp.dtype("float32")}
    stress32 = km.first_piola(model, F)
    assert stress32.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(stress32), stress64, rtol=1e-5, atol=1e-6)


def test_float64_model_with_x64_loads_float64_silently(float64_model):
    directory, stress64 = float64_model
    with jax.enable_x64(True), warnings.catch_warnings():
        warnings.simplefilter("error")
        model = km.load_model(directory)
        assert _dtypes(model) == {jnp.dtype("float64")}
        assert np.array_equal(np.asarray(km.first_piola(model, F)), stress64)


def test_float32_model_loads_silently(tmp_path):
    model = km.build_model(CONFIG, key=jr.key(0))
    km.save_model(tmp_path, model, dict(CONFIG))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = km.load_model(tmp_path)
    assert _dtypes(loaded) == {jnp.dtype("float32")}
