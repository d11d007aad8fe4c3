"""The public names of the foundation (API §0.3), signatures, doctests, and that
importing klax leaves every JAX configuration flag alone (API §0.1)."""

import doctest
import importlib
import inspect
import json
import os
import subprocess
import sys
import textwrap

import pytest

import klax
import klax.nn

FOUNDATION = [
    "nn",
    "Initializer",
    "SupportedInitializer",
    "canonicalize_initializer",
    "hoedt_bias",
    "hoedt_normal",
    "text_deserialize_filter_spec",
    "text_serialize_filter_spec",
    "count_parameters",
    "Constraint",
    "NonNegative",
    "NonTrainable",
    "Parameterize",
    "SkewSymmetric",
    "Symmetric",
    "Unwrappable",
    "apply",
    "contains_constraints",
    "contains_unwrappables",
    "finalize",
    "non_trainable",
    "unwrap",
    "ContainsUnwrappablesError",
]
FOUNDATION_NN = ["Linear", "InputSplitLinear"]

# Modules whose docstring examples must run as doctests (float32, x64 off).
DOCTESTED = [
    "klax._misc",
    "klax._initializers",
    "klax._wrappers",
    "klax._serialization",
    "klax._tools",
    "klax.nn._linear",
]


@pytest.mark.parametrize("name", FOUNDATION)
def test_klax_exports(name):
    obj = getattr(klax, name)
    if name not in ("nn", "SupportedInitializer"):
        assert obj.__module__.startswith("klax."), obj.__module__
        assert obj.__doc__, f"klax.{name} has no docstring"


@pytest.mark.parametrize("name", FOUNDATION_NN)
def test_klax_nn_exports(name):
    obj = getattr(klax.nn, name)
    assert inspect.isclass(obj)
    assert obj.__doc__


def test_kinds_of_objects():
    for name in (
        "Constraint",
        "NonNegative",
        "NonTrainable",
        "Parameterize",
        "SkewSymmetric",
        "Symmetric",
        "Unwrappable",
    ):
        assert issubclass(getattr(klax, name), klax.Unwrappable)
    assert issubclass(klax.NonNegative, klax.Constraint)
    assert issubclass(klax.ContainsUnwrappablesError, RuntimeError)
    assert klax.nn is importlib.import_module("klax.nn")
    assert isinstance(klax.__version__, str)


def test_function_signatures():
    expected = {
        klax.canonicalize_initializer: ["init"],
        klax.hoedt_normal: ["in_axis", "dtype"],
        klax.hoedt_bias: [],
        klax.unwrap: ["tree"],
        klax.apply: ["tree"],
        klax.finalize: ["tree"],
        klax.non_trainable: ["tree"],
        klax.contains_unwrappables: ["tree"],
        klax.contains_constraints: ["tree"],
        klax.count_parameters: ["model"],
        klax.text_serialize_filter_spec: ["f", "x"],
        klax.text_deserialize_filter_spec: ["f", "x"],
    }
    for fn, names in expected.items():
        assert list(inspect.signature(fn).parameters) == names, fn.__name__
    params = list(inspect.signature(klax.Parameterize.__init__).parameters)
    assert params == ["self", "fn", "args", "kwargs"]


@pytest.mark.parametrize("module_name", DOCTESTED)
def test_docstring_examples(module_name):
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, verbose=False, report=True)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {module_name}"


def test_every_public_docstring_example_is_collected():
    finder = doctest.DocTestFinder()
    with_examples = {
        test.name.rsplit(".", 1)[-1]
        for name in DOCTESTED
        for test in finder.find(importlib.import_module(name))
        if test.examples
    }
    for name in ("canonicalize_initializer", "hoedt_normal", "hoedt_bias", "unwrap"):
        assert name in with_examples


IMPORT_CHECK = textwrap.dedent(
    """
    import json, sys
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_numpy_rank_promotion", "raise")
    before = {k: repr(v) for k, v in jax.config.values.items()}
    import klax
    after = {k: repr(v) for k, v in jax.config.values.items()}
    changed = sorted(k for k in before.keys() | after.keys()
                     if before.get(k) != after.get(k))
    # The library works with rank promotion "raise" set before the import.
    layer = klax.nn.Linear(3, 2, jax.nn.initializers.ones, key=jax.random.key(0))
    assert layer(jnp.ones((4, 3))).shape == (4, 2)
    print(json.dumps({"changed": changed, "x64": bool(jax.config.jax_enable_x64)}))
    """
)


def _run_python(code, drop_env=("JAX_", "XLA_")):
    """Run `code` in a fresh CPU-only interpreter; fail with its stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop_env)}
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out


def test_import_changes_no_jax_config_flag():
    out = _run_python(IMPORT_CHECK)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["changed"] == []
    assert report["x64"] is False


def test_mechanics_is_imported_on_first_use():
    code = (
        "import sys, klax\n"
        "assert 'klax.mechanics' not in sys.modules\n"
        "assert callable(klax.mechanics.right_cauchy_green)\n"
        "assert 'klax.mechanics' in sys.modules\n"
        "try:\n"
        "    klax.no_such_name\n"
        "except AttributeError as e:\n"
        "    assert 'no_such_name' in str(e)\n"
        "else:\n"
        "    raise SystemExit('no AttributeError')\n"
    )
    _run_python(code)
