"""Reading and validating load-curve data, and goodness-of-fit metrics."""

import csv
import hashlib
import importlib.resources
import io
import math
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from importlib.abc import Traversable
from typing import NamedTuple

import numpy as np

from ._loadcases import ALL_LOAD_CASES, LOAD_CASES, STRESS_COMPONENTS, check_load_case

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


def _number(text: str | None, column: str, line: int, where: str = "") -> float:
    try:
        value = float(text if text is not None else "")
    except ValueError:
        raise DataError(
            f"{where}row {line}: {column} must be a number, got {text!r}"
        ) from None
    if not math.isfinite(value):
        raise DataError(f"{where}row {line}: {column} must be finite, got {text!r}")
    return value


def parse_curves(raw: bytes) -> dict[str, LoadCurve]:
    """Parse and validate a CSV of one-stretch load curves.

    The columns are `load_case,stretch,nominal_stress_MPa`.

    The reader of [`parse_measurements`][klax.mechanics.parse_measurements]
    (so a stress column may also be `nominal_stress_kPa` or
    `nominal_stress_Pa`; the result is in MPa), restricted to the load cases
    of `LOAD_CASES`. Extra columns are ignored; rows are sorted by stretch
    within each case. Raises [`DataError`][klax.mechanics.DataError] (a
    `ValueError`) naming the offending row (the line number in the file, the
    header being line 1) for missing columns, unknown load cases, non-numeric
    or non-finite values, non-positive stretches, and rows of biaxial or
    simple-shear tests (read those with `parse_measurements`).

    **Arguments:**

    - `raw`: the file contents.

    **Returns:** a dict from load-case name to its
    [`LoadCurve`][klax.mechanics.LoadCurve], in the order the cases first appear.
    """
    data = parse_measurements(raw)
    other = [i for i, c in enumerate(data.case_index) if c >= len(LOAD_CASES)]
    if other:
        i = other[0]
        raise DataError(
            f"row {data.row[i]}: {ALL_LOAD_CASES[data.case_index[i]]} rows are not "
            "one-stretch load curves; read this file with parse_measurements"
        )
    return data.load_curves()


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


# ---------------------------------------------------------------------------
# Measurements of every kind of homogeneous test (long format)

UNITS: dict[str, float] = {"MPa": 1.0, "kPa": 1e-3, "Pa": 1e-6}
"""Stress units of the data files and their size in MPa (the internal unit)."""

# Stress column kinds: name -> (component index in STRESS_COMPONENTS, load cases).
_STRESS_KINDS: dict[str, tuple[int, tuple[str, ...]]] = {
    "nominal_stress": (0, LOAD_CASES),
    "nominal_stress_1": (0, ("biaxial", "simple_shear")),
    "nominal_stress_2": (1, ("biaxial", "simple_shear")),
    "shear_stress": (2, ("simple_shear",)),
}
# Deformation columns of each load case.
_DEFORMATION: dict[str, tuple[str, ...]] = {
    **{case: ("stretch",) for case in LOAD_CASES},
    "biaxial": ("stretch_1", "stretch_2"),
    "simple_shear": ("shear",),
}
# Stress columns a row of each load case must have (at least one of them).
_NEEDED: dict[str, tuple[str, ...]] = {
    **{case: ("nominal_stress",) for case in LOAD_CASES},
    "biaxial": ("nominal_stress_1", "nominal_stress_2"),
    "simple_shear": ("shear_stress",),
}
_DEFORMATION_COLUMNS = ("stretch", "stretch_1", "stretch_2", "shear")

SCHEMA = """\
data columns (one row per measured point, long format; cells that do not apply
stay empty; other columns are ignored; <U> is the stress unit: MPa, kPa or Pa):
  load_case                  uniaxial, equibiaxial, pure_shear, biaxial or
                             simple_shear
  stretch                    uniaxial, equibiaxial, pure_shear: λ
  nominal_stress_<U>         uniaxial, equibiaxial, pure_shear: P11
  stretch_1, stretch_2       biaxial: λ1 (held) and λ2 (swept)
  nominal_stress_1_<U>       biaxial: P11; simple_shear: optional P11 (σ33 = 0)
  nominal_stress_2_<U>       biaxial: P22; simple_shear: optional P22 (σ33 = 0)
                             (an empty stress cell = not measured)
  shear, shear_stress_<U>    simple_shear: γ (F = I + γ e1⊗e2) and P12"""


class Measurements(NamedTuple):
    """Measured stresses of any mix of homogeneous tests, one entry per observation.

    An observation is one measured stress component at one deformation. All
    fields are NumPy arrays of equal length `n`:

    - `case_index` (int32): the load case, a position in `ALL_LOAD_CASES`
      (`0` uniaxial, `1` equibiaxial, `2` pure shear, `3` biaxial, `4`
      simple shear);
    - `stretch` (float64): `λ` (one-stretch cases), `λ1` (biaxial) or the
      amount of shear `γ` (simple shear);
    - `stretch_2` (float64): `λ2` of biaxial points, `1.0` elsewhere;
    - `component` (int32): the stress component, a position in
      `STRESS_COMPONENTS` (`0` P11, `1` P22, `2` P12);
    - `stress` (float64): the measured nominal stress in MPa;
    - `unit` (str): the unit of the column it was read from (`"MPa"`,
      `"kPa"` or `"Pa"`), for reporting;
    - `row` (int64): its line in the file (the header is line 1);
    - `source` (str): the file it was read from (`""` if unnamed).

    Built by [`parse_measurements`][klax.mechanics.parse_measurements] and
    [`read_measurements`][klax.mechanics.read_measurements], ordered by curve
    (see [`curves`][klax.mechanics.Measurements.curves]) and, within a curve,
    by the swept deformation.
    """

    case_index: np.ndarray
    stretch: np.ndarray
    stretch_2: np.ndarray
    component: np.ndarray
    stress: np.ndarray
    unit: np.ndarray
    row: np.ndarray
    source: np.ndarray

    @property
    def size(self) -> int:
        """The number of observations."""
        return len(self.stress)

    def take(self, index: np.ndarray) -> "Measurements":
        """The observations at `index` (an integer or boolean NumPy array)."""
        return Measurements(*(np.asarray(field)[index] for field in self))

    def select(self, selection: Sequence[str] | None) -> "Measurements":
        """The observations picked by `selection` (see
        [`parse_selection`][klax.mechanics.parse_selection]); all for `None`."""
        return select(self, selection)

    def sweep(self) -> np.ndarray:
        """The swept deformation of every observation: `λ`, `λ2` (biaxial) or `γ`."""
        return np.where(self.case_index == 3, self.stretch_2, self.stretch)

    def curves(self) -> list["Curve"]:
        """The curves in the data, in order of first appearance.

        A curve is one load case (for biaxial data: one held `λ1`) and one
        stress component, e.g. `"uniaxial"` P11, `"biaxial@1.5"` P22 or
        `"simple_shear"` P12.
        """
        keys: dict[tuple[int, float | None, int], list[int]] = {}
        for i, (case, lam1, comp) in enumerate(
            zip(self.case_index, self.stretch, self.component, strict=True)
        ):
            held = float(lam1) if case == 3 else None
            keys.setdefault((int(case), held, int(comp)), []).append(i)
        result = []
        for (case, held, comp), index in keys.items():
            name = ALL_LOAD_CASES[case]
            result.append(
                Curve(
                    curve_label(name, held),
                    name,
                    held,
                    STRESS_COMPONENTS[comp],
                    np.asarray(index, dtype=np.int64),
                )
            )
        return result

    def load_curves(self) -> dict[str, LoadCurve]:
        """The one-stretch curves (`P11` of `LOAD_CASES`) as `LoadCurve`s, in MPa."""
        curves = {}
        for curve in self.curves():
            if curve.load_case in LOAD_CASES and curve.component == "P11":
                part = self.take(curve.index)
                curves[curve.load_case] = LoadCurve(part.stretch, part.stress)
        return curves


class Curve(NamedTuple):
    """One curve of [`Measurements`][klax.mechanics.Measurements].

    `label` (e.g. `"biaxial@1.5"`), `load_case`, `stretch_1` (the held `λ1`
    of a biaxial curve, else `None`), `component` (`"P11"`, `"P22"` or
    `"P12"`) and `index`, the positions of its observations.
    """

    label: str
    load_case: str
    stretch_1: float | None
    component: str
    index: np.ndarray


def curve_label(load_case: str, stretch_1: float | None) -> str:
    """`"biaxial@1.5"` for a biaxial curve at `λ1 = 1.5`, else the load case name."""
    return load_case if stretch_1 is None else f"{load_case}@{stretch_1:.10g}"


def column_name(load_case: str, component: str, unit: str) -> str:
    """The data-file column a stress component of a load case is read from."""
    if load_case in LOAD_CASES:
        return f"nominal_stress_{unit}"
    if component == "P12":
        return f"shear_stress_{unit}"
    return f"nominal_stress_{1 if component == 'P11' else 2}_{unit}"


def _expected_sign(data: Measurements) -> np.ndarray:
    """The sign a stress must have for any isotropic `W` with `W_1, W_2 >= 0`.

    `P11 ∝ λ1 - λ3²/λ1`, i.e. the sign of `λ1² λ2 - 1` (λ2 from the load case),
    `P22` likewise, `P12 = 2γ(W_1 + W_2)` has the sign of `γ`; `0` where no
    sign follows (the undeformed state, the normal stresses of simple shear).
    """
    case, lam2 = data.case_index, data.stretch_2
    lam1 = np.where(case == 4, 1.0, data.stretch)  # γ of simple shear: no stretch
    lam2 = np.select(
        [case == 0, case == 1, case == 2], [lam1**-0.5, lam1, np.ones_like(lam1)], lam2
    )
    p11 = np.sign(np.round(lam1 * lam1 * lam2 - 1.0, 12))
    p22 = np.sign(np.round(lam2 * lam2 * lam1 - 1.0, 12))
    sign = np.where(data.component == 0, p11, p22)
    shear = case == 4
    gamma = np.where(shear, data.stretch, 0.0)
    sign = np.where(shear, np.where(data.component == 2, np.sign(gamma), 0.0), sign)
    # Uniaxial tension has no lateral stress to check.
    return np.where((case == 0) & (data.component == 1), 0.0, sign)


def _undeformed(data: Measurements) -> np.ndarray:
    shear = data.case_index == 4
    at_one = np.isclose(data.stretch, 1.0, rtol=0.0, atol=1e-9)
    at_one_2 = np.isclose(data.stretch_2, 1.0, rtol=0.0, atol=1e-9)
    return np.where(shear, np.abs(data.stretch) <= 1e-12, at_one & at_one_2)


def sanity_warnings(data: Measurements, limit: int = 5) -> list[str]:
    """One-line warnings about measurements that look wrong (not errors).

    Flags a stress whose sign is opposite to the deformation (see
    `_expected_sign`; e.g. a negative uniaxial stress at `λ > 1`), larger
    than 2 % of its curve's largest stress, and a stress at the undeformed
    state (`λ = 1`, `γ = 0`) larger than 5 % of its curve's largest stress.
    At most `limit` rows are named per kind of problem, then a count.
    """
    messages: list[str] = []
    peak = np.zeros(data.size)
    for curve in data.curves():
        peak[curve.index] = np.max(np.abs(data.stress[curve.index]))
    sign = _expected_sign(data)
    flipped = np.flatnonzero(
        (sign * data.stress < 0) & (np.abs(data.stress) > 0.02 * peak)
    )
    offset = np.flatnonzero(_undeformed(data) & (np.abs(data.stress) > 0.05 * peak))
    for indices, what in (
        (
            flipped,
            "has the sign opposite to the deformation (check the sign "
            "convention or the row)",
        ),
        (
            offset,
            "is clearly non-zero at the undeformed state (check the "
            "zero offset of the load cell)",
        ),
    ):
        for i in indices[:limit]:
            case = ALL_LOAD_CASES[data.case_index[i]]
            comp = STRESS_COMPONENTS[data.component[i]]
            unit = str(data.unit[i])
            where = f"{data.source[i]}: " if data.source[i] else ""
            value = data.stress[i] / UNITS[unit]
            messages.append(
                f"{where}row {data.row[i]}: {column_name(case, comp, unit)} = "
                f"{value:.4g} ({case}) {what}"
            )
        if len(indices) > limit:
            messages.append(f"... and {len(indices) - limit} more such row(s)")
    return messages


def _cell(row: dict, column: str | None) -> str:
    if column is None:
        return ""
    value = row.get(column)
    return "" if value is None else str(value).strip()


def _stress_columns(columns: Sequence[str], where: str) -> dict[str, tuple[str, str]]:
    """Map each stress kind present in the header to `(column name, unit)`."""
    found: dict[str, tuple[str, str]] = {}
    for column in columns:
        for kind in sorted(_STRESS_KINDS, key=len, reverse=True):
            prefix = kind + "_"
            if not column.startswith(prefix):
                continue
            unit = column[len(prefix) :]
            if kind == "nominal_stress" and unit[:2] in ("1_", "2_"):
                continue  # nominal_stress_1_... belongs to a longer kind
            if unit not in UNITS:
                raise DataError(
                    f"{where}column {column!r}: unknown stress unit {unit!r}; the "
                    f"suffix must be one of {', '.join(UNITS)}"
                )
            if kind in found:
                raise DataError(
                    f"{where}columns {found[kind][0]!r} and {column!r}: mixed units "
                    f"for {kind}; give each stress in one unit"
                )
            found[kind] = (column, unit)
            break
    return found


def parse_measurements(raw: bytes, source: str = "") -> Measurements:
    """Parse and validate a CSV of homogeneous tests of any kind (long format).

    One row per measured point; the `load_case` column says which columns
    apply (see `SCHEMA`, printed by `klax-calibrate --help`):

    | `load_case` | deformation | stresses |
    |---|---|---|
    | `uniaxial`, `equibiaxial`, `pure_shear` | `stretch` | `nominal_stress_<U>` |
    | `biaxial` | `stretch_1`, `stretch_2` | `nominal_stress_1_<U>`, `..._2_<U>` |
    | `simple_shear` | `shear` | `shear_stress_<U>`, optional `..._1_<U>`, `..._2_<U>` |

    (`nominal_stress_<U>` and `nominal_stress_1_<U>` are `P11`,
    `nominal_stress_2_<U>` is `P22`, `shear_stress_<U>` is `P12`; `stretch`
    is `λ`, `shear` the amount of shear `γ`, `F = I + γ e1⊗e2`.)

    `<U>` is the unit, `MPa`, `kPa` or `Pa`; values are converted to MPa.
    An empty stress cell means "not measured" (a row needs at least one
    measured stress of its kind); cells of columns that do not apply to the
    row's load case must be empty. Extra columns are ignored, blank lines
    skipped. Every problem raises a [`DataError`][klax.mechanics.DataError]
    (a `ValueError`) with a one-line message naming the row (its line in the
    file, the header being line 1) and the column: missing columns, unknown
    load cases or units, mixed units within one kind of stress column,
    non-numeric or non-finite cells, stretches `<= 0`.

    **Arguments:**

    - `raw`: the file contents.
    - `source`: a name for messages (e.g. the path); prefixed to them.

    **Returns:** the [`Measurements`][klax.mechanics.Measurements].

    Example:
        >>> from klax.mechanics import parse_measurements
        >>> data = parse_measurements(
        ...     b"load_case,stretch_1,stretch_2,"
        ...     b"nominal_stress_1_kPa,nominal_stress_2_kPa\\n"
        ...     b"biaxial,1.5,1.2,250,\\n"
        ...     b"biaxial,1.5,1.5,300,300\\n"
        ... )
        >>> [c.label + " " + c.component for c in data.curves()]
        ['biaxial@1.5 P11', 'biaxial@1.5 P22']
        >>> data.stress.tolist()
        [0.25, 0.3, 0.3]
    """
    where = f"{source}: " if source else ""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{where or '--data: '}the file is not UTF-8 text") from None
    reader = csv.DictReader(io.StringIO(text))
    columns = [c.strip() for c in (reader.fieldnames or [])]
    if "load_case" not in columns:
        raise DataError(
            f"{where or '--data: '}missing column(s) load_case; expected a header "
            f"such as {','.join(REQUIRED_COLUMNS)}, got "
            f"{','.join(columns) or 'nothing'}"
        )
    reader.fieldnames = columns
    stress_columns = _stress_columns(columns, where)
    known = set(_DEFORMATION_COLUMNS) | {c for c, _ in stress_columns.values()}
    points: list[tuple] = []
    needed_seen: set[str] = set()
    for row in reader:
        line = reader.line_num
        if all((v is None or not str(v).strip()) for v in row.values()):
            continue  # blank line
        case = _cell(row, "load_case")
        if case not in ALL_LOAD_CASES:
            raise DataError(
                f"{where}row {line}: unknown load case {case!r}; expected one of "
                f"{', '.join(ALL_LOAD_CASES)}"
            )
        if case not in needed_seen:
            needed_seen.add(case)
            _check_columns(case, columns, stress_columns, where, line)
        deformation = _DEFORMATION[case]
        applies = set(deformation) | {
            stress_columns[k][0]
            for k, (_, cases) in _STRESS_KINDS.items()
            if case in cases and k in stress_columns
        }
        for column in known - applies:
            if column in columns and _cell(row, column):
                raise DataError(
                    f"{where}row {line}: column {column} does not apply to {case} "
                    "rows; leave it empty"
                )
        values = []
        for column in deformation:
            cell = _cell(row, column)
            if not cell:
                raise DataError(
                    f"{where}row {line}: {column} is empty; {case} rows need "
                    f"{' and '.join(deformation)}"
                )
            value = _number(cell, column, line, where)
            if column != "shear" and value <= 0:
                raise DataError(
                    f"{where}row {line}: {column} must be positive, got {value:g}"
                )
            values.append(value)
        first = values[0]
        second = values[1] if case == "biaxial" else 1.0
        measured = 0
        for kind, (component, cases) in _STRESS_KINDS.items():
            if case not in cases or kind not in stress_columns:
                continue
            column, unit = stress_columns[kind]
            cell = _cell(row, column)
            if not cell:
                if kind == "nominal_stress":
                    raise DataError(
                        f"{where}row {line}: {column} must be a number, got ''"
                    )
                continue
            value = _number(cell, column, line, where) * UNITS[unit]
            index = ALL_LOAD_CASES.index(case)
            points.append((index, first, second, component, value, unit, line))
            measured += 1
        if not measured:
            names = [stress_columns[k][0] for k in _NEEDED[case] if k in stress_columns]
            names += [
                stress_columns[k][0]
                for k in ("nominal_stress_1", "nominal_stress_2")
                if case == "simple_shear" and k in stress_columns
            ]
            raise DataError(
                f"{where}row {line}: no measured stress; fill {' or '.join(names)}"
            )
    if not points:
        raise DataError(f"{where or '--data: '}the file has a header but no data rows")
    return _ordered(points, source)


def _check_columns(case, columns, stress_columns, where, line) -> None:
    missing = [c for c in _DEFORMATION[case] if c not in columns]
    if not any(k in stress_columns for k in _NEEDED[case]):
        missing.append(" or ".join(f"{k}_MPa" for k in _NEEDED[case]))
    if missing:
        raise DataError(
            f"{where}row {line}: missing column(s) {', '.join(missing)} (or in kPa/Pa) "
            f"needed by {case} rows"
        )


def _ordered(points: list[tuple], source: str) -> Measurements:
    case, first, second, component, stress, unit, row = zip(*points, strict=True)
    data = Measurements(
        np.asarray(case, dtype=np.int32),
        np.asarray(first, dtype=np.float64),
        np.asarray(second, dtype=np.float64),
        np.asarray(component, dtype=np.int32),
        np.asarray(stress, dtype=np.float64),
        np.asarray(unit, dtype=str),
        np.asarray(row, dtype=np.int64),
        np.full(len(points), source, dtype=object).astype(str),
    )
    order = np.concatenate(
        [
            c.index[np.argsort(data.take(c.index).sweep(), kind="stable")]
            for c in data.curves()
        ]
    )
    return data.take(order)


def concatenate_measurements(parts: Sequence[Measurements]) -> Measurements:
    """Join several [`Measurements`][klax.mechanics.Measurements] (e.g. two files).

    Curves of the same load case, `λ1` and component are merged and re-sorted.
    """
    if not parts:
        raise ValueError("`concatenate_measurements` needs at least one part.")
    joined = Measurements(
        *(np.concatenate(fields) for fields in zip(*parts, strict=True))
    )
    order = np.concatenate(
        [
            c.index[np.argsort(joined.take(c.index).sweep(), kind="stable")]
            for c in joined.curves()
        ]
    )
    return joined.take(order)


def read_measurements(
    paths: str | pathlib.Path | Sequence[str | pathlib.Path] | None = None,
) -> Measurements:
    """Read one or several data files (default: the packaged Treloar data).

    See [`parse_measurements`][klax.mechanics.parse_measurements] for the
    format and the checks; with several files, messages name the file.

    Example:
        >>> from klax.mechanics import read_measurements
        >>> data = read_measurements()
        >>> [(c.label, c.component, len(c.index)) for c in data.curves()]
        [('uniaxial', 'P11', 25), ('equibiaxial', 'P11', 17), ('pure_shear', 'P11', 14)]
    """
    sources: list[str | pathlib.Path | None] = (
        [paths]
        if paths is None or isinstance(paths, (str, pathlib.Path))
        else list(paths)
    )
    named = len(sources) > 1
    parts = [
        parse_measurements(read_data_bytes(p), str(p) if named else "") for p in sources
    ]
    return concatenate_measurements(parts)


def measurements_from_curves(curves: Mapping[str, LoadCurve]) -> Measurements:
    """[`Measurements`][klax.mechanics.Measurements] from one-stretch curves (MPa)."""
    points = []
    for case, curve in curves.items():
        index = ALL_LOAD_CASES.index(check_load_case(case, "measurements_from_curves"))
        for lam, stress in zip(curve.stretch, curve.stress, strict=True):
            points.append((index, float(lam), 1.0, 0, float(stress), "MPa", 0))
    if not points:
        raise ValueError("`measurements_from_curves` needs at least one point.")
    return _ordered(points, "")


def as_measurements(data: "Measurements | Mapping[str, LoadCurve]") -> Measurements:
    """`data` as `Measurements` (a dict of load curves is converted)."""
    if isinstance(data, Measurements):
        return data
    return measurements_from_curves(data)


def parse_selection(text: str, flag: str = "selection") -> list[str]:
    """Split a `--train`/`--test` value into its entries.

    Entries are comma separated: a load case (`uniaxial`, `biaxial`,
    `simple_shear`, ...) selects all its curves; `biaxial@1.5` selects the
    biaxial curves measured at `λ1 = 1.5` (compared to 6 significant digits).
    Raises a [`DataError`][klax.mechanics.DataError] for unknown names,
    malformed values and duplicates.
    """
    names = [c.strip() for c in text.split(",")] if text.strip() else []
    for name in names:
        if not name:
            raise DataError(f"{flag}: empty load case name in {text!r}")
        case, at, value = name.partition("@")
        if case not in ALL_LOAD_CASES:
            raise DataError(
                f"{flag}: unknown load case {case!r}; expected one of "
                f"{', '.join(ALL_LOAD_CASES)} (biaxial curves as biaxial@STRETCH_1)"
            )
        if at:
            if case != "biaxial":
                raise DataError(
                    f"{flag}: {name!r}: only biaxial curves are selected by @STRETCH_1"
                )
            try:
                held = float(value)
            except ValueError:
                raise DataError(
                    f"{flag}: {name!r}: stretch_1 after @ must be a number"
                ) from None
            if not (math.isfinite(held) and held > 0):
                raise DataError(f"{flag}: {name!r}: stretch_1 must be positive")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataError(f"{flag}: load case {duplicates[0]!r} is listed twice")
    return names


def selection_mask(data: Measurements, selection: Sequence[str]) -> np.ndarray:
    """Boolean mask of the observations that one of the `selection` entries picks.

    See [`parse_selection`][klax.mechanics.parse_selection] for the entries.
    """
    mask = np.zeros(len(data.stress), dtype=bool)
    for entry in selection:
        case, at, value = entry.partition("@")
        if case not in ALL_LOAD_CASES:
            raise DataError(
                f"unknown load case {case!r}; expected one of "
                f"{', '.join(ALL_LOAD_CASES)}"
            )
        pick = data.case_index == ALL_LOAD_CASES.index(case)
        if at:
            pick &= np.isclose(data.stretch, float(value), rtol=1e-6, atol=0.0)
        mask |= pick
    return mask


def select(data: Measurements, selection: Sequence[str] | None) -> Measurements:
    """The observations picked by `selection` (all of them for `None`)."""
    if selection is None:
        return data
    return data.take(selection_mask(data, selection))


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
