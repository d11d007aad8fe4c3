"""Sample weights through a custom loss.

Measurements of y = sin(x) from two instruments: a few precise ones (noise
sigma = 0.05) and many noisy ones (sigma = 0.5). A weighted least-squares fit
gives each sample the weight 1 / sigma^2 (the inverse noise variance), so the
precise samples count more. The weights travel with the data: the batch is
`(x, y, w)`, and `klax.batch_data` slices all three consistently. The
weighted fit is compared with a plain `klax.mse` fit of the same data.

Run: `python examples/sample_weights.py [--quick] [--out DIR]`.
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


# %% [markdown]
# A loss is a function `(model, batch, run_state) -> scalar` decorated with
# `klax.loss`. The model it receives is already unwrapped.


# %%
@klax.loss
def weighted_mse(model, batch, run_state):
    del run_state
    x, y, w = batch
    y_pred = jax.vmap(model)(x)
    return jnp.sum(w * (y_pred - y) ** 2) / jnp.sum(w)


# %%
def make_data(key, n_precise: int = 32, n_noisy: int = 320):
    kx, kn = jr.split(key)
    n = n_precise + n_noisy
    x = jr.uniform(kx, (n,), minval=0.0, maxval=2 * jnp.pi)
    sigma = jnp.where(jnp.arange(n) < n_precise, 0.05, 0.5)
    y = jnp.sin(x) + sigma * jr.normal(kn, (n,))
    return x, y, 1.0 / sigma**2


def main(quick: bool, out: pathlib.Path | None) -> None:
    steps = 50 if quick else 4000
    key_data, key_model, key_fit = jr.split(jr.key(0), 3)
    x, y, w = make_data(key_data)
    model = klax.nn.MLP("scalar", "scalar", [32, 32], key=key_model)
    options = dict(
        steps=steps,
        batch_size=64,
        optimizer=optax.adam(3e-3),
        log_every=max(steps // 5, 1),
        verbose=0,
        key=key_fit,
    )

    # The same data, once with weights (batch (x, y, w)) and once without.
    weighted, _ = klax.fit(model, (x, y, w), loss=weighted_mse, **options)
    plain, _ = klax.fit(model, (x, y), loss=klax.mse, **options)

    grid = jnp.linspace(0.0, 2 * jnp.pi, 300)
    truth = jnp.sin(grid)
    rows = []
    for name, fitted in (("weighted", weighted), ("plain mse", plain)):
        pred = jax.vmap(klax.finalize(fitted))(grid)
        rows.append((name, pred))
        rmse = jnp.sqrt(jnp.mean((pred - truth) ** 2))
        print(f"{name:>10}: RMSE to sin(x) on a grid = {rmse:.4f}")

    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_fit, ax_err = fig.subplots(1, 2)
    precise = w > w.min()
    ax_fit.plot(x[~precise], y[~precise], ".", color="0.7", label="noisy, σ = 0.5")
    ax_fit.plot(x[precise], y[precise], "ko", ms=4, label="precise, σ = 0.05")
    ax_fit.plot(grid, truth, "k-", lw=1, label="sin(x)")
    for (name, pred), style in zip(rows, ("C0-", "C3--"), strict=True):
        ax_fit.plot(grid, pred, style, label=name)
        ax_err.plot(grid, pred - truth, style, label=name)
    ax_fit.set(xlabel="$x$", ylabel="$y$", title="Data and fits", ylim=(-2.0, 2.0))
    ax_fit.legend(loc="lower left", fontsize="small")
    ax_err.axhline(0.0, color="k", lw=1)
    ax_err.set(xlabel="$x$", ylabel="fit − sin(x)", title="Error of the fits")
    ax_err.legend()
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        fig.savefig(out / "sample_weights.png", dpi=110)


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
