"""Stress measures and the consistent tangent of a hyperelastic potential.

A potential is any callable `W(F) -> scalar` of one deformation gradient
`F` of shape `(3, 3)` (a plain function or an Equinox module such as a
finalised PANN). Every stress here comes from automatic differentiation of
`W`; nothing is hand-coded. Use `jax.vmap` over `F` for batches.

Conventions (also stated on the stresses page of the documentation):

- For an incompressible potential, one written in isochoric invariants
  (`NeoHooke`, `MooneyRivlin`, `Ogden`, `IncompressiblePANN`), `W(αF) = W(F)`,
  so the stresses returned here are those of `W` alone: `τ` and `σ` are
  deviatoric (trace zero) and miss the indeterminate pressure `p`, which only
  the boundary conditions fix (`σ_total = σ - p I`, `P_total = P - p J F^-T`).
  The load-case functions eliminate it with `P33 = 0`; a finite-element code
  needs `VolumetricPenalty` (or a mixed formulation).
- For the same reason the tangents of an incompressible potential have no
  volumetric stiffness: `voigt_tangent(W, I)` is singular, with the volumetric
  strain `[1, 1, 1, 0, 0, 0]` in its null space.
- `voigt_tangent` is the material tangent `∂S/∂E` in the order 11, 22, 33, 23,
  13, 12 with engineering shear strains; Abaqus' UMAT expects a spatial
  tangent in another order (see `voigt_tangent`).
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._misc import check_callable
from ._kinematics import (
    _cofactor,
    _det,
    as_deformation_gradient,
    check_positive_jacobian,
)

Potential = Callable[..., Any]
Matrix = Float[Array, "3 3"]

VOIGT_PAIRS = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
"""Voigt ordering used by [`voigt_tangent`][klax.mechanics.voigt_tangent]:
`11, 22, 33, 23, 13, 12`."""


def _check_potential(W: object, where: str) -> None:
    expected = "a potential W: callable F -> scalar"
    check_callable(W, f"`{where}(W, F)`'s first argument", expected)


def _energy(W: Potential, where: str) -> Callable[[Array], Array]:
    def energy(F):
        value = jnp.asarray(W(F))
        if value.shape != ():
            raise ValueError(
                f"`{where}`: the potential W must return a scalar; got shape "
                f"{value.shape}."
            )
        return value

    return energy


def first_piola(W: Potential, F: ArrayLike) -> Matrix:
    """First Piola–Kirchhoff stress $P = \\partial W / \\partial F$ (by `jax.grad`).

    For an incompressible potential (written in isochoric invariants) this is
    the stress of `W` alone: the pressure term $-p\\,J F^{-T}$, which only the
    boundary conditions determine, is not included (see
    [`cauchy`][klax.mechanics.cauchy]).

    **Arguments:**

    - `W`: potential, callable `F -> scalar`.
    - `F`: deformation gradient, shape `(3, 3)`.

    **Returns:** `P`, shape `(3, 3)`.

    Example:
        >>> import jax.numpy as jnp
        >>> from klax.mechanics import first_piola
        >>> first_piola(lambda F: 0.5 * jnp.sum(F * F), jnp.eye(3))[0, 0]
        Array(1., dtype=float32)
    """
    _check_potential(W, "first_piola")
    F = as_deformation_gradient(F, "first_piola")
    return jax.grad(_energy(W, "first_piola"))(F)


def second_piola(W: Potential, F: ArrayLike) -> Matrix:
    """Second Piola–Kirchhoff stress $S = F^{-1} P$ ($= 2\\,\\partial W/\\partial C$).

    $F^{-1}$ is applied as $\\operatorname{cof}(F)^T / J$; `J <= 0` raises an
    error at run time. The result is not symmetrised: for an objective `W` it
    is symmetric to rounding error.

    **Arguments:**

    - `W`: potential, callable `F -> scalar`.
    - `F`: deformation gradient with `det F > 0`, shape `(3, 3)`.

    **Returns:** `S`, shape `(3, 3)`.
    """
    _check_potential(W, "second_piola")
    F = as_deformation_gradient(F, "second_piola")
    P = jax.grad(_energy(W, "second_piola"))(F)
    J = check_positive_jacobian(_det(F), "second_piola")
    return _cofactor(F).T @ P / J


def kirchhoff(W: Potential, F: ArrayLike) -> Matrix:
    """Kirchhoff stress $\\tau = P F^T$.

    **Arguments:**

    - `W`: potential, callable `F -> scalar`.
    - `F`: deformation gradient, shape `(3, 3)`.

    **Returns:** `τ`, shape `(3, 3)`.
    """
    _check_potential(W, "kirchhoff")
    F = as_deformation_gradient(F, "kirchhoff")
    return jax.grad(_energy(W, "kirchhoff"))(F) @ F.T


def cauchy(W: Potential, F: ArrayLike) -> Matrix:
    """Cauchy stress $\\sigma = J^{-1} P F^T$.

    For an incompressible potential, one written in isochoric invariants
    ([`NeoHooke`][klax.mechanics.NeoHooke],
    [`MooneyRivlin`][klax.mechanics.MooneyRivlin],
    [`Ogden`][klax.mechanics.Ogden],
    [`IncompressiblePANN`][klax.mechanics.IncompressiblePANN]), `W` does not
    change under $F \\to \\alpha F$, so the result is deviatoric (trace zero):
    it is the stress without the indeterminate pressure $p$. The full stress is
    $\\sigma - p I$, with $p$ fixed by the boundary conditions, e.g. $p =
    \\sigma_{33}$ for a traction-free direction 3 (as the load-case functions
    do through $P_{33} = 0$). For a finite-element model, add a volumetric term
    with [`VolumetricPenalty`][klax.mechanics.VolumetricPenalty] (or use a
    mixed formulation).

    **Arguments:**

    - `W`: potential, callable `F -> scalar`.
    - `F`: deformation gradient with `det F > 0`, shape `(3, 3)`.

    **Returns:** `σ`, shape `(3, 3)`.

    Example:
        Uniaxial tension of incompressible neo-Hooke ($\\mu = 1$) at
        $\\lambda = 2$: the returned stress has no pressure in it; the
        traction-free lateral faces fix $p = \\sigma_{22}$, and
        $\\sigma_{11} - p = \\mu(\\lambda^2 - 1/\\lambda) = 3.5$.

        >>> import jax.numpy as jnp
        >>> from klax.mechanics import NeoHooke, cauchy
        >>> F = jnp.diag(jnp.array([2.0, 0.5**0.5, 0.5**0.5]))
        >>> sigma = cauchy(NeoHooke(1.0), F)
        >>> bool(jnp.abs(jnp.trace(sigma)) < 1e-5)  # deviatoric
        True
        >>> p = sigma[1, 1]
        >>> round(float(sigma[0, 0] - p), 4)
        3.5
    """
    _check_potential(W, "cauchy")
    F = as_deformation_gradient(F, "cauchy")
    P = jax.grad(_energy(W, "cauchy"))(F)
    J = check_positive_jacobian(_det(F), "cauchy")
    return P @ F.T / J


def tangent(W: Potential, F: ArrayLike) -> Float[Array, "3 3 3 3"]:
    """Consistent (material) tangent $A = \\partial P / \\partial F$.

    `A[i, J, k, L]` $= \\partial^2 W / \\partial F_{iJ} \\partial F_{kL}$; it has
    the major symmetry `A[i, J, k, L] == A[k, L, i, J]`.

    **Arguments:**

    - `W`: potential, callable `F -> scalar`.
    - `F`: deformation gradient, shape `(3, 3)`.

    **Returns:** `A`, shape `(3, 3, 3, 3)`.

    Example:
        >>> import jax.numpy as jnp
        >>> from klax.mechanics import tangent
        >>> tangent(lambda F: 0.5 * jnp.sum(F * F), jnp.eye(3)).shape
        (3, 3, 3, 3)
    """
    _check_potential(W, "tangent")
    F = as_deformation_gradient(F, "tangent")
    return jax.jacfwd(jax.grad(_energy(W, "tangent")))(F)


def tangent_9x9(W: Potential, F: ArrayLike) -> Float[Array, "9 9"]:
    """The tangent $\\partial P / \\partial F$ as a 9×9 matrix.

    Row `3 i + J` holds $P_{iJ}$ and column `3 k + L` holds $F_{kL}$ (row-major
    flattening of both), so that `dP.ravel() == A9 @ dF.ravel()`. The matrix is
    symmetric.

    **Arguments:**

    - `W`: potential, callable `F -> scalar`.
    - `F`: deformation gradient, shape `(3, 3)`.

    **Returns:** the matrix, shape `(9, 9)`.
    """
    return tangent(W, F).reshape(9, 9)


def voigt_tangent(W: Potential, F: ArrayLike) -> Float[Array, "6 6"]:
    """The material tangent $\\mathbb{C} = \\partial S / \\partial E$ in 6×6 Voigt form.

    $E = (C - I)/2$ is the Green–Lagrange strain and $S$ the second
    Piola–Kirchhoff stress: this is the tangent of the reference
    (Lagrangian) configuration. It is pulled back from
    $A = \\partial P/\\partial F$ through
    $A_{iJkL} = F_{iI} F_{kK} \\mathbb{C}_{IJKL} + \\delta_{ik} S_{JL}$.

    Ordering convention: stress $[S_{11}, S_{22}, S_{33}, S_{23}, S_{13},
    S_{12}]$ and strain with engineering shears $[E_{11}, E_{22}, E_{33},
    2E_{23}, 2E_{13}, 2E_{12}]$, so that `dS_voigt = D @ dE_voigt` and
    $dE : \\mathbb{C} : dE$ = `dE_voigt @ D @ dE_voigt`. Entry `D[a, b]` is
    $\\mathbb{C}_{IJKL}$ averaged over the swap of `K, L` (exact for an
    objective `W`, whose tangent has the minor symmetries).

    **Not what Abaqus expects.** Abaqus/Standard's UMAT takes the Cauchy stress
    and, as `DDSDDE`, the spatial tangent of the Jaumann rate of the Kirchhoff
    stress divided by $J$,
    $\\frac{1}{J} F_{iI} F_{jJ} F_{kK} F_{lL}\\, \\mathbb{C}_{IJKL}
    + \\tfrac12(\\delta_{ik}\\sigma_{jl} + \\sigma_{ik}\\delta_{jl}
    + \\delta_{il}\\sigma_{jk} + \\sigma_{il}\\delta_{jk})$,
    in the order 11, 22, 33, 12, 13, 23 (the shear rows and columns of `D`
    reversed). Only at $F = I$ without prestress do the two agree up to that
    reordering.

    For an incompressible potential (written in isochoric invariants) the
    tangent has no volumetric stiffness: at $F = I$, `D` is singular with
    `[1, 1, 1, 0, 0, 0]` in its null space, and an implicit finite-element
    solver cannot use it alone. Add a volumetric term with
    [`VolumetricPenalty`][klax.mechanics.VolumetricPenalty] (or use a mixed
    formulation).

    **Arguments:**

    - `W`: potential, callable `F -> scalar`.
    - `F`: deformation gradient with `det F > 0`, shape `(3, 3)`.

    **Returns:** `D`, shape `(6, 6)`.

    Example:
        Neo-Hooke ($\\mu = 1$) in the reference state: the normal block, then
        the shears in the order 23, 13, 12, each with modulus $\\mu$. Alone
        it has no volumetric stiffness (rank 5); with a penalty of bulk
        modulus $\\kappa = 10$ it has $\\kappa + 4\\mu/3$ on the diagonal.

        >>> import jax.numpy as jnp
        >>> from klax.mechanics import NeoHooke, VolumetricPenalty, voigt_tangent
        >>> D = voigt_tangent(NeoHooke(1.0), jnp.eye(3))
        >>> int(jnp.linalg.matrix_rank(D))
        5
        >>> volumetric = jnp.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
        >>> bool(jnp.allclose(D @ volumetric, 0.0, atol=1e-6))
        True
        >>> D = voigt_tangent(VolumetricPenalty(NeoHooke(1.0), 10.0), jnp.eye(3))
        >>> [round(float(d), 4) for d in D.diagonal()]
        [11.3333, 11.3333, 11.3333, 1.0, 1.0, 1.0]
    """
    _check_potential(W, "voigt_tangent")
    F = as_deformation_gradient(F, "voigt_tangent")
    energy = _energy(W, "voigt_tangent")
    P = jax.grad(energy)(F)
    A = jax.jacfwd(jax.grad(energy))(F)
    J = check_positive_jacobian(_det(F), "voigt_tangent")
    F_inv = _cofactor(F).T / J
    S = F_inv @ P
    eye = jnp.eye(3, dtype=F.dtype)
    geometric = jnp.einsum("ik,JL->iJkL", eye, S)
    material = jnp.einsum("Ii,Kk,iJkL->IJKL", F_inv, F_inv, A - geometric)
    material = 0.5 * (material + jnp.swapaxes(material, 2, 3))
    rows = jnp.array([p[0] for p in VOIGT_PAIRS])
    cols = jnp.array([p[1] for p in VOIGT_PAIRS])
    return material[rows[:, None], cols[:, None], rows[None, :], cols[None, :]]
