"""Cost of the general stress path of the calibration loss (issue 11).

The calibration loss now evaluates every observation through
`klax.mechanics.predict_stress`: one deformation gradient per point with an
in-plane block `[[λ1, γ], [0, λ2]]` (any load case), the closed form
`∂W/∂F = 2 W_1 F + 2 W_2 (I1 F − F C)` and the pressure eliminated from
`σ33 = 0`, then the measured component picked. Before, only `P11` of the
three one-stretch cases was computed, with the scalar formula
`P11 = 2 (λ1 − λ3²/λ1)(W_1 + λ2² W_2)`.

This script times the compiled value-and-gradient of the loss of a PANN
(FICNN 1×8) on Treloar's uniaxial + equibiaxial data (42 points) with both
paths, interleaved (old, new, old, new, ...) so that the noise of a shared
machine hits both alike, and prints min / median / max of the time per call
and of the ratio new/old. Both paths must agree to 1e-12.

Run: `python benchmarks/stress_paths.py [--repeats 15] [--calls 200]`.
"""

import argparse
import statistics
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

import klax
import klax.mechanics as km

jax.config.update("jax_enable_x64", True)


def old_p11(model, case_index, stretch):
    """The one-stretch P11 path of klax before issue 11 (the baseline)."""
    root = 1.0 / jnp.sqrt(stretch)
    inverse = 1.0 / stretch
    l2 = jnp.where(case_index == 0, root, jnp.where(case_index == 1, stretch, 1.0))
    l3 = jnp.where(
        case_index == 0, root, jnp.where(case_index == 1, inverse * inverse, inverse)
    )

    def point(l1, l2, l3):
        a2, b2, c2 = l1 * l1, l2 * l2, l3 * l3
        I1 = a2 + b2 + c2
        I2 = a2 * b2 + b2 * c2 + a2 * c2
        W1, W2 = jax.grad(model.isotropic_energy, (0, 1))(I1, I2)
        return 2.0 * (l1 - c2 / l1) * (W1 + b2 * W2)

    return jax.vmap(point)(stretch, l2, l3)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()

    curves = km.read_curves()
    train = ["uniaxial", "equibiaxial"]
    data = km.stress_data(curves, train)
    batch = km.StressData(*(jnp.asarray(a) for a in data))
    scale = km.invariant_scales(curves, train, "polyconvex")
    model = klax.finalize(
        km.IncompressiblePANN([8], "polyconvex", input_scale=scale, key=jr.key(0))
    )

    def loss_old(m):
        p = old_p11(m, batch.case_index, batch.stretch)
        return jnp.mean(batch.weight * (p - batch.stress) ** 2)

    def loss_new(m):
        return km.stress_loss(m, batch, None)

    old = eqx.filter_jit(eqx.filter_value_and_grad(loss_old))
    new = eqx.filter_jit(eqx.filter_value_and_grad(loss_new))
    (v_old, _), (v_new, _) = old(model), new(model)
    assert abs(float(v_old) - float(v_new)) <= 1e-12 * abs(float(v_old)), (
        v_old,
        v_new,
    )

    def timed(fn):
        start = time.perf_counter()
        for _ in range(args.calls):
            out = fn(model)
        jax.block_until_ready(out)
        return (time.perf_counter() - start) / args.calls

    times_old, times_new, ratios = [], [], []
    for _ in range(args.repeats):
        t_old, t_new = timed(old), timed(new)
        times_old.append(t_old)
        times_new.append(t_new)
        ratios.append(t_new / t_old)

    def summary(values, unit=1e6):
        v = sorted(values)
        return (
            f"min {v[0] * unit:.1f}  median {statistics.median(v) * unit:.1f}  "
            f"max {v[-1] * unit:.1f}"
        )

    print(f"value_and_grad of the loss, 42 points, {args.calls} calls per repeat")
    print(f"old P11 path   µs/call: {summary(times_old)}")
    print(f"predict_stress µs/call: {summary(times_new)}")
    print(f"ratio new/old          : {summary(ratios, 1.0)}")


if __name__ == "__main__":
    main()
