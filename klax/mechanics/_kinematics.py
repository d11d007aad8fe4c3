"""Kinematics of finite strain: Cauchy–Green tensors, cofactor and invariants.

Every function takes one deformation gradient `F` of shape `(3, 3)`; use
`jax.vmap` for batches. All of them are smooth, so they can be differentiated
with respect to `F` (and through them, with respect to model parameters).
"""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

Matrix = Float[Array, "3 3"]
Scalar = Float[Array, ""]

REFERENCE_I2_POLYCONVEX = 3.0**1.5
"""$\\tilde I_2 = \\|\\operatorname{cof} F\\|^3 / J^2$ at `F = I`: $3^{3/2}$."""


def as_deformation_gradient(F: ArrayLike, where: str) -> Array:
    """Convert `F` to an inexact array and check that it has shape `(3, 3)`."""
    F = jnp.asarray(F)
    if F.shape != (3, 3):
        raise ValueError(
            f"`{where}` expects one deformation gradient F of shape (3, 3); got "
            f"shape {F.shape}. Use jax.vmap for batches."
        )
    if not jnp.issubdtype(F.dtype, jnp.inexact):
        F = F.astype(jnp.result_type(float))
    return F


def check_positive_jacobian(J: Array, where: str) -> Array:
    """Return `J`, raising at run time (also under `jit`) if `J <= 0`."""
    return eqx.error_if(
        J,
        J <= 0,
        f"`{where}` needs an admissible deformation with J = det F > 0; got J <= 0 "
        "(an inverted or collapsed element).",
    )


def right_cauchy_green(F: ArrayLike) -> Matrix:
    """Right Cauchy–Green tensor $C = F^T F$.

    **Arguments:**

    - `F`: deformation gradient, shape `(3, 3)`.

    **Returns:** `C`, shape `(3, 3)`, symmetric.

    Example:
        >>> import jax.numpy as jnp
        >>> from klax.mechanics import right_cauchy_green
        >>> right_cauchy_green(jnp.diag(jnp.array([2.0, 1.0, 1.0])))[0, 0]
        Array(4., dtype=float32)
    """
    F = as_deformation_gradient(F, "right_cauchy_green")
    return F.T @ F


def left_cauchy_green(F: ArrayLike) -> Matrix:
    """Left Cauchy–Green tensor $b = F F^T$.

    **Arguments:**

    - `F`: deformation gradient, shape `(3, 3)`.

    **Returns:** `b`, shape `(3, 3)`, symmetric.
    """
    F = as_deformation_gradient(F, "left_cauchy_green")
    return F @ F.T


def _cofactor(F: Array) -> Array:
    # Columns of cof F are the cross products of the columns of F, so that
    # F^T cof F = det(F) I. No inverse is formed: smooth and defined for any F.
    f0, f1, f2 = F[:, 0], F[:, 1], F[:, 2]
    return jnp.stack([jnp.cross(f1, f2), jnp.cross(f2, f0), jnp.cross(f0, f1)], axis=1)


def _det(F: Array) -> Array:
    return jnp.dot(F[:, 0], jnp.cross(F[:, 1], F[:, 2]))


def _quartic(s: Array, e1: Array, e2: Array, r: Array) -> tuple[Array, Array]:
    """`P(s) = (s² - e1)² - 8 r s - 4 e2` and `P'(s)`.

    `s² - e1 = 2t` is formed first: the expanded quartic would cancel terms of
    order `s⁴` to a result of order `t²` (large stretches in float32).
    """
    d = s * s - e1
    return d * d - 8.0 * r * s - 4.0 * e2, 4.0 * s * d - 8.0 * r


def _singular_value_sum(e1: Array, e2: Array, r: Array) -> Array:
    """`σ1 + σ2 + σ3` of a 3x3 matrix `A` from `e1 = ‖A‖²`, `e2 = ‖cof A‖²` and
    `r = |det A|`, smooth where singular values coincide.

    The squared singular values are the roots of `x³ - e1 x² + e2 x - r²`
    (the eigenvalues of `AᵀA`): the largest by the trigonometric formula, the
    sum of the square roots of the other two from their product and sum,
    without cancellation (float32 to rounding for stretches in [0.02, 100]).
    `s` is also the largest root of the quartic `P` of `_quartic`.
    `P`'s roots are `±σ1 ± σ2 ± σ3` with an even number of minus signs (from
    `s² = e1 + 2t`, `t² = e2 + 2 r s`, `t = Σ_{i<j} σ_i σ_j`), `s` the largest
    and a simple one whenever `A` has rank 2 or more (`P'(s) > 0`; `P'(3) = 64`
    at `A = I`), so by the implicit function theorem `s` is smooth in
    `(e1, e2, r)` although the singular values are not. The value is computed
    without derivatives; every derivative, of any order, is the implicit one
    (`_implicit_root`).
    """
    e1_, e2_, r_ = (jax.lax.stop_gradient(v) for v in (e1, e2, r))
    mean = e1_ / 3.0
    q = jnp.maximum(mean * mean - e2_ / 3.0, 0.0)  # ≥ 0: the roots' spread
    h = mean * (mean * mean - e2_ / 2.0) + r_ * r_ / 2.0
    spread = q > 0  # where q = 0 the angle does not matter
    cube = jnp.where(spread, q, 1.0) ** 1.5
    cosine = jnp.clip(jnp.where(spread, h / cube, 1.0), -1.0, 1.0)
    # The largest root x1 (no cancellation); the other two from their product
    # p = r²/x1 and sum (e2 - p)/x1, which do not cancel either.
    x1 = mean + 2.0 * jnp.sqrt(q) * jnp.cos(jnp.arccos(cosine) / 3.0)
    x1 = jnp.where(x1 > 0, x1, 1.0)
    p = r_ * r_ / x1
    s = jnp.sqrt(x1) + jnp.sqrt(jnp.maximum((e2_ - p) / x1 + 2.0 * jnp.sqrt(p), 0.0))
    return _implicit_root(e1, e2, r, s)


@jax.custom_jvp
def _implicit_root(e1: Array, e2: Array, r: Array, root: Array) -> Array:
    # The root `root` of `P` (computed without derivatives), with the tangent
    # of the implicit function theorem. Its rule calls this function again,
    # which returns `root` unchanged, so derivatives of any order never repeat
    # the computation of the value.
    return root


@_implicit_root.defjvp
def _implicit_root_jvp(primals, tangents):
    e1, e2, r, root = primals
    de1, de2, dr, _ = tangents
    s = _implicit_root(e1, e2, r, root)
    _, slope = _quartic(s, e1, e2, r)
    # dP = P' ds + (2 e1 - 2 s²) de1 - 4 de2 - 8 s dr = 0.
    return s, (2.0 * (s * s - e1) * de1 + 4.0 * de2 + 8.0 * s * dr) / slope


def cofactor(F: ArrayLike) -> Matrix:
    """Cofactor $\\operatorname{cof} F = J F^{-T}$, computed as the transposed adjugate.

    No inverse is formed, so the result is a polynomial in the entries of `F`:
    smooth, and defined also for singular `F`.

    **Arguments:**

    - `F`: deformation gradient, shape `(3, 3)`.

    **Returns:** `cof F`, shape `(3, 3)`.

    Example:
        >>> import jax.numpy as jnp
        >>> from klax.mechanics import cofactor
        >>> cofactor(jnp.diag(jnp.array([2.0, 3.0, 4.0]))).diagonal()
        Array([12.,  8.,  6.], dtype=float32)
    """
    return _cofactor(as_deformation_gradient(F, "cofactor"))


def jacobian(F: ArrayLike) -> Scalar:
    """Volume ratio $J = \\det F$ (a cubic polynomial in the entries of `F`)."""
    return _det(as_deformation_gradient(F, "jacobian"))


def invariants(F: ArrayLike) -> tuple[Scalar, Scalar, Scalar, Scalar]:
    """Principal invariants of $C = F^T F$ and the volume ratio.

    $I_1 = \\operatorname{tr} C = \\|F\\|^2$,
    $I_2 = \\operatorname{tr} \\operatorname{cof} C = \\|\\operatorname{cof} F\\|^2$,
    $I_3 = \\det C = J^2$ and $J = \\det F$.

    **Arguments:**

    - `F`: deformation gradient, shape `(3, 3)`.

    **Returns:** the tuple `(I1, I2, I3, J)` of scalars.

    Example:
        >>> import jax.numpy as jnp
        >>> from klax.mechanics import invariants
        >>> [float(i) for i in invariants(jnp.eye(3))]
        [3.0, 3.0, 1.0, 1.0]
    """
    F = as_deformation_gradient(F, "invariants")
    cof = _cofactor(F)
    J = _det(F)
    return jnp.sum(F * F), jnp.sum(cof * cof), J * J, J


def isochoric_invariants(F: ArrayLike) -> tuple[Scalar, Scalar]:
    """Isochoric invariants $\\bar I_1 = J^{-2/3} I_1$ and $\\bar I_2 = J^{-4/3} I_2$.

    Note that $\\bar I_2$ is not a polyconvex input (see
    [`polyconvex_isochoric_invariants`][klax.mechanics.polyconvex_isochoric_invariants]).

    **Arguments:**

    - `F`: deformation gradient with `det F > 0`, shape `(3, 3)`. A non-positive
      determinant raises an error at run time.

    **Returns:** the tuple `(Ī1, Ī2)`; both equal 3 at `F = I`.
    """
    F = as_deformation_gradient(F, "isochoric_invariants")
    cof = _cofactor(F)
    J = check_positive_jacobian(_det(F), "isochoric_invariants")
    return jnp.sum(F * F) * J ** (-2.0 / 3.0), jnp.sum(cof * cof) * J ** (-4.0 / 3.0)


def polyconvex_isochoric_invariants(F: ArrayLike) -> tuple[Scalar, Scalar]:
    """Polyconvex isochoric invariants of Dammaß, Kalina & Kästner (2025).

    $\\tilde I_1 = \\|F\\|^2 / J^{2/3}$ is jointly convex in $(F, J)$ and
    $\\tilde I_2 = \\|\\operatorname{cof} F\\|^3 / J^2 = \\bar I_2^{3/2}$ is jointly
    convex in $(\\operatorname{cof} F, J)$ for $J > 0$. A potential that is convex
    and non-decreasing in them is therefore polyconvex.

    **Arguments:**

    - `F`: deformation gradient with `det F > 0`, shape `(3, 3)`. A non-positive
      determinant raises an error at run time.

    **Returns:** the tuple `(Ĩ1, Ĩ2)`, equal to `(3, 3**1.5)` at `F = I`.

    Example:
        >>> import jax.numpy as jnp
        >>> from klax.mechanics import polyconvex_isochoric_invariants
        >>> [round(float(i), 4) for i in polyconvex_isochoric_invariants(jnp.eye(3))]
        [3.0, 5.1962]
    """
    F = as_deformation_gradient(F, "polyconvex_isochoric_invariants")
    cof = _cofactor(F)
    J = check_positive_jacobian(_det(F), "polyconvex_isochoric_invariants")
    norm_cof = jnp.sqrt(jnp.sum(cof * cof))
    return jnp.sum(F * F) * J ** (-2.0 / 3.0), norm_cof**3 / J**2


def structural_tensor(a: ArrayLike) -> Matrix:
    """Structural tensor $G = a \\otimes a / |a|^2$ of a preferred direction `a`.

    **Arguments:**

    - `a`: direction, shape `(3,)`; it is normalised, so any non-zero length
      works (a zero vector raises an error at run time).

    **Returns:** `G`, shape `(3, 3)`, symmetric with `tr G = 1`.

    Example:
        >>> import jax.numpy as jnp
        >>> from klax.mechanics import structural_tensor
        >>> structural_tensor(jnp.array([0.0, 0.0, 2.0])).diagonal()
        Array([0., 0., 1.], dtype=float32)
    """
    a = jnp.asarray(a)
    if a.shape != (3,):
        raise ValueError(
            f"`structural_tensor(a)` expects a direction of shape (3,); got shape "
            f"{a.shape}."
        )
    if not jnp.issubdtype(a.dtype, jnp.inexact):
        a = a.astype(jnp.result_type(float))
    norm2 = eqx.error_if(
        jnp.dot(a, a), jnp.dot(a, a) == 0, "`structural_tensor(a)` got a = 0."
    )
    return jnp.outer(a, a) / norm2


def check_structural_tensor(G: Any, where: str) -> Array:
    """Check that `G` has shape `(3, 3)` and return it as an inexact array."""
    G = jnp.asarray(G)
    if G.shape != (3, 3):
        raise ValueError(
            f"`{where}` expects a structural tensor G of shape (3, 3); got shape "
            f"{G.shape}. Build one from a direction with `structural_tensor(a)`."
        )
    if not jnp.issubdtype(G.dtype, jnp.inexact):
        G = G.astype(jnp.result_type(float))
    return G


def transverse_invariants(
    F: ArrayLike, G: ArrayLike, *, polyconvex: bool = True
) -> tuple[Scalar, Scalar]:
    """Anisotropic invariants $I_4$ and $I_5$ for a structural tensor `G`.

    $I_4 = \\operatorname{tr}(C G)$ (for $G = a \\otimes a$: $\\|F a\\|^2$, convex
    in $F$) and, by default, $I_5 = \\operatorname{tr}(\\operatorname{cof}(C) G)$
    (for $G = a \\otimes a$: $\\|\\operatorname{cof} F\\, a\\|^2$, convex in
    $\\operatorname{cof} F$). Both equal `tr G` (1 for a normalised `G`) at `F = I`.

    **Arguments:**

    - `F`: deformation gradient, shape `(3, 3)`.
    - `G`: symmetric structural tensor with `tr G = 1`, shape `(3, 3)`, e.g.
      from [`structural_tensor`][klax.mechanics.structural_tensor]. It need not
      be of rank one.
    - `polyconvex`: if `False`, return the classical $I_5 = \\operatorname{tr}(C^2
      G)$ instead. That invariant is **not** polyconvex: a potential using it
      loses the polyconvexity guarantee. (Keyword only argument.)

    **Returns:** the tuple `(I4, I5)`.
    """
    F = as_deformation_gradient(F, "transverse_invariants")
    G = check_structural_tensor(G, "transverse_invariants")
    I4 = jnp.sum((F @ G) * F)
    if polyconvex:
        cof = _cofactor(F)
        I5 = jnp.sum((cof @ G) * cof)
    else:
        C = F.T @ F
        I5 = jnp.sum((C @ C) * G)
    return I4, I5
