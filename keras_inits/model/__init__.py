"""What keras_inits knows about a model: its layers, their weights, and how data flows.

:mod:`keras_inits.model.graph` is the only module of the package that walks a model; the
probe, ``lsuv`` and ``reinitialize`` all ask it; :mod:`keras_inits.model.residual` finds
the residual merges and branches on a trace of its own.
"""

from keras_inits.model.graph import (
    DRAWN_ROLES,
    FLOAT_DTYPES,
    KERNEL_ROLES,
    LINEAR,
    FeedingActivation,
    ModelGraph,
    Node,
    Weight,
    children,
    einsum_fans,
    layer_weights,
    model_graph,
    own_variables,
    sample_inputs,
    walk,
    weight_fans,
)
from keras_inits.model.residual import (
    ResidualBlock,
    ResidualStream,
    ResidualStructure,
    residual_blocks,
    residual_stream,
    residual_structure,
)

__all__ = [
    "DRAWN_ROLES",
    "FLOAT_DTYPES",
    "KERNEL_ROLES",
    "LINEAR",
    "FeedingActivation",
    "ModelGraph",
    "Node",
    "ResidualBlock",
    "ResidualStream",
    "ResidualStructure",
    "Weight",
    "children",
    "einsum_fans",
    "layer_weights",
    "model_graph",
    "own_variables",
    "residual_blocks",
    "residual_stream",
    "residual_structure",
    "sample_inputs",
    "walk",
    "weight_fans",
]
