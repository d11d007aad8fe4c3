"""Ensembles and several devices.

Eight networks, each with its own initialisation and its own batches, are
trained at once with `klax.fit_ensemble`: one compilation and one loop for
all members. The spread of the members' predictions is a cheap indicator of
model uncertainty; it grows away from the data, but, as the figure shows, it
falls far short of the actual error of extrapolation. With several devices
the members are spread over them (`mesh="all"`); here the CPU is split into
two devices to show this on any machine.

Run: `python examples/ensembles.py [--quick] [--out DIR]`.
"""

# %%
import argparse
import pathlib

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from matplotlib.figure import Figure

import klax

# Split the CPU into two devices; this must happen before JAX first uses a
# device. On a machine with several GPUs leave it out: `mesh="all"` below then
# spreads the members over the GPUs.
jax.config.update("jax_num_cpu_devices", 2)
FIGURES = pathlib.Path(__file__).resolve().parent.parent / "docs/examples/figures"
MEMBERS = 8


# %%
def make_data(key, n: int = 96):
    """Noisy samples of x^3 - x in two clusters, [-1, -0.35] and [0.35, 1]."""
    ku, kn = jr.split(key)
    u = jr.uniform(ku, (n,), minval=0.35, maxval=1.0)
    x = jnp.where(jnp.arange(n) % 2 == 0, u, -u)
    y = x**3 - x + 0.05 * jr.normal(kn, (n,))
    return x, y


def main(quick: bool, out: pathlib.Path | None) -> None:
    steps = 50 if quick else 3000
    key_data, key_split, key_models, key_fit = jr.split(jr.key(0), 4)
    train, valid = klax.split_data(make_data(key_data), (0.8, 0.2), key=key_split)

    # One model whose arrays have a leading member axis of length MEMBERS.
    ensemble = klax.make_ensemble(
        lambda k: klax.nn.MLP("scalar", "scalar", [32, 32], key=k),
        MEMBERS,
        key=key_models,
    )
    print(f"{len(jax.devices())} device(s), {klax.ensemble_size(ensemble)} members")
    ensemble, history = klax.fit_ensemble(
        ensemble,
        train,
        validation_data=valid,
        steps=steps,
        optimizer=optax.adam(3e-3),
        log_every=max(steps // 20, 1),
        verbose=0,
        mesh="all" if len(jax.devices()) > 1 else None,  # members over devices
        key=key_fit,
    )

    # Every logged value holds one entry per member.
    steps_logged, valid_losses = history["validation_loss"]
    valid_losses = np.stack(valid_losses)  # (logging steps, members)
    best, index = klax.best_member(ensemble, valid_losses[-1])
    print("final validation loss per member:", np.array2string(valid_losses[-1]))
    print(f"best member: {index}")

    grid = jnp.linspace(-1.5, 1.5, 301)
    prediction = klax.evaluate_ensemble(ensemble, grid, batched=True)
    x, y = train

    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_f, ax_h = fig.subplots(1, 2)
    ax_f.plot(grid, prediction.outputs.T, color="C0", lw=0.6, alpha=0.5)
    ax_f.fill_between(
        grid,
        prediction.mean - 2 * prediction.std,
        prediction.mean + 2 * prediction.std,
        color="C0",
        alpha=0.2,
        label="mean ± 2 std",
    )
    ax_f.plot(grid, prediction.mean, "C0-", label="ensemble mean")
    ax_f.plot(grid, jax.vmap(klax.finalize(best))(grid), "C3-", lw=1, label="best")
    ax_f.plot(grid, grid**3 - grid, "k--", lw=1, label="$x^3 - x$")
    ax_f.plot(x, y, "k.", ms=4, label="training data")
    ax_f.set(xlabel="$x$", ylabel="$y$", ylim=(-1.5, 1.5), title="Members and spread")
    ax_f.legend(loc="upper left", fontsize="small")
    ax_h.plot(steps_logged, valid_losses, color="C0", lw=0.8)
    ax_h.plot(steps_logged, valid_losses[:, index], "C3-", label=f"best ({index})")
    ax_h.set(xlabel="Step", yscale="log", title="Validation loss per member")
    ax_h.legend()
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        fig.savefig(out / "ensembles.png", dpi=110)


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
