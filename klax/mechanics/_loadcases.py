"""Homogeneous load cases in principal stretches and their nominal stress.

Direction 1 is loaded with the controlled stretch `λ = λ1`; direction 3 is the
traction-free thickness direction. Three standard tests:

| load case | `(λ1, λ2, λ3)` (incompressible) | traction-free |
|---|---|---|
| `"uniaxial"` | `(λ, λ^(-1/2), λ^(-1/2))` | 2 and 3 |
| `"equibiaxial"` | `(λ, λ, λ^(-2))` | 3 |
| `"pure_shear"` | `(λ, 1, λ^(-1))` | 3 |

Two more kinds of test take other deformation parameters: general biaxial
tension `(λ1, λ2, 1/(λ1 λ2))` ([`biaxial`][klax.mechanics.biaxial], both
in-plane stresses measured) and simple shear `F = I + γ e1⊗e2`
([`simple_shear`][klax.mechanics.simple_shear]; the thickness direction 3 is
traction-free, `σ33 = 0`). Every stretch may be below one (compression).

For incompressible materials the pressure is eliminated with `P33 = 0`
([`nominal_stress_11`][klax.mechanics.nominal_stress_11], by automatic
differentiation of any `W(F)`, and
[`isotropic_nominal_stress_11`][klax.mechanics.isotropic_nominal_stress_11],
the closed form for `W(I1, I2)`). For compressible materials the lateral
stretch follows from a differentiable root find
([`compressible_load_case`][klax.mechanics.compressible_load_case]).
"""

from collections.abc import Callable
from typing import Literal, get_args

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import Array, ArrayLike, Float

from ._stress import Potential

LoadCase = Literal["uniaxial", "equibiaxial", "pure_shear"]
LOAD_CASES: tuple[str, ...] = get_args(LoadCase)
"""The names of the one-stretch load cases (controlled stretch `λ = λ1`)."""

ALL_LOAD_CASES: tuple[str, ...] = (*LOAD_CASES, "biaxial", "simple_shear")
"""Every load case of the calibration data: `LOAD_CASES` in the same order,
then `"biaxial"` (stretches `λ1`, `λ2`) and `"simple_shear"` (amount of shear
`γ`). A load case's position in this tuple is its `case_index`."""

STRESS_COMPONENTS: tuple[str, ...] = ("P11", "P22", "P12")
"""The nominal-stress components a load case can report, in the order of their
`component` index: `P11`, `P22` (the in-plane normal stresses) and `P12` (the
shear stress of simple shear on the face with normal `e2`)."""


def check_load_case(load_case: object, where: str) -> str:
    """Raise a `ValueError` unless `load_case` is one of `LOAD_CASES`."""
    if not isinstance(load_case, str) or load_case not in LOAD_CASES:
        raise ValueError(
            f"`{where}(load_case=...)` must be one of {', '.join(LOAD_CASES)}; got "
            f"{load_case!r}."
        )
    return load_case


def _stretch_array(stretch: ArrayLike, where: str) -> Array:
    stretch = jnp.asarray(stretch)
    if not jnp.issubdtype(stretch.dtype, jnp.inexact):
        stretch = stretch.astype(jnp.result_type(float))
    return eqx.error_if(
        stretch,
        stretch <= 0,
        f"`{where}` needs positive stretches; got a stretch <= 0.",
    )


def uniaxial(stretch: ArrayLike) -> tuple[Array, Array, Array]:
    """Principal stretches `(λ, λ^(-1/2), λ^(-1/2))` of incompressible uniaxial tension.

    **Arguments:**

    - `stretch`: the controlled stretch `λ > 0` (any shape).

    **Returns:** the tuple `(λ1, λ2, λ3)`, each of the shape of `stretch`.

    Example:
        >>> from klax.mechanics import uniaxial
        >>> [float(s) for s in uniaxial(4.0)]
        [4.0, 0.5, 0.5]
    """
    lam = _stretch_array(stretch, "uniaxial")
    lateral = 1.0 / jnp.sqrt(lam)
    return lam, lateral, lateral


def equibiaxial(stretch: ArrayLike) -> tuple[Array, Array, Array]:
    """Principal stretches `(λ, λ, λ^(-2))` of incompressible equibiaxial tension.

    **Arguments:**

    - `stretch`: the controlled stretch `λ > 0` (any shape).

    **Returns:** the tuple `(λ1, λ2, λ3)`, each of the shape of `stretch`.
    """
    lam = _stretch_array(stretch, "equibiaxial")
    return lam, lam, 1.0 / (lam * lam)


def pure_shear(stretch: ArrayLike) -> tuple[Array, Array, Array]:
    """Principal stretches `(λ, 1, λ^(-1))` of incompressible pure shear.

    Pure shear (planar tension) needs a lateral stress `P22 ≠ 0` to keep
    `λ2 = 1`.

    **Arguments:**

    - `stretch`: the controlled stretch `λ > 0` (any shape).

    **Returns:** the tuple `(λ1, λ2, λ3)`, each of the shape of `stretch`.
    """
    lam = _stretch_array(stretch, "pure_shear")
    return lam, jnp.ones_like(lam), 1.0 / lam


_STRETCHES: dict[str, Callable[[ArrayLike], tuple[Array, Array, Array]]] = {
    "uniaxial": uniaxial,
    "equibiaxial": equibiaxial,
    "pure_shear": pure_shear,
}


def load_case_stretches(load_case: str, stretch: ArrayLike) -> tuple[Array, ...]:
    """Principal stretches of an incompressible load case, selected by name.

    **Arguments:**

    - `load_case`: `"uniaxial"`, `"equibiaxial"` or `"pure_shear"`.
    - `stretch`: the controlled stretch `λ > 0` (any shape).

    **Returns:** the tuple `(λ1, λ2, λ3)`.
    """
    return _STRETCHES[check_load_case(load_case, "load_case_stretches")](stretch)


def stretches_to_F(
    stretch_1: ArrayLike, stretch_2: ArrayLike, stretch_3: ArrayLike
) -> Float[Array, "3 3"]:
    """The diagonal deformation gradient `diag(λ1, λ2, λ3)`.

    **Arguments:**

    - `stretch_1`, `stretch_2`, `stretch_3`: scalar principal stretches (use
      `jax.vmap` for batches).

    **Returns:** `F`, shape `(3, 3)`.

    Example:
        >>> from klax.mechanics import stretches_to_F, uniaxial
        >>> stretches_to_F(*uniaxial(4.0)).diagonal()
        Array([4. , 0.5, 0.5], dtype=float32)
    """
    parts = [jnp.asarray(s) for s in (stretch_1, stretch_2, stretch_3)]
    if any(p.shape != () for p in parts):
        raise ValueError(
            "`stretches_to_F` expects three scalar stretches; got shapes "
            f"{[p.shape for p in parts]}. Use jax.vmap for batches."
        )
    dtype = jnp.result_type(*parts, float)
    return jnp.diag(jnp.stack([p.astype(dtype) for p in parts]))


def _check_W(W: object, where: str) -> None:
    if not callable(W):
        raise TypeError(
            f"`{where}` expects a potential W: a callable F -> scalar (or, for the "
            f"closed form, (I1, I2) -> scalar); got {type(W).__name__}."
        )


def _incompressible_P11_P22(W: Potential, lam1, lam2, lam3):
    F = jnp.diag(jnp.stack([lam1, lam2, lam3]))
    G = jax.grad(lambda F: jnp.asarray(W(F)))(F)
    # P = G - p F^{-T}; P33 = 0 fixes p = λ3 G33.
    return G[0, 0] - lam3 / lam1 * G[2, 2], G[1, 1] - lam3 / lam2 * G[2, 2]


def nominal_stress(
    W: Potential, load_case: str, stretch: ArrayLike
) -> tuple[Array, Array]:
    """Nominal stresses `(P11, P22)` of an incompressible material (AD path).

    For a diagonal `F` the first Piola–Kirchhoff stress is
    $P_{ii} = G_{ii} - p/\\lambda_i$ with $G = \\partial W/\\partial F$ from
    automatic differentiation. The traction-free condition `P33 = 0` gives
    $p = \\lambda_3 G_{33}$, hence
    $P_{11} = G_{11} - (\\lambda_3/\\lambda_1) G_{33}$ and
    $P_{22} = G_{22} - (\\lambda_3/\\lambda_2) G_{33}$.
    This works for any `W(F)`, including potentials of isochoric invariants
    (their volumetric parts cancel).

    **Arguments:**

    - `W`: potential, callable `F -> scalar` for one `F` of shape `(3, 3)`.
    - `load_case`: `"uniaxial"`, `"equibiaxial"` or `"pure_shear"`.
    - `stretch`: controlled stretch `λ > 0`, any shape (evaluated point-wise).

    **Returns:** `(P11, P22)`, each of the shape of `stretch`. In uniaxial
    tension `P22 = 0`, in equibiaxial tension `P22 = P11` (isotropic `W`).
    """
    _check_W(W, "nominal_stress")
    stretches = load_case_stretches(load_case, stretch)
    fn = jnp.vectorize(lambda a, b, c: _incompressible_P11_P22(W, a, b, c))
    return fn(*stretches)


def nominal_stress_11(W: Potential, load_case: str, stretch: ArrayLike) -> Array:
    """Nominal stress `P11` of an incompressible material (AD path).

    See [`nominal_stress`][klax.mechanics.nominal_stress]; this returns its
    first component.

    **Arguments:**

    - `W`: potential, callable `F -> scalar`.
    - `load_case`: `"uniaxial"`, `"equibiaxial"` or `"pure_shear"`.
    - `stretch`: controlled stretch `λ > 0`, any shape.

    **Returns:** `P11`, the shape of `stretch`.

    Example:
        >>> import jax.numpy as jnp
        >>> from klax.mechanics import NeoHooke, nominal_stress_11
        >>> nominal_stress_11(NeoHooke(1.0), "uniaxial", jnp.array([1.0, 2.0]))
        Array([0.  , 1.75], dtype=float32)
    """
    return nominal_stress(W, load_case, stretch)[0]


def isotropic_nominal_stress_11(
    W_inv: Callable[[Array, Array], Array], load_case: str, stretch: ArrayLike
) -> Array:
    """Closed-form nominal stress `P11` of an incompressible isotropic `W(I1, I2)`.

    With $W_k = \\partial W/\\partial I_k$ (by automatic differentiation of
    `W_inv`),

    $$P_{11} = 2 (\\lambda_1 - \\lambda_3^2/\\lambda_1)(W_1 + \\lambda_2^2 W_2),$$

    i.e. $2(\\lambda - \\lambda^{-2})(W_1 + \\lambda^{-1} W_2)$ (uniaxial),
    $2(\\lambda - \\lambda^{-5})(W_1 + \\lambda^2 W_2)$ (equibiaxial) and
    $2(\\lambda - \\lambda^{-3})(W_1 + W_2)$ (pure shear). This only
    differentiates with respect to two scalars, which makes it the fast path
    for calibration; it agrees with
    [`nominal_stress_11`][klax.mechanics.nominal_stress_11].

    **Arguments:**

    - `W_inv`: the energy as a function of `(I1, I2)` at `J = 1` (two scalars
      to a scalar), e.g. `IncompressiblePANN.isotropic_energy`.
    - `load_case`: `"uniaxial"`, `"equibiaxial"` or `"pure_shear"`.
    - `stretch`: controlled stretch `λ > 0`, any shape.

    **Returns:** `P11`, the shape of `stretch`.
    """
    _check_W(W_inv, "isotropic_nominal_stress_11")
    l1, l2, l3 = load_case_stretches(load_case, stretch)

    def point(a, b, c):
        a2, b2, c2 = a * a, b * b, c * c
        I1 = a2 + b2 + c2
        I2 = a2 * b2 + b2 * c2 + a2 * c2
        W1, W2 = jax.grad(lambda i1, i2: jnp.asarray(W_inv(i1, i2)), (0, 1))(I1, I2)
        return 2.0 * (a - c2 / a) * (W1 + b2 * W2)

    return jnp.vectorize(point)(l1, l2, l3)


class CompressibleLoadCase(eqx.Module):
    """Result of [`compressible_load_case`][klax.mechanics.compressible_load_case].

    Fields (all with the shape of the controlled stretch): `stretches`, a
    tuple `(λ1, λ2, λ3)` with the solved lateral stretch filled in; `P11`,
    the nominal stress in the loading direction; `P22`, the lateral nominal
    stress (zero in uniaxial tension); `J`, the volume ratio; and `converged`,
    a boolean that is `False` where neither Newton nor bisection met the
    tolerance; `P12`, the shear stress (simple shear; zero for the diagonal
    load cases).
    """

    stretches: tuple[Array, Array, Array]
    P11: Array
    P22: Array
    J: Array
    converged: Array
    P12: Array | None = None


def _diag_stress(W: Potential, stretches) -> Array:
    F = jnp.diag(jnp.stack(stretches))
    return jnp.diagonal(jax.grad(lambda F: jnp.asarray(W(F)))(F))


def compressible_load_case(
    W: Potential,
    load_case: str,
    stretch: ArrayLike,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int = 64,
) -> CompressibleLoadCase:
    """Solve a load case of a compressible material for the lateral stretch.

    `P = ∂W/∂F` (no pressure). The free stretch `t` solves a scalar equation:

    - uniaxial: `λ1 = λ`, `λ2 = λ3 = t`, `P22 = 0`;
    - equibiaxial: `λ1 = λ2 = λ`, `λ3 = t`, `P33 = 0`;
    - pure shear: `λ1 = λ`, `λ2 = 1`, `λ3 = t`, `P33 = 0`.

    The unknown is `log t` (so `t > 0` always); the residual is divided by its
    slope at the starting point, so that tolerances are in units of `log t`
    whatever the stiffness of the material. Newton's method
    (`optimistix.Newton`) starts from the incompressible stretch; where it
    fails, bisection on `log t ∈ [-10, 10]` (`optimistix.Bisection`) takes
    over. Derivatives with respect to `λ` and to parameters of `W` use
    implicit differentiation (optimistix's default adjoint), not the iterations.

    **Arguments:**

    - `W`: potential, callable `F -> scalar`; may be an Equinox module with
      parameters (gradients flow to them).
    - `load_case`: `"uniaxial"`, `"equibiaxial"` or `"pure_shear"`.
    - `stretch`: controlled stretch `λ > 0`, any shape.
    - `rtol`, `atol`: tolerances of the root find in `log t`; default: the
      square root of the machine epsilon of the stretch dtype (Newton's last
      step then leaves an error near machine precision). (Keyword only.)
    - `max_steps`: iteration limit of each solver. (Keyword only argument.)

    **Returns:** a [`CompressibleLoadCase`][klax.mechanics.CompressibleLoadCase].
    """
    _check_W(W, "compressible_load_case")
    check_load_case(load_case, "compressible_load_case")
    lam = _stretch_array(stretch, "compressible_load_case")
    tol = float(np.sqrt(np.finfo(lam.dtype).eps))
    rtol = tol if rtol is None else float(rtol)
    atol = tol if atol is None else float(atol)
    return _solve_compressible(W, load_case, lam, rtol, atol, max_steps)


@eqx.filter_jit
def _solve_compressible(W, load_case, lam, rtol, atol, max_steps):
    dynamic, static = eqx.partition(W, eqx.is_array)

    def stretches_of(lam, t):
        one = jnp.ones_like(lam)
        if load_case == "uniaxial":
            return lam, t, t
        if load_case == "equibiaxial":
            return lam, lam, t
        return lam, one, t

    residual_index = 1 if load_case == "uniaxial" else 2

    def lateral_stress(log_t, dynamic, lam):
        potential = eqx.combine(dynamic, static)
        stress = _diag_stress(potential, stretches_of(lam, jnp.exp(log_t)))
        return stress[residual_index]

    def residual(log_t, args):
        dynamic, lam, scale = args
        return lateral_stress(log_t, dynamic, lam) / scale

    def point(dynamic, lam):
        guess = jnp.log(load_case_stretches(load_case, lam)[2])
        _, slope = jax.jvp(
            lambda s: lateral_stress(s, jax.lax.stop_gradient(dynamic), lam),
            (guess,),
            (jnp.ones_like(guess),),
        )
        slope = jax.lax.stop_gradient(jnp.abs(slope))
        scale = jnp.where(slope > 0, slope, 1.0)
        newton = optx.root_find(
            residual,
            optx.Newton(rtol=rtol, atol=atol),
            guess,
            args=(dynamic, lam, scale),
            max_steps=max_steps,
            throw=False,
        )
        bisection = optx.root_find(
            residual,
            optx.Bisection(rtol=rtol, atol=atol, flip=False),
            guess,
            args=(dynamic, lam, scale),
            options=dict(lower=-10.0, upper=10.0),
            max_steps=max_steps,
            throw=False,
        )
        newton_ok = newton.result == optx.RESULTS.successful
        log_t = jnp.where(newton_ok, newton.value, bisection.value)
        converged = newton_ok | (bisection.result == optx.RESULTS.successful)
        stretches = stretches_of(lam, jnp.exp(log_t))
        P = _diag_stress(eqx.combine(dynamic, static), stretches)
        J = stretches[0] * stretches[1] * stretches[2]
        return stretches, P[0], P[1], J, converged

    flat = lam.reshape(-1)
    stretches, P11, P22, J, converged = jax.vmap(point, in_axes=(None, 0))(
        dynamic, flat
    )
    shape = lam.shape
    return CompressibleLoadCase(
        stretches=tuple(s.reshape(shape) for s in stretches),  # pyright: ignore[reportArgumentType]
        P11=P11.reshape(shape),
        P22=P22.reshape(shape),
        J=J.reshape(shape),
        converged=converged.reshape(shape),
        P12=jnp.zeros(shape, P11.dtype),
    )


# ---------------------------------------------------------------------------
# General biaxial tension and simple shear
#
# Both share one deformation gradient with an upper-triangular in-plane block,
#
#     F = [[λ1, γ, 0], [0, λ2, 0], [0, 0, λ3]],
#
# (γ = 0 for biaxial tension, λ1 = λ2 = 1 for simple shear). Its inverse
# transpose has (F⁻ᵀ)33 = 1/λ3, (F⁻ᵀ)11 = 1/λ1, (F⁻ᵀ)22 = 1/λ2 and (F⁻ᵀ)12 = 0,
# and the third row of F is λ3 e3, so σ33 = 0 ⇔ P33 = 0. With P = G - p F⁻ᵀ
# (G = ∂W/∂F) the pressure is p = λ3 G33 and
#
#     P11 = G11 - (λ3/λ1) G33,   P22 = G22 - (λ3/λ2) G33,   P12 = G12.
#
# P12 does not involve p at all: the shear stress is pressure independent.


def _sheared_F(lam1: Array, lam2: Array, lam3: Array, gamma: Array) -> Array:
    zero = jnp.zeros_like(lam1)
    return jnp.stack(
        [
            jnp.stack([lam1, gamma, zero]),
            jnp.stack([zero, lam2, zero]),
            jnp.stack([zero, zero, lam3]),
        ]
    )


def _eliminate_pressure(G: Array, lam1, lam2, lam3) -> tuple[Array, Array, Array]:
    return (
        G[0, 0] - lam3 / lam1 * G[2, 2],
        G[1, 1] - lam3 / lam2 * G[2, 2],
        G[0, 1],
    )


def _incompressible_point(W: Potential, lam1, lam2, gamma):
    """`(P11, P22, P12)` at `F = [[λ1, γ, 0], [0, λ2, 0], [0, 0, 1/(λ1 λ2)]]`."""
    lam3 = 1.0 / (lam1 * lam2)
    F = _sheared_F(lam1, lam2, lam3, gamma)
    G = jax.grad(lambda F: jnp.asarray(W(F)))(F)
    return _eliminate_pressure(G, lam1, lam2, lam3)


def _isotropic_point(W_inv: Callable[[Array, Array], Array], lam1, lam2, gamma):
    """Closed form of `_incompressible_point` for an isotropic `W(I1, I2)`.

    `∂W/∂F = 2 W_1 F + 2 W_2 (I1 F - F C)` with `W_k` from two scalar
    derivatives, written out for the block form of `F` (scalar arithmetic
    only: this is the inner loop of calibration); the pressure is eliminated
    as above.
    """
    lam3 = 1.0 / (lam1 * lam2)
    a2, b2, c2, g2 = lam1 * lam1, lam2 * lam2, lam3 * lam3, gamma * gamma
    I1 = a2 + g2 + b2 + c2
    I2 = a2 * b2 + (a2 + g2 + b2) * c2
    W1, W2 = jax.grad(lambda i1, i2: jnp.asarray(W_inv(i1, i2)), (0, 1))(I1, I2)
    two_w1, two_w2 = 2.0 * W1, 2.0 * W2
    # Rows of F C: (λ1³ + λ1 γ², ·), (·, λ2 γ² + λ2³), λ3³; (F C)12 = γ(λ1² + γ² + λ2²).
    G11 = lam1 * (two_w1 + two_w2 * (I1 - a2 - g2))
    G22 = lam2 * (two_w1 + two_w2 * (I1 - g2 - b2))
    G33 = lam3 * (two_w1 + two_w2 * (I1 - c2))
    G12 = gamma * (two_w1 + two_w2 * (I1 - a2 - g2 - b2))
    return G11 - lam3 / lam1 * G33, G22 - lam3 / lam2 * G33, G12


def case_deformation(
    case_index: Array, stretch: Array, stretch_2: Array
) -> tuple[Array, Array, Array]:
    """`(λ1, λ2, γ)`, the in-plane block of `F`, of a `case_index` in `ALL_LOAD_CASES`.

    `stretch` is `λ` (one-stretch cases), `λ1` (biaxial) or `γ` (simple
    shear); `stretch_2` is `λ2` (biaxial only, ignored elsewhere). Branch free,
    so points of different load cases can share one `jax.vmap`.
    """
    one = jnp.ones_like(stretch)
    safe = jnp.where(case_index == 4, one, stretch)
    lam1 = safe
    lam2 = jnp.select(
        [case_index == 0, case_index == 1, case_index == 3],
        [1.0 / jnp.sqrt(safe), safe, stretch_2.astype(stretch.dtype)],
        one,
    )
    gamma = jnp.where(case_index == 4, stretch, jnp.zeros_like(stretch))
    return lam1, lam2, gamma


def _positive(value: ArrayLike, name: str, where: str) -> Array:
    return _stretch_array(value, f"{where}({name}=...)")


def _real(value: ArrayLike) -> Array:
    value = jnp.asarray(value)
    dtype = value.dtype if jnp.issubdtype(value.dtype, jnp.inexact) else float
    return jnp.asarray(value, dtype=jnp.result_type(dtype))  # not weakly typed


def biaxial(stretch_1: ArrayLike, stretch_2: ArrayLike) -> tuple[Array, Array, Array]:
    """Principal stretches `(λ1, λ2, 1/(λ1 λ2))` of incompressible biaxial tension.

    The general (Kawabata-type) biaxial test: both in-plane stretches are
    prescribed, the thickness direction 3 is traction-free. `λ2 = λ1^(-1/2)`
    (with `P22 = 0`) is uniaxial tension, `λ2 = λ1` equibiaxial tension and
    `λ2 = 1` pure shear.

    **Arguments:**

    - `stretch_1`, `stretch_2`: in-plane stretches `> 0` (broadcast together).

    **Returns:** the tuple `(λ1, λ2, λ3)`, each of the broadcast shape.

    Example:
        >>> from klax.mechanics import biaxial
        >>> [float(s) for s in biaxial(2.0, 0.5)]
        [2.0, 0.5, 1.0]
    """
    l1 = _positive(stretch_1, "stretch_1", "biaxial")
    l2 = _positive(stretch_2, "stretch_2", "biaxial")
    l1, l2 = jnp.broadcast_arrays(l1, l2)
    return l1, l2, 1.0 / (l1 * l2)


def simple_shear(shear: ArrayLike) -> Float[Array, "*shape 3 3"]:
    """Deformation gradient `F = I + γ e1⊗e2` of simple shear.

    `J = 1` exactly, `I1 = I2 = 3 + γ²`. The shear stress `P12` acts on the
    face with normal `e2` (the sheared plates).

    **Arguments:**

    - `shear`: the amount of shear `γ` (any real number, any shape).

    **Returns:** `F`, shape `shear.shape + (3, 3)`.

    Example:
        >>> from klax.mechanics import simple_shear
        >>> simple_shear(0.5)
        Array([[1. , 0.5, 0. ],
               [0. , 1. , 0. ],
               [0. , 0. , 1. ]], dtype=float32)
    """
    gamma = _real(shear)
    one = jnp.ones_like(gamma)
    return jnp.vectorize(lambda g, o: _sheared_F(o, o, o, g), signature="(),()->(3,3)")(
        gamma, one
    )


def biaxial_nominal_stress(
    W: Potential, stretch_1: ArrayLike, stretch_2: ArrayLike
) -> tuple[Array, Array]:
    """Nominal stresses `(P11, P22)` of an incompressible material in biaxial tension.

    AD path for any `W(F)`: with `G = ∂W/∂F` at `F = diag(λ1, λ2, λ3)`,
    `λ3 = 1/(λ1 λ2)`, and `P33 = 0`,
    $P_{11} = G_{11} - (\\lambda_3/\\lambda_1) G_{33}$ and
    $P_{22} = G_{22} - (\\lambda_3/\\lambda_2) G_{33}$.

    **Arguments:**

    - `W`: potential, callable `F -> scalar`.
    - `stretch_1`, `stretch_2`: in-plane stretches `> 0` (broadcast together).

    **Returns:** `(P11, P22)`, each of the broadcast shape.

    Example:
        >>> from klax.mechanics import NeoHooke, biaxial_nominal_stress
        >>> P11, P22 = biaxial_nominal_stress(NeoHooke(1.0), 2.0, 1.0)
        >>> round(float(P11), 4), round(float(P22), 4)
        (1.875, 0.75)
    """
    _check_W(W, "biaxial_nominal_stress")
    l1, l2, _ = biaxial(stretch_1, stretch_2)
    fn = jnp.vectorize(
        lambda a, b: _incompressible_point(W, a, b, jnp.zeros_like(a))[:2]
    )
    return fn(l1, l2)


def isotropic_biaxial_nominal_stress(
    W_inv: Callable[[Array, Array], Array], stretch_1: ArrayLike, stretch_2: ArrayLike
) -> tuple[Array, Array]:
    """Closed-form `(P11, P22)` of an isotropic `W(I1, I2)` in biaxial tension.

    $$P_{11} = 2(\\lambda_1 - \\lambda_3^2/\\lambda_1)(W_1 + \\lambda_2^2 W_2),\\qquad
    P_{22} = 2(\\lambda_2 - \\lambda_3^2/\\lambda_2)(W_1 + \\lambda_1^2 W_2),$$

    with $\\lambda_3 = 1/(\\lambda_1\\lambda_2)$ and $W_k = \\partial W/\\partial I_k$
    (automatic differentiation of `W_inv` with respect to two scalars).

    **Arguments:**

    - `W_inv`: the energy at `J = 1` as a function of `(I1, I2)`, e.g.
      `MooneyRivlin.isotropic_energy`.
    - `stretch_1`, `stretch_2`: in-plane stretches `> 0` (broadcast together).

    **Returns:** `(P11, P22)`, each of the broadcast shape.
    """
    _check_W(W_inv, "isotropic_biaxial_nominal_stress")
    l1, l2, _ = biaxial(stretch_1, stretch_2)
    fn = jnp.vectorize(
        lambda a, b: _isotropic_point(W_inv, a, b, jnp.zeros_like(a))[:2]
    )
    return fn(l1, l2)


def simple_shear_nominal_stress(
    W: Potential, shear: ArrayLike
) -> tuple[Array, Array, Array]:
    """Nominal stresses `(P11, P22, P12)` of an incompressible material in simple shear.

    `F = I + γ e1⊗e2`; the thickness direction 3 is traction-free
    (`σ33 = 0`, plane stress, the usual choice for thin specimens), which
    fixes the pressure `p = ∂W/∂F33`. Then
    $P_{11} = G_{11} - G_{33}$, $P_{22} = G_{22} - G_{33}$ and
    $P_{12} = G_{12}$ with $G = \\partial W/\\partial F$: the shear stress
    does not depend on the pressure, the normal stresses do (another choice
    of traction-free face changes them, not `P12`). `P22` is the normal
    stress on the sheared plates (normal `e2`).

    **Arguments:**

    - `W`: potential, callable `F -> scalar`.
    - `shear`: amount of shear `γ`, any shape.

    **Returns:** `(P11, P22, P12)`, each of the shape of `shear`.

    Example:
        >>> from klax.mechanics import MooneyRivlin, simple_shear_nominal_stress
        >>> P11, P22, P12 = simple_shear_nominal_stress(MooneyRivlin(0.2, 0.05), 0.5)
        >>> round(float(P12), 4)  # 2 γ (C10 + C01)
        0.25
    """
    _check_W(W, "simple_shear_nominal_stress")
    gamma = _real(shear)
    fn = jnp.vectorize(
        lambda g: _incompressible_point(W, jnp.ones_like(g), jnp.ones_like(g), g)
    )
    return fn(gamma)


def isotropic_simple_shear_nominal_stress(
    W_inv: Callable[[Array, Array], Array], shear: ArrayLike
) -> tuple[Array, Array, Array]:
    """Closed-form `(P11, P22, P12)` of an isotropic `W(I1, I2)` in simple shear.

    With `I1 = I2 = 3 + γ²` and `σ33 = 0`:
    $P_{12} = 2\\gamma(W_1 + W_2)$ and $P_{11} = P_{22} = -2\\gamma^2 W_2$
    (the Cauchy normal stresses are $\\sigma_{11} = 2\\gamma^2 W_1$ and
    $\\sigma_{22} = -2\\gamma^2 W_2$).

    **Arguments:**

    - `W_inv`: the energy at `J = 1` as a function of `(I1, I2)`.
    - `shear`: amount of shear `γ`, any shape.

    **Returns:** `(P11, P22, P12)`, each of the shape of `shear`.
    """
    _check_W(W_inv, "isotropic_simple_shear_nominal_stress")
    gamma = _real(shear)
    fn = jnp.vectorize(
        lambda g: _isotropic_point(W_inv, jnp.ones_like(g), jnp.ones_like(g), g)
    )
    return fn(gamma)


def _general_compressible(W, kind, first, second, rtol, atol, max_steps, where):
    _check_W(W, where)
    dtype = jnp.result_type(first, second, float)
    first, second = jnp.broadcast_arrays(
        jnp.asarray(first, dtype), jnp.asarray(second, dtype)
    )
    tol = float(np.sqrt(np.finfo(first.dtype).eps))
    rtol = tol if rtol is None else float(rtol)
    atol = tol if atol is None else float(atol)
    return _solve_sheared(W, kind, first, second, rtol, atol, max_steps)


@eqx.filter_jit
def _solve_sheared(W, kind, first, second, rtol, atol, max_steps):
    """Compressible biaxial tension / simple shear: solve `P33 = 0` for `λ3`."""
    dynamic, static = eqx.partition(W, eqx.is_array)

    def in_plane(a, b):
        if kind == "biaxial":
            return a, b, jnp.zeros_like(a)
        one = jnp.ones_like(a)
        return one, one, a

    def full_stress(log_t, dynamic, a, b):
        lam1, lam2, gamma = in_plane(a, b)
        F = _sheared_F(lam1, lam2, jnp.exp(log_t), gamma)
        potential = eqx.combine(dynamic, static)
        return jax.grad(lambda F: jnp.asarray(potential(F)))(F)

    def residual(log_t, args):
        dynamic, a, b, scale = args
        return full_stress(log_t, dynamic, a, b)[2, 2] / scale

    def point(dynamic, a, b):
        lam1, lam2, _ = in_plane(a, b)
        guess = -jnp.log(lam1 * lam2)
        _, slope = jax.jvp(
            lambda s: full_stress(s, jax.lax.stop_gradient(dynamic), a, b)[2, 2],
            (guess,),
            (jnp.ones_like(guess),),
        )
        slope = jax.lax.stop_gradient(jnp.abs(slope))
        scale = jnp.where(slope > 0, slope, 1.0)
        args = (dynamic, a, b, scale)
        newton = optx.root_find(
            residual,
            optx.Newton(rtol=rtol, atol=atol),
            guess,
            args=args,
            max_steps=max_steps,
            throw=False,
        )
        bisection = optx.root_find(
            residual,
            optx.Bisection(rtol=rtol, atol=atol, flip=False),
            guess,
            args=args,
            options=dict(lower=-10.0, upper=10.0),
            max_steps=max_steps,
            throw=False,
        )
        newton_ok = newton.result == optx.RESULTS.successful
        log_t = jnp.where(newton_ok, newton.value, bisection.value)
        converged = newton_ok | (bisection.result == optx.RESULTS.successful)
        P = full_stress(log_t, dynamic, a, b)
        lam3 = jnp.exp(log_t)
        return (
            (lam1, lam2, lam3),
            P[0, 0],
            P[1, 1],
            P[0, 1],
            lam1 * lam2 * lam3,
            converged,
        )

    shape = first.shape
    stretches, P11, P22, P12, J, converged = jax.vmap(point, in_axes=(None, 0, 0))(
        dynamic, first.reshape(-1), second.reshape(-1)
    )
    return CompressibleLoadCase(
        stretches=tuple(s.reshape(shape) for s in stretches),  # pyright: ignore[reportArgumentType]
        P11=P11.reshape(shape),
        P22=P22.reshape(shape),
        J=J.reshape(shape),
        converged=converged.reshape(shape),
        P12=P12.reshape(shape),
    )


def compressible_biaxial(
    W: Potential,
    stretch_1: ArrayLike,
    stretch_2: ArrayLike,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int = 64,
) -> CompressibleLoadCase:
    """Biaxial tension of a compressible material: solve `P33 = 0` for `λ3`.

    `F = diag(λ1, λ2, λ3)`, `P = ∂W/∂F`; the thickness stretch is found as in
    [`compressible_load_case`][klax.mechanics.compressible_load_case] (Newton
    on `log λ3` from the incompressible guess `1/(λ1 λ2)`, bisection as the
    fallback, implicit differentiation).

    **Arguments:**

    - `W`: potential, callable `F -> scalar`.
    - `stretch_1`, `stretch_2`: in-plane stretches `> 0` (broadcast together).
    - `rtol`, `atol`, `max_steps`: as for `compressible_load_case`. (Keyword
      only.)

    **Returns:** a [`CompressibleLoadCase`][klax.mechanics.CompressibleLoadCase]
    (with `P12 = 0`).
    """
    l1, l2, _ = biaxial(stretch_1, stretch_2)
    return _general_compressible(
        W, "biaxial", l1, l2, rtol, atol, max_steps, "compressible_biaxial"
    )


def compressible_simple_shear(
    W: Potential,
    shear: ArrayLike,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int = 64,
) -> CompressibleLoadCase:
    """Simple shear of a compressible material: solve `P33 = 0` for `λ3`.

    `F = I + γ e1⊗e2 + (λ3 - 1) e3⊗e3`: the in-plane block is prescribed, the
    thickness direction 3 is traction-free (the compressible counterpart of
    `σ33 = 0` in
    [`simple_shear_nominal_stress`][klax.mechanics.simple_shear_nominal_stress]).

    **Arguments:**

    - `W`: potential, callable `F -> scalar`.
    - `shear`: amount of shear `γ`, any shape.
    - `rtol`, `atol`, `max_steps`: as for `compressible_load_case`. (Keyword
      only.)

    **Returns:** a [`CompressibleLoadCase`][klax.mechanics.CompressibleLoadCase]
    with `stretches = (1, 1, λ3)` and the shear stress `P12`.
    """
    gamma = _real(shear)
    return _general_compressible(
        W,
        "simple_shear",
        gamma,
        jnp.zeros_like(gamma),
        rtol,
        atol,
        max_steps,
        "compressible_simple_shear",
    )
