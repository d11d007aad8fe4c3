"""Initialisation of constrained networks: check T6 of INIT_PAPER.md (section 5).

Task (a synthetic version of the learnability experiment of Hoedt & Klambauer,
2023): inputs are 4096 samples of an 8-dimensional standard Gaussian; the
target is the log-sum-exp of 16 random affine forms (a convex function),
standardised to mean 0 and variance 1.

Model: `klax.nn.FICNN(8, "scalar", [128] * 5, use_passthrough=False)`, i.e. an
ordinary first layer (He-normal weights, zero bias) followed by five layers
with non-negative weights (clamped at zero by `klax.apply` after every Adam
step; lr 1e-3, batch 64, 2000 steps), for ReLU and softplus activations.

Initialisations of the non-negative layers:

- proposed: `klax.hoedt_normal()` weights, `klax.hoedt_bias()` biases (the
  klax defaults; bias negative, as in the paper);
- default: He-normal weights clamped at zero, zero biases;
- flipped: `klax.hoedt_normal()` weights with the bias sign flipped
  (the klax 0.2.0 behaviour).

Every run starts from a clamped model (`klax.apply`). Steps are fused into one
`lax.scan` and the seeds are vmapped, so each configuration compiles once.
Reported over the seeds: min / median / max of the training MSE on all 4096
samples before and after training. Expected (paper and INIT_PAPER.md): only the
proposed initialisation trains (median MSE well below 1); the default one
starts with a huge output scale; the flipped one stays near 1 (predicting the
mean).

Run: `python benchmarks/init_comparison.py [--quick]`.
"""

import argparse
import functools
import os
import statistics
import time

os.environ.setdefault("EQX_ON_ERROR", "nan")

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402
import optax  # noqa: E402

import klax  # noqa: E402

N_SAMPLES, IN, N_FORMS = 4096, 8, 16
WIDTH, DEPTH = 128, 5
BATCH, LEARNING_RATE = 64, 1e-3


def flipped_hoedt_bias(key, shape, fan_in, dtype=jnp.float32):
    return -klax.hoedt_bias()(key, shape, fan_in, dtype)


INITS = {
    "proposed": (klax.hoedt_normal(), klax.hoedt_bias()),
    "default": (jax.nn.initializers.he_normal(), jax.nn.initializers.zeros),
    "flipped": (klax.hoedt_normal(), flipped_hoedt_bias),
}
ACTIVATIONS = {"relu": jax.nn.relu, "softplus": jax.nn.softplus}


def make_data(key):
    kx, ka, kc = jr.split(key, 3)
    x = jr.normal(kx, (N_SAMPLES, IN))
    a = jr.normal(ka, (N_FORMS, IN))
    c = jr.normal(kc, (N_FORMS,))
    y = jax.nn.logsumexp(x @ a.T + c, axis=-1)
    return x, (y - y.mean()) / y.std()


def make_model(key, init, activation):
    weight_init, bias_init = INITS[init]
    model = klax.nn.FICNN(
        IN,
        "scalar",
        [WIDTH] * DEPTH,
        use_passthrough=False,
        activation=ACTIVATIONS[activation],
        constrained_weight_init=weight_init,
        constrained_bias_init=bias_init,
        key=key,
    )
    return klax.apply(model)


def mse(model, x, y):
    return jnp.mean((jax.vmap(klax.unwrap(model))(x) - y) ** 2)


def train(model, key, x, y, steps):
    """`steps` Adam steps with clamping, fused in one `lax.scan`."""
    params, static = eqx.partition(model, eqx.is_inexact_array)
    optimizer = optax.adam(LEARNING_RATE)
    batches_per_epoch = N_SAMPLES // BATCH

    def loss(params, xb, yb):
        return mse(eqx.combine(params, static), xb, yb)

    def step(carry, i):
        params, opt_state = carry
        epoch, k = jnp.divmod(i, batches_per_epoch)
        perm = jr.permutation(jr.fold_in(key, epoch), N_SAMPLES)
        idx = jax.lax.dynamic_slice_in_dim(perm, k * BATCH, BATCH)
        grads = jax.grad(loss)(params, x[idx], y[idx])
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = klax.apply(optax.apply_updates(params, updates))
        return (params, opt_state), None

    carry = (params, optimizer.init(params))
    (params, _), _ = jax.lax.scan(step, carry, jnp.arange(steps))
    return mse(model, x, y), mse(eqx.combine(params, static), x, y)


def stats(values):
    return min(values), statistics.median(values), max(values)


def fmt(values):
    return "{:10.3g} {:10.3g} {:10.3g}".format(*stats(values))


def run(steps, seeds):
    x, y = make_data(jr.key(2023))
    keys = jr.split(jr.key(0), seeds)
    print(
        f"devices: {jax.devices()}; FICNN {IN} -> {[WIDTH] * DEPTH} -> 1, no "
        f"passthrough; adam {LEARNING_RATE}, batch {BATCH}, {steps} steps, "
        f"{seeds} seeds"
    )
    header = f"{'activation':10s} {'init':9s} | {'MSE before training':32s} | "
    header += f"{'MSE after training':32s} | time"
    sub = f"{'':10s} {'':9s} | {'min':>10s} {'median':>10s} {'max':>10s} | "
    sub += f"{'min':>10s} {'median':>10s} {'max':>10s} |"
    print(header)
    print(sub)
    for activation in ACTIVATIONS:
        for init in INITS:
            start = time.perf_counter()
            model_keys, train_keys = jax.vmap(lambda k: jr.split(k, 2))(keys).T
            models = eqx.filter_vmap(
                functools.partial(make_model, init=init, activation=activation)
            )(model_keys)
            fn = eqx.filter_jit(
                eqx.filter_vmap(
                    functools.partial(train, steps=steps),
                    in_axes=(eqx.if_array(0), 0, None, None),
                )
            )
            before, after = jax.block_until_ready(fn(models, train_keys, x, y))
            elapsed = time.perf_counter() - start
            before, after = before.tolist(), after.tolist()
            print(
                f"{activation:10s} {init:9s} | {fmt(before)} | {fmt(after)} | "
                f"{elapsed:5.1f} s"
            )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 steps, 3 seeds")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--seeds", type=int, default=None)
    args = parser.parse_args()
    steps = args.steps or (200 if args.quick else 2000)
    seeds = args.seeds or (3 if args.quick else 10)
    run(steps, seeds)


if __name__ == "__main__":
    main()
