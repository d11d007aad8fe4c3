"""Neural-network building blocks of klax."""

from ._icnn import (
    FICNN as FICNN,
    PICNN as PICNN,
    FICNNLayer as FICNNLayer,
    PICNNLayer as PICNNLayer,
)
from ._linear import InputSplitLinear as InputSplitLinear, Linear as Linear
from ._matrices import (
    ConstantMatrix as ConstantMatrix,
    ConstantSkewSymmetricMatrix as ConstantSkewSymmetricMatrix,
    ConstantSPDMatrix as ConstantSPDMatrix,
    Matrix as Matrix,
    SkewSymmetricMatrix as SkewSymmetricMatrix,
    SPDMatrix as SPDMatrix,
)
from ._mlp import MLP as MLP
