"""Reading and validating load-curve data, and goodness-of-fit metrics."""

import csv
import hashlib
import importlib.resources
import io
import math
import pathlib
from collections.abc import Iterable
from importlib.abc import Traversable
from typing import NamedTuple

import numpy as np

from ._loadcases import LOAD_CASES

REQUIRED_COLUMNS = ("load_case", "stretch", "nominal_stress_MPa")


class DataError(ValueError):
    """Invalid calibration data or arguments; the message is one line."""


class LoadCurve(NamedTuple):
    """Measured points of one load case, sorted by stretch.

    `stretch` and `stress` (nominal stress `P11` in MPa) are float64 NumPy
    arrays of equal length.
    """

    stretch: np.ndarray
    stress: np.ndarray


def default_data_path() -> Traversable:
    """The packaged copy of Treloar's (1944) data, `klax/data/treloar.csv`."""
    return importlib.resources.files("klax") / "data" / "treloar.csv"


def read_data_bytes(path: str | pathlib.Path | Traversable | None) -> bytes:
    """The raw bytes of a data file (the packaged Treloar file for `None`)."""
    source = default_data_path() if path is None else path
    try:
        if isinstance(source, (str, pathlib.Path)):
            return pathlib.Path(source).read_bytes()
        return source.read_bytes()
    except FileNotFoundError:
        raise DataError(f"--data: file not found: {source}") from None
    except IsADirectoryError:
        raise DataError(
            f"--data: expected a CSV file, got a directory: {source}"
        ) from None
    except OSError as error:
        raise DataError(f"--data: cannot read {source}: {error.strerror}") from None


def data_hash(raw: bytes) -> str:
    """SHA-256 hex digest of the raw data file."""
    return hashlib.sha256(raw).hexdigest()


def _number(text: str | None, column: str, line: int) -> float:
    try:
        value = float(text if text is not None else "")
    except ValueError:
        raise DataError(
            f"row {line}: {column} must be a number, got {text!r}"
        ) from None
    if not math.isfinite(value):
        raise DataError(f"row {line}: {column} must be finite, got {text!r}")
    return value


def parse_curves(raw: bytes) -> dict[str, LoadCurve]:
    """Parse and validate a CSV with columns `load_case,stretch,nominal_stress_MPa`.

    Extra columns are ignored; rows are sorted by stretch within each case.
    Raises [`DataError`][klax.mechanics.DataError] (a `ValueError`) naming the
    offending row (the line number in the file, the header being line 1) for
    missing columns, unknown load cases, non-numeric or non-finite values and
    non-positive stretches.

    **Arguments:**

    - `raw`: the file contents.

    **Returns:** a dict from load-case name to its
    [`LoadCurve`][klax.mechanics.LoadCurve], in the order the cases first appear.
    """
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError("--data: the file is not UTF-8 text") from None
    reader = csv.DictReader(io.StringIO(text))
    columns = [c.strip() for c in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise DataError(
            f"--data: missing column(s) {', '.join(missing)}; expected a header with "
            f"{','.join(REQUIRED_COLUMNS)}, got {','.join(columns) or 'nothing'}"
        )
    reader.fieldnames = columns
    points: dict[str, list[tuple[float, float]]] = {}
    for row in reader:
        line = reader.line_num
        if all((v is None or not str(v).strip()) for v in row.values()):
            continue  # blank line
        case = (row.get("load_case") or "").strip()
        if case not in LOAD_CASES:
            raise DataError(
                f"row {line}: unknown load case {case!r}; expected one of "
                f"{', '.join(LOAD_CASES)}"
            )
        stretch = _number(row.get("stretch"), "stretch", line)
        if stretch <= 0:
            raise DataError(f"row {line}: stretch must be positive, got {stretch:g}")
        stress = _number(row.get("nominal_stress_MPa"), "nominal_stress_MPa", line)
        points.setdefault(case, []).append((stretch, stress))
    if not points:
        raise DataError("--data: the file has a header but no data rows")
    curves = {}
    for case, pts in points.items():
        array = np.array(sorted(pts), dtype=np.float64)
        curves[case] = LoadCurve(array[:, 0], array[:, 1])
    return curves


def read_curves(path: str | pathlib.Path | None = None) -> dict[str, LoadCurve]:
    """Read load curves from a CSV file (default: the packaged Treloar data).

    See [`parse_curves`][klax.mechanics.parse_curves] for the format and the
    checks.

    Example:
        >>> from klax.mechanics import read_curves
        >>> {case: len(curve.stretch) for case, curve in read_curves().items()}
        {'uniaxial': 25, 'equibiaxial': 17, 'pure_shear': 14}
    """
    return parse_curves(read_data_bytes(path))


class FitMetrics(NamedTuple):
    """Goodness of fit of one curve: `r2`, `rel_l2`, `mae` and `max_abs` (MPa)."""

    r2: float
    rel_l2: float
    mae: float
    max_abs: float


def fit_metrics(measured: Iterable[float], predicted: Iterable[float]) -> FitMetrics:
    """R², relative L2 error, mean and maximum absolute error of a prediction.

    `R² = 1 - Σ(P - P̂)² / Σ(P - mean P)²` (the convention of Dammaß et al.
    and Linka & Kuhl; not clipped at 0) and `rel_l2 = ‖P̂ - P‖ / ‖P‖`.
    """
    y = np.asarray(measured, dtype=np.float64)
    y_hat = np.asarray(predicted, dtype=np.float64)
    if y.shape != y_hat.shape or y.ndim != 1 or y.size == 0:
        raise ValueError(
            "`fit_metrics` needs two 1-d arrays of equal, non-zero length; got "
            f"shapes {y.shape} and {y_hat.shape}."
        )
    residual = y_hat - y
    total = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(residual**2)) / total if total > 0 else float("nan")
    norm = float(np.linalg.norm(y))
    rel_l2 = float(np.linalg.norm(residual)) / norm if norm > 0 else float("nan")
    return FitMetrics(
        r2, rel_l2, float(np.mean(np.abs(residual))), float(np.max(np.abs(residual)))
    )
