"""Physics-augmented neural network (PANN) potentials.

Following Klein et al. (2022), Linden et al. (2023) and Dammaß, Kalina &
Kästner (2025), each potential is

$$W(F) = W_{NN}(\\mathcal{I}(F)) + W_\\sigma(F) + W_0 + W_{grow}(J),$$

where $\\mathcal{I}$ is a vector of polyconvex invariants (objectivity and
material symmetry by construction), $W_{NN}$ an input-convex network that is
non-decreasing in every non-affine invariant (polyconvexity), $W_0 =
-W_{NN}(\\mathcal{I}(I))$ the energy normalisation and $W_\\sigma$ the stress
normalisation, both evaluated with the current parameters at every call, and
$W_{grow}$ a growth term. Inputs are shifted so that the reference state maps
to zero and divided by positive scales; neither changes convexity or
monotonicity.

The networks hold constrained weights (`klax.NonNegative`, or positive
reparametrisations from
[`reparametrize_nonnegative`][klax.mechanics.reparametrize_nonnegative]):
call [`klax.finalize`][] before evaluating a potential. Training with
`klax.fit` needs no finalisation.
"""

from collections.abc import Callable, Sequence
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .._wrappers import NonTrainable, Unwrappable, check_finalized
from ..nn import FICNN
from ._baselines import AbstractIsotropicPotential
from ._kinematics import (
    REFERENCE_I2_POLYCONVEX,
    _cofactor,
    _det,
    as_deformation_gradient,
    check_positive_jacobian,
    check_structural_tensor,
)
from ._networks import PartiallyMonotoneFICNN

Scalar = Float[Array, ""]
Invariants = Literal["polyconvex", "isochoric"]


def _check_scale(scale: Any, n: int, owner: str) -> tuple[float, ...]:
    items: Any = (scale,) * n if isinstance(scale, (int, float)) else scale
    try:
        if isinstance(scale, bool):
            raise TypeError
        values = tuple(float(s) for s in items)
    except (TypeError, ValueError):
        raise TypeError(
            f"`{owner}(input_scale=...)` must be a positive number or a sequence of "
            f"{n} positive numbers; got {scale!r}."
        ) from None
    if len(values) != n or not all(v > 0 and v < float("inf") for v in values):
        raise ValueError(
            f"`{owner}(input_scale=...)` must be a positive number or a sequence of "
            f"{n} positive finite numbers; got {scale!r}."
        )
    return values


def _check_nonnegative(value: Any, name: str, owner: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(
            f"`{owner}({name}=...)` must be a non-negative number; got {value!r}."
        ) from None
    if not value >= 0:
        raise ValueError(
            f"`{owner}({name}=...)` must be a non-negative number; got {value!r}."
        )
    return value


def _widths(width_sizes: Any, owner: str) -> tuple[int, ...]:
    if isinstance(width_sizes, (str, bytes)) or not isinstance(width_sizes, Sequence):
        raise TypeError(
            f"`{owner}(width_sizes=...)` must be a list/tuple of positive ints, "
            f"e.g. [8]; got {width_sizes!r}."
        )
    widths = tuple(width_sizes)
    if not all(
        isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths
    ):
        raise ValueError(
            f"`{owner}(width_sizes=...)` must hold positive ints; got {width_sizes!r}."
        )
    return widths


def _growth(J: Array) -> Array:
    # (J + 1/J - 2)^2: convex for J > 0, infinite at both ends, O((J-1)^4).
    return (J + 1.0 / J - 2.0) ** 2


class IncompressiblePANN(AbstractIsotropicPotential):
    """Isotropic incompressible PANN on $(\\tilde I_1, \\tilde I_2)$.

    $$W(F) = N\\!\\left(\\frac{\\tilde I_1 - 3}{s_1},
    \\frac{\\tilde I_2 - 3^{3/2}}{s_2}\\right) - N(0, 0)
    + \\mu_\\varepsilon (\\tilde I_1 - 3)$$

    with an input-convex network `N` (a [`klax.nn.FICNN`][] with
    `non_decreasing=True`), Dammaß, Kalina & Kästner (2025). Convexity and
    monotonicity of `N`, together with $\\tilde I_1 \\geq 3$ and
    $\\tilde I_2 \\geq 3^{3/2}$, make `W` polyconvex, zero at `F = I` and
    non-negative. The reference stress of `N` is a pure pressure, which the
    incompressibility constraint absorbs, so no stress normalisation is
    needed. With `invariants="isochoric"` the inputs are $(\\bar I_1, \\bar
    I_2)$ instead (the reference example's choice; $\\bar I_2$ is polyconvex
    only at exactly `J = 1`).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import klax
        >>> from klax.mechanics import IncompressiblePANN
        >>> W = klax.finalize(IncompressiblePANN([4], key=jax.random.key(0)))
        >>> W(jnp.eye(3))
        Array(0., dtype=float32)
    """

    network: FICNN
    invariants: Invariants = eqx.field(static=True)
    input_scale: tuple[float, float] = eqx.field(static=True)
    floor: float = eqx.field(static=True)

    def __init__(
        self,
        width_sizes: Sequence[int] = (8,),
        invariants: Invariants = "polyconvex",
        input_scale: float | Sequence[float] = 1.0,
        floor: float = 0.0,
        activation: Callable[[Array], Array] = jax.nn.softplus,
        dtype: Any = None,
        *,
        key: PRNGKeyArray,
    ):
        """**Arguments:**

        - `width_sizes`: hidden widths of the FICNN, e.g. `[8]` (one layer of 8,
          the reference example) or `[4, 4]` (Dammaß et al.).
        - `invariants`: `"polyconvex"` for $(\\tilde I_1, \\tilde I_2)$ or
          `"isochoric"` for $(\\bar I_1, \\bar I_2)$.
        - `input_scale`: positive divisor(s) of the two shifted inputs, e.g. their
          range in the calibration data (conditioning only).
        - `floor`: coefficient $\\mu_\\varepsilon \\geq 0$ of an optional
          neo-Hookean floor that guarantees growth (default 0, off).
        - `activation`: convex, non-decreasing activation (default softplus).
        - `dtype`: parameter dtype; defaults to float64 with x64 enabled, else
          float32.
        - `key`: a JAX random key. (Keyword only argument.)
        """
        owner = "IncompressiblePANN"
        if invariants not in ("polyconvex", "isochoric"):
            raise ValueError(
                f"`{owner}(invariants=...)` must be 'polyconvex' or 'isochoric'; "
                f"got {invariants!r}."
            )
        self.network = FICNN(
            2,
            "scalar",
            _widths(width_sizes, owner),
            non_decreasing=True,
            activation=activation,
            dtype=dtype,
            key=key,
        )
        self.invariants = invariants
        self.input_scale = _check_scale(input_scale, 2, owner)  # pyright: ignore[reportAttributeAccessIssue]
        self.floor = _check_nonnegative(floor, "floor", owner)

    def _energy(self, I1: Array, I2_input: Array) -> Array:
        s1, s2 = self.input_scale
        reference_2 = (
            REFERENCE_I2_POLYCONVEX if self.invariants == "polyconvex" else 3.0
        )
        x = jnp.stack([(I1 - 3.0) / s1, (I2_input - reference_2) / s2])
        energy = self.network(x) - self.network(jnp.zeros_like(x))
        if self.floor:
            energy = energy + self.floor * (I1 - 3.0)
        return energy

    def __call__(self, F: ArrayLike) -> Scalar:
        """Energy of one deformation gradient `F` of shape `(3, 3)` with `det F > 0`."""
        F = as_deformation_gradient(F, "IncompressiblePANN")
        J = check_positive_jacobian(_det(F), "IncompressiblePANN")
        return self.lifted_energy(F, _cofactor(F), J)

    def lifted_energy(self, F: ArrayLike, cof: ArrayLike, J: ArrayLike) -> Scalar:
        """The energy as a function of independent `(F, cof F, det F)`.

        `W(F) = lifted_energy(F, cof F, det F)`; for `invariants="polyconvex"`
        this function is jointly convex in its arguments (for `J > 0`), which is
        what polyconvexity means.
        """
        check_finalized(self)
        F, cof, J = jnp.asarray(F), jnp.asarray(cof), jnp.asarray(J)
        I1 = jnp.sum(F * F) * J ** (-2.0 / 3.0)
        if self.invariants == "polyconvex":
            I2 = jnp.sqrt(jnp.sum(cof * cof)) ** 3 / J**2
        else:
            I2 = jnp.sum(cof * cof) * J ** (-4.0 / 3.0)
        return self._energy(I1, I2)

    def isotropic_energy(self, I1: ArrayLike, I2: ArrayLike) -> Scalar:
        """The energy at `J = 1` as a function of the invariants `I1`, `I2`."""
        I1, I2 = jnp.asarray(I1), jnp.asarray(I2)
        return self._energy(I1, I2**1.5 if self.invariants == "polyconvex" else I2)


def _network_input_gradient(network: Callable[[Array], Array], n: int, dtype) -> Array:
    return jax.grad(network)(jnp.zeros((n,), dtype))


class CompressiblePANN(eqx.Module):
    """Isotropic compressible PANN on $(I_1, I_2, J, -J)$.

    After Klein et al. (2022) and Linden et al. (2023):

    $$W = N(\\mathcal I) - N(\\mathcal I_0) - n (J - 1)
    + \\gamma (J + 1/J - 2)^2,\\qquad
    n = 2 N_{,I_1} + 4 N_{,I_2} + N_{,J} - N_{,-J}\\ \\text{at}\\ \\mathcal I_0.$$

    `N` is a [`PartiallyMonotoneFICNN`][klax.mechanics.PartiallyMonotoneFICNN]:
    non-decreasing in `I1` and `I2` (convex, non-affine in `F` and `cof F`),
    unconstrained in `J` and `-J` (affine in `det F`). The `n (J - 1)` term
    removes the reference stress; both normalisations use the current
    parameters, so `W(I) = 0` and `P(I) = 0` hold exactly for any parameters.
    `W` is polyconvex; non-negativity is not guaranteed and can be checked
    by sampling.
    """

    network: PartiallyMonotoneFICNN
    input_scale: tuple[float, float, float] = eqx.field(static=True)
    growth: float = eqx.field(static=True)

    def __init__(
        self,
        width_sizes: Sequence[int] = (8,),
        input_scale: float | Sequence[float] = 1.0,
        growth: float = 1.0,
        activation: Callable[[Array], Array] = jax.nn.softplus,
        dtype: Any = None,
        *,
        key: PRNGKeyArray,
    ):
        """**Arguments:**

        - `width_sizes`: hidden widths of the network, e.g. `[8]`.
        - `input_scale`: positive divisor(s) of the shifted inputs `I1 - 3`,
          `I2 - 3` and `±(J - 1)` (one number, or three).
        - `growth`: coefficient $\\gamma \\geq 0$ of the growth term (energy
          units, default 1).
        - `activation`: convex, non-decreasing activation (default softplus).
        - `dtype`: parameter dtype; defaults to float64 with x64 enabled, else
          float32.
        - `key`: a JAX random key. (Keyword only argument.)
        """
        owner = "CompressiblePANN"
        self.network = PartiallyMonotoneFICNN(
            (True, True, False, False),
            _widths(width_sizes, owner),
            activation=activation,
            dtype=dtype,
            key=key,
        )
        self.input_scale = _check_scale(input_scale, 3, owner)  # pyright: ignore[reportAttributeAccessIssue]
        self.growth = _check_nonnegative(growth, "growth", owner)

    def __call__(self, F: ArrayLike) -> Scalar:
        """Energy of one deformation gradient `F` of shape `(3, 3)` with `det F > 0`."""
        F = as_deformation_gradient(F, "CompressiblePANN")
        J = check_positive_jacobian(_det(F), "CompressiblePANN")
        return self.lifted_energy(F, _cofactor(F), J)

    def lifted_energy(self, F: ArrayLike, cof: ArrayLike, J: ArrayLike) -> Scalar:
        """The energy as a function of independent `(F, cof F, det F)`.

        `W(F) = lifted_energy(F, cof F, det F)`; this function is jointly convex
        in its arguments (for `J > 0`), which is what polyconvexity means.
        """
        check_finalized(self)
        F, cof, J = jnp.asarray(F), jnp.asarray(cof), jnp.asarray(J)
        s1, s2, s3 = self.input_scale
        x = jnp.stack(
            [
                (jnp.sum(F * F) - 3.0) / s1,
                (jnp.sum(cof * cof) - 3.0) / s2,
                (J - 1.0) / s3,
                (1.0 - J) / s3,
            ]
        )
        g = _network_input_gradient(self.network, 4, x.dtype)
        n = 2.0 * g[0] / s1 + 4.0 * g[1] / s2 + (g[2] - g[3]) / s3
        energy = self.network(x) - self.network(jnp.zeros_like(x))
        return energy - n * (J - 1.0) + self.growth * _growth(J)


class TransverselyIsotropicPANN(eqx.Module):
    """Transversely isotropic compressible PANN on $(I_1, I_2, J, -J, I_4, I_5)$.

    As [`CompressiblePANN`][klax.mechanics.CompressiblePANN], with the
    anisotropic invariants $I_4 = \\operatorname{tr}(CG)$ and $I_5 =
    \\operatorname{tr}(\\operatorname{cof}(C) G)$ of a structural tensor `G`
    (Klein et al. 2022, Linden et al. 2023); `reduced=True` drops `I2`. The
    network is non-decreasing in `I1, I2, I4, I5`. At `F = I` the network
    stress is $n_{iso} I + \\beta G$; it is removed by

    $$W_\\sigma = \\tfrac12\\beta^+(I_5 - I_5^0) + \\tfrac12\\beta^-(I_4 - I_4^0)
    - (n_{iso} + \\beta^+ \\operatorname{tr} G)(J - 1),$$

    whose coefficients of the non-affine invariants are non-negative, so
    polyconvexity is kept. With `polyconvex_i5=False` the classical $I_5 =
    \\operatorname{tr}(C^2 G)$ is fed to the network instead; that input is
    **not** polyconvex and the guarantee is lost.

    `G` is stored in a [`klax.NonTrainable`][] (training leaves it unchanged).
    """

    network: PartiallyMonotoneFICNN
    structural_tensor: Float[Array, "3 3"] | Unwrappable[Array]
    reduced: bool = eqx.field(static=True)
    polyconvex_i5: bool = eqx.field(static=True)
    input_scale: tuple[float, ...] = eqx.field(static=True)
    growth: float = eqx.field(static=True)

    def __init__(
        self,
        structural_tensor: ArrayLike,
        width_sizes: Sequence[int] = (8,),
        reduced: bool = False,
        polyconvex_i5: bool = True,
        input_scale: float | Sequence[float] = 1.0,
        growth: float = 1.0,
        activation: Callable[[Array], Array] = jax.nn.softplus,
        dtype: Any = None,
        *,
        key: PRNGKeyArray,
    ):
        """**Arguments:**

        - `structural_tensor`: symmetric `G` of shape `(3, 3)` with `tr G = 1`,
          e.g. `structural_tensor(a)` for a fibre direction `a`.
        - `width_sizes`: hidden widths of the network, e.g. `[8]`.
        - `reduced`: use `(I1, J, -J, I4, I5)` (no `I2`).
        - `polyconvex_i5`: `True` (default) for $\\operatorname{tr}(\\operatorname{cof}
          (C) G)$; `False` for the classical, non-polyconvex $\\operatorname{tr}
          (C^2 G)$.
        - `input_scale`: positive divisor(s) of the shifted inputs (one number,
          or one per invariant group: `I1, [I2,] J, I4, I5`).
        - `growth`: coefficient of the growth term $(J + 1/J - 2)^2$.
        - `activation`: convex, non-decreasing activation (default softplus).
        - `dtype`: parameter dtype; defaults to float64 with x64 enabled, else
          float32.
        - `key`: a JAX random key. (Keyword only argument.)
        """
        owner = "TransverselyIsotropicPANN"
        G = check_structural_tensor(structural_tensor, owner)
        if dtype is not None:
            G = G.astype(dtype)
        flags = (
            (True, False, False, True, True)
            if reduced
            else (True, True, False, False, True, True)
        )
        self.network = PartiallyMonotoneFICNN(
            flags,
            _widths(width_sizes, owner),
            activation=activation,
            dtype=dtype,
            key=key,
        )
        self.structural_tensor = NonTrainable(G)
        self.reduced = bool(reduced)
        self.polyconvex_i5 = bool(polyconvex_i5)
        self.input_scale = _check_scale(input_scale, 4 if reduced else 5, owner)
        self.growth = _check_nonnegative(growth, "growth", owner)

    def __call__(self, F: ArrayLike) -> Scalar:
        """Energy of one deformation gradient `F` of shape `(3, 3)` with `det F > 0`."""
        F = as_deformation_gradient(F, "TransverselyIsotropicPANN")
        J = check_positive_jacobian(_det(F), "TransverselyIsotropicPANN")
        return self.lifted_energy(F, _cofactor(F), J)

    def lifted_energy(self, F: ArrayLike, cof: ArrayLike, J: ArrayLike) -> Scalar:
        """The energy as a function of independent `(F, cof F, det F)`.

        `W(F) = lifted_energy(F, cof F, det F)`. With `polyconvex_i5=True` this
        function is jointly convex in its arguments (for `J > 0`): the
        potential is polyconvex.
        """
        check_finalized(self)
        F, cof, J = jnp.asarray(F), jnp.asarray(cof), jnp.asarray(J)
        G = jnp.asarray(self.structural_tensor)
        trace_G = jnp.trace(G)
        I1 = jnp.sum(F * F)
        I4 = jnp.sum((F @ G) * F)
        I5_poly = jnp.sum((cof @ G) * cof)
        if self.polyconvex_i5:
            I5 = I5_poly
        else:
            C = F.T @ F
            I5 = jnp.sum((C @ C) * G)
        if self.reduced:
            s1, sJ, s4, s5 = self.input_scale
            parts = [(I1 - 3.0) / s1]
        else:
            s1, s2, sJ, s4, s5 = self.input_scale
            parts = [(I1 - 3.0) / s1, (jnp.sum(cof * cof) - 3.0) / s2]
        parts += [(J - 1.0) / sJ, (1.0 - J) / sJ, (I4 - trace_G) / s4]
        parts += [(I5 - trace_G) / s5]
        x = jnp.stack(parts)
        g = _network_input_gradient(self.network, x.shape[0], x.dtype)
        if self.reduced:
            g1, gJ, gmJ, g4, g5 = g[0], g[1], g[2], g[3], g[4]
            n = 2.0 * g1 / s1 + (gJ - gmJ) / sJ
        else:
            g1, g2, gJ, gmJ, g4, g5 = g[0], g[1], g[2], g[3], g[4], g[5]
            n = 2.0 * g1 / s1 + 4.0 * g2 / s2 + (gJ - gmJ) / sJ
        d4, d5 = g4 / s4, g5 / s5
        # Network stress at F = I: n_iso I + beta G.
        if self.polyconvex_i5:
            n_iso = n + 2.0 * trace_G * d5
            beta = 2.0 * (d4 - d5)
        else:
            n_iso = n
            beta = 2.0 * d4 + 4.0 * d5
        beta_plus = jnp.maximum(beta, 0.0)
        beta_minus = jnp.maximum(-beta, 0.0)
        normalisation = (
            0.5 * beta_plus * (I5_poly - trace_G)
            + 0.5 * beta_minus * (I4 - trace_G)
            - (n_iso + beta_plus * trace_G) * (J - 1.0)
        )
        energy = self.network(x) - self.network(jnp.zeros_like(x))
        return energy + normalisation + self.growth * _growth(J)
