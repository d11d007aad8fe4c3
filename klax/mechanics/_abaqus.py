"""Export calibrated potentials to Abaqus/Standard user subroutines.

Two targets:

- `UHYPER` (isotropic potentials written in the isochoric invariants
  $\\bar I_1, \\bar I_2$ and $J$): the energy and its first, second and third
  derivatives with respect to $(\\bar I_1, \\bar I_2, J)$.
- `UMAT` (any supported compressible potential of `F`, also transversely
  isotropic): the Cauchy stress and the material Jacobian `DDSDDE`.

The generated file is self-contained fixed-form Fortran (columns 7-72, no
INCLUDE, no external data). The network is written out: each hidden unit is a
handful of statements with its weights as double-precision literals of 17
significant digits, evaluated in forward mode on *jets* (value, gradient,
Hessian and, for `UHYPER`, third-derivative tensor with respect to the few
invariants), so every derivative Abaqus asks for is exact up to rounding.
Every routine is `RECURSIVE` (locals on the stack) and holds no `SAVE`,
`DATA`, `COMMON` or module state, so the file is thread-safe.

Interface conventions (facts, not code) are those of the Abaqus User
Subroutines Reference Guide, sections "UHYPER: User subroutine to define a
hyperelastic material" and "UMAT: User subroutine to define a material's
mechanical behavior"; see the generated header and the docs page.
"""

import hashlib
import importlib.metadata
import os
import pathlib
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import numpy as np

from .._wrappers import contains_unwrappables
from ..nn import FICNN, InputSplitLinear, Linear
from ..nn._activations import identity
from ._baselines import MooneyRivlin, NeoHooke, Ogden, VolumetricPenalty
from ._cann import CANN, CompressibleCANN
from ._networks import PartiallyMonotoneFICNN
from ._potentials import (
    _REFERENCE,
    INVARIANT_SETS,
    CompressiblePANN,
    IncompressiblePANN,
    TransverselyIsotropicPANN,
)

_MANUAL = "Abaqus User Subroutines Reference Guide"
_UHYPER_SECTION = '"UHYPER: User subroutine to define a hyperelastic material"'
_UMAT_SECTION = '"UMAT: User subroutine to define a material\'s mechanical behavior"'


class _Unsupported(ValueError):
    pass


# ---------------------------------------------------------------------------
# Number formatting and fixed-form lines


def _real(x: float) -> str:
    """A double-precision literal with 17 significant digits (round-trips)."""
    x = float(x)
    if not np.isfinite(x):
        raise ValueError(
            f"Abaqus export: the model holds a non-finite number ({x}); export "
            "only a trained model with finite parameters."
        )
    if x == 0.0:
        return "0.0D0"
    mantissa, exponent = f"{x:.16E}".split("E")
    return f"{mantissa}D{int(exponent)}"


def _fixed(statement: str) -> list[str]:
    """Lay one statement out in fixed form: columns 7-72, continuations in column 6."""
    width = 66
    text = statement.strip()
    lines = []
    first = True
    while True:
        limit = width if first else width - 1
        if len(text) <= limit:
            lines.append(("      " if first else "     & ") + text)
            break
        cut = max(text.rfind(",", 0, limit), text.rfind(" ", 0, limit))
        if cut <= 0:
            raise AssertionError(f"cannot wrap Fortran statement: {statement!r}")
        head, text = text[: cut + 1], text[cut + 1 :].lstrip()
        lines.append(("      " if first else "     & ") + head.rstrip())
        first = False
    return lines


def _comment(text: str = "") -> str:
    line = ("! " + text).rstrip() if text else "!"
    if len(line) > 72:
        raise AssertionError(f"comment too long: {text!r}")
    if not text.isascii():
        raise AssertionError(f"comment is not ASCII: {text!r}")
    return line


# ---------------------------------------------------------------------------
# Jets: forward-mode derivatives up to order 3 in N variables, as Fortran


def _jet_library(prefix: str, n: int, order: int) -> list[str]:
    """The helper routines of one file: jets of `n` variables up to `order`.

    A jet is a flat array `X(L)`: `X(1)` the value, `X(1+I)` the gradient,
    `X(1+N+I+N*(J-1))` the Hessian and `X(1+N+N*N+I+N*(J-1)+N*N*(K-1))` the
    third-derivative tensor (order 3 only). All entries are stored (the
    symmetric duplicates too), which keeps every loop simple.
    """
    size = 1 + n + n * n + (n**3 if order == 3 else 0)
    p = prefix
    head = [
        "      IMPLICIT NONE",
        "      INTEGER N, L",
        f"      PARAMETER (N={n}, L={size})",
    ]
    h = "1+N+{a}+N*({b}-1)"
    t = "1+N+N*N+{a}+N*({b}-1)+N*N*({c}-1)"

    def H(a, b):
        return h.format(a=a, b=b)

    def T(a, b, c):
        return t.format(a=a, b=b, c=c)

    out: list[str] = []
    loops = "INTEGER I, J, K" if order == 3 else "INTEGER I, J"

    def routine(signature: str, declarations: list[str], body: list[str]) -> None:
        out.append(_comment())
        out.extend(_fixed(f"RECURSIVE SUBROUTINE {p}{signature}"))
        out.extend(head)
        for d in declarations:
            out.extend(_fixed(d))
        for b in body:
            out.extend(_fixed(b) if not b.startswith("!") else [b])
        out.append("      RETURN")
        out.append("      END")

    routine(
        "CST(C, X)",
        ["DOUBLE PRECISION C, X(L)", "INTEGER I"],
        ["DO I = 1, L", "  X(I) = 0.0D0", "END DO", "X(1) = C"],
    )
    routine(
        "VAR(K, C, X)",
        ["INTEGER K", "DOUBLE PRECISION C, X(L)"],
        [f"CALL {p}CST(C, X)", "X(1+K) = 1.0D0"],
    )
    routine(
        "AXPY(A, X, Y)",
        ["DOUBLE PRECISION A, X(L), Y(L)", "INTEGER I"],
        ["DO I = 1, L", "  Y(I) = Y(I) + A*X(I)", "END DO"],
    )
    mul = [
        "Z(1) = X(1)*Y(1)",
        "DO I = 1, N",
        "  Z(1+I) = X(1)*Y(1+I) + Y(1)*X(1+I)",
        "END DO",
        "DO J = 1, N",
        "  DO I = 1, N",
        f"    Z({H('I', 'J')}) = X(1)*Y({H('I', 'J')})"
        f" + Y(1)*X({H('I', 'J')}) + X(1+I)*Y(1+J) + X(1+J)*Y(1+I)",
        "  END DO",
        "END DO",
    ]
    if order == 3:
        mul += [
            "DO K = 1, N",
            "  DO J = 1, N",
            "    DO I = 1, N",
            f"      Z({T('I', 'J', 'K')}) = X(1)*Y({T('I', 'J', 'K')})"
            f" + Y(1)*X({T('I', 'J', 'K')})"
            f" + X(1+I)*Y({H('J', 'K')}) + X(1+J)*Y({H('I', 'K')})"
            f" + X(1+K)*Y({H('I', 'J')}) + Y(1+I)*X({H('J', 'K')})"
            f" + Y(1+J)*X({H('I', 'K')}) + Y(1+K)*X({H('I', 'J')})",
            "    END DO",
            "  END DO",
            "END DO",
        ]
    routine(
        "MUL(X, Y, Z)",
        ["DOUBLE PRECISION X(L), Y(L), Z(L)", loops],
        mul,
    )
    fun = [
        "Y(1) = F0",
        "DO I = 1, N",
        "  Y(1+I) = F1*X(1+I)",
        "END DO",
        "DO J = 1, N",
        "  DO I = 1, N",
        f"    Y({H('I', 'J')}) = F2*X(1+I)*X(1+J) + F1*X({H('I', 'J')})",
        "  END DO",
        "END DO",
    ]
    if order == 3:
        fun += [
            "DO K = 1, N",
            "  DO J = 1, N",
            "    DO I = 1, N",
            f"      Y({T('I', 'J', 'K')}) = F3*X(1+I)*X(1+J)*X(1+K)"
            f" + F2*(X({H('I', 'J')})*X(1+K) + X({H('I', 'K')})*X(1+J)"
            f" + X({H('J', 'K')})*X(1+I)) + F1*X({T('I', 'J', 'K')})",
            "    END DO",
            "  END DO",
            "END DO",
        ]
    routine(
        "FUN(F0, F1, F2, F3, X, Y)",
        ["DOUBLE PRECISION F0, F1, F2, F3, X(L), Y(L)", loops],
        ["! Y = f(X) from f and its first three derivatives at X(1)."] + fun,
    )
    routine(
        "SP(X, Y)",
        [
            "DOUBLE PRECISION X(L), Y(L)",
            "DOUBLE PRECISION A, E, U, F0, S, SC",
        ],
        [
            "! Softplus log(1 + exp(a)) = log1p(exp(-|a|)) + max(a, 0), with",
            "! log1p(e) = e * log(u) / (u - 1), u = 1 + e (exact to rounding).",
            "A = X(1)",
            "E = EXP(-ABS(A))",
            "U = 1.0D0 + E",
            "IF (U .EQ. 1.0D0) THEN",
            "  F0 = E",
            "ELSE",
            "  F0 = LOG(U)*(E/(U - 1.0D0))",
            "END IF",
            "F0 = F0 + MAX(A, 0.0D0)",
            "! S = sigmoid(a) and SC = 1 - S, both without cancellation.",
            "IF (A .GE. 0.0D0) THEN",
            "  S = 1.0D0/U",
            "  SC = E/U",
            "ELSE",
            "  S = E/U",
            "  SC = 1.0D0/U",
            "END IF",
            f"CALL {p}FUN(F0, S, S*SC, S*SC*(SC - S), X, Y)",
        ],
    )
    routine(
        "POW(P, X, Y)",
        ["DOUBLE PRECISION P, X(L), Y(L)", "DOUBLE PRECISION V, F0, F1, F2, F3"],
        [
            "! Y = X**P for X(1) > 0.",
            "V = X(1)",
            "F0 = V**P",
            "F1 = P*F0/V",
            "F2 = (P - 1.0D0)*F1/V",
            "F3 = (P - 2.0D0)*F2/V",
            f"CALL {p}FUN(F0, F1, F2, F3, X, Y)",
        ],
    )
    routine(
        "NUC(X, Y, Z)",
        [
            "DOUBLE PRECISION X(L), Y(L), Z(L)",
            "DOUBLE PRECISION XX(L), Z2(L), Z4(L), XZ2(L), R",
            "DOUBLE PRECISION A, B, S, V, D, STEP",
            "INTEGER I, K",
        ],
        [
            "! Z = the largest root s of s**4 - 2 X s**2 - 8 s + X**2 - 4 Y: with",
            "! X = Ibar1, Y = Ibar2 the sum of the isochoric principal stretches,",
            "! with X, Y swapped the sum of their inverses. The value by Newton's",
            "! method from the upper bound sqrt(X + 2 sqrt(3 Y)) (monotone), then",
            "! Newton steps on the jets with the slope at the root, each exact to",
            "! one more order of derivatives (implicit differentiation).",
            "A = X(1)",
            "B = Y(1)",
            "S = SQRT(A + 2.0D0*SQRT(3.0D0*B))",
            "DO K = 1, 16",
            "  V = (S*S - A)**2 - 8.0D0*S - 4.0D0*B",
            "  D = 4.0D0*S*(S*S - A) - 8.0D0",
            "  IF (D .LE. 0.0D0) EXIT",
            "  STEP = V/D",
            "  IF (STEP .LE. 0.0D0) EXIT",
            "  S = S - STEP",
            "END DO",
            "D = 4.0D0*S*(S*S - A) - 8.0D0",
            f"CALL {p}CST(S, Z)",
            f"CALL {p}MUL(X, X, XX)",
            f"DO K = 1, {order + 1}",
            f"  CALL {p}MUL(Z, Z, Z2)",
            f"  CALL {p}MUL(Z2, Z2, Z4)",
            f"  CALL {p}MUL(X, Z2, XZ2)",
            "  DO I = 1, L",
            "    R = Z4(I) - 2.0D0*XZ2(I) - 8.0D0*Z(I) + XX(I) - 4.0D0*Y(I)",
            "    Z(I) = Z(I) - R/D",
            "  END DO",
            "END DO",
        ],
    )
    routine(
        "EXM1(W, X, Y)",
        ["DOUBLE PRECISION W, X(L), Y(L)", "DOUBLE PRECISION A, E, F0, F1"],
        [
            "! Y = exp(W X) - 1 (CANN exp term), with the accurate",
            "! expm1(a) = (e - 1) a / log(e), e = exp(a) (exact to rounding).",
            "A = W*X(1)",
            "E = EXP(A)",
            "IF (E .EQ. 1.0D0) THEN",
            "  F0 = A",
            "ELSE",
            "  F0 = (E - 1.0D0)*(A/LOG(E))",
            "END IF",
            "F1 = W*E",
            f"CALL {p}FUN(F0, F1, W*F1, W*W*F1, X, Y)",
        ],
    )
    routine(
        "LGT(W, X, Y)",
        ["DOUBLE PRECISION W, X(L), Y(L)", "DOUBLE PRECISION A, U, F0, F1"],
        [
            "! Y = -log(1 - W X) (CANN log term, finite for W X < 1), with",
            "! log1p(e) = e * log(u) / (u - 1), u = 1 + e, e = -W X.",
            "A = W*X(1)",
            "U = 1.0D0 - A",
            "IF (U .EQ. 1.0D0) THEN",
            "  F0 = A",
            "ELSE",
            "  F0 = LOG(U)*(A/(U - 1.0D0))",
            "END IF",
            "F1 = W/U",
            f"CALL {p}FUN(F0, F1, F1*F1, 2.0D0*F1*F1*F1, X, Y)",
        ],
    )
    routine(
        "GROW(X, Y)",
        [
            "DOUBLE PRECISION X(L), Y(L)",
            "DOUBLE PRECISION V, U0, U1, U2, U3",
        ],
        [
            "! Y = (X + 1/X - 2)**2, the growth term of the compressible PANNs.",
            "V = X(1)",
            "U0 = V + 1.0D0/V - 2.0D0",
            "U1 = 1.0D0 - 1.0D0/(V*V)",
            "U2 = 2.0D0/(V*V*V)",
            "U3 = -6.0D0/(V*V*V*V)",
            f"CALL {p}FUN(U0*U0, 2.0D0*U0*U1, 2.0D0*(U1*U1 + U0*U2),"
            " 2.0D0*(3.0D0*U1*U2 + U0*U3), X, Y)",
        ],
    )
    return out


class _Jets:
    """Collects the executable statements that evaluate the energy on jets."""

    def __init__(self, prefix: str, n: int, order: int):
        self.prefix = prefix
        self.n = n
        self.order = order
        self.size = 1 + n + n * n + (n**3 if order == 3 else 0)
        self.body: list[str] = []
        self.count = 0
        self.layers: list[tuple[str, int]] = []
        self.uses_tmp = False

    def _new(self) -> str:
        self.count += 1
        return f"S(1,{self.count})"

    def emit(self, statement: str) -> None:
        self.body.extend(_fixed(statement))

    def note(self, text: str) -> None:
        self.body.append(_comment(text))

    def var(self, k: int, value: str) -> str:
        out = self._new()
        self.emit(f"CALL {self.prefix}VAR({k}, {value}, {out})")
        return out

    def lin(self, terms: Sequence[tuple[float, str]], constant: float = 0.0) -> str:
        """`constant + sum(c * x)` over the `(c, x)` terms."""
        out = self._new()
        self._lin_into(out, terms, constant)
        return out

    def _lin_into(self, out: str, terms, constant: float) -> None:
        self.emit(f"CALL {self.prefix}CST({_real(constant)}, {out})")
        for c, x in terms:
            if float(c) != 0.0:
                self.emit(f"CALL {self.prefix}AXPY({_real(c)}, {x}, {out})")

    def mul(self, a: str, b: str) -> str:
        out = self._new()
        self.emit(f"CALL {self.prefix}MUL({a}, {b}, {out})")
        return out

    def pow(self, a: str, p: float) -> str:
        out = self._new()
        self.emit(f"CALL {self.prefix}POW({_real(p)}, {a}, {out})")
        return out

    def call(self, routine: str, c: float, a: str) -> str:
        """`routine(c, a)` for the one-parameter functions (`EXM1`, `LGT`)."""
        out = self._new()
        self.emit(f"CALL {self.prefix}{routine}({_real(c)}, {a}, {out})")
        return out

    def stretch_sum(self, a: str, b: str) -> str:
        """The largest root of `s⁴ - 2 a s² - 8 s + a² - 4 b` (Σλ̄ for `(Ī1, Ī2)`)."""
        out = self._new()
        self.emit(f"CALL {self.prefix}NUC({a}, {b}, {out})")
        return out

    def growth(self, a: str) -> str:
        out = self._new()
        self.emit(f"CALL {self.prefix}GROW({a}, {out})")
        return out

    def layer(self, width: int) -> str:
        name = f"Z{len(self.layers) + 1}"
        self.layers.append((name, width))
        return name

    def declarations(self) -> list[str]:
        lines = [
            "INTEGER N, L, NS",
            f"PARAMETER (N={self.n}, L={self.size}, NS={max(self.count, 1)})",
            "DOUBLE PRECISION S(L,NS)",
        ]
        if self.uses_tmp:
            lines.append("DOUBLE PRECISION A(L)")
        for name, width in self.layers:
            lines.append(f"DOUBLE PRECISION {name}(L,{width})")
        return lines


# ---------------------------------------------------------------------------
# Networks: one list of dense layers for both FICNN flavours


def _array(x: Any) -> np.ndarray:
    try:
        return np.asarray(x, dtype=np.float64)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        raise TypeError(
            "Abaqus export needs concrete parameter values; do not call it under "
            "jax.jit, jax.vmap or jax.grad."
        ) from None


def _activation_name(activation: Callable, where: str) -> str:
    if activation is jax.nn.softplus:
        return "softplus"
    if activation is identity:
        return "identity"
    name = getattr(activation, "__name__", type(activation).__name__)
    raise _Unsupported(
        f"Abaqus export: {where} uses the activation {name!r}; only jax.nn.softplus "
        "(hidden layers) and the identity (output) can be written to Fortran."
    )


def _dense(linear: Linear | InputSplitLinear) -> tuple[list[np.ndarray], np.ndarray]:
    if isinstance(linear, InputSplitLinear):
        weights = [_array(w) for w in linear.weights]
        out = weights[0].shape[1]
    else:
        weights = [_array(linear.weight)]
        out = weights[0].shape[1]
    bias = np.zeros(out) if linear.bias is None else _array(linear.bias).reshape(out)
    return weights, bias


# A layer: (blocks, bias, activation); a block is (weight (in, out), source),
# source "x", "xm", "xf" (network inputs) or "z" (previous hidden layer).
_Layer = tuple[list[tuple[np.ndarray, str]], np.ndarray, str]


def _ficnn_layers(net: FICNN) -> list[_Layer]:
    layers: list[_Layer] = []
    last = len(net.layers) - 1
    for k, layer in enumerate(net.layers):
        weights, bias = _dense(layer.linear_y)
        if k == 0:
            sources = ["x"]
        elif isinstance(layer.linear_y, InputSplitLinear):
            sources = ["z", "x"]
        else:
            sources = ["z"]
        act = _activation_name(
            layer.activation_y,
            "the output layer" if k == last else f"hidden layer {k + 1}",
        )
        if k == last and act != "identity":
            raise _Unsupported(
                "Abaqus export: the FICNN's final_activation must be the identity."
            )
        if k < last and act != "softplus":
            raise _Unsupported(
                "Abaqus export: the FICNN's hidden activation must be jax.nn.softplus."
            )
        layers.append((list(zip(weights, sources, strict=True)), bias, act))
    return layers


def _pmficnn_layers(net: PartiallyMonotoneFICNN) -> list[_Layer]:
    hidden = _activation_name(net.activation, "the PartiallyMonotoneFICNN")
    if net.width_sizes and hidden != "softplus":
        raise _Unsupported(
            "Abaqus export: the PartiallyMonotoneFICNN's activation must be "
            "jax.nn.softplus."
        )
    layers: list[_Layer] = []
    last = len(net.layers) - 1
    for k, layer in enumerate(net.layers):
        weights, bias = _dense(layer)
        sources = ["xm", "xf"] if k == 0 else ["z", "xm", "xf"]
        act = "identity" if k == last else "softplus"
        layers.append((list(zip(weights, sources, strict=True)), bias, act))
    return layers


def _emit_network(
    jets: _Jets, layers: list[_Layer], inputs: dict[str, list[str]]
) -> str:
    """Emit the forward pass on jets; returns the jet of the scalar output."""
    previous: str | None = None
    previous_width = 0
    for k, (blocks, bias, act) in enumerate(layers):
        width = bias.shape[0]
        final = k == len(layers) - 1
        jets.note(f"Layer {k + 1} of {len(layers)}: {width} unit(s), {act}")
        target = None if final else jets.layer(width)
        result = ""
        for j in range(width):
            terms: list[tuple[float, str]] = []
            for weight, source in blocks:
                if source == "z":
                    assert previous is not None and weight.shape[0] == previous_width
                    names = [f"{previous}(1,{i + 1})" for i in range(previous_width)]
                else:
                    names = inputs[source]
                if weight.shape[0] != len(names):
                    raise AssertionError("layer and input sizes disagree")
                terms += [(float(weight[i, j]), names[i]) for i in range(len(names))]
            if final:
                result = jets.lin(terms, float(bias[j]))
            else:
                jets.uses_tmp = True
                jets._lin_into("A", terms, float(bias[j]))
                jets.emit(f"CALL {jets.prefix}SP(A, {target}(1,{j + 1}))")
        if final:
            return result
        previous, previous_width = target, width
    raise AssertionError("a network has at least one layer")


def _softplus(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    value = np.log1p(np.exp(-np.abs(a))) + np.maximum(a, 0.0)
    return value, 0.5 * (1.0 + np.tanh(0.5 * a))


def _network_at_zero(layers: list[_Layer], flags: Sequence[bool] | None, n: int):
    """Value and input gradient at x = 0 of a dense network, in float64 NumPy.

    Used for the normalisation constants N(0) and dN/dx(0); `flags` are the
    monotone-input flags of a `PartiallyMonotoneFICNN` (None for a FICNN).
    """
    eye = np.eye(n)
    if flags is None:
        inputs = {"x": (np.zeros(n), eye)}
    else:
        mono = [i for i, f in enumerate(flags) if f]
        free = [i for i, f in enumerate(flags) if not f]
        inputs = {
            "xm": (np.zeros(len(mono)), eye[mono]),
            "xf": (np.zeros(len(free)), eye[free]),
        }
    z = dz = np.zeros(0)
    for blocks, bias, act in layers:
        a = bias.copy()
        da = np.zeros((bias.shape[0], n))
        for weight, source in blocks:
            v, dv = (z, dz) if source == "z" else inputs[source]
            a = a + v @ weight
            da = da + weight.T @ dv
        if act == "softplus":
            z, slope = _softplus(a)
            dz = slope[:, None] * da
        else:
            z, dz = a, da
    return float(z[0]), dz[0]


# ---------------------------------------------------------------------------
# Invariant contexts: the same energy written on two sets of base variables


class _Context:
    """Jets of the invariants, built lazily from the base variables.

    UHYPER's base variables are `(Ī1, Ī2, J)`; UMAT's are the invariants of
    `F` (`I1`, `I2`, `J`, and `I4`, `I5` for transverse isotropy) whose
    derivatives with respect to `F` the UMAT writes out.
    """

    def __init__(self, jets: _Jets, target: str, seeds: dict[str, str]):
        self.jets = jets
        self.target = target
        self.seeds = seeds
        self.cache: dict[str, str] = {}

    def get(self, name: str) -> str:
        if name in self.seeds:
            return self.seeds[name]
        if name not in self.cache:
            self.cache[name] = self._build(name)
        return self.cache[name]

    def _build(self, name: str) -> str:
        j = self.jets
        if name == "J":
            raise _Unsupported("this potential needs J")
        if self.target == "uhyper":
            # I1 = Ī1 J^(2/3), I2 = Ī2 J^(4/3).
            if name == "I1":
                return j.mul(self.get("I1bar"), j.pow(self.get("J"), 2.0 / 3.0))
            if name == "I2":
                return j.mul(self.get("I2bar"), j.pow(self.get("J"), 4.0 / 3.0))
        else:
            if name == "I1bar":
                return j.mul(self.get("I1"), j.pow(self.get("J"), -2.0 / 3.0))
            if name == "I2bar":
                return j.mul(self.get("I2"), j.pow(self.get("J"), -4.0 / 3.0))
        raise _Unsupported(f"invariant {name} is not available for {self.target}")


# ---------------------------------------------------------------------------
# Energies of the supported potentials


# The isochoric inputs of `IncompressiblePANN` as powers of (Ī1, Ī2), keyed like
# `INVARIANT_SETS`: at any J, sqrt(Ĩ1) = |F| J^(-1/3) = Ī1^(1/2),
# sqrt(Ī2) = |cof F| J^(-2/3) = Ī2^(1/2) and Ĩ2 = |cof F|^3 / J^2 = Ī2^(3/2).
_INPUT_POWERS: dict[str, tuple[str, float]] = {
    "√Ĩ1": ("I1bar", 0.5),
    "Ĩ1": ("I1bar", 1.0),
    "Ī1": ("I1bar", 1.0),
    "√Ī2": ("I2bar", 0.5),
    "Ī2": ("I2bar", 1.0),
    "Ĩ2": ("I2bar", 1.5),
}
_INPUT_NOTES = {
    "√Ĩ1": "I1bar**0.5",
    "Ĩ1": "I1bar",
    "Ī1": "I1bar",
    "√Ī2": "I2bar**0.5",
    "Ī2": "I2bar",
    "Ĩ2": "I2bar**1.5",
}


_POWER_SUMS = {
    "Σλ": ("I1bar", "I2bar", 1),
    "Σλ⁻¹": ("I2bar", "I1bar", 1),
    "Σλ⁴": ("I1bar", "I2bar", 4),
    "Σλ⁻⁴": ("I2bar", "I1bar", 4),
    "Σλ⁶": ("I1bar", "I2bar", 6),
    "Σλ⁻⁶": ("I2bar", "I1bar", 6),
}
_INPUT_NOTES.update(
    {
        "Σλ": "s(I1bar, I2bar)",
        "Σλ⁻¹": "s(I2bar, I1bar)",
        "Σλ⁴": "I1bar**2 - 2 I2bar",
        "Σλ⁻⁴": "I2bar**2 - 2 I1bar",
        "Σλ⁶": "I1bar**3 - 3 I1bar I2bar + 3",
        "Σλ⁻⁶": "I2bar**3 - 3 I1bar I2bar + 3",
    }
)


def _power_sum(ctx: _Context, name: str) -> str:
    """Jet of a power sum of the isochoric principal stretches (`_POWER_SUMS`).

    Newton's identities at `J = 1` as in `_potentials._invariant_values`; the
    sums of the stretches and of their inverses by the `NUC` routine.
    """
    j = ctx.jets
    a_name, b_name, power = _POWER_SUMS[name]
    a, b = ctx.get(a_name), ctx.get(b_name)
    if power == 1:
        return j.stretch_sum(a, b)
    aa = j.mul(a, a)
    if power == 4:
        return j.lin([(1.0, aa), (-2.0, b)])
    return j.lin([(1.0, j.mul(a, j.lin([(1.0, aa), (-3.0, b)])))], 3.0)


def _isochoric_input(ctx: _Context, name: str) -> str:
    """Jet of one input invariant of `IncompressiblePANN` (chain rule in the jets)."""
    if name in _POWER_SUMS:
        if name not in ctx.cache:
            ctx.cache[name] = _power_sum(ctx, name)
        return ctx.cache[name]
    if name not in _INPUT_POWERS:  # pragma: no cover - a new set needs a line here
        raise _Unsupported(
            f"Abaqus export: the IncompressiblePANN input {name!r} is not supported."
        )
    base, p = _INPUT_POWERS[name]
    if p == 1.0:
        return ctx.get(base)
    key = f"{base}**{p!r}"
    if key not in ctx.cache:
        ctx.cache[key] = ctx.jets.pow(ctx.get(base), p)
    return ctx.cache[key]


def _isochoric_energy(potential: Any, ctx: _Context) -> str | None:
    """Jet of an isochoric (incompressible) potential, or None if unsupported."""
    j = ctx.jets
    if isinstance(potential, NeoHooke):
        mu = float(_array(potential.mu))
        j.note(f"neo-Hooke: W = mu/2 (I1bar - 3), mu = {mu!r}")
        return j.lin([(0.5 * mu, ctx.get("I1bar"))], -1.5 * mu)
    if isinstance(potential, MooneyRivlin):
        c10 = float(_array(potential.c10))
        c01 = float(_array(potential.c01))
        j.note("Mooney-Rivlin: W = c10 (I1bar - 3) + c01 (I2bar - 3)")
        return j.lin(
            [(c10, ctx.get("I1bar")), (c01, ctx.get("I2bar"))], -3.0 * (c10 + c01)
        )
    if isinstance(potential, IncompressiblePANN):
        names = INVARIANT_SETS[potential.invariants]
        j.note(f"IncompressiblePANN, invariants = {potential.invariants!r}:")
        j.note("inputs x_i = (v_i - v_i at F = I)/s_i with")
        for k, name in enumerate(names):
            j.note(f"  v{k + 1} = {_INPUT_NOTES[name]}")
        if any(name in _POWER_SUMS for name in names):
            j.note("s(a, b): the largest root of s**4 - 2 a s**2 - 8 s + a**2 - 4 b")
        x = [
            j.lin([(1.0 / s, _isochoric_input(ctx, k))], -_REFERENCE[k] / s)
            for k, s in zip(names, potential.input_scale, strict=True)
        ]
        layers = _ficnn_layers(potential.network)
        n0, _ = _network_at_zero(layers, None, len(names))
        out = _emit_network(j, layers, {"x": x})
        e = potential.energy_scale
        j.note("W = E (N(x) - N(0)) + floor (I1bar - 3), E = energy_scale")
        terms = [(e, out)]
        constant = -e * n0
        if potential.floor:
            terms.append((potential.floor, ctx.get("I1bar")))
            constant -= 3.0 * potential.floor
        return j.lin(terms, constant)
    if isinstance(potential, CANN):
        s1, s2 = potential.input_scale
        second = "Ĩ2" if potential.invariants == "polyconvex" else "Ī2"
        j.note(f"CANN, invariants = {potential.invariants!r}: x1 = (I1bar - 3)/s1,")
        j.note(f"x2 = ({_INPUT_NOTES[second]} - its value at F = I)/s2")
        x = {
            "I1": j.lin([(1.0 / s1, ctx.get("I1bar"))], -3.0 / s1),
            "I2": j.lin(
                [(1.0 / s2, _isochoric_input(ctx, second))], -_REFERENCE[second] / s2
            ),
        }
        return _cann_sum(j, potential, x)
    return None


def _cann_sum(j: _Jets, potential: Any, x: dict[str, str]) -> str:
    """`E sum_k a_k f_k(w_k x_k^p_k)` over the terms with a non-zero weight."""
    weights = _array(potential.weights).reshape(-1)
    inner = _array(potential.inner).reshape(-1)
    e = potential.energy_scale
    j.note("W = E sum_k a_k f_k(w_k x^p), f: identity, exp(.) - 1, -log(1 - .)")
    squares: dict[str, str] = {}
    terms = []
    for term, a, w in zip(potential.terms, weights, inner, strict=True):
        if float(a) == 0.0:
            continue
        u = x[term.invariant]
        if term.power == 2:
            if term.invariant not in squares:
                squares[term.invariant] = j.mul(u, u)
            u = squares[term.invariant]
        if term.activation == "identity":
            f = u
        elif term.activation == "exp":
            f = j.call("EXM1", float(w), u)
        else:
            f = j.call("LGT", float(w), u)
        terms.append((e * float(a), f))
    return j.lin(terms)


def _compressible_energy(potential: Any, ctx: _Context) -> tuple[str, str] | None:
    """`(total, deviatoric)` jets of a compressible potential, or None."""
    j = ctx.jets
    if isinstance(potential, VolumetricPenalty):
        inner = _isochoric_energy(potential.potential, ctx)
        if inner is None:
            raise _Unsupported(
                "Abaqus export: VolumetricPenalty wraps a "
                f"{type(potential.potential).__name__}; supported inner potentials "
                "are NeoHooke, MooneyRivlin, IncompressiblePANN and CANN."
            )
        kappa = float(_array(potential.bulk_modulus))
        j.note(f"Volumetric penalty kappa/2 (J - 1)**2, kappa = {kappa!r}")
        jm1 = j.lin([(1.0, ctx.get("J"))], -1.0)
        vol = j.mul(jm1, jm1)
        return j.lin([(1.0, inner), (0.5 * kappa, vol)]), inner
    if isinstance(potential, CompressiblePANN):
        s1, s2, s3 = potential.input_scale
        J = ctx.get("J")
        j.note("CompressiblePANN inputs ((I1-3)/s1, (I2-3)/s2, (J-1)/s3, (1-J)/s3)")
        x = [
            j.lin([(1.0 / s1, ctx.get("I1"))], -3.0 / s1),
            j.lin([(1.0 / s2, ctx.get("I2"))], -3.0 / s2),
            j.lin([(1.0 / s3, J)], -1.0 / s3),
            j.lin([(-1.0 / s3, J)], 1.0 / s3),
        ]
        layers = _pmficnn_layers(potential.network)
        n0, g = _network_at_zero(layers, potential.network.non_decreasing, 4)
        n = 2.0 * g[0] / s1 + 4.0 * g[1] / s2 + (g[2] - g[3]) / s3
        out = _emit_network(j, layers, _split_inputs(potential.network, x))
        j.note("W = N(x) - N(0) - n (J - 1) + growth (J + 1/J - 2)**2")
        terms = [(1.0, out), (-n, J)]
        if potential.growth:
            terms.append((potential.growth, j.growth(J)))
        total = j.lin(terms, n - n0)
        return total, total
    if isinstance(potential, CompressibleCANN):
        if potential.structural_tensor is not None:
            raise _Unsupported(
                "Abaqus export: a CompressibleCANN with a structural tensor (I4 "
                "fibre terms) is not supported; only the isotropic one is."
            )
        s1, s2 = potential.input_scale
        j.note("CompressibleCANN: x1 = (I1bar - 3)/s1,")
        j.note("x2 = (I2bar**1.5 - 3**1.5)/s2, + kappa/2 (J - 1)**2")
        x = {
            "I1": j.lin([(1.0 / s1, ctx.get("I1bar"))], -3.0 / s1),
            "I2": j.lin(
                [(1.0 / s2, _isochoric_input(ctx, "Ĩ2"))], -_REFERENCE["Ĩ2"] / s2
            ),
        }
        iso = _cann_sum(j, potential, x)
        kappa = float(_array(potential.bulk_modulus))
        jm1 = j.lin([(1.0, ctx.get("J"))], -1.0)
        total = j.lin([(1.0, iso), (0.5 * kappa, j.mul(jm1, jm1))])
        return total, iso
    if isinstance(potential, TransverselyIsotropicPANN):
        if ctx.target == "uhyper":
            raise _Unsupported(
                "Abaqus export: a TransverselyIsotropicPANN is not isotropic, so it "
                "has no UHYPER form; export it with export_umat."
            )
        return _transverse_energy(potential, ctx)
    return None


def _split_inputs(net: PartiallyMonotoneFICNN, x: list[str]) -> dict[str, list[str]]:
    flags = net.non_decreasing
    return {
        "xm": [xi for xi, f in zip(x, flags, strict=True) if f],
        "xf": [xi for xi, f in zip(x, flags, strict=True) if not f],
    }


def _transverse_energy(potential: TransverselyIsotropicPANN, ctx: _Context):
    j = ctx.jets
    G = _array(potential.structural_tensor)
    trace_G = float(np.trace(G))
    J = ctx.get("J")
    I4, I5 = ctx.get("I4"), ctx.get("I5")
    # The network's I5 input: tr(cof(C) G), or the classical tr(C^2 G); the
    # stress normalisation always uses tr(cof(C) G).
    I5_input = I5 if potential.polyconvex_i5 else ctx.get("I5c")
    if potential.reduced:
        s1, sJ, s4, s5 = potential.input_scale
        x = [j.lin([(1.0 / s1, ctx.get("I1"))], -3.0 / s1)]
    else:
        s1, s2, sJ, s4, s5 = potential.input_scale
        x = [
            j.lin([(1.0 / s1, ctx.get("I1"))], -3.0 / s1),
            j.lin([(1.0 / s2, ctx.get("I2"))], -3.0 / s2),
        ]
    x += [
        j.lin([(1.0 / sJ, J)], -1.0 / sJ),
        j.lin([(-1.0 / sJ, J)], 1.0 / sJ),
        j.lin([(1.0 / s4, I4)], -trace_G / s4),
        j.lin([(1.0 / s5, I5_input)], -trace_G / s5),
    ]
    layers = _pmficnn_layers(potential.network)
    n0, g = _network_at_zero(layers, potential.network.non_decreasing, len(x))
    if potential.reduced:
        g1, gJ, gmJ, g4, g5 = g
        n = 2.0 * g1 / s1 + (gJ - gmJ) / sJ
    else:
        g1, g2, gJ, gmJ, g4, g5 = g
        n = 2.0 * g1 / s1 + 4.0 * g2 / s2 + (gJ - gmJ) / sJ
    d4, d5 = g4 / s4, g5 / s5
    if potential.polyconvex_i5:
        n_iso = n + 2.0 * trace_G * d5
        beta = 2.0 * (d4 - d5)
    else:
        n_iso = n
        beta = 2.0 * d4 + 4.0 * d5
    beta_plus, beta_minus = max(beta, 0.0), max(-beta, 0.0)
    out = _emit_network(j, layers, _split_inputs(potential.network, x))
    j.note("W = N(x) - N(0) + b+/2 (I5 - trG) + b-/2 (I4 - trG)")
    j.note("    - (n_iso + b+ trG)(J - 1) + growth (J + 1/J - 2)**2")
    cJ = -(n_iso + beta_plus * trace_G)
    terms = [(1.0, out), (0.5 * beta_plus, I5), (0.5 * beta_minus, I4), (cJ, J)]
    if potential.growth:
        terms.append((potential.growth, j.growth(J)))
    constant = -n0 - 0.5 * (beta_plus + beta_minus) * trace_G - cJ
    total = j.lin(terms, constant)
    return total, total


def _check_model(potential: Any, where: str) -> None:
    if not callable(potential):
        raise TypeError(
            f"`{where}` expects a potential (a callable F -> W, e.g. a finalised "
            f"klax.mechanics.IncompressiblePANN); got {type(potential).__name__}."
        )
    if contains_unwrappables(potential):
        raise ValueError(
            f"`{where}`: the model still holds parameter wrappers (e.g. "
            "klax.NonNegative); call `klax.finalize(model)` first and export the "
            "result."
        )
    if isinstance(potential, Ogden):
        raise ValueError(
            f"`{where}`: Ogden models depend on principal stretches, not on "
            "invariants, and cannot be exported; Abaqus has a built-in "
            "*HYPERELASTIC, OGDEN."
        )


_SUPPORTED = (
    "NeoHooke, MooneyRivlin, IncompressiblePANN, CANN, CompressiblePANN, "
    "CompressibleCANN (isotropic), TransverselyIsotropicPANN and "
    "VolumetricPenalty of the first four"
)


# ---------------------------------------------------------------------------
# Headers


def _version() -> str:
    try:
        return importlib.metadata.version("klax")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        from .. import __version__

        return __version__


def _describe(potential: Any) -> list[str]:
    """A short ASCII description of the model, one item per line."""
    name = type(potential).__name__
    lines = [f"model: klax.mechanics.{name}"]
    if isinstance(potential, VolumetricPenalty):
        kappa = float(_array(potential.bulk_modulus))
        lines.append(f"  bulk_modulus = {kappa!r}")
        lines += ["  " + s for s in _describe(potential.potential)]
        return lines
    for field in (
        "invariants",
        "width_sizes",
        "input_scale",
        "floor",
        "energy_scale",
        "log_limit",
        "growth",
        "reduced",
        "polyconvex_i5",
    ):
        value = getattr(potential, field, None)
        if value is None and hasattr(potential, "network"):
            value = getattr(potential.network, field, None)
        if value is not None:
            text = f"  {field} = {value!r}"
            lines.extend(_wrap_text(text, 68))
    if isinstance(potential, TransverselyIsotropicPANN):
        G = _array(potential.structural_tensor)
        lines.append("  structural tensor G (rows, in the material basis):")
        for row in G:
            lines.append("    " + " ".join(f"{v: .17g}" for v in row))
    if isinstance(potential, (CANN, CompressibleCANN)):
        weights = _array(potential.weights).reshape(-1)
        inner = _array(potential.inner).reshape(-1)
        lines.append("  terms with a non-zero weight (invariant, power, f, a, w):")
        for term, a, w in zip(potential.terms, weights, inner, strict=True):
            if float(a) != 0.0:
                lines.append(
                    f"    {term.invariant} {term.power} {term.activation} "
                    f"{float(a):.17g} {float(w):.17g}"
                )
    for field in ("mu", "c10", "c01"):
        if hasattr(potential, field):
            lines.append(f"  {field} = {float(_array(getattr(potential, field)))!r}")
    return lines


def _wrap_text(text: str, width: int) -> list[str]:
    out = []
    while len(text) > width:
        cut = text.rfind(" ", 0, width)
        cut = width if cut <= 4 else cut
        out.append(text[:cut])
        text = "      " + text[cut:].lstrip()
    out.append(text)
    return out


def _header(
    kind: str, potential: Any, type_: str | None, description: str | None
) -> list[str]:
    c = _comment
    lines = [
        c("=" * 68),
        c(f"Abaqus/Standard user subroutine {kind}, generated by klax {_version()}"),
        c("(klax.mechanics.export_" + kind.lower() + "). Do not edit by hand."),
        c(),
    ]
    lines += [c(s) for s in _describe(potential)]
    if description:
        lines.append(c("source:"))
        for chunk in _wrap_text(description.encode("ascii", "replace").decode(), 66):
            lines.append(c("  " + chunk.strip()))
    lines.append(c())
    if kind == "UHYPER":
        lines += [
            c("Use in the input file:"),
            c(f"  *HYPERELASTIC, USER, TYPE={type_}, PROPERTIES=0"),
            c("PROPS, STATEV and FIELDV are not used."),
            c(
                "Incompressible: use hybrid elements (e.g. C3D8H)."
                if type_ == "INCOMPRESSIBLE"
                else "Compressible: full or hybrid elements."
            ),
            c(),
            c(f"Interface ({_MANUAL}, section"),
            c(f"{_UHYPER_SECTION}):"),
            c("  BI1, BI2 = isochoric invariants Ibar1, Ibar2; AJ = J = det F"),
            c("  U(1) = U;  U(2) = deviatoric part of U"),
            c("  UI1 = (dU/dI1, dU/dI2, dU/dJ)     (I1, I2 meaning Ibar1, Ibar2)"),
            c("  UI2 = (d2U/dI1dI1, d2U/dI2dI2, d2U/dJdJ, d2U/dI1dI2,"),
            c("         d2U/dI1dJ, d2U/dI2dJ)"),
            c("  UI3 = (d3U/dI1dI1dJ, d3U/dI2dI2dJ, d3U/dI1dI2dJ,"),
            c("         d3U/dI1dJdJ, d3U/dI2dJdJ, d3U/dJdJdJ)"),
        ]
        if type_ == "COMPRESSIBLE":
            lines.append(
                c("U(2) = U for a PANN (no additive split): no *MULLINS EFFECT.")
            )
    else:
        lines += [
            c("Use in the input file:"),
            c("  *USER MATERIAL, CONSTANTS=0"),
            c("with NLGEOM=YES; 3D, plane strain or axisymmetric elements"),
            c("(NDI = 3); other element types call XIT. PROPS and STATEV are"),
            c("not used (*DEPVAR may be omitted)."),
            c(),
            c(f"Interface ({_MANUAL}, section"),
            c(f"{_UMAT_SECTION}):"),
            c("  DFGRD1 = F at the end of the increment; STRESS = Cauchy stress"),
            c("  in the order 11, 22, 33, 12, 13, 23; DDSDDE = tangent of the"),
            c("  Jaumann rate of the Kirchhoff stress divided by J, for the"),
            c("  engineering shear strains; SSE = W per unit reference volume."),
            c("  J <= 0 sets PNEWDT = 0.25 (Abaqus retries a smaller increment)."),
        ]
        if isinstance(potential, TransverselyIsotropicPANN):
            lines += [
                c(),
                c("Orientation: G is used in the basis of the second (material)"),
                c("index of DFGRD1. With *ORIENTATION on continuum elements"),
                c("Abaqus/Standard passes DFGRD1 with that index in the local"),
                c("orientation system (Nolan, Lally & McGarry 2022, J. Mech. Behav."),
                c("Biomed. Mater. 126, 104940), so G above is in local axes and the"),
                c("STRESS returned is in the rotated local basis that Abaqus"),
                c("expects; without *ORIENTATION both are global."),
            ]
    lines += [
        c(),
        c("Verified by klax's test suite (gfortran, against JAX in float64):"),
        c("energies and first derivatives to 1e-12, higher derivatives and"),
        c("DDSDDE to 1e-10 relative. Not run inside Abaqus by klax."),
        c("=" * 68),
    ]
    return lines


# ---------------------------------------------------------------------------
# The two routines


def _prefix(potential: Any, kind: str) -> str:
    digest = hashlib.sha1(kind.encode())
    digest.update(type(potential).__name__.encode())
    for leaf in jax.tree.leaves(potential):
        if eqx.is_array(leaf):
            digest.update(np.ascontiguousarray(_array(leaf)).tobytes())
    return "KX" + digest.hexdigest()[:6].upper()


def uhyper_source(potential: Any, description: str | None = None) -> tuple[str, str]:
    """Fortran source of a UHYPER for `potential` and its Abaqus `TYPE`."""
    _check_model(potential, "export_uhyper")
    prefix = _prefix(potential, "UHYPER")
    jets = _Jets(prefix, 3, 3)
    ctx = _Context(jets, "uhyper", {})
    ctx.seeds = {
        "I1bar": jets.var(1, "BI1"),
        "I2bar": jets.var(2, "BI2"),
        "J": jets.var(3, "AJ"),
    }
    try:
        total = _isochoric_energy(potential, ctx)
        if total is not None:
            deviatoric, type_ = total, "INCOMPRESSIBLE"
        else:
            pair = _compressible_energy(potential, ctx)
            if pair is None:
                raise _Unsupported(
                    f"`export_uhyper` cannot export a {type(potential).__name__}; "
                    f"supported: {_SUPPORTED}."
                )
            (total, deviatoric), type_ = pair, "COMPRESSIBLE"
    except _Unsupported as error:
        raise ValueError(str(error)) from None

    def at(jet: str, *index: int) -> str:
        base = int(jet.split(",")[1].rstrip(")"))
        n = 3
        if not index:
            offset = 1
        elif len(index) == 1:
            offset = 1 + index[0]
        elif len(index) == 2:
            offset = 1 + n + index[0] + n * (index[1] - 1)
        else:
            a, b, c = index
            offset = 1 + n + n * n + a + n * (b - 1) + n * n * (c - 1)
        return f"S({offset},{base})"

    outputs = [
        f"U(1) = {at(total)}",
        f"U(2) = {at(deviatoric)}",
        f"UI1(1) = {at(total, 1)}",
        f"UI1(2) = {at(total, 2)}",
        f"UI1(3) = {at(total, 3)}",
        f"UI2(1) = {at(total, 1, 1)}",
        f"UI2(2) = {at(total, 2, 2)}",
        f"UI2(3) = {at(total, 3, 3)}",
        f"UI2(4) = {at(total, 1, 2)}",
        f"UI2(5) = {at(total, 1, 3)}",
        f"UI2(6) = {at(total, 2, 3)}",
        f"UI3(1) = {at(total, 1, 1, 3)}",
        f"UI3(2) = {at(total, 2, 2, 3)}",
        f"UI3(3) = {at(total, 1, 2, 3)}",
        f"UI3(4) = {at(total, 1, 3, 3)}",
        f"UI3(5) = {at(total, 2, 3, 3)}",
        f"UI3(6) = {at(total, 3, 3, 3)}",
    ]
    lines = _header("UHYPER", potential, type_, description)
    lines += [
        "      RECURSIVE SUBROUTINE UHYPER(BI1, BI2, AJ, U, UI1, UI2, UI3,",
        "     &  TEMP, NOEL, CMNAME, INCMPFLAG, NUMSTATEV, STATEV, NUMFIELDV,",
        "     &  FIELDV, FIELDVINC, NUMPROPS, PROPS)",
        "      IMPLICIT NONE",
        "      CHARACTER(LEN=80) CMNAME",
        "      INTEGER NOEL, INCMPFLAG, NUMSTATEV, NUMFIELDV, NUMPROPS",
        "      DOUBLE PRECISION BI1, BI2, AJ, U(2), UI1(3), UI2(6), UI3(6),",
        "     &  TEMP, STATEV(*), FIELDV(*), FIELDVINC(*), PROPS(*)",
    ]
    for d in jets.declarations():
        lines.extend(_fixed(d))
    lines.append(_comment("Jets in (Ibar1, Ibar2, J): value, gradient, Hessian, 3rd."))
    lines += jets.body
    lines.append(_comment("Abaqus layout of U, UI1, UI2, UI3 (see header)."))
    for o in outputs:
        lines.extend(_fixed(o))
    lines += ["      RETURN", "      END"]
    lines += _jet_library(prefix, 3, 3)
    return "\n".join(lines) + "\n", type_


# Invariant kinds of the UMAT: ("Q", G): tr(C G); ("R", G): tr(cof(C) G); ("J",).
def _umat_invariants(potential: Any) -> list[tuple[str, str, np.ndarray | None]]:
    eye = np.eye(3)
    iso = [("I1", "Q", eye), ("I2", "R", eye), ("J", "J", None)]
    if isinstance(potential, TransverselyIsotropicPANN):
        G = _array(potential.structural_tensor)
        base = [("I1", "Q", eye), ("J", "J", None)]
        if not potential.reduced:
            base.insert(1, ("I2", "R", eye))
        base += [("I4", "Q", G), ("I5", "R", G)]
        if not potential.polyconvex_i5:
            base.append(("I5c", "S", G))
        return base
    return iso


def umat_source(potential: Any, description: str | None = None) -> str:
    """Fortran source of a UMAT for `potential`."""
    _check_model(potential, "export_umat")
    if isinstance(potential, (NeoHooke, MooneyRivlin, IncompressiblePANN, CANN)):
        raise ValueError(
            f"`export_umat`: a {type(potential).__name__} is incompressible (it has "
            "no volumetric part), which a UMAT cannot represent. Export it with "
            "export_uhyper (TYPE=INCOMPRESSIBLE), or wrap it in "
            "VolumetricPenalty(model, bulk_modulus) for a UMAT."
        )
    if not isinstance(
        potential,
        (
            CompressiblePANN,
            CompressibleCANN,
            TransverselyIsotropicPANN,
            VolumetricPenalty,
        ),
    ):
        raise ValueError(
            f"`export_umat` cannot export a {type(potential).__name__}; supported: "
            f"{_SUPPORTED}."
        )
    prefix = _prefix(potential, "UMAT")
    invariants = _umat_invariants(potential)
    n = len(invariants)
    jets = _Jets(prefix, n, 2)
    seeds = {
        name: jets.var(k + 1, f"VI({k + 1})")
        for k, (name, _, _) in enumerate(invariants)
    }
    ctx = _Context(jets, "umat", seeds)
    try:
        pair = _compressible_energy(potential, ctx)
    except _Unsupported as error:
        raise ValueError(str(error)) from None
    assert pair is not None
    total = pair[0]
    base = int(total.split(",")[1].rstrip(")"))

    setup: list[str] = []
    for k, (name, _, G) in enumerate(invariants):
        if G is not None and not np.array_equal(G, np.eye(3)):
            setup += [_comment(f"{name}: tensor of the invariant")]
            for a in range(3):
                for b in range(3):
                    setup += _fixed(f"GT({a + 1},{b + 1},{k + 1}) = {_real(G[a, b])}")
    calls: list[str] = []
    for k, (_, kind, _) in enumerate(invariants):
        i = k + 1
        if kind == "Q":
            calls.append(
                f"CALL {prefix}DQ(F, GT(1,1,{i}), VI({i}), DI(1,1,{i}),"
                f" D2I(1,1,1,1,{i}))"
            )
        elif kind == "R":
            calls.append(
                f"CALL {prefix}DR(F, CF, GT(1,1,{i}), VI({i}), DI(1,1,{i}),"
                f" D2I(1,1,1,1,{i}))"
            )
        elif kind == "S":
            calls.append(
                f"CALL {prefix}DS(F, GT(1,1,{i}), VI({i}), DI(1,1,{i}),"
                f" D2I(1,1,1,1,{i}))"
            )
        else:
            calls.append(
                f"CALL {prefix}DJ(F, CF, VI({i}), DI(1,1,{i}), D2I(1,1,1,1,{i}))"
            )

    lines = _header("UMAT", potential, None, description)
    lines += [
        "      RECURSIVE SUBROUTINE UMAT(STRESS, STATEV, DDSDDE, SSE, SPD, SCD,",
        "     &  RPL, DDSDDT, DRPLDE, DRPLDT, STRAN, DSTRAN, TIME, DTIME, TEMP,",
        "     &  DTEMP, PREDEF, DPRED, CMNAME, NDI, NSHR, NTENS, NSTATV, PROPS,",
        "     &  NPROPS, COORDS, DROT, PNEWDT, CELENT, DFGRD0, DFGRD1, NOEL,",
        "     &  NPT, LAYER, KSPT, KSTEP, KINC)",
        "      IMPLICIT NONE",
        "      CHARACTER(LEN=80) CMNAME",
        "      INTEGER NDI, NSHR, NTENS, NSTATV, NPROPS, NOEL, NPT, LAYER,",
        "     &  KSPT, KSTEP, KINC",
        "      DOUBLE PRECISION STRESS(NTENS), STATEV(*),",
        "     &  DDSDDE(NTENS,NTENS), SSE, SPD, SCD, RPL, DDSDDT(NTENS),",
        "     &  DRPLDE(NTENS), DRPLDT, STRAN(NTENS), DSTRAN(NTENS), TIME(2),",
        "     &  DTIME, TEMP, DTEMP, PREDEF(*), DPRED(*), PROPS(*), COORDS(3),",
        "     &  DROT(3,3), PNEWDT, CELENT, DFGRD0(3,3), DFGRD1(3,3)",
    ]
    for d in jets.declarations():
        lines.extend(_fixed(d))
    lines += _fixed(
        "DOUBLE PRECISION F(3,3), CF(3,3), FJ, VI(N), GT(3,3,N), DI(3,3,N),"
        " D2I(3,3,3,3,N), WG(N), WH(N,N), P(3,3), AT(3,3,3,3), TAU(3,3),"
        " SIG(3,3), CT(3,3,3,3), DK, DIL, DJL, DJK"
    )
    lines += _fixed("INTEGER I, II, JJ, K, KK, LL, IA, IB, IV(6), JV(6)")
    body = [
        "IF (NDI .NE. 3 .OR. (NSHR .NE. 3 .AND. NSHR .NE. 1)) CALL XIT",
        "IV(1) = 1",
        "IV(2) = 2",
        "IV(3) = 3",
        "IV(4) = 1",
        "IV(5) = 1",
        "IV(6) = 2",
        "JV(1) = 1",
        "JV(2) = 2",
        "JV(3) = 3",
        "JV(4) = 2",
        "JV(5) = 3",
        "JV(6) = 3",
        "DO JJ = 1, 3",
        "  DO II = 1, 3",
        "    F(II,JJ) = DFGRD1(II,JJ)",
        "  END DO",
        "END DO",
        f"CALL {prefix}COF(F, CF)",
        "FJ = F(1,1)*CF(1,1) + F(2,1)*CF(2,1) + F(3,1)*CF(3,1)",
        "IF (.NOT. (FJ .GT. 0.0D0)) THEN",
        "  PNEWDT = 0.25D0",
        "  RETURN",
        "END IF",
        "DO K = 1, N",
        "  DO JJ = 1, 3",
        "    DO II = 1, 3",
        "      GT(II,JJ,K) = 0.0D0",
        "    END DO",
        "    GT(JJ,JJ,K) = 1.0D0",
        "  END DO",
        "END DO",
    ]
    lines += [s for b in body for s in _fixed(b)]
    lines += setup
    lines.append(_comment("Invariants of F and their first and second derivatives."))
    for c in calls:
        lines += _fixed(c)
    lines.append(_comment("Jets in the invariants: value, gradient, Hessian."))
    lines += jets.body
    size = jets.size
    assembly = [
        f"SSE = S(1,{base})",
        "DO K = 1, N",
        f"  WG(K) = S(1+K,{base})",
        "  DO I = 1, N",
        f"    WH(I,K) = S(1+N+I+N*(K-1),{base})",
        "  END DO",
        "END DO",
        "! P = dW/dF and A = dP/dF by the chain rule through the invariants.",
        "DO LL = 1, 3",
        "DO KK = 1, 3",
        "  P(KK,LL) = 0.0D0",
        "  DO K = 1, N",
        "    P(KK,LL) = P(KK,LL) + WG(K)*DI(KK,LL,K)",
        "  END DO",
        "  DO JJ = 1, 3",
        "  DO II = 1, 3",
        "    AT(II,JJ,KK,LL) = 0.0D0",
        "    DO K = 1, N",
        "      AT(II,JJ,KK,LL) = AT(II,JJ,KK,LL) + WG(K)*D2I(II,JJ,KK,LL,K)",
        "      DO I = 1, N",
        "        AT(II,JJ,KK,LL) = AT(II,JJ,KK,LL)",
        "     &    + WH(I,K)*DI(II,JJ,I)*DI(KK,LL,K)",
        "      END DO",
        "    END DO",
        "  END DO",
        "  END DO",
        "END DO",
        "END DO",
        "! Kirchhoff tau = P F^T and Cauchy sigma = tau / J.",
        "DO JJ = 1, 3",
        "  DO II = 1, 3",
        "    TAU(II,JJ) = 0.0D0",
        "    DO K = 1, 3",
        "      TAU(II,JJ) = TAU(II,JJ) + P(II,K)*F(JJ,K)",
        "    END DO",
        "    SIG(II,JJ) = TAU(II,JJ)/FJ",
        "  END DO",
        "END DO",
        "! Spatial tangent of the Truesdell rate of tau:",
        "! c_ijkl = A_iJkL F_jJ F_lL - delta_ik tau_jl; DDSDDE = c/J + the",
        "! terms that turn it into the Jaumann rate of tau, divided by J:",
        "! (delta_ik s_jl + delta_il s_jk + s_ik delta_jl + s_il delta_jk)/2.",
        "DO LL = 1, 3",
        "DO KK = 1, 3",
        "DO JJ = 1, 3",
        "DO II = 1, 3",
        "  CT(II,JJ,KK,LL) = 0.0D0",
        "  DO K = 1, 3",
        "    DO I = 1, 3",
        "      CT(II,JJ,KK,LL) = CT(II,JJ,KK,LL)",
        "     &  + AT(II,I,KK,K)*F(JJ,I)*F(LL,K)",
        "    END DO",
        "  END DO",
        "  DK = 0.0D0",
        "  DIL = 0.0D0",
        "  DJL = 0.0D0",
        "  DJK = 0.0D0",
        "  IF (II .EQ. KK) DK = 1.0D0",
        "  IF (II .EQ. LL) DIL = 1.0D0",
        "  IF (JJ .EQ. LL) DJL = 1.0D0",
        "  IF (JJ .EQ. KK) DJK = 1.0D0",
        "  CT(II,JJ,KK,LL) = (CT(II,JJ,KK,LL) - DK*TAU(JJ,LL))/FJ",
        "     &  + 0.5D0*(DK*SIG(JJ,LL) + DIL*SIG(JJ,KK)",
        "     &  + SIG(II,KK)*DJL + SIG(II,LL)*DJK)",
        "END DO",
        "END DO",
        "END DO",
        "END DO",
        "! Voigt order 11, 22, 33, 12, 13, 23 (engineering shear strains).",
        "DO IA = 1, NTENS",
        "  II = IV(IA)",
        "  JJ = JV(IA)",
        "  STRESS(IA) = 0.5D0*(SIG(II,JJ) + SIG(JJ,II))",
        "  DO IB = 1, NTENS",
        "    KK = IV(IB)",
        "    LL = JV(IB)",
        "    DDSDDE(IA,IB) = 0.25D0*(CT(II,JJ,KK,LL) + CT(JJ,II,KK,LL)",
        "     &  + CT(II,JJ,LL,KK) + CT(JJ,II,LL,KK))",
        "  END DO",
        "END DO",
    ]
    lines += _layout_block(assembly)
    lines += ["      RETURN", "      END"]
    del size
    lines += _jet_library(prefix, n, 2)
    lines += _umat_library(prefix)
    return "\n".join(lines) + "\n"


def _layout_block(statements: list[str]) -> list[str]:
    """Fixed-form layout of hand-written lines; `'     &'` marks a continuation."""
    out: list[str] = []
    for s in statements:
        if s.startswith("!"):
            out.append(_comment(s[1:].strip()))
        elif s.startswith("     &"):
            out.append(s)
        else:
            out.extend(_fixed(s))
    return out


def _umat_library(prefix: str) -> list[str]:
    p = prefix
    lines: list[str] = []

    def routine(signature: str, declarations: list[str], body: list[str]) -> None:
        lines.append(_comment())
        lines.extend(_fixed(f"RECURSIVE SUBROUTINE {p}{signature}"))
        lines.append("      IMPLICIT NONE")
        lines.extend(_layout_block(declarations + body))
        lines.append("      RETURN")
        lines.append("      END")

    lines.append(_comment())
    lines.extend(_fixed(f"RECURSIVE DOUBLE PRECISION FUNCTION {p}EPS(I, J, K)"))
    lines += _layout_block(
        [
            "IMPLICIT NONE",
            "INTEGER I, J, K",
            "! Levi-Civita symbol for indices in 1..3.",
            f"{p}EPS = DBLE((I - J)*(J - K)*(K - I))/2.0D0",
            "RETURN",
            "END",
        ]
    )
    routine(
        "COF(F, CF)",
        ["DOUBLE PRECISION F(3,3), CF(3,3)"],
        [
            "! Columns of cof F are cross products of the columns of F.",
            "CF(1,1) = F(2,2)*F(3,3) - F(3,2)*F(2,3)",
            "CF(2,1) = F(3,2)*F(1,3) - F(1,2)*F(3,3)",
            "CF(3,1) = F(1,2)*F(2,3) - F(2,2)*F(1,3)",
            "CF(1,2) = F(2,3)*F(3,1) - F(3,3)*F(2,1)",
            "CF(2,2) = F(3,3)*F(1,1) - F(1,3)*F(3,1)",
            "CF(3,2) = F(1,3)*F(2,1) - F(2,3)*F(1,1)",
            "CF(1,3) = F(2,1)*F(3,2) - F(3,1)*F(2,2)",
            "CF(2,3) = F(3,1)*F(1,2) - F(1,1)*F(3,2)",
            "CF(3,3) = F(1,1)*F(2,2) - F(2,1)*F(1,2)",
        ],
    )
    routine(
        "DQ(F, G, V, D1, D2)",
        [
            "DOUBLE PRECISION F(3,3), G(3,3), V, D1(3,3), D2(3,3,3,3)",
            "INTEGER I, J, K, L, M",
        ],
        [
            "! V = tr(C G) = F : (F G); D1 = 2 F G; D2 = 2 delta_ik G_JL.",
            "V = 0.0D0",
            "DO J = 1, 3",
            "  DO I = 1, 3",
            "    D1(I,J) = 0.0D0",
            "    DO M = 1, 3",
            "      D1(I,J) = D1(I,J) + 2.0D0*F(I,M)*G(M,J)",
            "    END DO",
            "    V = V + 0.5D0*D1(I,J)*F(I,J)",
            "    DO L = 1, 3",
            "      DO K = 1, 3",
            "        D2(I,J,K,L) = 0.0D0",
            "        IF (I .EQ. K) D2(I,J,K,L) = 2.0D0*G(J,L)",
            "      END DO",
            "    END DO",
            "  END DO",
            "END DO",
        ],
    )
    routine(
        "DS(F, G, V, D1, D2)",
        [
            "DOUBLE PRECISION F(3,3), G(3,3), V, D1(3,3), D2(3,3,3,3)",
            "DOUBLE PRECISION C(3,3), M(3,3), FG(3,3), B(3,3), FGF(3,3)",
            "DOUBLE PRECISION DIK, DJL",
            "INTEGER I, J, K, L, Q",
        ],
        [
            "! V = tr(C C G) (the classical, not polyconvex, I5); with",
            "! M = C G + G C: D1 = 2 F M and D2_iJkL = 2 delta_ik M_LJ",
            "! + 2 (F_iL (FG)_kJ + b_ik G_LJ + (FG)_iL F_kJ",
            "! + (F G F^T)_ik delta_JL).",
            "DO J = 1, 3",
            "  DO I = 1, 3",
            "    C(I,J) = 0.0D0",
            "    B(I,J) = 0.0D0",
            "    FG(I,J) = 0.0D0",
            "    DO Q = 1, 3",
            "      C(I,J) = C(I,J) + F(Q,I)*F(Q,J)",
            "      B(I,J) = B(I,J) + F(I,Q)*F(J,Q)",
            "      FG(I,J) = FG(I,J) + F(I,Q)*G(Q,J)",
            "    END DO",
            "  END DO",
            "END DO",
            "V = 0.0D0",
            "DO J = 1, 3",
            "  DO I = 1, 3",
            "    M(I,J) = 0.0D0",
            "    FGF(I,J) = 0.0D0",
            "    DO Q = 1, 3",
            "      M(I,J) = M(I,J) + C(I,Q)*G(Q,J) + G(I,Q)*C(Q,J)",
            "      FGF(I,J) = FGF(I,J) + FG(I,Q)*F(J,Q)",
            "    END DO",
            "    V = V + 0.5D0*M(I,J)*C(J,I)",
            "  END DO",
            "END DO",
            "DO J = 1, 3",
            "  DO I = 1, 3",
            "    D1(I,J) = 0.0D0",
            "    DO Q = 1, 3",
            "      D1(I,J) = D1(I,J) + 2.0D0*F(I,Q)*M(Q,J)",
            "    END DO",
            "  END DO",
            "END DO",
            "DO L = 1, 3",
            "DO K = 1, 3",
            "DO J = 1, 3",
            "DO I = 1, 3",
            "  DIK = 0.0D0",
            "  DJL = 0.0D0",
            "  IF (I .EQ. K) DIK = 1.0D0",
            "  IF (J .EQ. L) DJL = 1.0D0",
            "  D2(I,J,K,L) = 2.0D0*(DIK*M(L,J) + F(I,L)*FG(K,J)",
            "     &  + B(I,K)*G(L,J) + FG(I,L)*F(K,J) + FGF(I,K)*DJL)",
            "END DO",
            "END DO",
            "END DO",
            "END DO",
        ],
    )
    routine(
        "DJ(F, CF, V, D1, D2)",
        [
            "DOUBLE PRECISION F(3,3), CF(3,3), V, D1(3,3), D2(3,3,3,3)",
            f"DOUBLE PRECISION {p}EPS",
            "INTEGER I, J, K, L, M, MM",
        ],
        [
            "! V = det F; D1 = cof F; D2 = eps_ikm eps_JLM F_mM.",
            "V = F(1,1)*CF(1,1) + F(2,1)*CF(2,1) + F(3,1)*CF(3,1)",
            "DO L = 1, 3",
            "DO K = 1, 3",
            "DO J = 1, 3",
            "DO I = 1, 3",
            "  IF (K .EQ. 1 .AND. L .EQ. 1) D1(I,J) = CF(I,J)",
            "  D2(I,J,K,L) = 0.0D0",
            "  DO MM = 1, 3",
            "    DO M = 1, 3",
            "      D2(I,J,K,L) = D2(I,J,K,L)",
            f"     &  + {p}EPS(I,K,M)*{p}EPS(J,L,MM)*F(M,MM)",
            "    END DO",
            "  END DO",
            "END DO",
            "END DO",
            "END DO",
            "END DO",
        ],
    )
    routine(
        "DR(F, CF, G, V, D1, D2)",
        [
            "DOUBLE PRECISION F(3,3), CF(3,3), G(3,3), V, D1(3,3),",
            "     &  D2(3,3,3,3)",
            f"DOUBLE PRECISION {p}EPS, DC(3,3,3,3), CG(3,3), T",
            "INTEGER I, J, K, L, M, NN, PP, QQ",
        ],
        [
            "! V = tr(cof(C) G) = cof F : (cof F G), with",
            "! DC(m,N,i,J) = d cof_mN / d F_iJ = eps_mip eps_NJQ F_pQ;",
            "! D1_iJ = 2 (cof F G)_mN DC(m,N,i,J) and",
            "! D2_iJkL = 2 DC(m,P,k,L) G_PN DC(m,N,i,J)",
            "!         + 2 (cof F G)_mN eps_mik eps_NJL.",
            "DO J = 1, 3",
            "DO I = 1, 3",
            "DO NN = 1, 3",
            "DO M = 1, 3",
            "  DC(M,NN,I,J) = 0.0D0",
            "  DO QQ = 1, 3",
            "    DO PP = 1, 3",
            "      DC(M,NN,I,J) = DC(M,NN,I,J)",
            f"     &  + {p}EPS(M,I,PP)*{p}EPS(NN,J,QQ)*F(PP,QQ)",
            "    END DO",
            "  END DO",
            "END DO",
            "END DO",
            "END DO",
            "END DO",
            "V = 0.0D0",
            "DO NN = 1, 3",
            "  DO M = 1, 3",
            "    CG(M,NN) = 0.0D0",
            "    DO PP = 1, 3",
            "      CG(M,NN) = CG(M,NN) + CF(M,PP)*G(PP,NN)",
            "    END DO",
            "    V = V + CG(M,NN)*CF(M,NN)",
            "  END DO",
            "END DO",
            "DO J = 1, 3",
            "DO I = 1, 3",
            "  D1(I,J) = 0.0D0",
            "  DO NN = 1, 3",
            "    DO M = 1, 3",
            "      D1(I,J) = D1(I,J) + 2.0D0*CG(M,NN)*DC(M,NN,I,J)",
            "    END DO",
            "  END DO",
            "  DO L = 1, 3",
            "  DO K = 1, 3",
            "    T = 0.0D0",
            "    DO NN = 1, 3",
            "    DO M = 1, 3",
            "      T = T + 2.0D0*CG(M,NN)*{p}EPS(M,I,K)*{p}EPS(NN,J,L)".replace(
                "{p}", p
            ),
            "      DO PP = 1, 3",
            "        T = T + 2.0D0*DC(M,PP,K,L)*G(PP,NN)*DC(M,NN,I,J)",
            "      END DO",
            "    END DO",
            "    END DO",
            "    D2(I,J,K,L) = T",
            "  END DO",
            "  END DO",
            "END DO",
            "END DO",
        ],
    )
    return lines


# ---------------------------------------------------------------------------
# Public functions


def _write_atomically(path: Any, text: str, where: str) -> pathlib.Path:
    try:
        target = pathlib.Path(os.fspath(path))
    except TypeError:
        raise TypeError(
            f"`{where}(path=...)` must be a file path (str or os.PathLike); got "
            f"{type(path).__name__}."
        ) from None
    if target.is_dir():
        raise ValueError(
            f"`{where}`: {target} is a directory; give a file name such as "
            f"{target / 'umat.f'}."
        )
    parent = target.parent
    if not parent.is_dir():
        raise ValueError(
            f"`{where}`: cannot write {target}: the directory {parent} does not "
            "exist; create it first."
        )
    tmp_name = None
    try:
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".tmp", dir=parent
        )
        with os.fdopen(fd, "w", encoding="ascii", newline="\n") as f:
            f.write(text)
        os.replace(tmp_name, target)
        tmp_name = None
    except OSError as error:
        raise ValueError(
            f"`{where}`: cannot write {target}: {error.strerror or error}."
        ) from None
    finally:
        if tmp_name is not None and os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target


def export_uhyper(
    potential: Any, path: Any, *, description: str | None = None
) -> pathlib.Path:
    """Write an Abaqus `UHYPER` user subroutine for an isotropic potential.

    The routine returns the energy `U` and its first, second and third
    derivatives with respect to $(\\bar I_1, \\bar I_2, J)$ in the array layout
    of the Abaqus User Subroutines Reference Guide (section "UHYPER"). Every
    part of the potential is composed by the chain rule in the generated code:
    a PANN's inputs ($\\tilde I_2 = \\bar I_2^{3/2}$, or $I_1 = \\bar I_1
    J^{2/3}$, $I_2 = \\bar I_2 J^{4/3}$ for the compressible PANN), its input
    shifts and scales, the energy and stress normalisations and the growth
    term. Use it with `*HYPERELASTIC, USER, TYPE=INCOMPRESSIBLE` (neo-Hooke,
    Mooney–Rivlin, `IncompressiblePANN`, `CANN`) or `TYPE=COMPRESSIBLE`
    (`CompressiblePANN`, `CompressibleCANN` without a structural tensor,
    `VolumetricPenalty` of one of the former); the
    header of the file says which.

    The file is written to a temporary name and renamed, so a failed export
    leaves nothing behind.

    **Arguments:**

    - `potential`: a finalised ([`klax.finalize`][]) `NeoHooke`,
      `MooneyRivlin`, `IncompressiblePANN` (any input set), `CANN`,
      `CompressiblePANN`, `CompressibleCANN` (without a structural tensor)
      or `VolumetricPenalty` of the first four. Parameters may be float32 or
      float64; the routine computes in double precision.
    - `path`: the file to write, e.g. `"uhyper.f"` (fixed-form Fortran); its
      directory must exist.
    - `description`: optional text for the header (e.g. where the model came
      from). (Keyword only argument.)

    **Returns:** the path written, as a `pathlib.Path`.

    Raises `ValueError` for an unfinalised, unsupported or non-isotropic
    model and for a path that cannot be written.

    Example:
        >>> import tempfile, pathlib
        >>> from klax.mechanics import NeoHooke, export_uhyper
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> path = export_uhyper(NeoHooke(0.4), folder / "uhyper.f")
        >>> "TYPE=INCOMPRESSIBLE" in path.read_text()
        True
    """
    text, _ = uhyper_source(potential, description)
    return _write_atomically(path, text, "export_uhyper")


def export_umat(
    potential: Any, path: Any, *, description: str | None = None
) -> pathlib.Path:
    """Write an Abaqus `UMAT` user subroutine for a compressible potential of `F`.

    The routine reads the deformation gradient `DFGRD1` and returns the Cauchy
    stress `STRESS` and the material Jacobian `DDSDDE` that Abaqus/Standard
    expects for finite strain: the tangent of the Jaumann rate of the
    Kirchhoff stress divided by `J`, in the order 11, 22, 33, 12, 13, 23 with
    engineering shear strains (Abaqus User Subroutines Reference Guide,
    section "UMAT"). `SSE` is set to the energy per unit reference volume.
    The energy's gradient and Hessian with respect to the invariants come
    from forward-mode jets through the written-out network; the derivatives of
    the invariants with respect to `F` are exact closed forms.

    For a `TransverselyIsotropicPANN` the structural tensor is used in the
    basis of the material (second) index of `DFGRD1`: with `*ORIENTATION`,
    the local orientation system (see the docs page).

    The file is written to a temporary name and renamed, so a failed export
    leaves nothing behind.

    **Arguments:**

    - `potential`: a finalised `CompressiblePANN`, `CompressibleCANN`
      (without a structural tensor), `TransverselyIsotropicPANN` (either
      `I5`) or `VolumetricPenalty` of a `NeoHooke`, `MooneyRivlin`,
      `IncompressiblePANN` or `CANN`.
    - `path`: the file to write, e.g. `"umat.f"`; its directory must exist.
    - `description`: optional text for the header. (Keyword only argument.)

    **Returns:** the path written, as a `pathlib.Path`.

    Raises `ValueError` for an unfinalised, unsupported or incompressible
    model and for a path that cannot be written.
    """
    text = umat_source(potential, description)
    return _write_atomically(path, text, "export_umat")


def export_abaqus(
    potential: Any,
    directory: Any,
    *,
    description: str | None = None,
) -> list[pathlib.Path]:
    """Write every Abaqus routine a potential supports into `directory`.

    `uhyper.f` for isotropic potentials of $(\\bar I_1, \\bar I_2, J)$ and
    `umat.f` for compressible ones; a compressible isotropic potential gets
    both. This is what `klax-calibrate --export-abaqus` calls.

    **Arguments:**

    - `potential`: a finalised supported potential (see
      [`export_uhyper`][klax.mechanics.export_uhyper] and
      [`export_umat`][klax.mechanics.export_umat]).
    - `directory`: an existing directory.
    - `description`: optional text for the headers. (Keyword only argument.)

    **Returns:** the list of paths written.

    Raises `ValueError` if the potential supports neither routine; nothing is
    written then.
    """
    _check_model(potential, "export_abaqus")
    folder = pathlib.Path(os.fspath(directory))
    if not folder.is_dir():
        raise ValueError(
            f"`export_abaqus`: {folder} is not an existing directory; create it first."
        )
    sources: list[tuple[str, str]] = []
    errors = []
    for name, make in (
        ("uhyper.f", lambda: uhyper_source(potential, description)[0]),
        ("umat.f", lambda: umat_source(potential, description)),
    ):
        try:
            sources.append((name, make()))
        except ValueError as error:
            errors.append(str(error))
    if not sources:
        raise ValueError(
            f"`export_abaqus`: a {type(potential).__name__} cannot be exported: "
            + " ".join(errors)
        )
    return [
        _write_atomically(folder / name, text, "export_abaqus")
        for name, text in sources
    ]
