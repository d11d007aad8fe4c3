"""Deformation gradients for the mechanics tests (rotations, random `F = R U`).

Imported by the test modules as `from _geometry import ...` (pytest puts the
`tests` directory on `sys.path`).
"""

import hypothesis.strategies as st
import numpy as np


def rotation(v) -> np.ndarray:
    """Rotation matrix of the rotation vector `v` (Rodrigues); `I` for `v = 0`."""
    v = np.asarray(v, dtype=np.float64)
    angle = np.linalg.norm(v)
    if angle < 1e-12:
        return np.eye(3)
    k = v / angle
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


def random_F(rng, n, unimodular=False, low=0.5, high=2.0) -> np.ndarray:
    """`n` deformation gradients `F = R U`, `U` symmetric positive definite with
    eigenvalues uniform in `[low, high]` (scaled to `det F = 1` if `unimodular`)."""
    out = np.empty((n, 3, 3))
    for i in range(n):
        R, V = rotation(rng.normal(size=3)), rotation(rng.normal(size=3))
        ev = rng.uniform(low, high, size=3)
        if unimodular:
            ev = ev / np.prod(ev) ** (1 / 3)
        out[i] = R @ (V * ev[None, :]) @ V.T
    return out


vectors = st.lists(st.floats(-3.0, 3.0), min_size=3, max_size=3)
stretches = st.lists(st.floats(0.5, 2.0), min_size=3, max_size=3)


@st.composite
def deformations(draw, unimodular=False):
    """Hypothesis strategy: `F = R U`, eigenvalues of `U` in [0.5, 2]."""
    R, V = rotation(draw(vectors)), rotation(draw(vectors))
    ev = np.array(draw(stretches))
    if unimodular:
        ev = ev / np.prod(ev) ** (1 / 3)
    return R @ (V * ev[None, :]) @ V.T
