"""Getting started: fit a convex network to data.

The target f(x) = |x|^2 is convex, so it is fitted with a fully input-convex
neural network (`klax.nn.FICNN`), whose output is convex in its input for any
parameter values. Its hidden-to-hidden weights are `klax.NonNegative`
wrappers; training keeps them non-negative, and `klax.finalize` turns the
trained model into a plain callable.

Run: `python examples/getting_started.py [--quick] [--out DIR]`.
"""

# %%
import argparse
import pathlib

import jax
import jax.numpy as jnp
import jax.random as jr
import optax
from matplotlib.figure import Figure

import klax

FIGURES = pathlib.Path(__file__).resolve().parent.parent / "docs/examples/figures"


# %%
def main(quick: bool, out: pathlib.Path | None) -> None:
    steps = 50 if quick else 2000
    key_data, key_split, key_model, key_fit = jr.split(jr.key(0), 4)

    # 200 samples x in [-1, 1]^2 with targets y = |x|^2, shape (200,).
    x = jr.uniform(key_data, (200, 2), minval=-1.0, maxval=1.0)
    y = jnp.sum(x**2, axis=-1)
    train, valid = klax.split_data((x, y), (0.8, 0.2), key=key_split)

    # A scalar-valued network, convex in its two inputs.
    model = klax.nn.FICNN(2, "scalar", [16, 16], key=key_model)
    model, history = klax.fit(
        model,
        train,
        validation_data=valid,
        steps=steps,
        optimizer=optax.adam(1e-2),
        log_every=max(steps // 10, 1),
        verbose=1,
        key=key_fit,
    )

    # The trained model still holds NonNegative wrappers: finalize it to call it.
    f = klax.finalize(model)
    x_valid, y_valid = valid
    error = jnp.max(jnp.abs(jax.vmap(f)(x_valid) - y_valid))
    print(f"max validation error: {error:.3e}")
    print(f"parameters: {klax.count_parameters(model)}")

    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_h, ax_f = fig.subplots(1, 2)
    history.plot(ax=ax_h)
    ax_h.set(xlabel="Step", yscale="log", title="Training history")
    t = jnp.linspace(-1.0, 1.0, 101)
    line = jnp.stack([t, jnp.zeros_like(t)], axis=-1)
    ax_f.plot(t, t**2, "k-", label="$f(x_1, 0) = x_1^2$")
    ax_f.plot(t, jax.vmap(f)(line), "C1--", label="FICNN")
    ax_f.set(xlabel="$x_1$", title="A cut through the fitted function")
    ax_f.legend()
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        fig.savefig(out / "getting_started.png", dpi=110)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few steps only")
    parser.add_argument(
        "--out",
        type=pathlib.Path,
        help="where to save the figure (default: docs/examples/figures for a full "
        "run; not saved with --quick)",
    )
    args = parser.parse_args()
    main(args.quick, args.out or (None if args.quick else FIGURES))
