"""klax: physics-augmented machine learning for computational mechanics."""

from . import nn as nn
from ._callbacks import Callback as Callback
from ._datahandler import (
    Batcher as Batcher,
    batch_data as batch_data,
    split_data as split_data,
)
from ._ensemble import (
    EnsembleOutput as EnsembleOutput,
    best_member as best_member,
    ensemble_member as ensemble_member,
    ensemble_size as ensemble_size,
    evaluate_ensemble as evaluate_ensemble,
    fit_ensemble as fit_ensemble,
    make_ensemble as make_ensemble,
    split_ensemble as split_ensemble,
    stack_ensemble as stack_ensemble,
)
from ._initializers import (
    Initializer as Initializer,
    SupportedInitializer as SupportedInitializer,
    canonicalize_initializer as canonicalize_initializer,
    hoedt_bias as hoedt_bias,
    hoedt_normal as hoedt_normal,
)
from ._logging import (
    BatchMetric as BatchMetric,
    History as History,
    Metric as Metric,
    MetricLogger as MetricLogger,
    metric as metric,
)
from ._losses import (
    Loss as Loss,
    loss as loss,
    mae as mae,
    mse as mse,
)
from ._serialization import (
    load_leaves as load_leaves,
    text_deserialize_filter_spec as text_deserialize_filter_spec,
    text_serialize_filter_spec as text_serialize_filter_spec,
)
from ._tools import count_parameters as count_parameters
from ._training import (
    fit as fit,
    make_step as make_step,
    run_training_loop as run_training_loop,
)
from ._trainstate import (
    TrainingContext as TrainingContext,
    TrainingState as TrainingState,
)
from ._wrappers import (
    Constraint as Constraint,
    ContainsUnwrappablesError as ContainsUnwrappablesError,
    NonNegative as NonNegative,
    NonTrainable as NonTrainable,
    Parameterize as Parameterize,
    SkewSymmetric as SkewSymmetric,
    Symmetric as Symmetric,
    Unwrappable as Unwrappable,
    apply as apply,
    contains_constraints as contains_constraints,
    contains_unwrappables as contains_unwrappables,
    finalize as finalize,
    non_trainable as non_trainable,
    unwrap as unwrap,
)

# Training (_callbacks, _datahandler, _logging, _losses, _trainstate, _training)
# is imported above, in isort order.

__version__ = "0.1.0"


def __getattr__(name: str):
    # `klax.mechanics` is imported on first use, so `import klax` stays light.
    if name == "mechanics":
        import importlib

        return importlib.import_module("klax.mechanics")
    raise AttributeError(f"module 'klax' has no attribute {name!r}")
