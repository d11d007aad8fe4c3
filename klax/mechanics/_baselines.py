"""Classical hyperelastic baselines: neo-Hooke, Mooney–Rivlin and Ogden.

All three are written in isochoric quantities, so they serve incompressible
load cases directly (the pressure is eliminated by the load-case helpers)
and compressible ones once a volumetric term is added with
[`VolumetricPenalty`][klax.mechanics.VolumetricPenalty]. Parameters are
arrays (trainable with `klax.fit`); stresses come from automatic
differentiation.
"""

from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._misc import default_floating_dtype
from ._kinematics import (
    _cofactor,
    _det,
    as_deformation_gradient,
    check_positive_jacobian,
)
from ._spectral import eig_power_sum

Scalar = Float[Array, ""]


def _parameter(value: Any, name: str, where: str, dtype: Any) -> Array:
    dtype = default_floating_dtype() if dtype is None else dtype
    try:
        array = jnp.asarray(value, dtype=dtype)
    except (TypeError, ValueError):
        raise TypeError(
            f"`{where}({name}=...)` must be a real number; got {value!r}."
        ) from None
    if array.shape != ():
        raise ValueError(
            f"`{where}({name}=...)` must be a scalar; got shape {array.shape}."
        )
    return array


def _isochoric(F: Array, where: str) -> tuple[Array, Array]:
    cof = _cofactor(F)
    J = check_positive_jacobian(_det(F), where)
    return jnp.sum(F * F) * J ** (-2.0 / 3.0), jnp.sum(cof * cof) * J ** (-4.0 / 3.0)


class AbstractIsotropicPotential(eqx.Module):
    """Abstract isotropic incompressible potential with an invariant form.

    Subclasses implement `__call__(F)` (the energy of one deformation
    gradient) and `isotropic_energy(I1, I2)`: the same energy on the
    incompressible manifold `J = 1`, as a function of the principal invariants.
    The latter feeds the fast closed-form load-case path
    ([`isotropic_nominal_stress_11`][klax.mechanics.isotropic_nominal_stress_11]).
    """

    @abstractmethod
    def __call__(self, F: ArrayLike) -> Scalar:
        """Strain energy density of `F` (shape `(3, 3)`), a scalar."""

    @abstractmethod
    def isotropic_energy(self, I1: ArrayLike, I2: ArrayLike) -> Scalar:
        """Energy at `J = 1` as a function of the invariants `I1`, `I2` (scalars)."""

    def initial_shear_modulus(self) -> Scalar:
        """The initial shear modulus $\\mu_0 = 2(W_1 + W_2)$ at the reference state."""
        three = jnp.asarray(3.0, dtype=jnp.result_type(float))
        W1, W2 = jax.grad(self.isotropic_energy, (0, 1))(three, three)
        return 2.0 * (W1 + W2)


class NeoHooke(AbstractIsotropicPotential):
    """Incompressible neo-Hooke model $W = \\tfrac{\\mu}{2}(\\bar I_1 - 3)$.

    Example:
        >>> import jax.numpy as jnp
        >>> from klax.mechanics import NeoHooke
        >>> NeoHooke(0.4).initial_shear_modulus()
        Array(0.4, dtype=float32)
    """

    mu: Array

    def __init__(self, mu: ArrayLike, dtype: Any = None):
        """**Arguments:**

        - `mu`: shear modulus (in MPa for stresses in MPa).
        - `dtype`: parameter dtype; defaults to float64 with x64 enabled, else
          float32.
        """
        self.mu = _parameter(mu, "mu", "NeoHooke", dtype)

    def __call__(self, F: ArrayLike) -> Scalar:
        """Energy of one deformation gradient `F` of shape `(3, 3)` with `det F > 0`."""
        F = as_deformation_gradient(F, "NeoHooke")
        I1_bar, _ = _isochoric(F, "NeoHooke")
        return 0.5 * self.mu * (I1_bar - 3.0)

    def isotropic_energy(self, I1: ArrayLike, I2: ArrayLike) -> Scalar:
        del I2
        return 0.5 * self.mu * (jnp.asarray(I1) - 3.0)


class MooneyRivlin(AbstractIsotropicPotential):
    """Incompressible Mooney–Rivlin model.

    $W = c_{10}(\\bar I_1 - 3) + c_{01}(\\bar I_2 - 3)$; the initial shear
    modulus is $2(c_{10} + c_{01})$.
    """

    c10: Array
    c01: Array

    def __init__(self, c10: ArrayLike, c01: ArrayLike, dtype: Any = None):
        """**Arguments:**

        - `c10`, `c01`: the two material constants (MPa).
        - `dtype`: parameter dtype; defaults to float64 with x64 enabled, else
          float32.
        """
        self.c10 = _parameter(c10, "c10", "MooneyRivlin", dtype)
        self.c01 = _parameter(c01, "c01", "MooneyRivlin", dtype)

    def __call__(self, F: ArrayLike) -> Scalar:
        """Energy of one deformation gradient `F` of shape `(3, 3)` with `det F > 0`."""
        F = as_deformation_gradient(F, "MooneyRivlin")
        I1_bar, I2_bar = _isochoric(F, "MooneyRivlin")
        return self.c10 * (I1_bar - 3.0) + self.c01 * (I2_bar - 3.0)

    def isotropic_energy(self, I1: ArrayLike, I2: ArrayLike) -> Scalar:
        return self.c10 * (jnp.asarray(I1) - 3.0) + self.c01 * (jnp.asarray(I2) - 3.0)


class Ogden(eqx.Module):
    """Incompressible N-term Ogden model.

    $$W = \\sum_{p=1}^N \\frac{\\mu_p}{\\alpha_p}
    \\left(\\bar\\lambda_1^{\\alpha_p} + \\bar\\lambda_2^{\\alpha_p}
    + \\bar\\lambda_3^{\\alpha_p} - 3\\right)$$

    with the isochoric principal stretches $\\bar\\lambda_i = J^{-1/3}\\lambda_i$.
    The principal stretches come from the eigenvalues of `C` through
    derivative rules that stay exact at repeated stretches (uniaxial tension,
    `F = I`). The initial shear modulus is $\\tfrac12\\sum_p \\mu_p \\alpha_p$.

    Example:
        >>> import jax.numpy as jnp
        >>> from klax.mechanics import Ogden
        >>> model = Ogden([0.63, 0.0012, -0.01], [1.3, 5.0, -2.0])
        >>> round(float(model.initial_shear_modulus()), 4)
        0.4225
    """

    mu: Float[Array, " N"]
    alpha: Float[Array, " N"]

    def __init__(
        self,
        mu: Sequence[float] | ArrayLike,
        alpha: Sequence[float] | ArrayLike,
        dtype: Any = None,
    ):
        """**Arguments:**

        - `mu`: the N moduli $\\mu_p$ (MPa), a sequence or 1-d array.
        - `alpha`: the N exponents $\\alpha_p$ (non-zero), same length as `mu`.
        - `dtype`: parameter dtype; defaults to float64 with x64 enabled, else
          float32.
        """
        dtype = default_floating_dtype() if dtype is None else dtype
        mu_arr = jnp.asarray(mu, dtype=dtype)
        alpha_arr = jnp.asarray(alpha, dtype=dtype)
        if mu_arr.ndim != 1 or alpha_arr.shape != mu_arr.shape or mu_arr.size == 0:
            raise ValueError(
                "`Ogden(mu=..., alpha=...)` must be two non-empty 1-d sequences of "
                f"equal length; got shapes {mu_arr.shape} and {alpha_arr.shape}."
            )
        try:
            has_zero = bool(np.any(np.asarray(alpha_arr) == 0))
        except jax.errors.TracerArrayConversionError:  # built under a transformation
            has_zero = False
        if has_zero:
            raise ValueError(f"`Ogden(alpha=...)` must be non-zero; got {alpha}.")
        self.mu = mu_arr
        self.alpha = alpha_arr

    @property
    def num_terms(self) -> int:
        """The number of terms N."""
        return self.mu.shape[0]

    def __call__(self, F: ArrayLike) -> Scalar:
        """Energy of one deformation gradient `F` of shape `(3, 3)` with `det F > 0`."""
        F = as_deformation_gradient(F, "Ogden")
        J = check_positive_jacobian(_det(F), "Ogden")
        C_bar = (F.T @ F) * J ** (-2.0 / 3.0)
        sums = jax.vmap(eig_power_sum, in_axes=(None, 0))(C_bar, 0.5 * self.alpha)
        return jnp.sum(self.mu / self.alpha * (sums - 3.0))

    def principal_energy(
        self, stretch_1: ArrayLike, stretch_2: ArrayLike, stretch_3: ArrayLike
    ) -> Scalar:
        """Energy of the (isochoric) principal stretches of an incompressible state."""
        stretches = jnp.stack(
            [jnp.asarray(s) for s in (stretch_1, stretch_2, stretch_3)]
        )
        powers = stretches[None, :] ** self.alpha[:, None]
        return jnp.sum(self.mu / self.alpha * (jnp.sum(powers, axis=1) - 3.0))

    def initial_shear_modulus(self) -> Scalar:
        """$\\mu_0 = \\tfrac12 \\sum_p \\mu_p \\alpha_p$."""
        return 0.5 * jnp.sum(self.mu * self.alpha)


class VolumetricPenalty(eqx.Module):
    """Add a volumetric penalty $\\tfrac{\\kappa}{2}(J-1)^2$ to a potential.

    Turns an isochoric (incompressible) potential into a compressible one; as
    $\\kappa \\to \\infty$ the compressible load cases approach the
    incompressible ones.
    """

    potential: Callable[[Array], Array]
    bulk_modulus: Array

    def __init__(
        self,
        potential: Callable[[Array], Array],
        bulk_modulus: ArrayLike,
        dtype: Any = None,
    ):
        """**Arguments:**

        - `potential`: the potential `F -> scalar` to extend.
        - `bulk_modulus`: the penalty coefficient $\\kappa > 0$ (MPa).
        - `dtype`: dtype of `bulk_modulus`; defaults to float64 with x64 enabled,
          else float32.
        """
        if not callable(potential):
            raise TypeError(
                "`VolumetricPenalty(potential=...)` must be a callable F -> scalar; "
                f"got {type(potential).__name__}."
            )
        self.potential = potential
        self.bulk_modulus = _parameter(
            bulk_modulus, "bulk_modulus", "VolumetricPenalty", dtype
        )

    def __call__(self, F: ArrayLike) -> Scalar:
        """Energy of one deformation gradient `F` of shape `(3, 3)`."""
        F = as_deformation_gradient(F, "VolumetricPenalty")
        J = _det(F)
        return self.potential(F) + 0.5 * self.bulk_modulus * (J - 1.0) ** 2


def baseline_constants(model: Any) -> dict[str, float]:
    """The material constants of a classical baseline, by name (in the stress unit).

    **Arguments:**

    - `model`: a [`NeoHooke`][klax.mechanics.NeoHooke] (`mu`),
      [`MooneyRivlin`][klax.mechanics.MooneyRivlin] (`c10`, `c01`) or
      [`Ogden`][klax.mechanics.Ogden] (`mu_1 … mu_N`, `alpha_1 … alpha_N`).

    **Returns:** a dict of Python floats.

    Example:
        >>> from klax.mechanics import MooneyRivlin, baseline_constants
        >>> constants = baseline_constants(MooneyRivlin(0.2, 0.02))
        >>> {name: round(value, 6) for name, value in constants.items()}
        {'c10': 0.2, 'c01': 0.02}
    """
    if isinstance(model, NeoHooke):
        return {"mu": float(model.mu)}
    if isinstance(model, MooneyRivlin):
        return {"c10": float(model.c10), "c01": float(model.c01)}
    if isinstance(model, Ogden):
        mu = np.asarray(model.mu, dtype=np.float64).tolist()
        alpha = np.asarray(model.alpha, dtype=np.float64).tolist()
        out = {f"mu_{p + 1}": float(v) for p, v in enumerate(mu)}
        out.update({f"alpha_{p + 1}": float(v) for p, v in enumerate(alpha)})
        return out
    raise TypeError(
        "`baseline_constants(model)` expects a NeoHooke, MooneyRivlin or Ogden "
        f"model; got {type(model).__name__}."
    )


def linear_parameters(model: Any) -> Any:
    """The parameters in which a baseline's stress is linear (its moduli).

    Neo-Hooke: `mu`; Mooney–Rivlin: `(c10, c01)`; Ogden: `mu` (the exponents
    held). For least-squares fits (a linear solve gives them exactly).
    """
    if isinstance(model, NeoHooke):
        return model.mu
    if isinstance(model, MooneyRivlin):
        return (model.c10, model.c01)
    if isinstance(model, Ogden):
        return model.mu
    raise TypeError(
        "`linear_parameters(model)` expects a NeoHooke, MooneyRivlin or Ogden "
        f"model; got {type(model).__name__}."
    )
