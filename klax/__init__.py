"""klax: physics-augmented machine learning for computational mechanics."""

from . import nn as nn
from ._initializers import (
    Initializer as Initializer,
    SupportedInitializer as SupportedInitializer,
    canonicalize_initializer as canonicalize_initializer,
    hoedt_bias as hoedt_bias,
    hoedt_normal as hoedt_normal,
)
from ._serialization import (
    text_deserialize_filter_spec as text_deserialize_filter_spec,
    text_serialize_filter_spec as text_serialize_filter_spec,
)
from ._tools import count_parameters as count_parameters
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

# --- training (losses, data, state, callbacks, fit, logging): added by the training work ---

__version__ = "0.1.0"
