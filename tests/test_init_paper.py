"""Checks T1-T5 of INIT_PAPER.md §5 for `klax.hoedt_normal` and `klax.hoedt_bias`.

Hoedt & Klambauer (2023) choose the mean and variance of non-negative weights and a
constant bias so that pre-activations with mean 0, variance 1 and inter-unit
correlation 0.5 are a fixed point of every non-negative ReLU layer.

Speed: every new weight shape compiles the sampler, so the draws below reuse few
shapes, and the statistics are computed with NumPy in float64.
"""

import math

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import klax

RHO = 0.5  # target correlation rho*
Q = 1.0  # target variance q*
G = math.sqrt(1 - RHO**2) + RHO * math.acos(-RHO)  # g(rho) of INIT_PAPER §3


def paper_constants(n: int) -> tuple[float, float, float]:
    """`(mu_w**2, sigma_w**2, b)` from the paper's fixed-point conditions (§3)."""
    f = n * (math.pi - n + (n - 1) * G) / (2 * math.pi)
    mean_sq = RHO / f
    var = 2 * (1 - RHO) / n
    bias = -n * math.sqrt(mean_sq) * math.sqrt(Q / (2 * math.pi))
    return mean_sq, var, bias


# INIT_PAPER §3 reference table: n -> (mu_w, mu_w**2, sigma_w**2, b, m_u, s_u).
TABLE = {
    1: (1.211174, 1.466940, 1.0, -0.483188, -0.0683, 0.7210),
    2: (0.717080, 0.514203, 0.5, -0.572147, -0.6722, 0.8242),
    8: (0.214511, 0.046015, 0.125, -0.684620, -2.1958, 1.1458),
    64: (0.028681, 8.22584e-4, 0.015625, -0.732285, -5.0493, 1.7307),
    128: (0.014415, 2.07784e-4, 0.0078125, -0.736083, -6.0661, 1.9113),
    784: (0.002364, 5.58723e-6, 1.27551e-3, -0.739306, -8.7650, 2.3313),
}

# Two draw shapes hold every fan-in of the table on some axis: `in_axis` picks it.
FAN_IN_AXES = {
    (1, 2, 8, 64): {1: 0, 2: 1, 8: 2, 64: 3},
    (128, 784): {128: 0, 784: 1},
}


def implied_lognormal_parameters() -> dict[int, tuple[float, float]]:
    """Recover `(m_u, s_u)` of `w = exp(m_u + s_u * eps)` for every table fan-in.

    API §1.4 fixes `eps = jr.normal(key, shape, dtype)`, so a linear fit of `ln w`
    against that `eps` recovers the two parameters to float64 round-off.
    """
    key = jr.key(0)
    found = {}
    with jax.enable_x64(True):
        for shape, axes in FAN_IN_AXES.items():
            eps = np.asarray(jr.normal(key, shape, jnp.float64)).ravel()
            for n, axis in axes.items():
                w = klax.hoedt_normal(in_axis=axis)(key, shape, jnp.float64)
                assert w.dtype == jnp.float64
                slope, intercept = np.polyfit(eps, np.log(np.asarray(w).ravel()), 1)
                found[n] = (float(intercept), float(slope))
    return found


@pytest.fixture(scope="module")
def implied():
    return implied_lognormal_parameters()


# ---------------------------------------------------------------------------
# T1: constants


@pytest.mark.parametrize("n", sorted(TABLE))
def test_t1_constants(implied, n):
    m_u, s_u = implied[n]
    mean = math.exp(m_u + s_u**2 / 2)  # moments of the log-normal
    var = mean**2 * math.expm1(s_u**2)
    bias = float(klax.hoedt_bias()(None, (1,), n, jnp.float64)[0])
    exact_mean_sq, exact_var, exact_bias = paper_constants(n)
    # Against the closed-form fixed-point conditions: rtol 1e-6 (the fit is exact
    # to round-off; 1e-9 would pass too).
    np.testing.assert_allclose(mean**2, exact_mean_sq, rtol=1e-6)
    np.testing.assert_allclose(var, exact_var, rtol=1e-6)
    np.testing.assert_allclose(bias, exact_bias, rtol=1e-6)
    # Against the printed table. Its entries carry 6-7 significant digits; the
    # last digit of mu_w**2 at n=1 (1.466940, exact 1.4669422) and the 6-digit
    # entries (e.g. 2.07784e-4) only allow a relative tolerance of a few 1e-6.
    t_mean, t_mean_sq, t_var, t_bias, t_m_u, t_s_u = TABLE[n]
    np.testing.assert_allclose(mean**2, t_mean_sq, rtol=3e-6)
    np.testing.assert_allclose(var, t_var, rtol=1e-6)
    np.testing.assert_allclose(bias, t_bias, rtol=1e-6)
    np.testing.assert_allclose(mean, t_mean, rtol=1e-6, atol=5e-7)  # 6 decimals
    np.testing.assert_allclose(m_u, t_m_u, atol=5e-5)  # 4 decimals
    np.testing.assert_allclose(s_u, t_s_u, atol=5e-5)


def test_t1_bias_constants_in_float32():
    for n, row in TABLE.items():
        b = klax.hoedt_bias()(jr.key(0), (2,), n)
        assert b.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(b), row[3], rtol=1e-6)


# ---------------------------------------------------------------------------
# T2: sampling moments


def test_t2_sampling_moments_fan_in_8():
    n, draws = 8, 10**6
    w = np.asarray(klax.hoedt_normal(in_axis=0)(jr.key(42), (n, draws // n)))
    assert w.dtype == np.float32
    assert w.size == draws
    assert (w > 0).all()
    mean, mean_sq, var, _, m_u, s_u = TABLE[n]
    w64 = w.astype(np.float64)
    # The standard error of the mean is 0.16 %; the variance of this heavy-tailed
    # log-normal has a standard error of about 2 %.
    np.testing.assert_allclose(w64.mean(), mean, rtol=0.01)
    np.testing.assert_allclose(w64.var(), var, rtol=0.08)
    log_w = np.log(w64)
    # ln w is normal: mean and standard deviation have standard errors of about
    # 1e-3 (absolute and relative).
    np.testing.assert_allclose(log_w.mean(), m_u, atol=0.005)
    np.testing.assert_allclose(log_w.std(), s_u, rtol=0.005)


# ---------------------------------------------------------------------------
# T3: bias


def test_t3_bias_constant_key_independent_fan_in_negative():
    init = klax.hoedt_bias()
    shape = (5,)
    a = init(jr.key(0), shape, 8)
    b = init(jr.key(1), shape, 8)
    c = init(jr.PRNGKey(3), shape, 8)
    np.testing.assert_array_equal(a, b)  # independent of the key
    np.testing.assert_array_equal(a, c)
    assert a.shape == shape
    assert a.dtype == jnp.float32
    assert np.unique(np.asarray(a)).size == 1  # constant over the outputs
    assert float(a[0]) < 0  # the paper's sign (API §1.5)
    np.testing.assert_allclose(a, TABLE[8][3], rtol=1e-6)
    # Computed from the supplied fan_in, not from the shape.
    d = init(jr.key(0), shape, 64)
    np.testing.assert_allclose(d, TABLE[64][3], rtol=1e-6)
    assert init(jr.key(0), (2, 3), 8).shape == (2, 3)
    assert init(jr.key(0), shape, 8, jnp.float16).dtype == jnp.float16


def test_t3_linear_hands_fan_in_to_hoedt_bias():
    layer = klax.nn.Linear(8, 3, klax.hoedt_normal(), klax.hoedt_bias(), key=jr.key(0))
    np.testing.assert_allclose(layer.bias, np.full(3, TABLE[8][3]), rtol=1e-6)
    split = klax.nn.InputSplitLinear(
        (6, 2), 3, klax.hoedt_normal(), klax.hoedt_bias(), key=jr.key(0)
    )
    np.testing.assert_allclose(split.bias, np.full(3, TABLE[8][3]), rtol=1e-6)


# ---------------------------------------------------------------------------
# T4: one-layer propagation at the fixed point


def fixed_point_inputs(rng: np.random.Generator, samples: int, width: int):
    """ReLU of Gaussians with mean 0, variance Q and pairwise correlation RHO."""
    shared = rng.standard_normal((samples, 1))
    own = rng.standard_normal((samples, width))
    pre = math.sqrt(Q) * (math.sqrt(RHO) * shared + math.sqrt(1 - RHO) * own)
    return np.maximum(pre, 0.0)


def layer_statistics(s: np.ndarray) -> tuple[float, float, float]:
    """Mean, variance and inter-unit correlation of pre-activations `s`.

    Pooled over inputs (rows) and units (columns), as in the paper's analysis,
    which takes expectations over inputs and weights.
    """
    samples, width = s.shape
    m = s.mean()
    q = ((s - m) ** 2).mean()
    total = s.sum(axis=1)
    cross = (total**2 - (s**2).sum(axis=1)) / (width * (width - 1))
    rho = (cross.mean() - m**2) / q
    return m, q, rho


def test_t4_one_layer_propagation():
    width, samples, draws = 128, 1024, 100
    rng = np.random.default_rng(0)
    # One call draws all weight matrices: in_axis=-2 still counts `width` inputs.
    weights = klax.hoedt_normal()(jr.key(0), (draws, width, width))
    weights = np.asarray(weights, np.float64)
    bias = np.asarray(klax.hoedt_bias()(None, (width,), width), np.float64)
    stats = []
    for w in weights:
        a = fixed_point_inputs(rng, samples, width)
        stats.append(layer_statistics(a @ w + bias))
    m, q, rho = np.mean(stats, axis=0)
    assert abs(m) < 0.05, m
    assert abs(q - 1.0) < 0.2, q
    assert abs(rho - 0.5) < 0.1, rho
    # With the sign of the bias flipped (the klax 0.2.0 value) the mean drifts.
    shifted = [st[0] - 2 * bias[0] for st in stats]
    assert np.mean(shifted) > 1.0


# ---------------------------------------------------------------------------
# T5: output scale of a deep non-negative ReLU network


def nonnegative_relu_net(weight_init, bias_init, key):
    """Depth 5, width 128: an ordinary first layer, four non-negative layers
    with ReLU in between, and a non-negative scalar output layer."""
    keys = jr.split(key, 6)
    first = klax.nn.Linear(8, 128, jax.nn.initializers.lecun_normal(), key=keys[0])
    hidden = [
        klax.nn.Linear(
            128, 128, weight_init, bias_init, weight_wrap=klax.NonNegative, key=k
        )
        for k in keys[1:5]
    ]
    last = klax.nn.Linear(
        128, "scalar", weight_init, bias_init, weight_wrap=klax.NonNegative, key=keys[5]
    )
    # finalize clamps the weights at zero (relevant for he_normal).
    return klax.finalize((first, hidden, last))


@jax.jit
def second_moment(net, x):
    first, hidden, last = net
    h = first(x)
    for layer in hidden:
        h = layer(jax.nn.relu(h))
    y = jax.vmap(last)(jax.nn.relu(h))
    return jnp.mean(y**2)


def test_t5_output_scale():
    x = jr.normal(jr.key(100), (256, 8))
    proposed, default = [], []
    for seed in range(3):
        key = jr.key(seed)
        proposed.append(
            second_moment(
                nonnegative_relu_net(klax.hoedt_normal(), klax.hoedt_bias(), key), x
            )
        )
        default.append(
            second_moment(
                nonnegative_relu_net(
                    jax.nn.initializers.he_normal(), jax.nn.initializers.zeros, key
                ),
                x,
            )
        )
    proposed_scale, default_scale = np.median(proposed), np.median(default)
    # INIT_PAPER §5 T5: O(1) with the proposed scheme, about 1e7 with clipped He.
    assert 0.05 < proposed_scale < 10.0, proposed
    assert default_scale > 1e5, default
    assert default_scale / proposed_scale > 1e4
