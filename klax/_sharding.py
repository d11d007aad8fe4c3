"""Training on several devices: `jax.sharding` meshes for `fit` and `fit_ensemble`.

Both layouts are `NamedSharding`s left to XLA's automatic partitioner: *data
parallel* (parameters replicated, each batch split along its batch axis, the
gradient's sum an all-reduce) and *member parallel* (the members of an ensemble
split over the devices, the data replicated). klax rebuilds any mesh with
automatic axes for its own arrays, so user losses need no sharding annotations.
"""

import math
from collections.abc import Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import PyTree

from ._datahandler import broadcast_and_get_size
from ._misc import check_axes, describe, invalid, is_none


def resolve_mesh(mesh: Any, where: str) -> Mesh | None:
    """The `mesh=` argument (None, a `Mesh` or `"all"`) as a mesh of automatic axes."""
    if mesh is None:
        return None
    name = f"`{where}(mesh=...)`"
    expected = 'None, a `jax.sharding.Mesh` or the string "all" (every device)'
    if isinstance(mesh, str):
        if mesh != "all":
            raise invalid(name, expected, f"the string {mesh!r}")
        mesh = Mesh(np.asarray(jax.devices()), ("devices",))
    if not isinstance(mesh, Mesh):
        hint = 'For example jax.make_mesh((jax.device_count(),), ("devices",)).'
        raise invalid(name, expected, describe(mesh), hint, TypeError)
    axis_type = getattr(jax.sharding, "AxisType", None)
    if axis_type is None:  # older JAX: every mesh axis is automatic
        return mesh
    auto = (axis_type.Auto,) * len(mesh.axis_names)
    if tuple(getattr(mesh, "axis_types", auto)) == auto:
        return mesh
    return Mesh(mesh.devices, mesh.axis_names, axis_types=auto)


def shard_plan(
    mesh: Mesh, shard: Any, members: int | None, where: str
) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
    """The mesh axes that split the members and the batches (per `shard`)."""
    if members is None:
        return None, tuple(mesh.axis_names)
    name = f"`{where}(shard=...)`"
    expected = '"members", "batch" or a dict {"members": axes, "batch": axes}'
    if isinstance(shard, str):
        if shard not in ("members", "batch"):
            raise invalid(name, expected, repr(shard))
        plan = {shard: tuple(mesh.axis_names)}
    elif isinstance(shard, Mapping):
        if unknown := set(shard) - {"members", "batch"}:
            given = repr(sorted(map(repr, unknown)))
            raise invalid(f"{name} keys", '"members" and/or "batch"', given)
        plan = {
            k: check_axes(mesh, v, f"{where}(shard[{k!r}])")
            for k, v in shard.items()
            if v is not None
        }
        if set(plan.get("members", ())) & set(plan.get("batch", ())):
            expected = "a split in which no mesh axis splits both members and batches"
            raise invalid(name, expected, repr(dict(shard)))
    else:
        raise invalid(name, expected, describe(shard), error=TypeError)
    member_axes = plan.get("members")
    devices = 1 if member_axes is None else axes_size(mesh, member_axes)
    if members % devices:
        raise invalid(
            f"An ensemble of {members} members cannot be split evenly over the "
            f"{devices} devices of the mesh axes {member_axes}: the number of "
            "members",
            f"divisible by {devices}",
            str(members),
            'Use such a number of members, or shard="batch".',
        )
    return member_axes, plan.get("batch")


def axes_size(mesh: Mesh, axes: Sequence[str]) -> int:
    """The number of devices along the mesh axes `axes`."""
    return math.prod(mesh.shape[a] for a in axes)


def _spec_entry(axes: Sequence[str]) -> Any:
    return axes[0] if len(axes) == 1 else tuple(axes)


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array."""
    return NamedSharding(mesh, PartitionSpec())


def along(mesh: Mesh, axes: Sequence[str], dim: int, ndim: int) -> NamedSharding:
    """Dimension `dim` of an `ndim`-dimensional array split over `axes`."""
    spec = [None] * ndim
    spec[dim] = _spec_entry(axes)
    return NamedSharding(mesh, PartitionSpec(*spec))


def place(tree: PyTree, sharding: Any) -> PyTree:
    """Every array of `tree` put on the mesh as `sharding(leaf)` says (multi-host too).

    With several processes (all passing the same values) the global array is
    assembled from each process's local shards.
    """
    single = jax.process_count() == 1

    def put(x):
        if not eqx.is_array(x):
            return x
        target = sharding(x)
        if single:
            return jax.device_put(x, target)
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, target, lambda i: host[i])

    return jax.tree.map(put, tree)


def gather(tree: PyTree, mesh: Mesh) -> PyTree:
    """A copy of `tree` replicated on every device (so every host can read it)."""
    return jax.jit(lambda t: t, out_shardings=replicated(mesh))(tree)


def constrain_leading(tree: PyTree, mesh: Mesh, axes: Sequence[str]) -> PyTree:
    """Inside jit: keep the leading axis of every array of `tree` split."""
    return jax.tree.map(
        lambda x: (
            jax.lax.with_sharding_constraint(x, along(mesh, axes, 0, x.ndim))
            if eqx.is_array(x) and x.ndim
            else x
        ),
        tree,
    )


def split_batch(
    batch: PyTree, mesh: Mesh, axes: Sequence[str], batch_axes: PyTree
) -> PyTree:
    """Inside jit: each batched array of `batch` split along its batch axis.

    Split over the mesh axes `axes`; XLA then partitions the loss and its
    gradient over the devices (data parallel).
    """
    if batch is None:
        return batch
    full_axes, _ = broadcast_and_get_size(batch, batch_axes)
    devices = axes_size(mesh, axes)

    def split(axis, x):
        if axis is None or not eqx.is_array(x):
            return x
        ndim = np.ndim(x)
        axis = axis % ndim
        if np.shape(x)[axis] % devices:
            raise invalid(
                f"A batch of {np.shape(x)[axis]} samples cannot be split evenly "
                f"over the {devices} devices of the mesh axes {tuple(axes)}: the "
                "batch size",
                f"divisible by {devices}",
                str(np.shape(x)[axis]),
                f"Choose a batch_size divisible by {devices}.",
            )
        return jax.lax.with_sharding_constraint(x, along(mesh, axes, axis, ndim))

    return jax.tree.map(split, full_axes, batch, is_leaf=is_none)
