"""keras_inits: activation-aware initializers for Keras 3, and the measurements that prove them.

Importing this package registers every initializer with Keras's serialization, so that
``keras.models.load_model`` can rebuild models that use them (import it *before* loading).
"""

__version__ = "0.2.0"

from keras_inits.fans import compute_fans
from keras_inits.gains import (
    Criticality,
    correlation_map,
    depth_scale,
    edge_of_chaos,
    gain,
    length_fixed_point,
    variance_slope,
)
from keras_inits.initializers import (
    DeltaOrthogonal,
    Dirac,
    He,
    LooksLinear,
    Pretrained,
    ScaledOrthogonal,
    ScaledRandom,
    Sparse,
    Xavier,
)
from keras_inits.stats import LayerStatistics, activation_statistics
from keras_inits.tensorboard.callback import ActivationStatistics
from keras_inits.lsuv import LSUV, LSUVLayerReport, LSUVReport, lsuv
from keras_inits.reinit import ReinitReport, reinitialize
from keras_inits.transfer import TransferReport, TransferredWeight, transfer
from keras_inits.diagnose import DiagnosisReport, Finding, diagnose

__all__ = [
    "ActivationStatistics",
    "Criticality",
    "DeltaOrthogonal",
    "DiagnosisReport",
    "Dirac",
    "Finding",
    "He",
    "LSUV",
    "LSUVLayerReport",
    "LSUVReport",
    "LayerStatistics",
    "LooksLinear",
    "Pretrained",
    "ReinitReport",
    "ScaledOrthogonal",
    "ScaledRandom",
    "Sparse",
    "TransferReport",
    "TransferredWeight",
    "Xavier",
    "activation_statistics",
    "compute_fans",
    "correlation_map",
    "depth_scale",
    "diagnose",
    "edge_of_chaos",
    "gain",
    "length_fixed_point",
    "lsuv",
    "reinitialize",
    "transfer",
    "variance_slope",
]
