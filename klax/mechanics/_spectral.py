"""Differentiable spectral functions of a symmetric positive definite 3×3 matrix.

Principal-stretch models (Ogden) need sums of powers of the eigenvalues of
`C`. Differentiating `eigh` directly breaks down at repeated eigenvalues
(e.g. `F = I`, or uniaxial tension where `λ2 = λ3`), so both functions here
carry their own derivative rules, which only use eigenvector combinations
that are unique:

- `eig_power_sum(C, a) = Σ μ_i^a` with `d/dC = a C^(a-1)`;
- `matrix_power(C, b) = V diag(μ^b) Vᵀ` with the Daleckii–Krein derivative
  (divided differences, replaced by their Taylor expansion for close
  eigenvalues).

Derivatives are exact to first order in `(C, a)` and to second order in
`(C, C)` and `(C, a)`: enough for stresses, tangents and parameter gradients
of stresses.
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array


def _eigh(C: Array) -> tuple[Array, Array]:
    return jnp.linalg.eigh(jax.lax.stop_gradient(C))


def _divided_difference(mu: Array, b: Array) -> Array:
    """Γ_ij = (μ_i^b − μ_j^b)/(μ_i − μ_j), or its limit b μ^(b−1) for μ_i ≈ μ_j."""
    mu_i = mu[:, None] * jnp.ones((1, 3), mu.dtype)
    mu_j = jnp.ones((3, 1), mu.dtype) * mu[None, :]
    delta = mu_i - mu_j
    mid = 0.5 * (mu_i + mu_j)
    close = jnp.abs(delta) <= 1e-4 * mid
    safe_delta = jnp.where(close, 1.0, delta)
    direct = (mu_i**b - mu_j**b) / safe_delta
    ratio = delta / mid
    taylor = b * mid ** (b - 1.0) * (1.0 + (b - 1.0) * (b - 2.0) * ratio * ratio / 24.0)
    return jnp.where(close, taylor, direct)


@jax.custom_jvp
def matrix_power(C: Array, b: Array) -> Array:
    """`C^b = V diag(μ^b) Vᵀ` for a symmetric positive definite `C`, shape `(3, 3)`."""
    mu, V = _eigh(C)
    return (V * (mu**b)[None, :]) @ V.T


@matrix_power.defjvp
def _matrix_power_jvp(primals, tangents):
    C, b = primals
    dC, db = tangents
    mu, V = _eigh(C)
    power = mu**b
    value = (V * power[None, :]) @ V.T
    dC_eig = V.T @ dC @ V
    d_value = V @ (_divided_difference(mu, b) * dC_eig) @ V.T
    d_value = d_value + (V * (power * jnp.log(mu) * db)[None, :]) @ V.T
    return value, d_value


@jax.custom_jvp
def eig_power_sum(C: Array, a: Array) -> Array:
    """`Σ_i μ_i^a` over the eigenvalues `μ_i` of a symmetric positive definite `C`."""
    return jnp.sum(jnp.linalg.eigvalsh(jax.lax.stop_gradient(C)) ** a)


@eig_power_sum.defjvp
def _eig_power_sum_jvp(primals, tangents):
    C, a = primals
    dC, da = tangents
    mu = jnp.linalg.eigvalsh(jax.lax.stop_gradient(C))
    power = mu**a
    value = jnp.sum(power)
    d_value = a * jnp.sum(matrix_power(C, a - 1.0) * dC)
    d_value = d_value + jnp.sum(power * jnp.log(mu)) * da
    return value, d_value
