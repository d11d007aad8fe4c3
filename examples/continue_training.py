"""Continuing a training run.

A first call of `klax.fit` trains a convex network (FICNN) for a while; the
model and its history (which holds the final optimizer state) are saved.
Later they are loaded again, and a second call continues from where the first
one stopped: `init_opt_state=history.final_opt_state` keeps Adam's moment
estimates and step count, `batch_offset=history.total_steps` continues the
sequence of batches, and `History.extend` appends the second history with its
steps shifted. The result equals one uninterrupted run.

Run: `python examples/continue_training.py [--quick] [--out DIR]`.
"""

# %%
import argparse
import pathlib
import tempfile

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import optax
from matplotlib.figure import Figure

import klax

FIGURES = pathlib.Path(__file__).resolve().parent.parent / "docs/examples/figures"


# %%
def make_model(key):
    return klax.nn.FICNN(2, "scalar", [16, 16], key=key)


def main(quick: bool, out: pathlib.Path | None) -> None:
    steps = 40 if quick else 1500
    key_data, key_model, key_fit = jr.split(jr.key(0), 3)
    x = jr.uniform(key_data, (512, 2), minval=-1.0, maxval=1.0)
    y = jnp.log(jnp.exp(2 * x[:, 0]) + jnp.exp(x[:, 1])) + jnp.sum(x**2, axis=-1)
    train, valid = klax.split_data((x, y), (0.8, 0.2), key=key_data)
    options = dict(
        validation_data=valid,
        optimizer=optax.adam(3e-3),
        log_every=max(steps // 30, 1),
        verbose=0,
        key=key_fit,
    )

    # %% First run; save the (unfinalized) model and the history.
    with tempfile.TemporaryDirectory() as workdir:
        model_file = pathlib.Path(workdir) / "model.eqx"
        history_file = pathlib.Path(workdir) / "history.klax"
        model, history = klax.fit(make_model(key_model), train, steps=steps, **options)
        eqx.tree_serialise_leaves(model_file, model)
        history.save(history_file)

        # %% Later: rebuild the skeleton, load parameters and history, go on.
        model = eqx.tree_deserialise_leaves(model_file, make_model(jr.key(0)))
        history = klax.History.load(history_file)
    model, more = klax.fit(
        model,
        train,
        steps=steps,
        init_opt_state=history.final_opt_state,  # Adam's moments and step count
        batch_offset=history.total_steps,  # skip the batches already used
        **options,
    )
    history.extend(more)
    print(f"total steps {history.total_steps}, time {history.total_time:.1f} s")
    print(f"validation loss at the end: {history['validation_loss'][1][-1]:.3e}")

    # %% The same key and data give the same batches, so the two runs together
    # equal one uninterrupted run of 2 * steps.
    reference, ref_history = klax.fit(
        make_model(key_model), train, steps=2 * steps, **options
    )
    difference = max(
        float(jnp.max(jnp.abs(a - b)))
        for a, b in zip(
            jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array)),
            jax.tree.leaves(eqx.filter(reference, eqx.is_inexact_array)),
            strict=True,
        )
    )
    print(f"largest parameter difference to one run of {2 * steps} steps: {difference}")

    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    history.plot(ax=ax)
    ref_steps, ref_values = ref_history["validation_loss"]
    ax.plot(ref_steps, ref_values, "k:", label="uninterrupted run")
    ax.axvline(steps, color="0.5", linestyle="--", label="resumed")
    ax.set(xlabel="Step", yscale="log", title="Two runs, one history")
    ax.legend()
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        fig.savefig(out / "continue_training.png", dpi=110)


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
