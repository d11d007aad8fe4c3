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

from .._misc import check_real, check_scales, check_widths
from .._wrappers import NonTrainable, Unwrappable, check_finalized
from ..nn import FICNN
from ._baselines import AbstractIsotropicPotential
from ._kinematics import (
    _cofactor,
    _det,
    _singular_value_sum,
    as_deformation_gradient,
    check_positive_jacobian,
    check_structural_tensor,
)
from ._networks import PartiallyMonotoneFICNN

Scalar = Float[Array, ""]
Invariants = Literal["power-sums", "incompressible", "polyconvex", "isochoric"]


def _growth(J: Array) -> Array:
    # (J + 1/J - 2)^2: convex for J > 0, infinite at both ends, O((J-1)^4).
    return (J + 1.0 / J - 2.0) ** 2


INVARIANT_SETS: dict[str, tuple[str, ...]] = {
    "power-sums": ("Σλ", "Σλ⁻¹", "Ĩ1", "Ī2", "Σλ⁴", "Σλ⁻⁴", "Σλ⁶", "Σλ⁻⁶"),
    "incompressible": ("√Ĩ1", "Ĩ1", "√Ī2", "Ī2"),
    "polyconvex": ("Ĩ1", "Ĩ2"),
    "isochoric": ("Ī1", "Ī2"),
}
"""The input sets of `IncompressiblePANN`: name -> the invariants fed to the network."""

POLYCONVEX_AT_ANY_J: dict[str, bool] = {
    "power-sums": False,
    "incompressible": False,
    "polyconvex": True,
    "isochoric": False,
}
"""Whether an input set is polyconvex for every `J > 0` (`True`) or only on the
incompressible manifold `J = 1` (`False`: it holds `Ī2`)."""


def _check_invariants(invariants: Any, owner: str) -> str:
    if not isinstance(invariants, str) or invariants not in INVARIANT_SETS:
        raise ValueError(
            f"`{owner}(invariants=...)` must be one of "
            f"{', '.join(repr(k) for k in INVARIANT_SETS)}; got {invariants!r}."
        )
    return invariants


def pann_inputs(
    I1: ArrayLike, I2: ArrayLike, invariants: str = "incompressible"
) -> Array:
    """The shifted (unscaled) inputs of an incompressible PANN at `J = 1`.

    From the principal invariants `I1`, `I2` of an incompressible state,
    returns the network inputs before division by `input_scale`: each
    invariant of the set minus its reference value, e.g. for
    `"incompressible"` $(\\sqrt{\\tilde I_1} - \\sqrt 3, \\tilde I_1 - 3,
    \\sqrt{\\bar I_2} - \\sqrt 3, \\bar I_2 - 3)$. Their
    largest values over the training deformations are a good `input_scale`.

    **Arguments:**

    - `I1`, `I2`: arrays of the same shape (any shape).
    - `invariants`: the input set, a key of `INVARIANT_SETS`.

    **Returns:** an array of shape `(*I1.shape, k)` with `k` the number of
    inputs of the set.

    Example:
        >>> import jax.numpy as jnp
        >>> from klax.mechanics import pann_inputs
        >>> pann_inputs(jnp.array(3.0), jnp.array(3.0)).tolist()
        [0.0, 0.0, 0.0, 0.0]
    """
    _check_invariants(invariants, "pann_inputs")
    I1, I2 = jnp.asarray(I1), jnp.asarray(I2)
    return _shifted_inputs(invariants, _invariant_values(I1, I2))


_REFERENCE = {
    "√Ĩ1": 3.0**0.5,
    "Ĩ1": 3.0,
    "Ī1": 3.0,
    "√Ī2": 3.0**0.5,
    "Ī2": 3.0,
    "Ĩ2": 3.0**1.5,
    # Power sums Σ λ̄_i^a of the isochoric principal stretches: 3 at F = I.
    "Σλ": 3.0,
    "Σλ⁻¹": 3.0,
    "Σλ⁴": 3.0,
    "Σλ⁻⁴": 3.0,
    "Σλ⁶": 3.0,
    "Σλ⁻⁶": 3.0,
}


def _invariant_values(I1: Array, I2: Array) -> dict[str, Callable[[], Array]]:
    """Every input candidate at `J = 1` from the principal invariants, lazily.

    At `J = 1` the squared principal stretches are the roots of
    `x³ - I1 x² + I2 x - 1`, so Newton's identities give the power sums
    `Σλ⁴ = I1² - 2 I2`, `Σλ⁶ = I1³ - 3 I1 I2 + 3` (and the same with `I1`, `I2`
    swapped for the inverse stretches), and `(Σλ)² = I1 + 2 Σλ⁻¹`.
    """
    one = jnp.ones_like(I1)
    return {
        "√Ĩ1": lambda: jnp.sqrt(I1),
        "Ĩ1": lambda: I1,
        "Ī1": lambda: I1,
        "√Ī2": lambda: jnp.sqrt(I2),
        "Ī2": lambda: I2,
        "Ĩ2": lambda: I2**1.5,
        "Σλ": lambda: _singular_value_sum(I1, I2, one),
        "Σλ⁻¹": lambda: _singular_value_sum(I2, I1, one),
        "Σλ⁴": lambda: I1 * I1 - 2.0 * I2,
        "Σλ⁻⁴": lambda: I2 * I2 - 2.0 * I1,
        "Σλ⁶": lambda: I1 * (I1 * I1 - 3.0 * I2) + 3.0,
        "Σλ⁻⁶": lambda: I2 * (I2 * I2 - 3.0 * I1) + 3.0,
    }


def _lifted_values(F: Array, cof: Array, J: Array) -> dict[str, Callable[[], Array]]:
    """Every input candidate from independent `(F, cof F, J)`, lazily.

    Each is a convex function of `F` or of `cof F` (a norm, a power of one or
    a sum of powers of the singular values, Ball 1977) times a power of `J`,
    and equals its `_invariant_values` entry when `cof`, `J` are those of `F`.
    """
    F2, cof2 = jnp.sum(F * F), jnp.sum(cof * cof)

    def trace_power(A: Array, k: int) -> Array:  # tr((AᵀA)^k), k = 2 or 3
        M = A.T @ A
        return jnp.sum(M * M) if k == 2 else jnp.sum(M * (M @ M))

    return {
        "√Ĩ1": lambda: jnp.sqrt(F2) * J ** (-1.0 / 3.0),
        "Ĩ1": lambda: F2 * J ** (-2.0 / 3.0),
        "Ī1": lambda: F2 * J ** (-2.0 / 3.0),
        "√Ī2": lambda: jnp.sqrt(cof2) * J ** (-2.0 / 3.0),
        "Ī2": lambda: cof2 * J ** (-4.0 / 3.0),
        "Ĩ2": lambda: cof2**1.5 / J**2,
        "Σλ": lambda: (
            _singular_value_sum(F2, jnp.sum(_cofactor(F) ** 2), jnp.abs(_det(F)))
            * J ** (-1.0 / 3.0)
        ),
        "Σλ⁻¹": lambda: (
            _singular_value_sum(cof2, jnp.sum(_cofactor(cof) ** 2), jnp.abs(_det(cof)))
            * J ** (-2.0 / 3.0)
        ),
        "Σλ⁴": lambda: trace_power(F, 2) * J ** (-4.0 / 3.0),
        "Σλ⁻⁴": lambda: trace_power(cof, 2) * J ** (-8.0 / 3.0),
        "Σλ⁶": lambda: trace_power(F, 3) / J**2,
        "Σλ⁻⁶": lambda: trace_power(cof, 3) / J**4,
    }


def _shifted_inputs(
    invariants: str,
    values: dict[str, Callable[[], Array]],
    scale: Sequence[float] | None = None,
) -> Array:
    names = INVARIANT_SETS[invariants]
    scale = (1.0,) * len(names) if scale is None else scale
    return jnp.stack(
        [(values[k]() - _REFERENCE[k]) / s for k, s in zip(names, scale, strict=True)],
        axis=-1,
    )


class IncompressiblePANN(AbstractIsotropicPotential):
    """Isotropic incompressible PANN on a set of isochoric invariants.

    $$W(F) = N\\!\\left(\\frac{x_1}{s_1}, \\dots, \\frac{x_k}{s_k}\\right)
    - N(0, \\dots, 0) + \\mu_\\varepsilon (\\tilde I_1 - 3)$$

    with an input-convex network `N` (a [`klax.nn.FICNN`][] with
    `non_decreasing=True`) and the inputs $x_i$ the invariants of the set,
    shifted to zero at `F = I` ([`pann_inputs`][klax.mechanics.pann_inputs]).
    Input sets:

    - `"power-sums"` (the default of `klax-calibrate`): the power sums
      $\\sum_i \\bar\\lambda_i^{a}$ of the isochoric principal stretches for
      $a = 1, -1, 2, -2, 4, -4, 6, -6$, in this order
      ($a = \\pm 2$ are $\\tilde I_1 = \\bar I_1$ and $\\bar I_2$; the others
      are polynomials in $\\bar I_1, \\bar I_2$, or for $a = \\pm 1$ the
      largest root of a quartic in them, so no eigenvalue problem is solved
      and the energy is smooth where stretches coincide). An Ogden model
      whose exponents are in the set and whose terms have $\\mu_p \\alpha_p >
      0$, Mooney–Rivlin and neo-Hooke among them, is inside the model class
      exactly (through the passthrough of `N`); other exponents are
      interpolated. Unlike the sets below, these inputs depend on both
      invariants, so the energy's cross-derivative
      $\\partial^2 W / \\partial \\bar I_1 \\partial \\bar I_2$ may take
      either sign, as the Ogden models' does.
    - `"incompressible"`:
      $(\\sqrt{\\tilde I_1}, \\tilde I_1, \\sqrt{\\bar I_2}, \\bar I_2)$ (the
      default of `klax-calibrate` before `"power-sums"`). Neo-Hooke and
      Mooney–Rivlin are inside the class; the square roots give the
      slower-than-quadratic growth of Ogden terms with exponents below 2 and
      the concave-in-$\\bar I_2$ response (Carroll-type models). Each input
      depends on one invariant only, and with non-negative weights and
      convex, non-decreasing activations every second cross-derivative of
      `N` is non-negative, so
      $\\partial^2 W / \\partial \\bar I_1 \\partial \\bar I_2 \\geq 0$ for every
      PANN on this set (and on the two below): materials with a negative
      cross-derivative (Ogden models with widely spread exponents) are
      approximated, not represented.
    - `"polyconvex"` (default): $(\\tilde I_1, \\tilde I_2)$ of Dammaß, Kalina &
      Kästner (2025), polyconvex for every `J > 0`. A function convex
      and non-decreasing in $\\tilde I_2$ cannot contain a term linear in
      $\\bar I_2$, so Mooney–Rivlin is outside this class.
    - `"isochoric"`: $(\\bar I_1, \\bar I_2)$ (the reference example's
      choice).

    Polyconvexity. At `J = 1` each input of `"power-sums"` and
    `"incompressible"` is a convex function of `F` or of `cof F`: a norm,
    the square of one, or a sum of convex non-decreasing functions of the
    singular values ($\\sum_i \\sigma_i^a$, $a \\geq 1$, Ball 1977); the
    inverse stretches are the singular values of `cof F`. So these
    potentials are polyconvex on the incompressible manifold, where they are
    used, but **not** as functions of a compressible `F` (`J ≠ 1`);
    `"isochoric"` likewise. Only `"polyconvex"` is polyconvex for every
    `J > 0` ([`POLYCONVEX_AT_ANY_J`][klax.mechanics.POLYCONVEX_AT_ANY_J]).

    Convexity and monotonicity of `N`, together with every input being at
    least its reference value, make `W` polyconvex (in the sense above), zero
    at `F = I` and non-negative. The reference stress of `N` is a pure
    pressure, which the incompressibility constraint absorbs, so no stress
    normalisation is needed.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import klax
        >>> from klax.mechanics import IncompressiblePANN
        >>> W = klax.finalize(IncompressiblePANN([4], key=jax.random.key(0)))
        >>> W(jnp.eye(3))
        Array(0., dtype=float32)
    """

    network: FICNN
    invariants: str = eqx.field(static=True)
    input_scale: tuple[float, ...] = eqx.field(static=True)
    floor: float = eqx.field(static=True)
    energy_scale: float = eqx.field(static=True)

    def __init__(
        self,
        width_sizes: Sequence[int] = (8,),
        invariants: Invariants = "polyconvex",
        input_scale: float | Sequence[float] = 1.0,
        floor: float = 0.0,
        activation: Callable[[Array], Array] = jax.nn.softplus,
        dtype: Any = None,
        energy_scale: float = 1.0,
        *,
        key: PRNGKeyArray,
    ):
        """**Arguments:**

        - `width_sizes`: hidden widths of the FICNN, e.g. `[8]` (one layer of 8,
          the reference example) or `[4, 4]` (Dammaß et al.).
        - `invariants`: the input set: `"power-sums"` for the eight power
          sums of the isochoric principal stretches, `"incompressible"` for
          $(\\sqrt{\\tilde I_1}, \\tilde I_1, \\sqrt{\\bar I_2}, \\bar I_2)$,
          `"polyconvex"` for
          $(\\tilde I_1, \\tilde I_2)$ or `"isochoric"` for $(\\bar I_1, \\bar I_2)$.
        - `input_scale`: positive divisor(s) of the shifted inputs (one number,
          or one per input), e.g. their range in the calibration data
          (conditioning only).
        - `floor`: coefficient $\\mu_\\varepsilon \\geq 0$ of an optional
          neo-Hookean floor that guarantees growth (default 0, off).
        - `activation`: convex, non-decreasing activation (default softplus).
        - `dtype`: parameter dtype; defaults to float64 with x64 enabled, else
          float32.
        - `energy_scale`: a fixed positive factor on the network energy, e.g.
          the stress scale of the data (in the stress unit), so that a
          freshly initialised network starts at the data's order of
          magnitude (conditioning only; default 1).
        - `key`: a JAX random key. (Keyword only argument.)
        """
        owner = "IncompressiblePANN"
        invariants = _check_invariants(invariants, owner)  # pyright: ignore[reportAssignmentType]
        n = len(INVARIANT_SETS[invariants])
        self.network = FICNN(
            n,
            "scalar",
            check_widths(width_sizes, owner, minimum=1),
            non_decreasing=True,
            activation=activation,
            dtype=dtype,
            key=key,
        )
        self.invariants = invariants
        self.input_scale = check_scales(input_scale, n, f"`{owner}(input_scale=...)`")
        self.floor = check_real(floor, f"`{owner}(floor=...)`")
        self.energy_scale = check_scales(
            energy_scale, 1, f"`{owner}(energy_scale=...)`"
        )[0]

    def _energy(self, x: Array, I1: Array) -> Array:
        # `x`: the shifted inputs divided by `input_scale`.
        energy = self.network(x) - self.network(jnp.zeros_like(x))
        if self.energy_scale != 1.0:
            energy = self.energy_scale * energy
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

        `W(F) = lifted_energy(F, cof F, det F)`. For `invariants="polyconvex"`
        this function is jointly convex in its arguments (for `J > 0`), which is
        what polyconvexity means; for the sets holding $\\bar I_2$ it is jointly
        convex in `(F, cof F)` at `J = 1`.
        """
        check_finalized(self)
        F, cof, J = jnp.asarray(F), jnp.asarray(cof), jnp.asarray(J)
        values = _lifted_values(F, cof, J)
        x = _shifted_inputs(self.invariants, values, self.input_scale)
        return self._energy(x, values["Ĩ1"]())

    def isotropic_energy(self, I1: ArrayLike, I2: ArrayLike) -> Scalar:
        """The energy at `J = 1` as a function of the invariants `I1`, `I2`."""
        I1, I2 = jnp.asarray(I1), jnp.asarray(I2)
        x = _shifted_inputs(
            self.invariants, _invariant_values(I1, I2), self.input_scale
        )
        return self._energy(x, I1)


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
            check_widths(width_sizes, owner, minimum=1),
            activation=activation,
            dtype=dtype,
            key=key,
        )
        self.input_scale = check_scales(input_scale, 3, f"`{owner}(input_scale=...)`")  # pyright: ignore[reportAttributeAccessIssue]
        self.growth = check_real(growth, f"`{owner}(growth=...)`")

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
            check_widths(width_sizes, owner, minimum=1),
            activation=activation,
            dtype=dtype,
            key=key,
        )
        self.structural_tensor = NonTrainable(G)
        self.reduced = bool(reduced)
        self.polyconvex_i5 = bool(polyconvex_i5)
        self.input_scale = check_scales(
            input_scale, 4 if reduced else 5, f"`{owner}(input_scale=...)`"
        )
        self.growth = check_real(growth, f"`{owner}(growth=...)`")

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
