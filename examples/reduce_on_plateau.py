"""Reducing the learning rate on a plateau.

`optax.contrib.reduce_on_plateau` scales the updates down when the loss stops
improving. It needs the loss value at every update, which klax passes to every
optimizer (`value=`, as well as `grad=` and `value_fn=`), so it is simply
chained after Adam. A small callback reads the current scale out of the
optimizer state after every step and records it.

Run: `python examples/reduce_on_plateau.py [--quick] [--out DIR]`.
"""

# %%
import argparse
import pathlib

import jax.numpy as jnp
import jax.random as jr
import optax
from matplotlib.figure import Figure

import klax

FIGURES = pathlib.Path(__file__).resolve().parent.parent / "docs/examples/figures"


# %% [markdown]
# A callback is a subclass of `klax.Callback` that overrides any of
# `on_training_start`, `on_training_step` and `on_training_end`. It sees the
# training context, whose `state` holds the model, the optimizer state, the
# run state and the step counter. `optax.tree_utils.tree_get` finds the
# `scale` field of the `ReduceLROnPlateauState` inside the chained state.


# %%
class ScaleRecorder(klax.Callback):
    """Record the learning-rate scale of reduce_on_plateau after every step."""

    def __init__(self):
        self.steps: list[int] = []
        self.scales: list[float] = []

    def on_training_step(self, context):
        self.steps.append(int(context.state.step))
        scale = optax.tree_utils.tree_get(context.state.opt_state, "scale")
        self.scales.append(float(scale))


# %%
def main(quick: bool, out: pathlib.Path | None) -> None:
    steps = 60 if quick else 6000
    key_data, key_model, key_fit = jr.split(jr.key(0), 3)
    x = jnp.linspace(-1.0, 1.0, 512)[:, None]
    noise = 0.05
    y = jnp.sin(4 * x) * jnp.exp(-x) + noise * jr.normal(key_data, x.shape)
    model = klax.nn.MLP(1, 1, [32, 32], key=key_model)

    # Every 50 steps the loss, averaged over those steps, is compared with the
    # best average so far; after 4 such checks without improvement the scale
    # is halved.
    optimizer = optax.chain(
        optax.adam(1e-2),
        optax.contrib.reduce_on_plateau(
            factor=0.5, patience=4, accumulation_size=50, min_scale=1e-3
        ),
    )
    recorder = ScaleRecorder()
    model, history = klax.fit(
        model,
        (x, y),
        batch_size=64,
        steps=steps,
        optimizer=optimizer,
        callbacks=[recorder],
        log_every=max(steps // 60, 1),
        verbose=0,
        key=key_fit,
    )
    loss_steps, loss_values = history["loss"]
    print(f"loss {loss_values[0]:.3e} at step 0, {loss_values[-1]:.3e} at the end")
    print(f"final learning-rate scale: {recorder.scales[-1]:g}")

    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_h, ax_s = fig.subplots(1, 2, sharex=True)
    history.plot("loss", ax=ax_h)
    ax_h.axhline(noise**2, color="k", linestyle=":", label="noise variance")
    ax_h.legend()
    ax_h.set(xlabel="Step", yscale="log", title="Training loss")
    ax_s.step(recorder.steps, recorder.scales, where="post")
    ax_s.set(xlabel="Step", ylabel="scale", yscale="log", title="Learning-rate scale")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        fig.savefig(out / "reduce_on_plateau.png", dpi=110)


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
