"""`fit(mesh=...)` and `fit_ensemble(mesh=..., shard=...)` on several devices.

The multi-device checks run in a subprocess with 4 virtual CPU devices
(`XLA_FLAGS=--xla_force_host_platform_device_count=4`), so that the rest of
the suite keeps its single device. The subprocess trains the same models on
one device and on meshes of 4, and reports differences and shardings as JSON;
the assertions are made here.
"""

import json
import os
import subprocess
import sys
import textwrap

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, PartitionSpec

import klax

SCRIPT = textwrap.dedent(
    """
    import json
    import equinox as eqx, jax, jax.numpy as jnp, jax.random as jr, numpy as np
    import optax, klax

    jax.config.update("jax_numpy_rank_promotion", "raise")
    out = {"devices": jax.device_count()}
    x = jr.uniform(jr.key(0), (32, 2))
    y = jnp.sum(x**2, axis=-1)
    make = lambda k: klax.nn.MLP(2, "scalar", [4], key=k)
    opt = optax.sgd(0.05)
    kw = dict(batch_size=8, steps=6, optimizer=opt, make_logger=False, key=jr.key(3))

    def diff(a, b):
        d = jax.tree.map(lambda u, v: float(jnp.max(jnp.abs(u - v))),
                         eqx.filter(a, eqx.is_array), eqx.filter(b, eqx.is_array))
        return max(jax.tree.leaves(d))

    def spec(model):
        return str(model.layers[0].weight.sharding.spec)

    # fit: data parallel over the mesh, against one device.
    model = make(jr.key(1))
    ref, _ = klax.fit(model, (x, y), **kw)
    mesh = jax.make_mesh((4,), ("d",))  # explicit axes by default
    par, _ = klax.fit(model, (x, y), mesh=mesh, **kw)
    out["fit"] = [diff(ref, par), spec(par)]

    # The loss really sees each batch split over the devices (data parallel).
    seen = []

    @klax.loss
    def probe(model, batch, run_state):
        for array in batch:
            jax.debug.inspect_array_sharding(
                array, callback=lambda s: seen.append(str(s.spec)))
        return klax.mse(model, batch, run_state)

    klax.fit(model, (x, y), mesh=mesh, **dict(kw, loss=probe))
    out["batch_specs"] = seen

    # fit_ensemble: member parallel, data parallel, both on a 2 x 2 mesh.
    ens = klax.make_ensemble(make, 4, key=jr.key(2))
    ref, _ = klax.fit_ensemble(ens, (x, y), **kw)
    for name, m, shard in [
        ("members", mesh, "members"),
        ("batch", mesh, "batch"),
        ("both", jax.make_mesh((2, 2), ("m", "b")), {"members": "m", "batch": "b"}),
    ]:
        par, _ = klax.fit_ensemble(ens, (x, y), mesh=m, shard=shard, **kw)
        out[name] = [diff(ref, par), spec(par)]

    # Errors that need several devices.
    errors = {}
    three = klax.make_ensemble(make, 3, key=jr.key(0))
    for name, call in [
        ("members", lambda: klax.fit_ensemble(three, (x, y), mesh=mesh, **kw)),
        ("batch", lambda: klax.fit(model, (x, y), mesh=mesh, **dict(kw, batch_size=6))),
        ("axis", lambda: klax.fit_ensemble(ens, (x, y), mesh=mesh,
                                           shard={"members": "q"}, **kw)),
    ]:
        try:
            call()
            errors[name] = None
        except ValueError as e:
            errors[name] = str(e)
    out["errors"] = errors
    print("RESULT" + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def four_devices():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT")]
    assert done.returncode == 0 and lines, done.stderr[-4000:]
    return json.loads(lines[-1][len("RESULT") :])


# Round-off: sums over a batch split in 4 are added in another order.
TOL = 1e-5


def test_subprocess_has_four_devices(four_devices):
    assert four_devices["devices"] == 4


def test_fit_data_parallel_matches_one_device(four_devices):
    diff, spec = four_devices["fit"]
    assert diff < TOL
    assert spec == str(PartitionSpec())  # parameters replicated
    # Inside the loss (value and gradient), x and y are split along "d".
    specs = four_devices["batch_specs"]
    assert specs and set(specs) == {str(PartitionSpec("d"))}


@pytest.mark.parametrize(
    ("layout", "expected_spec"),
    [
        ("members", PartitionSpec("d", None, None)),
        ("batch", PartitionSpec()),
        ("both", PartitionSpec("m", None, None)),
    ],
)
def test_fit_ensemble_on_four_devices_matches_one(four_devices, layout, expected_spec):
    diff, spec = four_devices[layout]
    assert diff < TOL
    assert spec == str(expected_spec)


def test_mesh_errors_on_four_devices(four_devices):
    errors = four_devices["errors"]
    assert "3 members cannot be split evenly over the 4 devices" in errors["members"]
    assert "batch of 6 samples cannot be split evenly over the 4" in errors["batch"]
    assert "must name axes of the mesh" in errors["axis"]


# ---------------------------------------------------------------------------
# In-process checks (one device): a mesh of one device changes nothing.


def test_one_device_mesh_changes_nothing():
    x = jnp.linspace(0.0, 1.0, 8)
    model = klax.nn.MLP("scalar", "scalar", [3], key=jr.key(0))
    kw = dict(
        batch_size=4,
        steps=5,
        optimizer=optax.sgd(0.1),
        make_logger=False,
        key=jr.key(1),
    )
    ref, _ = klax.fit(model, (x, x), **kw)
    mesh = Mesh(np.asarray(jax.devices()[:1]), ("d",))
    out, _ = klax.fit(model, (x, x), mesh=mesh, **kw)
    assert eqx.tree_equal(
        eqx.filter(ref, eqx.is_array),
        eqx.filter(out, eqx.is_array),
        rtol=1e-6,
        atol=1e-7,
    )
    assert out.layers[0].weight.sharding.spec == PartitionSpec()
    out, _ = klax.fit(model, (x, x), mesh="all", **kw)
    assert out.layers[0].weight.sharding.mesh.axis_names == ("devices",)


def test_mesh_argument_errors():
    model = klax.nn.MLP("scalar", "scalar", [3], key=jr.key(0))
    data = (jnp.zeros(4), jnp.zeros(4))
    with pytest.raises(ValueError, match='the string "all"'):
        klax.fit(model, data, mesh="gpus", key=jr.key(0))
    with pytest.raises(TypeError, match="jax.sharding.Mesh"):
        klax.fit(model, data, mesh=jax.devices(), key=jr.key(0))
    ens = klax.make_ensemble(
        lambda k: klax.nn.Linear(1, 1, jr.normal, key=k), 2, key=jr.key(0)
    )
    mesh = Mesh(np.asarray(jax.devices()[:1]), ("d",))
    with pytest.raises(TypeError, match='"members", "batch" or a dict'):
        klax.fit_ensemble(
            ens, (jnp.zeros((4, 1)),) * 2, mesh=mesh, shard=1, key=jr.key(0)
        )
    with pytest.raises(ValueError, match="both members and batches"):
        klax.fit_ensemble(
            ens,
            (jnp.zeros((4, 1)),) * 2,
            mesh=mesh,
            shard={"members": "d", "batch": "d"},
            key=jr.key(0),
        )
    with pytest.raises(ValueError, match='keys must be "members"'):
        klax.fit_ensemble(
            ens, (jnp.zeros((4, 1)),) * 2, mesh=mesh, shard={"rows": "d"}, key=jr.key(0)
        )
