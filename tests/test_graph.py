"""model/graph.py: paths, data-flow order, weight roles, fans and feeding activations."""

from __future__ import annotations

import keras
import keras_hub
import numpy as np
import pytest

import keras_inits
from keras_inits.model import graph as model_graph_module
from keras_inits.model import einsum_fans, layer_weights, model_graph, walk, weight_fans


def roles(node) -> list[tuple[str, str]]:
    return [(weight.path, weight.role) for weight in node.weights]


def feeding_of(graph) -> dict[str, object]:
    return {path: node.feeding.activation for path, node in graph.nodes.items()}


def test_sequential_paths_order_kinds_and_roles():
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8, activation="tanh", name="a"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.Dropout(0.5, name="drop"),
            keras.layers.Dense(3, name="b"),
        ]
    )
    graph = model_graph(model)
    assert list(graph.nodes) == ["a", "bn", "drop", "b"]
    assert [graph[path].kind for path in graph] == ["layer", "normalization", "layer", "layer"]
    assert roles(graph["a"]) == [("a/kernel", "kernel"), ("a/bias", "bias")]
    assert roles(graph["bn"]) == [
        ("bn/gamma", "gamma"),
        ("bn/beta", "beta"),
        ("bn/moving_mean", "other"),
        ("bn/moving_variance", "other"),
    ]
    assert graph["a"].weights[0].fans == (6, 8)
    assert feeding_of(graph) == {"a": "linear", "bn": "tanh", "drop": "linear", "b": "linear"}
    assert graph["b"].inputs == ("drop",)
    assert graph["b"].feeding.source == "bn"
    assert all(node.calls == 1 for node in graph.nodes.values())


def test_functional_branches_merges_and_graph_ops():
    inputs = keras.Input((4,))
    left = keras.layers.Dense(4, activation="tanh", name="left")(inputs)
    right = keras.layers.Dense(4, activation="tanh", name="right")(inputs)
    other = keras.layers.Dense(4, name="other")(inputs)
    agreed = keras.layers.Add(name="add")([left, right])
    mixed = keras.layers.Concatenate(name="concat")([left, other])
    relu_op = keras.ops.relu(other)  # an op of the Functional graph, not a layer
    outputs = [
        keras.layers.Dense(2, name="after_add")(agreed),
        keras.layers.Dense(2, name="after_concat")(mixed),
        keras.layers.Dense(2, name="after_op")(relu_op),
    ]
    graph = model_graph(keras.Model(inputs, outputs))
    assert graph["add"].kind == "merge"
    assert graph["add"].inputs == ("left", "right")
    assert graph["concat"].inputs == ("left", "other")
    found = feeding_of(graph)
    assert found["after_add"] == "tanh"
    assert found["after_concat"] == "linear"
    assert found["after_op"] == "relu"
    order = list(graph.nodes)
    assert order.index("left") < order.index("add") < order.index("after_add")


def test_nested_model_paths_and_container_output_activation():
    inner = keras.Sequential(
        [keras.Input((5,)), keras.layers.Dense(5, name="d"), keras.layers.Activation("selu", name="act")],
        name="inner",
    )
    model = keras.Sequential([keras.Input((5,)), inner, keras.layers.Dense(2, name="head")])
    graph = model_graph(model)
    assert list(graph.nodes) == ["inner", "inner/d", "inner/act", "head"]
    assert graph["inner"].kind == "container"
    assert graph["inner"].children == ("inner/d", "inner/act")
    assert graph["inner/d"].parent == "inner"
    assert graph["inner"].output_activation.activation == "selu"
    assert graph["head"].feeding.activation == "selu"
    assert graph["head"].inputs == ("inner",)
    assert list(walk(model)) == ["inner", "inner/d", "inner/act", "head"]


class _Block(keras.layers.Layer):
    """Owns two sub-layers of one name; assigned in the reverse of the call order."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.second = keras.layers.Dense(4, name="d")
        self.first = keras.layers.Dense(4, activation="elu", name="d")

    def call(self, x):
        return self.second(self.first(x))


class _Net(keras.Model):
    def __init__(self):
        super().__init__()
        self.head = keras.layers.Dense(2, name="head")
        self.block = _Block(name="blk")
        self.act = keras.layers.Activation("sigmoid", name="act")

    def call(self, x):
        return self.head(self.act(self.block(x)))


def test_subclassed_model_is_ordered_by_data_flow_not_by_attributes():
    model = _Net()
    model(np.zeros((1, 4), "float32"))
    assert list(walk(model)) == ["head", "blk", "blk/d", "blk/d#1", "act"]
    graph = model_graph(model)
    assert list(graph.nodes) == ["blk", "blk/d#1", "blk/d", "act", "head"]
    assert graph["blk/d"].inputs == ("blk/d#1",)
    assert graph["blk/d"].feeding.activation == "elu"
    assert graph["head"].feeding.activation == "sigmoid"
    assert roles(graph["blk/d#1"]) == [("blk/d#1/kernel", "kernel"), ("blk/d#1/bias", "bias")]


def test_trace_restores_every_call_and_handles_unused_layers():
    class WithSpare(keras.Model):
        def __init__(self):
            super().__init__()
            self.used = keras.layers.Dense(3, name="used")
            self.spare = keras.layers.Dense(3, name="spare")

        def call(self, x):
            return self.used(x)

    model = WithSpare()
    model(np.zeros((2, 3), "float32"))
    model.spare.build((None, 3))
    graph = model_graph(model, np.ones((2, 3), "float32"))
    assert list(graph.nodes) == ["used", "spare"]
    assert (graph["used"].calls, graph["spare"].calls) == (1, 0)
    assert all("call" not in vars(layer) for layer in [model, model.used, model.spare])


def test_attention_projections_einsum_fans_and_unseen_ops_are_linear():
    inputs = keras.Input((6, 16))
    attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=8, name="mha")
    attended = attention(inputs, inputs)
    model = keras.Model(inputs, keras.layers.Dense(4, name="head")(attended))
    graph = model_graph(model)
    projections = {
        node.path: [(weight.role, weight.fans) for weight in node.weights if weight.is_kernel]
        for node in graph.nodes.values()
        if node.parent == "mha" and node.weights
    }
    assert projections == {
        "mha/query": [("attention_query", (16, 16))],
        "mha/key": [("attention_key", (16, 16))],
        "mha/value": [("attention_value", (16, 16))],
        "mha/attention_output": [("attention_output", (16, 16))],
    }
    # softmax(Q K) V is an einsum the trace cannot see: the output projection counts as fed
    # by a linear tensor, not by the Softmax layer that ran just before it.
    assert graph["mha/attention_output"].feeding.activation == "linear"
    assert graph["mha/attention_output"].inputs == (None,)
    assert graph["head"].feeding.source == "mha/attention_output"


def test_feeding_after_a_transformer_encoder_is_its_output_not_its_activation_attribute():
    inputs = keras.Input((4, 16))
    encoder = keras_hub.layers.TransformerEncoder(intermediate_dim=32, num_heads=2, activation="gelu", name="enc")
    outputs = keras.layers.Dense(3, name="head")(encoder(inputs))
    graph = model_graph(keras.Model(inputs, outputs))
    assert graph["enc"].kind == "container"
    assert graph["enc/feedforward_output_dense"].feeding.activation == "gelu"
    assert graph["head"].feeding.activation == "linear"
    assert graph["head"].feeding.source == "enc/feedforward_layer_norm"


def test_recurrent_leaves_report_their_cells_weights_as_gates():
    model = keras.Sequential(
        [
            keras.Input((5, 3)),
            keras.layers.Bidirectional(keras.layers.LSTM(4, name="lstm"), name="bi"),
            keras.layers.Dense(2, name="head"),
        ]
    )
    graph = model_graph(model)
    assert list(graph.nodes) == ["bi", "head"]
    node = graph["bi"]
    assert node.kind == "recurrent" and node.children == ()
    summary = [(weight.path, weight.role, weight.layout, weight.gates, weight.fans) for weight in node.weights]
    forward = f"bi/forward_lstm/{model.layers[0].forward_layer.cell.name}"
    backward = f"bi/backward_lstm/{model.layers[0].backward_layer.cell.name}"
    assert summary == [
        (f"{forward}/kernel", "kernel", "gates", 4, (3, 4)),
        (f"{forward}/recurrent_kernel", "recurrent_kernel", "gates", 4, (4, 4)),
        (f"{forward}/bias", "bias", None, 1, None),
        (f"{backward}/kernel", "kernel", "gates", 4, (3, 4)),
        (f"{backward}/recurrent_kernel", "recurrent_kernel", "gates", 4, (4, 4)),
        (f"{backward}/bias", "bias", None, 1, None),
    ]
    assert node.output_activation.activation == "tanh"
    assert graph["head"].feeding.activation == "tanh"


def test_fans_of_depthwise_separable_transpose_conv3d_einsum_and_embeddings():
    def built(layer, shape):
        layer.build(shape)
        return {weight.role: (weight.fans, weight.series) for weight in layer_weights(layer, "x")}

    assert built(keras.layers.DepthwiseConv2D(3, depth_multiplier=2), (None, 8, 8, 5)) == {
        "depthwise_kernel": ((9, 18), 0),
        "bias": (None, 0),
    }
    assert built(keras.layers.SeparableConv2D(7, 3), (None, 8, 8, 5)) == {
        "depthwise_kernel": ((9, 9), 0),
        "pointwise_kernel": ((5, 7), 1),
        "bias": (None, 0),
    }
    assert built(keras.layers.Conv2DTranspose(6, 3), (None, 8, 8, 4)) == {
        "kernel": ((36, 54), 0),
        "bias": (None, 0),
    }
    assert built(keras.layers.Conv3D(6, 2), (None, 4, 4, 4, 3)) == {"kernel": ((24, 48), 0), "bias": (None, 0)}
    assert built(keras.layers.EinsumDense("abc,cde->abde", (4, 2, 5)), (None, 4, 6)) == {"kernel": ((6, 10), 0)}
    assert built(keras.layers.Embedding(50, 12), (None, 3)) == {"embeddings": ((1, 12), 0)}
    assert einsum_fans("ab,bc->ac", (7, 3)) == (7, 3)
    assert einsum_fans("abcd,cde->abe", (2, 8, 16)) == (16, 16)
    assert einsum_fans("...b,bc->...c", (5, 4)) == (5, 4)
    assert einsum_fans("abc,bcd->acd", (3, 4, 5)) == (3, 5)  # c is shared: an independent block
    assert weight_fans((10, 3 * 6), "gates", gates=3) == (10, 6)


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="Received: equation='ab->b'"):
        einsum_fans("ab->b", (2, 3))
    with pytest.raises(ValueError, match=r"Received: kernel_shape=\(2, 3, 4\)"):
        einsum_fans("ab,bc->ac", (2, 3, 4))
    with pytest.raises(ValueError, match="Received: layout='diagonal'"):
        weight_fans((3, 3), "diagonal")
    with pytest.raises(ValueError, match="Received: gates=5"):
        weight_fans((3, 12), "gates", gates=5)
    with pytest.raises(ValueError, match="not built"):
        model_graph(keras.Sequential([keras.layers.Dense(2)]))
    with pytest.raises(TypeError, match="Received: model=3"):
        model_graph(3)


def test_sample_inputs_fill_open_dimensions_and_integer_inputs():
    token_ids = keras.Input((None,), dtype="int32", name="token_ids")
    features = keras.Input((3,), name="features")
    batch = model_graph_module.sample_inputs(keras.Model({"token_ids": token_ids, "features": features}, features))
    assert batch["token_ids"].shape == (model_graph_module.SAMPLE_BATCH_SIZE, model_graph_module.OPEN_DIMENSION_SIZE)
    assert batch["token_ids"].dtype == np.int32 and (batch["token_ids"] == 1).all()
    assert batch["features"].dtype == np.float32


def test_a_model_of_embeddings_only_is_monitored_by_default():
    model = keras.Sequential([keras.Input((5,), dtype="int32"), keras.layers.Embedding(20, 8, name="emb")])
    ids = np.arange(10, dtype="int32").reshape(2, 5)
    statistics = keras_inits.activation_statistics(model, ids)
    assert list(statistics) == ["emb"]
