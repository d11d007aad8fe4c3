"""Training without data: a physics-informed network for u' + u = 0, u(0) = 1.

The network u(t) is trained on the residual of the differential equation at
collocation points and on the initial condition; no samples of the solution
are used. The collocation points are part of the model (frozen with
`klax.NonTrainable`), so `klax.fit` is called with `data=None` and
`batch_axes=None`. Two custom metrics log the two residuals separately.

Run: `python examples/physics_informed.py [--quick] [--out DIR]`.
"""

# %%
import argparse
import pathlib

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import optax
from jaxtyping import Array
from matplotlib.figure import Figure

import klax

FIGURES = pathlib.Path(__file__).resolve().parent.parent / "docs/examples/figures"


# %% [markdown]
# The model: an MLP `t -> u(t)` plus the collocation points. Wrapping the points
# in `klax.NonTrainable` stops gradients through them, so the optimizer leaves
# them where they are. Inside the loss the model arrives unwrapped, and
# `model.t` is a plain array.


# %%
class PINN(eqx.Module):
    u: klax.nn.MLP
    t: Array | klax.NonTrainable

    def __init__(self, t_max: float, num_points: int, *, key):
        self.u = klax.nn.MLP(
            "scalar", "scalar", [16, 16], activation=jax.nn.tanh, key=key
        )
        self.t = klax.NonTrainable(jnp.linspace(0.0, t_max, num_points))

    def __call__(self, t):
        return self.u(t)


def ode_residual(model: PINN) -> Array:
    """u'(t) + u(t) at every collocation point."""
    du = jax.vmap(jax.grad(model.u))(model.t)
    return du + jax.vmap(model.u)(model.t)


def initial_residual(model: PINN) -> Array:
    """u(0) - 1."""
    return model.u(jnp.zeros(())) - 1.0


# %% [markdown]
# The loss ignores `batch` (it is `None`, because there is no data) and
# `run_state`.


# %%
@klax.loss
def physics_loss(model, batch, run_state):
    del batch, run_state
    return jnp.mean(ode_residual(model) ** 2) + initial_residual(model) ** 2


# %% [markdown]
# Metrics receive the training context. The model in the context is still
# wrapped, so unwrap it before calling the residual functions.


# %%
@klax.metric("ode_residual", verbose=True)
def ode_metric(context):
    model = klax.unwrap(context.state.model)
    return jnp.sqrt(jnp.mean(ode_residual(model) ** 2))


@klax.metric("initial_residual", verbose=True)
def initial_metric(context):
    return jnp.abs(initial_residual(klax.unwrap(context.state.model)))


# %%
def main(quick: bool, out: pathlib.Path | None) -> None:
    steps = 50 if quick else 3000
    t_max = 3.0
    model = PINN(t_max, 32, key=jr.key(0))
    model, history = klax.fit(
        model,
        None,
        batch_axes=None,
        steps=steps,
        loss=physics_loss,
        optimizer=optax.adam(1e-2),
        metrics=[ode_metric, initial_metric],
        log_every=max(steps // 10, 1),
        verbose=1,
        key=jr.key(1),
    )

    model = klax.finalize(model)
    t = jnp.linspace(0.0, t_max, 200)
    u = jax.vmap(model)(t)
    error = jnp.max(jnp.abs(u - jnp.exp(-t)))
    print(f"max |u - exp(-t)| on [0, {t_max}]: {error:.2e}")

    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_u, ax_h = fig.subplots(1, 2)
    ax_u.plot(t, jnp.exp(-t), "k-", label="exact $e^{-t}$")
    ax_u.plot(t, u, "C1--", label="network")
    ax_u.plot(model.t, jax.vmap(model)(model.t), "C1o", ms=3, label="collocation")
    ax_u.set(xlabel="$t$", ylabel="$u$", title="Solution")
    ax_u.legend()
    history.plot(ax=ax_h)
    ax_h.set(xlabel="Step", yscale="log", title="Training history")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        fig.savefig(out / "physics_informed.png", dpi=110)


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
