"""Stress measures and the consistent tangent of a hyperelastic potential.

A potential is any callable `W(F) -> scalar` of one deformation gradient
`F` of shape `(3, 3)` (a plain function or an Equinox module such as a
finalised PANN). Every stress here comes from automatic differentiation of
`W`; nothing is hand-coded. Use `jax.vmap` over `F` for batches.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

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
    if not callable(W):
        raise TypeError(
            f"`{where}(W, F)` expects a potential W: callable F -> scalar; got "
            f"{type(W).__name__}."
        )


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

    **Arguments:**

    - `W`: potential, callable `F -> scalar`.
    - `F`: deformation gradient with `det F > 0`, shape `(3, 3)`.

    **Returns:** `σ`, shape `(3, 3)`.
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
    """The tangent $\\mathbb{C} = \\partial S / \\partial E$ in 6×6 Voigt form.

    $E = (C - I)/2$ is the Green–Lagrange strain. The tangent is pulled back
    from $A = \\partial P/\\partial F$ through
    $A_{iJkL} = F_{iI} F_{kK} \\mathbb{C}_{IJKL} + \\delta_{ik} S_{JL}$.

    Ordering convention: stress $[S_{11}, S_{22}, S_{33}, S_{23}, S_{13},
    S_{12}]$ and strain with engineering shears $[E_{11}, E_{22}, E_{33},
    2E_{23}, 2E_{13}, 2E_{12}]$, so that `dS_voigt = D @ dE_voigt` and
    $dE : \\mathbb{C} : dE$ = `dE_voigt @ D @ dE_voigt`. Entry `D[a, b]` is
    $\\mathbb{C}_{IJKL}$ averaged over the swap of `K, L` (exact for an
    objective `W`, whose tangent has the minor symmetries).

    **Arguments:**

    - `W`: potential, callable `F -> scalar`.
    - `F`: deformation gradient with `det F > 0`, shape `(3, 3)`.

    **Returns:** `D`, shape `(6, 6)`.
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
