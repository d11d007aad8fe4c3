"""Ensembles: many independently initialised copies of a model, trained as one.

An *ensemble* is an ordinary model pytree in which every array has a leading
axis of length `N`, one entry per member ([`klax.make_ensemble`][]); non-array
leaves are shared. Being a plain pytree, it can be saved, mapped and vmapped
like any model. [`klax.fit_ensemble`][] trains all members in one compiled
loop.
"""

import functools as ft
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from jaxtyping import PRNGKeyArray, PyTree

from ._callbacks import Callback
from ._datahandler import Batcher, batch_data
from ._logging import History, Metric
from ._loop import DEFAULT_OPTIMIZER, train
from ._losses import Loss, mse
from ._misc import check_callable, check_index, check_int, compose_doc, stack_signature
from ._training import FIT_DOCS
from ._wrappers import finalize

TModel = TypeVar("TModel")


def make_ensemble(
    make_model: Callable[[PRNGKeyArray], TModel], n: int, *, key: PRNGKeyArray
) -> TModel:
    """Build an ensemble of `n` independently initialised models.

    `make_model` is vmapped (`eqx.filter_vmap`, compiled as one program, or
    run eagerly if it needs concrete array values) over `keys =
    jax.random.split(key, n)`: member `i` is `make_model(keys[i])` up to
    round-off. The result is one model of the usual type whose arrays have a
    leading axis of length `n`; non-array fields are shared.

    **Arguments:**

    - `make_model`: a function `key -> model`, e.g. `lambda k:
      klax.nn.FICNN(2, "scalar", [8, 8], key=k)`; traced, so it must not
      branch on key values.
    - `n`: the number of members (an int >= 1).
    - `key`: a JAX PRNG key. (Keyword only argument.)

    **Returns:**

    The ensemble: a model whose every array has shape `(n, *member_shape)`.

    Example:
        >>> import jax.random as jr
        >>> import klax
        >>> ensemble = klax.make_ensemble(
        ...     lambda k: klax.nn.MLP(2, "scalar", [8], key=k), 5, key=jr.key(0))
        >>> ensemble.layers[0].weight.shape, klax.ensemble_size(ensemble)
        ((5, 2, 8), 5)
    """
    check_callable(
        make_model, "`klax.make_ensemble(make_model=...)`", "a function `key -> model`"
    )
    n = check_int(n, "`klax.make_ensemble(n=...)`", minimum=1)
    keys = jr.split(key, n)
    try:
        return _build_members(make_model, keys)
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
        return eqx.filter_vmap(make_model)(keys)


# Initialisation runs once: compile it fast rather than optimise it (on CPU
# this cuts the compile time of a vmapped initialisation 3x).
@ft.partial(
    jax.jit, static_argnums=0, compiler_options={"xla_backend_optimization_level": 0}
)
def _member_arrays(make_model: Callable[[PRNGKeyArray], Any], keys: Any) -> Any:
    return eqx.filter(eqx.filter_vmap(make_model)(keys), eqx.is_array)


def _build_members(make_model: Callable[[PRNGKeyArray], Any], keys: Any) -> Any:
    """`eqx.filter_vmap(make_model)(keys)` compiled (eagerly, each op compiles)."""
    arrays = _member_arrays(make_model, keys)
    skeleton = eqx.filter_eval_shape(eqx.filter_vmap(make_model), keys)
    static = jax.tree.map(
        lambda x: None if isinstance(x, jax.ShapeDtypeStruct) else x, skeleton
    )
    return eqx.combine(arrays, static)


def ensemble_size(ensemble: PyTree) -> int:
    """The number of members of an ensemble (the leading axis of its arrays).

    **Arguments:**

    - `ensemble`: an ensemble, e.g. from [`klax.make_ensemble`][].

    **Returns:**

    `N`, the common length of the leading axis of every array in `ensemble`
    (a `ValueError` if there is none: no arrays, a 0-d one, or different
    lengths).

    Example:
        >>> import jax.numpy as jnp
        >>> import klax
        >>> klax.ensemble_size({"w": jnp.zeros((4, 2, 3)), "b": jnp.zeros((4, 3))})
        4
    """
    hint = "Build ensembles with `klax.make_ensemble` or `klax.stack_ensemble`."
    shapes = {np.shape(x) for x in jax.tree.leaves(ensemble) if eqx.is_array(x)}
    if not shapes:
        raise ValueError(
            f"Not an ensemble: it holds no arrays, so no member axis. {hint}"
        )
    sizes = {shape[0] for shape in shapes if shape}
    if len(sizes) != 1 or () in shapes:
        raise ValueError(
            "Not an ensemble: every array must have the same leading (member) "
            f"axis, but the arrays have shapes {sorted(shapes, key=str)}. {hint}"
        )
    return int(sizes.pop())


def ensemble_member(ensemble: TModel, i: int) -> TModel:
    """Member `i` of an ensemble, as an ordinary model.

    **Arguments:**

    - `ensemble`: an ensemble of `N` members.
    - `i`: the member index, `-N <= i < N` (negative counts from the end).

    **Returns:**

    The model of entry `i` of every array (still wrapped: [`klax.finalize`][]
    it before calling it).

    Example:
        >>> import jax.random as jr
        >>> import klax
        >>> ensemble = klax.make_ensemble(
        ...     lambda k: klax.nn.MLP(2, "scalar", [8], key=k), 5, key=jr.key(0))
        >>> klax.ensemble_member(ensemble, 3).layers[0].weight.shape
        (2, 8)
    """
    n = ensemble_size(ensemble)
    i = check_index(i, n, "`klax.ensemble_member(i=...)`")
    return jax.tree.map(lambda x: x[i] if eqx.is_array(x) else x, ensemble)


def split_ensemble(ensemble: TModel) -> list[TModel]:
    """Split an ensemble into a list of its `N` members; see [`klax.stack_ensemble`][].

    **Arguments:**

    - `ensemble`: an ensemble of `N` members.

    **Returns:**

    A list of `N` models, entry `i` equal to `klax.ensemble_member(ensemble, i)`.

    Example:
        >>> import jax.random as jr
        >>> import klax
        >>> ensemble = klax.make_ensemble(
        ...     lambda k: klax.nn.MLP(2, "scalar", [8], key=k), 3, key=jr.key(0))
        >>> [m.layers[1].weight.shape for m in klax.split_ensemble(ensemble)]
        [(8, 1), (8, 1), (8, 1)]
    """
    dynamic, static = eqx.partition(ensemble, eqx.is_array)
    leaves, treedef = jax.tree.flatten(dynamic)
    columns = [list(leaf) for leaf in leaves]
    rows = [[c[i] for c in columns] for i in range(ensemble_size(ensemble))]
    return [eqx.combine(jax.tree.unflatten(treedef, row), static) for row in rows]


def stack_ensemble(models: Sequence[TModel]) -> TModel:
    """Stack models built or trained separately into an ensemble.

    The inverse of [`klax.split_ensemble`][].

    **Arguments:**

    - `models`: a non-empty sequence of models with the same structure, the
      same array shapes and dtypes, and equal non-array fields.

    **Returns:**

    The ensemble: each array is the stack of the models' arrays along a new
    leading axis (a `ValueError` if the models differ).

    Example:
        >>> import jax.random as jr
        >>> import klax
        >>> models = [klax.nn.Linear(2, 3, jr.normal, key=jr.key(i)) for i in range(4)]
        >>> klax.stack_ensemble(models).weight.shape
        (4, 2, 3)
    """
    models = list(models)
    if not models:
        raise ValueError("`klax.stack_ensemble(models=...)` needs at least one model.")
    static, arrays = stack_signature(models[0])
    for i, model in enumerate(models[1:], start=1):
        model_static, model_arrays = stack_signature(model)
        if model_static != static:
            raise ValueError(
                f"`klax.stack_ensemble`: model {i} differs from model 0 in its "
                "structure or in a non-array field; only models built alike "
                "(same class, sizes and options) can form an ensemble."
            )
        if model_arrays != arrays:
            raise ValueError(
                f"`klax.stack_ensemble`: the arrays of model {i} differ in shape or "
                "dtype from those of model 0."
            )
    dynamic = [eqx.filter(m, eqx.is_array) for m in models]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *dynamic)
    return eqx.combine(stacked, eqx.filter(models[0], eqx.is_array, inverse=True))


class EnsembleOutput(NamedTuple):
    """What [`klax.evaluate_ensemble`][] returns: statistics over the members.

    `mean` and `std` (the population one, `ddof=0`) of the members' outputs,
    each with the structure of one member's output, and `outputs`, all of
    them stacked along a leading axis of length `N`.
    """

    mean: PyTree
    std: PyTree
    outputs: PyTree


@eqx.filter_jit
def _evaluate(ensemble: PyTree, args: tuple, batched: bool) -> EnsembleOutput:
    def member_output(member):
        model = finalize(member)
        return jax.vmap(model)(*args) if batched else model(*args)

    outputs = eqx.filter_vmap(member_output)(ensemble)
    mean = jax.tree.map(lambda y: jnp.mean(y, axis=0), outputs)
    std = jax.tree.map(lambda y: jnp.std(y, axis=0), outputs)
    return EnsembleOutput(mean, std, outputs)


def evaluate_ensemble(
    ensemble: PyTree, *args: Any, batched: bool = False
) -> EnsembleOutput:
    """Call every member on the same input; return the mean, spread and outputs.

    Each member is finalized ([`klax.finalize`][]) and called as
    `member(*args)`, all at once (vmapped, compiled).

    **Arguments:**

    - `ensemble`: an ensemble of `N` members (finalized or not).
    - `*args`: the input(s) of one call of a member.
    - `batched`: if True, each member is called as `jax.vmap(member)(*args)`
      (a batch along axis 0 of `args`). (Keyword only argument.)

    **Returns:**

    An `EnsembleOutput` `(mean, std, outputs)` over the members.

    Example:
        >>> import jax.numpy as jnp
        >>> import jax.random as jr
        >>> import klax
        >>> ensemble = klax.make_ensemble(
        ...     lambda k: klax.nn.MLP(2, "scalar", [8], key=k), 5, key=jr.key(0))
        >>> out = klax.evaluate_ensemble(ensemble, jnp.ones((10, 2)), batched=True)
        >>> out.mean.shape, out.std.shape, out.outputs.shape
        ((10,), (10,), (5, 10))
    """
    ensemble_size(ensemble)
    return _evaluate(ensemble, args, bool(batched))


def best_member(
    ensemble: TModel, score: Any, *, minimize: bool = True
) -> tuple[TModel, int]:
    """The member with the lowest (or highest) score, and its index.

    **Arguments:**

    - `ensemble`: an ensemble of `N` members.
    - `score`: `N` scores (shape `(N,)`, e.g. the last logged values
      `history["validation_loss"][1][-1]` of [`klax.fit_ensemble`][]), or a
      function `member -> scalar` evaluated for every member (vmapped), e.g.
      `lambda m: klax.mse(m, test_data, None)`. Non-finite scores (e.g. of
      frozen members) never win.
    - `minimize`: pick the lowest score (default) or, if False, the highest.
      (Keyword only argument.)

    **Returns:**

    `(member, index)`: the chosen member as an ordinary model and its index.

    Example:
        >>> import jax.random as jr
        >>> import klax
        >>> ensemble = klax.make_ensemble(
        ...     lambda k: klax.nn.MLP(2, "scalar", [8], key=k), 3, key=jr.key(0))
        >>> member, index = klax.best_member(ensemble, [0.3, 0.1, float("nan")])
        >>> index
        1
    """
    n = ensemble_size(ensemble)
    values = (
        eqx.filter_jit(eqx.filter_vmap(score))(ensemble) if callable(score) else score
    )
    try:
        values = np.asarray(jax.device_get(values), dtype=float)
    except (TypeError, ValueError):
        raise TypeError(
            "`klax.best_member(score=...)` must be an array-like of one score per "
            f"member or a function `member -> scalar`; got {score!r}."
        ) from None
    if values.shape != (n,):
        raise ValueError(
            f"`klax.best_member(score=...)` must give one score per member, shape "
            f"({n},); got shape {values.shape}."
        )
    finite = np.isfinite(values)
    if not finite.any():
        raise ValueError(
            f"`klax.best_member`: no member has a finite score; got {values.tolist()}."
        )
    sign = 1.0 if minimize else -1.0
    index = int(np.argmin(np.where(finite, sign * values, np.inf)))
    return ensemble_member(ensemble, index), index


@compose_doc(**FIT_DOCS)
def fit_ensemble(
    ensemble: TModel,
    data: PyTree,
    *,
    batch_size: int = 32,
    batch_axes: PyTree = 0,
    run_state: Any = None,
    validation_data: PyTree = None,
    steps: int = 1000,
    loss: Loss = mse,
    optimizer: optax.GradientTransformation = DEFAULT_OPTIMIZER,
    init_opt_state: PyTree = None,
    batcher: Batcher = batch_data,
    make_logger: bool = True,
    metrics: Sequence[Metric] | None = None,
    log_every: int = 100,
    verbose: int = 2,
    callbacks: Sequence[Callback] | None = None,
    batch_offset: int = 0,
    run_state_per_member: bool = False,
    mesh: Any = None,
    shard: Any = "members",
    key: PRNGKeyArray,
) -> tuple[TModel, History | None]:
    """Train every member of an ensemble at once; returns ensemble and history.

    The update of [`klax.fit`][] runs vmapped over the members in one compiled
    loop: one compilation and one host loop for `N` members. The members are
    independent:

    - **Optimizer state**: each member's own (`optimizer.init`, vmapped);
      `history.final_opt_state` holds them stacked.
    - **Batches**: with `member_keys = jax.random.split(key, N)`, member `i`
      trains on the batches of `klax.fit(member_i, ..., key=member_keys[i])`
      and ends (up to round-off) where that fit ends. Other batchers are
      called once per member, with these keys.
    - **Constraints** are applied to each member after each of its updates.
    - **Non-finite guard, per member**: an update that gives a member a
      non-finite loss or parameters is rejected and *freezes that member* at
      its last finite state; the others train on, and training stops early
      only when all are frozen. `history.stop_step` and `history.stop_reason`
      are lists with an entry per member (`None`: trained to the end); a
      `RuntimeWarning` lists the frozen members.

    **History.** Every logged value is a NumPy array of length `N`
    (`history["loss"][1][k][i]`: member `i` at the `k`-th log). The default
    metrics evaluate all members on the batches of member 0 (whose history
    equals its single fit's); `verbose` shows median (min, max). User
    `metrics` and `callbacks` see the whole ensemble as `context.state.model`
    (member axis first; see [`klax.ensemble_member`][]).

    **Resuming** works as for `klax.fit`: `init_opt_state` from
    `history.final_opt_state`, `batch_offset` from `history.total_steps`, the
    same `key`.

    **Several devices.** With `mesh`, XLA partitions the training over the
    mesh: `shard="members"` (default) splits the members over all mesh axes
    (their number divisible by the number of devices), `shard="batch"` each
    batch along its batch axis (the batch size divisible by it), and a dict
    such as `{"members": "m", "batch": "b"}` does both on a two-dimensional
    mesh. The results equal the one-device results up to round-off.
    {{hosts}}

    **Arguments:**

    - `ensemble`: the ensemble to train (e.g. from [`klax.make_ensemble`][]),
      not necessarily finalized.
    {{keywords}}
    - `run_state_per_member`: if True, every array of `run_state` has a
      leading member axis of length `N` and member `i` gets entry `i` (else
      the members share it).
    - `mesh`: None (one device), a `jax.sharding.Mesh`, or `"all"` (a
      one-dimensional mesh over every device).
    - `shard`: `"members"`, `"batch"` or a dict of mesh axes (see above).
    - `key`: a JAX PRNG key. (Keyword only argument.)

    **Returns:**

    `(ensemble, history)`: the trained ensemble (not finalized) and the
    [`klax.History`][], or `(ensemble, None)` with `make_logger=False`.

    Example:
        >>> import jax.numpy as jnp, jax.random as jr, optax
        >>> import klax
        >>> x = jnp.linspace(0.0, 1.0, 8)
        >>> ensemble = klax.make_ensemble(
        ...     lambda k: klax.nn.MLP("scalar", "scalar", [4], key=k), 3, key=jr.key(0))
        >>> ensemble, history = klax.fit_ensemble(
        ...     ensemble, (x, 2.0 * x), batch_size=8, steps=200, log_every=100,
        ...     optimizer=optax.adam(1e-2), verbose=0, key=jr.key(1))
        >>> history["loss"][0], history["loss"][1][-1].shape
        ([0, 100, 200], (3,))
    """
    options = locals()
    model = options.pop("ensemble")
    return train(
        model, where="klax.fit_ensemble", members=ensemble_size(model), **options
    )
