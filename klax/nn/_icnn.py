r"""Input-convex neural networks: fully (FICNN) and partially (PICNN) convex.

All linear maps use the row-vector convention `y = x @ W + b` with weights of
shape `(in, out)`. Convexity comes from two ingredients: the weights acting on
hidden states are wrapped in [`klax.NonNegative`][] (clamped at zero after every
update by [`klax.apply`][]), and the activations are convex and non-decreasing
(softplus by default). Call [`klax.finalize`][] before evaluating a network
outside of training.

Activations are stored replicated per neuron (every array leaf of a learnable
activation gets a leading axis of the layer width) and applied to the whole
pre-activation vector in one call, so a learnable element-wise activation whose
parameters broadcast against the last axis acts per neuron.
"""

from collections.abc import Callable, Sequence
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, ArrayLike, PRNGKeyArray

from .._initializers import SupportedInitializer, hoedt_bias, hoedt_normal
from .._misc import check_bool, check_size, check_widths
from .._wrappers import NonNegative, check_finalized
from ._activations import (
    batch_shape,
    check_activation,
    identity,
    replicate,
)
from ._linear import InputSplitLinear, Linear

Size = int | Literal["scalar"]
# Default initializers, built once (they are stateless).
_he_normal = jax.nn.initializers.he_normal()
_hoedt_normal = hoedt_normal()
_hoedt_bias = hoedt_bias()


def _check_flags(owner: str, **flags: Any) -> None:
    for name, value in flags.items():
        check_bool(value, f"`{owner}({name}=...)`")


class FICNNLayer(eqx.Module):
    r"""One layer of a fully input-convex network.

    Computes $y' = \sigma(y U + x W + b)$ from the previous hidden state $y$
    and the network input $x$ (the passthrough), and returns `(y', x)`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import klax
        >>> layer = klax.nn.FICNNLayer(3, 2, 4, key=jax.random.key(0))
        >>> y, x = klax.finalize(layer)(jnp.ones(3), jnp.ones(2))
        >>> y.shape, x.shape
        ((4,), (2,))
    """

    linear_y: InputSplitLinear | Linear
    activation_y: Callable
    use_bias: bool = eqx.field(static=True)
    use_passthrough: bool = eqx.field(static=True)
    nonnegative_y_weight: bool = eqx.field(static=True)
    nonnegative_passthrough: bool = eqx.field(static=True)

    def __init__(
        self,
        y_in_size: Size,
        x_size: Size,
        y_out_size: Size,
        *,
        use_passthrough: bool = True,
        nonnegative_y_weight: bool = True,
        nonnegative_passthrough: bool = False,
        use_bias: bool = True,
        activation: Callable = jax.nn.softplus,
        weight_init: SupportedInitializer = _he_normal,
        bias_init: SupportedInitializer = jax.nn.initializers.zeros,
        constrained_weight_init: SupportedInitializer | None = _hoedt_normal,
        constrained_bias_init: SupportedInitializer | None = _hoedt_bias,
        dtype: Any = None,
        key: PRNGKeyArray,
    ):
        r"""**Arguments:**

        - `y_in_size`: size of the incoming hidden state `y` (int or `"scalar"`).
        - `x_size`: size of the network input `x` (int or `"scalar"`).
        - `y_out_size`: size of the new hidden state (int or `"scalar"`).
        - `use_passthrough`: whether `x` enters the layer through its own
          weight $W$.
        - `nonnegative_y_weight`: wrap $U$ in `klax.NonNegative` (needed for
          convexity in every layer after the first).
        - `nonnegative_passthrough`: wrap $W$ in `klax.NonNegative` (needed for
          a non-decreasing network).
        - `use_bias`: whether to add the bias $b$.
        - `activation`: activation $\sigma$, convex and non-decreasing for
          convexity; may be an `eqx.Module` with parameters (one copy per neuron).
        - `weight_init`, `bias_init`: initializers of unconstrained weights and
          of the bias of a layer without constrained weights.
        - `constrained_weight_init`, `constrained_bias_init`: initializers of
          non-negative weights and of the bias of a layer that has them;
          `None` falls back to `weight_init` / `bias_init`.
        - `dtype`: parameter dtype; defaults to float64 with x64 enabled, else
          float32.
        - `key`: a JAX random key. (Keyword only argument.)
        """
        owner = "klax.nn.FICNNLayer"
        check_size(y_in_size, f"`{owner}(y_in_size=...)`")
        check_size(x_size, f"`{owner}(x_size=...)`")
        check_size(y_out_size, f"`{owner}(y_out_size=...)`")
        _check_flags(
            owner,
            use_passthrough=use_passthrough,
            nonnegative_y_weight=nonnegative_y_weight,
            nonnegative_passthrough=nonnegative_passthrough,
            use_bias=use_bias,
        )
        check_activation(activation, owner, "activation")
        cw = weight_init if constrained_weight_init is None else constrained_weight_init
        cb = bias_init if constrained_bias_init is None else constrained_bias_init
        if use_passthrough:
            self.linear_y = InputSplitLinear(
                (y_in_size, x_size),
                y_out_size,
                weight_inits=(
                    cw if nonnegative_y_weight else weight_init,
                    cw if nonnegative_passthrough else weight_init,
                ),
                bias_init=(
                    cb if nonnegative_y_weight or nonnegative_passthrough else bias_init
                ),
                use_bias=use_bias,
                weight_wraps=(
                    NonNegative if nonnegative_y_weight else None,
                    NonNegative if nonnegative_passthrough else None,
                ),
                bias_wrap=None,
                dtype=dtype,
                key=key,
            )
        else:
            self.linear_y = Linear(
                y_in_size,
                y_out_size,
                weight_init=cw if nonnegative_y_weight else weight_init,
                bias_init=cb if nonnegative_y_weight else bias_init,
                use_bias=use_bias,
                weight_wrap=NonNegative if nonnegative_y_weight else None,
                dtype=dtype,
                key=key,
            )
        self.activation_y = replicate(activation, y_out_size)
        self.use_bias = use_bias
        self.use_passthrough = use_passthrough
        self.nonnegative_y_weight = nonnegative_y_weight
        self.nonnegative_passthrough = nonnegative_passthrough

    def __call__(
        self, y: ArrayLike, x: ArrayLike, *, key: PRNGKeyArray | None = None
    ) -> tuple[Array, Array]:
        """**Arguments:**

        - `y`: hidden state of shape `(y_in_size,)` (or `()` for `"scalar"`).
        - `x`: network input of shape `(x_size,)` (or `()` for `"scalar"`);
          the same leading batch axes as `y` are allowed for int sizes.
        - `key`: ignored. (Keyword only argument.)

        **Returns:** `(y_new, x)`: the new hidden state of shape
        `(y_out_size,)` (or `()`) and `x`, unchanged.
        """
        del key
        check_finalized(self)
        if self.use_passthrough:
            z = self.linear_y(y, x)  # pyright: ignore[reportCallIssue]
        else:
            z = self.linear_y(y)
        return self.activation_y(z), x  # pyright: ignore[reportReturnType]


class FICNN(eqx.Module):
    r"""Fully input-convex neural network: every output is convex in the input.

    With $z_0 = x$ and $L$ hidden layers,

    $$z_{k+1} = \sigma_k(z_k U_k + [k \geq 1]\, x W_k + b_k), \qquad
    f(x) = z_{L+1},$$

    where $U_k \geq 0$ for $k \geq 1$ (`klax.NonNegative`) and the activations
    are convex and non-decreasing. With `non_decreasing=True` also $U_0$ and
    the passthrough weights $W_k$ are non-negative, so $f$ is non-decreasing in
    every input. The non-negative layers start from Hoedt & Klambauer's (2023)
    initialisation ([`klax.hoedt_normal`][], [`klax.hoedt_bias`][]).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import klax
        >>> model = klax.nn.FICNN(2, "scalar", [8, 8], key=jax.random.key(0))
        >>> klax.finalize(model)(jnp.ones(2)).shape
        ()
    """

    layers: tuple[FICNNLayer, ...]
    use_bias: bool = eqx.field(static=True)
    use_final_bias: bool = eqx.field(static=True)
    use_passthrough: bool = eqx.field(static=True)
    non_decreasing: bool = eqx.field(static=True)
    in_size: Size = eqx.field(static=True)
    out_size: Size = eqx.field(static=True)
    width_sizes: tuple[int, ...] = eqx.field(static=True)

    def __init__(
        self,
        in_size: Size,
        out_size: Size,
        width_sizes: Sequence[int],
        use_passthrough: bool = True,
        non_decreasing: bool = False,
        weight_init: SupportedInitializer = _he_normal,
        bias_init: SupportedInitializer = jax.nn.initializers.zeros,
        constrained_weight_init: SupportedInitializer | None = _hoedt_normal,
        constrained_bias_init: SupportedInitializer | None = _hoedt_bias,
        activation: Callable = jax.nn.softplus,
        final_activation: Callable = identity,
        use_bias: bool = True,
        use_final_bias: bool = True,
        dtype: Any = None,
        *,
        key: PRNGKeyArray,
    ):
        r"""**Arguments:**

        - `in_size`: input size (int or `"scalar"` for a 0-d input).
        - `out_size`: output size (int or `"scalar"` for a 0-d output).
        - `width_sizes`: widths of the hidden layers, e.g. `[16, 16]`; `[]`
          gives a single layer from input to output.
        - `use_passthrough`: whether every layer after the first also sees the
          input $x$.
        - `non_decreasing`: make the network non-decreasing in every input
          (non-negative first-layer and passthrough weights).
        - `weight_init`, `bias_init`: initializers of unconstrained weights and
          biases.
        - `constrained_weight_init`, `constrained_bias_init`: initializers of
          non-negative weights and of the biases of layers that have them
          (`None` falls back to `weight_init` / `bias_init`).
        - `activation`: hidden activation; must be convex and non-decreasing
          for the guarantees. May be an `eqx.Module` with parameters, which is
          copied once per neuron.
        - `final_activation`: activation of the output layer (identity by
          default); convex and non-decreasing for the guarantees.
        - `use_bias`: whether the hidden layers have biases.
        - `use_final_bias`: whether the output layer has a bias.
        - `dtype`: parameter dtype; defaults to float64 with x64 enabled, else
          float32.
        - `key`: a JAX random key. (Keyword only argument.)
        """
        owner = "klax.nn.FICNN"
        check_size(in_size, f"`{owner}(in_size=...)`")
        check_size(out_size, f"`{owner}(out_size=...)`")
        widths = check_widths(width_sizes, owner)
        _check_flags(
            owner,
            use_passthrough=use_passthrough,
            non_decreasing=non_decreasing,
            use_bias=use_bias,
            use_final_bias=use_final_bias,
        )
        check_activation(activation, owner, "activation")
        check_activation(final_activation, owner, "final_activation")
        depth = len(widths)
        keys = jr.split(key, depth + 1)
        in_sizes = (in_size, *widths)
        out_sizes = (*widths, out_size)
        self.layers = tuple(
            FICNNLayer(
                y_in_size=in_sizes[k],
                x_size=in_size,
                y_out_size=out_sizes[k],
                use_passthrough=False if k == 0 else use_passthrough,
                nonnegative_y_weight=non_decreasing if k == 0 else True,
                nonnegative_passthrough=non_decreasing,
                use_bias=use_bias if k < depth else use_final_bias,
                activation=activation if k < depth else final_activation,
                weight_init=weight_init,
                bias_init=bias_init,
                constrained_weight_init=constrained_weight_init,
                constrained_bias_init=constrained_bias_init,
                dtype=dtype,
                key=keys[k],
            )
            for k in range(depth + 1)
        )
        self.use_bias = use_bias
        self.use_final_bias = use_final_bias
        self.use_passthrough = use_passthrough
        self.non_decreasing = non_decreasing
        self.in_size = in_size
        self.out_size = out_size
        self.width_sizes = widths

    def __call__(self, x: ArrayLike, *, key: PRNGKeyArray | None = None) -> Array:
        """**Arguments:**

        - `x`: input of shape `(in_size,)`, or `()` for `"scalar"`. Leading
          batch axes are allowed for an int `in_size`.
        - `key`: ignored. (Keyword only argument.)

        **Returns:** an array of shape `(out_size,)` (or `()` for `"scalar"`),
        with the leading batch axes of `x`.
        """
        check_finalized(self)
        batch_shape(x, self.in_size, "x", "klax.nn.FICNN")
        x = jnp.asarray(x)
        y = x
        for layer in self.layers:
            y, _ = layer(y, x, key=key)
        return y


def _check_pair_widths(width_sizes: Any, owner: str) -> tuple[tuple[int, int], ...]:
    """Normalise PICNN widths: an int `n` means `(n, n)`; pairs are kept."""
    if isinstance(width_sizes, str) or not isinstance(width_sizes, Sequence):
        raise TypeError(
            f"`{owner}(width_sizes=...)` must be a list/tuple whose entries are "
            "ints or (y_width, u_width) pairs, e.g. [8, (8, 4)]; got "
            f"width_sizes={width_sizes!r}."
        )
    pairs = []
    for k, entry in enumerate(width_sizes):
        if isinstance(entry, Sequence) and not isinstance(entry, str):
            if len(entry) != 2:
                raise ValueError(
                    f"`{owner}(width_sizes=...)` entries must be ints or "
                    f"(y_width, u_width) pairs; got width_sizes[{k}]={entry!r} "
                    f"with {len(entry)} elements."
                )
            pair = tuple(entry)
        else:
            pair = (entry, entry)
        try:
            pairs.append(check_widths(pair, owner))
        except (TypeError, ValueError):
            raise ValueError(
                f"`{owner}(width_sizes=...)` entries must be non-negative ints or "
                f"pairs (y_width, u_width) of them; got width_sizes[{k}]={entry!r}."
            ) from None
    return tuple(pairs)  # pyright: ignore[reportReturnType]


class PICNNLayer(eqx.Module):
    r"""One layer of a partially input-convex network.

    With the convex-path state $y$, the free-path state $u$ and the network
    input $x$ (passthrough), it computes

    $$y' = \sigma_y\big((m_y \odot y)\tilde U + [\text{pt}]\,(m_x \odot x)
    \tilde W + u V + b\big),\quad m_y = \sigma_{yu}(u A + a),\quad
    m_x = \sigma_{xu}(u C + c),$$

    and $u' = \sigma_u(u D + d)$ (or $u' = u$ without `update_u`), and returns
    `(y', u', x)`. All three products use the incoming $u$.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import klax
        >>> layer = klax.nn.PICNNLayer(3, 2, 4, 5, 6, key=jax.random.key(0))
        >>> y, u, x = klax.finalize(layer)(jnp.ones(3), jnp.ones(2), jnp.ones(4))
        >>> y.shape, u.shape, x.shape
        ((5,), (6,), (4,))
    """

    linear_y: InputSplitLinear
    linear_u: Linear | None
    linear_yu: Linear
    linear_xu: Linear | None
    activation_y: Callable
    activation_u: Callable | None
    activation_yu: Callable
    activation_xu: Callable | None
    use_bias: bool = eqx.field(static=True)
    use_passthrough: bool = eqx.field(static=True)
    nonnegative_y_weight: bool = eqx.field(static=True)
    nonnegative_passthrough: bool = eqx.field(static=True)
    update_u: bool = eqx.field(static=True)

    def __init__(
        self,
        y_in_size: Size,
        u_in_size: Size,
        x_size: Size,
        y_out_size: Size,
        u_out_size: Size | None,
        *,
        use_passthrough: bool = True,
        nonnegative_y_weight: bool = True,
        nonnegative_passthrough: bool = False,
        use_bias: bool = True,
        update_u: bool = True,
        activation_y: Callable = jax.nn.softplus,
        activation_u: Callable = jax.nn.softplus,
        activation_yu: Callable = jax.nn.softplus,
        activation_xu: Callable = identity,
        weight_init: SupportedInitializer = _he_normal,
        bias_init: SupportedInitializer = jax.nn.initializers.zeros,
        constrained_weight_init: SupportedInitializer | None = _hoedt_normal,
        constrained_bias_init: SupportedInitializer | None = _hoedt_bias,
        interconnect_weight_init: SupportedInitializer
        | None = jax.nn.initializers.zeros,
        interconnect_bias_init: SupportedInitializer | None = jax.nn.initializers.ones,
        dtype: Any = None,
        key: PRNGKeyArray,
    ):
        r"""**Arguments:**

        - `y_in_size`: size of the incoming convex-path state `y`.
        - `u_in_size`: size of the incoming free-path state `u`.
        - `x_size`: size of the network input `x`.
        - `y_out_size`: size of the new convex-path state.
        - `u_out_size`: size of the new free-path state; ignored (may be
          `None`) when `update_u=False`.
        - `use_passthrough`: whether `x` enters through its own weight
          $\tilde W$ (scaled by $m_x$).
        - `nonnegative_y_weight`: wrap $\tilde U$ in `klax.NonNegative`
          (needed for convexity in every layer after the first).
        - `nonnegative_passthrough`: wrap $\tilde W$ in `klax.NonNegative`
          (needed for a non-decreasing network).
        - `use_bias`: whether the convex path has the bias $b$ (the other maps
          always have biases).
        - `update_u`: whether to compute a new `u` (the last layer of a PICNN
          does not).
        - `activation_y`, `activation_u`, `activation_yu`, `activation_xu`: the
          activations $\sigma_y, \sigma_u, \sigma_{yu}, \sigma_{xu}$. Convexity
          needs $\sigma_y$ convex and non-decreasing and $\sigma_{yu} \geq 0$;
          a non-decreasing network also needs $\sigma_{xu} \geq 0$. Learnable
          activations get one copy per neuron.
        - `weight_init`, `bias_init`: initializers of unconstrained weights and
          biases.
        - `constrained_weight_init`, `constrained_bias_init`: initializers of
          non-negative weights and of the convex-path bias (`None`: use
          `weight_init` / `bias_init`).
        - `interconnect_weight_init`, `interconnect_bias_init`: initializers of
          $A, C, V$ and of $a, c$ (`None`: use `weight_init` / `bias_init`).
          The defaults (zeros, ones) make a fresh layer independent of `u`.
        - `dtype`: parameter dtype; defaults to float64 with x64 enabled, else
          float32.
        - `key`: a JAX random key. (Keyword only argument.)
        """
        owner = "klax.nn.PICNNLayer"
        check_size(y_in_size, f"`{owner}(y_in_size=...)`")
        check_size(u_in_size, f"`{owner}(u_in_size=...)`")
        check_size(x_size, f"`{owner}(x_size=...)`")
        check_size(y_out_size, f"`{owner}(y_out_size=...)`")
        _check_flags(
            owner,
            use_passthrough=use_passthrough,
            nonnegative_y_weight=nonnegative_y_weight,
            nonnegative_passthrough=nonnegative_passthrough,
            use_bias=use_bias,
            update_u=update_u,
        )
        if update_u:
            if u_out_size is None:
                raise ValueError(
                    f"`{owner}(u_out_size=...)` must be given when update_u=True; "
                    "got u_out_size=None."
                )
            check_size(u_out_size, f"`{owner}(u_out_size=...)`")
        for name, act in (
            ("activation_y", activation_y),
            ("activation_u", activation_u),
            ("activation_yu", activation_yu),
            ("activation_xu", activation_xu),
        ):
            check_activation(act, owner, name)
        w, b = weight_init, bias_init
        cw = w if constrained_weight_init is None else constrained_weight_init
        cb = b if constrained_bias_init is None else constrained_bias_init
        iw = w if interconnect_weight_init is None else interconnect_weight_init
        ib = b if interconnect_bias_init is None else interconnect_bias_init
        key_y, key_u, key_yu, key_xu = jr.split(key, 4)
        y_wrap = NonNegative if nonnegative_y_weight else None
        if use_passthrough:
            self.linear_y = InputSplitLinear(
                (y_in_size, x_size, u_in_size),
                y_out_size,
                weight_inits=(
                    cw if nonnegative_y_weight else w,
                    cw if nonnegative_passthrough else w,
                    iw,
                ),
                bias_init=cb if nonnegative_y_weight else b,
                use_bias=use_bias,
                weight_wraps=(
                    y_wrap,
                    NonNegative if nonnegative_passthrough else None,
                    None,
                ),
                dtype=dtype,
                key=key_y,
            )
            self.linear_xu = Linear(
                u_in_size,
                x_size,
                weight_init=iw,
                bias_init=ib,
                use_bias=True,
                dtype=dtype,
                key=key_xu,
            )
            self.activation_xu = replicate(activation_xu, x_size)
        else:
            # As in the klax 0.2.0 API, this branch always uses the constrained
            # bias initializer.
            self.linear_y = InputSplitLinear(
                (y_in_size, u_in_size),
                y_out_size,
                weight_inits=(cw if nonnegative_y_weight else w, iw),
                bias_init=cb,
                use_bias=use_bias,
                weight_wraps=(y_wrap, None),
                dtype=dtype,
                key=key_y,
            )
            self.linear_xu = None
            self.activation_xu = None
        if update_u:
            self.linear_u = Linear(
                u_in_size,
                u_out_size,  # pyright: ignore[reportArgumentType]
                weight_init=w,
                bias_init=b,
                use_bias=True,
                dtype=dtype,
                key=key_u,
            )
            self.activation_u = replicate(activation_u, u_out_size)
        else:
            self.linear_u = None
            self.activation_u = None
        self.linear_yu = Linear(
            u_in_size,
            y_in_size,
            weight_init=iw,
            bias_init=ib,
            use_bias=True,
            dtype=dtype,
            key=key_yu,
        )
        self.activation_y = replicate(activation_y, y_out_size)
        self.activation_yu = replicate(activation_yu, y_in_size)
        self.use_bias = use_bias
        self.use_passthrough = use_passthrough
        self.nonnegative_y_weight = nonnegative_y_weight
        self.nonnegative_passthrough = nonnegative_passthrough
        self.update_u = update_u

    def __call__(
        self,
        y: ArrayLike,
        u: ArrayLike,
        x: ArrayLike,
        *,
        key: PRNGKeyArray | None = None,
    ) -> tuple[Array, Array, Array]:
        """**Arguments:**

        - `y`: convex-path state of shape `(y_in_size,)` (or `()`).
        - `u`: free-path state of shape `(u_in_size,)` (or `()`).
        - `x`: network input of shape `(x_size,)` (or `()`). Int-sized inputs
          may carry the same leading batch axes.
        - `key`: ignored. (Keyword only argument.)

        **Returns:** `(y_new, u_new, x)` with `x` unchanged.
        """
        del key
        check_finalized(self)
        y, u, x = jnp.asarray(y), jnp.asarray(u), jnp.asarray(x)
        m_y = self.activation_yu(self.linear_yu(u))
        if self.use_passthrough:
            m_x = self.activation_xu(self.linear_xu(u))  # pyright: ignore
            z = self.linear_y(m_y * y, m_x * x, u)
        else:
            z = self.linear_y(m_y * y, u)
        y_new = self.activation_y(z)
        if self.update_u:
            u_new = self.activation_u(self.linear_u(u))  # pyright: ignore
        else:
            u_new = u
        return y_new, u_new, x  # pyright: ignore[reportReturnType]


class PICNN(eqx.Module):
    r"""Partially input-convex neural network: convex in `x`, free in `p`.

    A convex path (states $y_k$, starting at $y_0 = x$) and a free path
    (states $u_k$, starting at $u_0 = p$) run side by side; see
    [`klax.nn.PICNNLayer`][] for one step. The free path modulates the convex
    one only through non-negative scalings ($m_y, m_x$) and additive terms,
    so for every fixed `p` each output is convex in `x` (and non-decreasing
    with `non_decreasing=True`). Amos et al. (2017) introduced this
    architecture.

    With the default interconnect initializers (zero weights, unit biases) a
    freshly built PICNN does not depend on `p`; training switches it on.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import klax
        >>> model = klax.nn.PICNN(3, 2, "scalar", [8, (8, 4)], key=jax.random.key(0))
        >>> klax.finalize(model)(jnp.ones(3), jnp.ones(2)).shape
        ()
    """

    layers: tuple[PICNNLayer, ...]
    use_bias: bool = eqx.field(static=True)
    use_final_bias: bool = eqx.field(static=True)
    use_passthrough: bool = eqx.field(static=True)
    non_decreasing: bool = eqx.field(static=True)
    x_size: Size = eqx.field(static=True)
    p_size: Size = eqx.field(static=True)
    out_size: Size = eqx.field(static=True)
    width_sizes: tuple[tuple[int, int], ...] = eqx.field(static=True)

    def __init__(
        self,
        x_size: Size,
        p_size: Size,
        out_size: Size,
        width_sizes: Sequence[int | tuple[int, int]],
        *,
        use_passthrough: bool = True,
        non_decreasing: bool = False,
        weight_init: SupportedInitializer = _he_normal,
        bias_init: SupportedInitializer = jax.nn.initializers.zeros,
        constrained_weight_init: SupportedInitializer | None = _hoedt_normal,
        constrained_bias_init: SupportedInitializer | None = _hoedt_bias,
        interconnect_weight_init: SupportedInitializer
        | None = jax.nn.initializers.zeros,
        interconnect_bias_init: SupportedInitializer | None = jax.nn.initializers.ones,
        activation_y: Callable = jax.nn.softplus,
        activation_u: Callable = jax.nn.softplus,
        activation_yu: Callable = jax.nn.softplus,
        activation_xu: Callable = identity,
        final_activation_y: Callable = identity,
        use_bias: bool = True,
        use_final_bias: bool = True,
        dtype: Any = None,
        key: PRNGKeyArray,
    ):
        r"""**Arguments:**

        - `x_size`: size of the convex input `x` (int or `"scalar"`).
        - `p_size`: size of the free input `p` (int or `"scalar"`).
        - `out_size`: output size (int or `"scalar"`).
        - `width_sizes`: one entry per hidden layer, an int `n` (meaning
          widths `(n, n)`) or a pair `(y_width, u_width)` giving the widths of
          the convex and the free path.
        - `use_passthrough`: whether every layer after the first also sees `x`.
        - `non_decreasing`: make the network non-decreasing in `x` (then
          `activation_xu` must be non-negative).
        - `weight_init`, `bias_init`, `constrained_weight_init`,
          `constrained_bias_init`, `interconnect_weight_init`,
          `interconnect_bias_init`: initializers, as in
          [`klax.nn.PICNNLayer`][].
        - `activation_y`, `activation_u`, `activation_yu`, `activation_xu`:
          the activations of the hidden layers, as in [`klax.nn.PICNNLayer`][].
        - `final_activation_y`: activation of the output (identity by default).
        - `use_bias`: whether the hidden convex-path maps have biases.
        - `use_final_bias`: whether the output map has a bias.
        - `dtype`: parameter dtype; defaults to float64 with x64 enabled, else
          float32.
        - `key`: a JAX random key. (Keyword only argument.)
        """
        owner = "klax.nn.PICNN"
        check_size(x_size, f"`{owner}(x_size=...)`")
        check_size(p_size, f"`{owner}(p_size=...)`")
        check_size(out_size, f"`{owner}(out_size=...)`")
        widths = _check_pair_widths(width_sizes, owner)
        _check_flags(
            owner,
            use_passthrough=use_passthrough,
            non_decreasing=non_decreasing,
            use_bias=use_bias,
            use_final_bias=use_final_bias,
        )
        check_activation(final_activation_y, owner, "final_activation_y")
        depth = len(widths)
        keys = jr.split(key, depth + 1)
        in_pairs: list[tuple[Size, Size]] = [(x_size, p_size), *widths]
        out_pairs: list[tuple[Size, Size | None]] = [*widths, (out_size, None)]
        self.layers = tuple(
            PICNNLayer(
                y_in_size=in_pairs[k][0],
                u_in_size=in_pairs[k][1],
                x_size=x_size,
                y_out_size=out_pairs[k][0],
                u_out_size=out_pairs[k][1],
                use_passthrough=False if k == 0 else use_passthrough,
                nonnegative_y_weight=non_decreasing if k == 0 else True,
                nonnegative_passthrough=non_decreasing,
                use_bias=use_bias if k < depth else use_final_bias,
                update_u=k < depth,
                activation_y=activation_y if k < depth else final_activation_y,
                activation_u=activation_u,
                activation_yu=activation_yu,
                activation_xu=activation_xu,
                weight_init=weight_init,
                bias_init=bias_init,
                constrained_weight_init=constrained_weight_init,
                constrained_bias_init=constrained_bias_init,
                interconnect_weight_init=interconnect_weight_init,
                interconnect_bias_init=interconnect_bias_init,
                dtype=dtype,
                key=keys[k],
            )
            for k in range(depth + 1)
        )
        self.use_bias = use_bias
        self.use_final_bias = use_final_bias
        self.use_passthrough = use_passthrough
        self.non_decreasing = non_decreasing
        self.x_size = x_size
        self.p_size = p_size
        self.out_size = out_size
        self.width_sizes = widths

    def __call__(
        self, x: ArrayLike, p: ArrayLike, *, key: PRNGKeyArray | None = None
    ) -> Array:
        """**Arguments:**

        - `x`: convex input of shape `(x_size,)` (or `()` for `"scalar"`).
        - `p`: free input of shape `(p_size,)` (or `()` for `"scalar"`).
          Int-sized inputs may carry leading batch axes, the same for both.
        - `key`: ignored. (Keyword only argument.)

        **Returns:** an array of shape `(out_size,)` (or `()` for `"scalar"`),
        with the leading batch axes of the inputs.
        """
        check_finalized(self)
        owner = "klax.nn.PICNN"
        x_batch = batch_shape(x, self.x_size, "x", owner)
        p_batch = batch_shape(p, self.p_size, "p", owner)
        if x_batch != p_batch:
            raise ValueError(
                f"`{owner}` expects x and p with the same leading batch axes; got "
                f"x of shape {jnp.shape(x)} and p of shape {jnp.shape(p)}. Use "
                "jax.vmap to map over one of them."
            )
        x = jnp.asarray(x)
        y, u = x, jnp.asarray(p)
        for layer in self.layers:
            y, u, _ = layer(y, u, x, key=key)
        return y
