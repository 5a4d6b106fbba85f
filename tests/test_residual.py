"""Residual structure (keras_inits.model.residual) and the residual schemes of reinitialize."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from keras_inits import reinitialize
from keras_inits.backend import current
from keras_inits.model import layer_weights, model_graph, residual_blocks, residual_structure, walk

WIDTH = 6
BLOCKS = 3
SEED = 3
IDENTITY_TOLERANCE = 1e-6
FACTOR_TOLERANCE = 1e-6

layers = keras.layers


def values(variable) -> np.ndarray:
    return np.asarray(current().to_numpy(variable))


def resnet() -> keras.Model:
    """Two blocks: an identity skip, then a projection shortcut (a strided 1x1 conv)."""
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same", name="stem")(inputs)
    y = layers.Conv2D(4, 3, padding="same", activation="relu", name="b0_conv1")(x)
    y = layers.Conv2D(4, 3, padding="same", name="b0_conv2")(y)
    x = layers.Add(name="b0_add")([x, y])
    x = layers.ReLU(name="b0_relu")(x)
    shortcut = layers.Conv2D(8, 1, strides=2, name="b1_proj")(x)
    y = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="b1_conv1")(x)
    y = layers.Conv2D(8, 3, padding="same", name="b1_conv2")(y)
    x = layers.Add(name="b1_add")([shortcut, y])
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, layers.Dense(3, name="head")(x), name="resnet")


def nested() -> keras.Model:
    """Two nested Functional blocks whose merge is a ``+`` of the graph (an ``Add`` operation)."""

    def block(index: int) -> keras.Model:
        inputs = keras.Input((WIDTH,))
        hidden = layers.Dense(WIDTH, activation="relu", name="fc1")(inputs)
        hidden = layers.Dense(WIDTH, name="fc2")(hidden)
        return keras.Model(inputs, inputs + hidden, name=f"block{index}")

    inputs = keras.Input((WIDTH,))
    x = block(0)(inputs)
    x = block(1)(x)
    return keras.Model(inputs, layers.Dense(2, name="head")(x), name="nested")


class MLPBlock(layers.Layer):
    """``x + fc2(relu(fc1(x)))``, the ``+`` inside ``call``."""

    def __init__(self, width: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.fc1 = layers.Dense(width, activation="relu", name="fc1")
        self.fc2 = layers.Dense(width, name="fc2")

    def call(self, x):
        return x + self.fc2(self.fc1(x))


class ResidualMLP(keras.Model):
    """A stem, :data:`BLOCKS` subclassed residual blocks, a head."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.stem = layers.Dense(WIDTH, name="stem")
        self.residual_blocks = [MLPBlock(WIDTH, name=f"block{index}") for index in range(BLOCKS)]
        self.head = layers.Dense(2, name="head")

    def call(self, x):
        x = self.stem(x)
        for block in self.residual_blocks:
            x = block(x)
        return self.head(x)


def residual_mlp() -> keras.Model:
    model = ResidualMLP(name="residual_mlp")
    model(keras.ops.ones((2, WIDTH)))
    return model


def encoder(num_layers: int = 2) -> keras.Model:
    """A post-norm transformer encoder of keras layers: attention and feed-forward merges."""
    inputs = keras.Input((4, 8))
    x = inputs
    for index in range(num_layers):
        attended = layers.MultiHeadAttention(num_heads=2, key_dim=4, name=f"attention{index}")(x, x)
        x = layers.Add(name=f"attention_add{index}")([x, attended])
        x = layers.LayerNormalization(name=f"attention_norm{index}")(x)
        hidden = layers.Dense(16, activation="relu", name=f"ffn_in{index}")(x)
        hidden = layers.Dense(8, name=f"ffn_out{index}")(hidden)
        x = layers.Add(name=f"ffn_add{index}")([x, hidden])
        x = layers.LayerNormalization(name=f"ffn_norm{index}")(x)
    return keras.Model(inputs, x, name="encoder")


def plain_mlp() -> keras.Model:
    return keras.Sequential(
        [keras.Input((WIDTH,)), layers.Dense(WIDTH, activation="relu"), layers.Dense(2)], name="plain"
    )


def gpt2():
    import keras_hub

    return keras_hub.models.GPT2Backbone(
        vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32, max_sequence_length=16
    )


def bert():
    import keras_hub

    return keras_hub.models.BertBackbone(
        vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32, max_sequence_length=16
    )


def summary(blocks) -> list[tuple]:
    return [(block.index, block.merge, block.container, block.branch, block.skip, block.m) for block in blocks]


# --------------------------------------------------------------------------------------
# The structure
# --------------------------------------------------------------------------------------


def test_resnet_identity_and_projection_shortcut():
    structure = residual_structure(resnet())
    assert summary(structure.blocks) == [
        (0, "b0_add", None, ("b0_conv1", "b0_conv2"), (), 2),
        (1, "b1_add", None, ("b1_conv1", "b1_conv2"), ("b1_proj",), 2),
    ]
    assert [block.last_kernel.path for block in structure.blocks] == ["b0_conv2/kernel", "b1_conv2/kernel"]
    assert [block.last_layer for block in structure.blocks] == ["b0_conv2", "b1_conv2"]
    assert structure.classifier == "head"
    assert [weight.path for weight in structure.classifier_weights] == ["head/kernel", "head/bias"]


def test_nested_blocks_with_a_graph_add_operation():
    blocks = residual_blocks(nested())
    assert [(block.index, block.container, block.branch, block.skip, block.m) for block in blocks] == [
        (0, "block0", ("block0/fc1", "block0/fc2"), (), 2),
        (1, "block1", ("block1/fc1", "block1/fc2"), (), 2),
    ]
    assert [block.merge.split("/")[0] for block in blocks] == ["block0", "block1"]
    assert all(block.merge.split("/")[1].startswith("add") for block in blocks)
    assert [block.last_kernel.path for block in blocks] == ["block0/fc2/kernel", "block1/fc2/kernel"]


def test_subclassed_blocks_found_by_value():
    structure = residual_structure(residual_mlp())
    assert summary(structure.blocks) == [
        (index, f"block{index}/+0", f"block{index}", (f"block{index}/fc1", f"block{index}/fc2"), (), 2)
        for index in range(BLOCKS)
    ]
    assert structure.classifier == "head"


class ProjectionBlock(layers.Layer):
    """``proj(x) + fc2(relu(fc1(x)))`` with the relu and the ``+`` as bare ops of ``call``."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.proj = layers.Dense(WIDTH, name="proj")
        self.fc1 = layers.Dense(WIDTH, name="fc1")
        self.fc2 = layers.Dense(WIDTH, name="fc2")

    def call(self, x):
        shortcut = self.proj(x)
        return shortcut + self.fc2(keras.ops.relu(self.fc1(x)))


def test_subclassed_projection_shortcut_with_a_bare_relu():
    model = keras.Sequential([keras.Input((4,)), ProjectionBlock(name="block"), layers.Dense(2, name="head")])
    structure = residual_structure(model)
    assert summary(structure.blocks) == [(0, "block/+0", "block", ("block/fc1", "block/fc2"), ("block/proj",), 2)]
    assert structure.classifier == "head"


def test_encoder_attention_and_feed_forward_branches():
    blocks = residual_blocks(encoder())
    assert [(block.merge, block.attention, block.m) for block in blocks] == [
        ("attention_add0", True, 4),
        ("ffn_add0", False, 2),
        ("attention_add1", True, 4),
        ("ffn_add1", False, 2),
    ]
    assert [weight.path for weight in blocks[0].kernels] == [
        f"attention0/{name}/kernel" for name in ("query", "key", "value", "attention_output")
    ]
    assert blocks[1].branch == ("ffn_in0", "ffn_out0")
    assert blocks[0].branch[0] == "attention0"


def test_no_merges_in_a_plain_model():
    structure = residual_structure(plain_mlp())
    assert structure.blocks == ()
    assert structure.classifier is None


def test_gpt2_backbone_two_merges_per_layer():
    structure = residual_structure(gpt2())
    attention_leaves = ("query", "key", "value")
    expected = []
    for layer in range(2):
        prefix = f"transformer_layer_{layer}"
        expected.append((2 * layer, f"{prefix}/+0", prefix, 4, f"{prefix}/self_attention/attention_output/kernel"))
        expected.append((2 * layer + 1, f"{prefix}/+1", prefix, 2, f"{prefix}/feedforward_output_dense/kernel"))
    assert [
        (block.index, block.merge, block.container, block.m, block.last_kernel.path) for block in structure.blocks
    ] == expected
    first, second = structure.blocks[:2]
    assert first.branch[:5] == (
        "transformer_layer_0/self_attention_layer_norm",
        "transformer_layer_0/self_attention",
        *(f"transformer_layer_0/self_attention/{leaf}" for leaf in attention_leaves),
    )
    assert first.branch[-2:] == (
        "transformer_layer_0/self_attention/attention_output",
        "transformer_layer_0/self_attention_dropout",
    )
    assert second.branch == tuple(
        f"transformer_layer_0/feedforward_{name}"
        for name in ("layer_norm", "intermediate_dense", "output_dense", "dropout")
    )
    assert [block.attention for block in structure.blocks] == [True, False, True, False]
    assert structure.classifier is None


def test_bert_backbone_post_norm_merges():
    structure = residual_structure(bert())
    assert [(block.merge, block.m, block.last_kernel.path) for block in structure.blocks] == [
        ("transformer_layer_0/+0", 4, "transformer_layer_0/self_attention_layer/attention_output/kernel"),
        ("transformer_layer_0/+1", 2, "transformer_layer_0/feedforward_output_dense/kernel"),
        ("transformer_layer_1/+0", 4, "transformer_layer_1/self_attention_layer/attention_output/kernel"),
        ("transformer_layer_1/+1", 2, "transformer_layer_1/feedforward_output_dense/kernel"),
    ]
    assert structure.blocks[1].branch == tuple(
        f"transformer_layer_0/feedforward_{name}" for name in ("intermediate_dense", "output_dense", "dropout")
    )
    assert structure.classifier == "pooled_dense"


def test_keras_hub_encoder_decoder_layers_three_merges_in_the_decoder():
    import keras_hub

    encoder_inputs = keras.Input((4, 8))
    decoder_inputs = keras.Input((4, 8))
    encoded = keras_hub.layers.TransformerEncoder(16, 2, name="enc")(encoder_inputs)
    decoded = keras_hub.layers.TransformerDecoder(16, 2, name="dec")(decoder_inputs, encoded)
    model = keras.Model([encoder_inputs, decoder_inputs], layers.Dense(3, name="head")(decoded))
    structure = residual_structure(model)
    assert [(block.merge, block.m, block.attention, block.last_kernel.path) for block in structure.blocks] == [
        ("enc/+0", 4, True, "enc/self_attention_layer/attention_output/kernel"),
        ("enc/+1", 2, False, "enc/feedforward_output_dense/kernel"),
        ("dec/+0", 4, True, "dec/self_attention/attention_output/kernel"),
        ("dec/+1", 2, True, "dec/cross_attention/attention_output/kernel"),
        ("dec/+2", 2, False, "dec/feedforward_output_dense/kernel"),
    ]
    # cross attention: key and value project the encoder's output, not the decoder's stream
    assert [weight.path for weight in structure.blocks[3].kernels] == [
        "dec/cross_attention/query/kernel",
        "dec/cross_attention/attention_output/kernel",
    ]
    assert structure.classifier == "head"


# --------------------------------------------------------------------------------------
# The schemes: each weight read back against a draw from the same seed without the scheme
# --------------------------------------------------------------------------------------


def scheme_against_plain(build, expected: dict[str, float], **arguments):
    """Draw without and with a scheme from one seed; check each weight's factor; return the report."""
    model = build()
    reinitialize(model, seed=SEED)
    plain = {weight.path: values(weight.variable).copy() for weight in _all_weights(model)}
    report = reinitialize(model, seed=SEED, **arguments)
    after = {weight.path: values(weight.variable) for weight in _all_weights(model)}
    for path, before in plain.items():
        factor = expected.get(path, 1.0)
        if factor == 0.0:
            assert not np.any(after[path]), path
        elif factor == 1.0:
            np.testing.assert_array_equal(after[path], before, err_msg=path)
        else:
            np.testing.assert_allclose(after[path], before * factor, rtol=FACTOR_TOLERANCE, err_msg=path)
            assert np.any(before), path
    assert set(report.residual) == set(expected)
    for path, factor in expected.items():
        assert report.residual[path].factor == pytest.approx(factor, rel=1e-12)
        assert report.residual[path].action == ("zeroed" if factor == 0.0 else "scaled")
    return report


def _all_weights(model):
    """Every weight of the model with its graph path, without a forward pass."""
    return [weight for path, layer in walk(model).items() for weight in layer_weights(layer, path)]


def test_fixup_rule_on_the_residual_mlp():
    factor = BLOCKS ** (-1.0 / (2 * 2 - 2))
    expected = {f"block{index}/fc2/kernel": 0.0 for index in range(BLOCKS)}
    expected.update({f"block{index}/fc1/kernel": factor for index in range(BLOCKS)})
    expected.update({"head/kernel": 0.0, "head/bias": 0.0})
    report = scheme_against_plain(residual_mlp, expected, residual="fixup")
    assert report.residual["block1/fc1/kernel"].blocks == (1,)
    assert report.residual["head/bias"].blocks == ()


def test_fixup_on_the_resnet_keeps_the_projection():
    factor = 2 ** (-1.0 / 2)
    expected = {"b0_conv2/kernel": 0.0, "b1_conv2/kernel": 0.0}
    expected.update({"b0_conv1/kernel": factor, "b1_conv1/kernel": factor})
    expected.update({"head/kernel": 0.0, "head/bias": 0.0})
    scheme_against_plain(resnet, expected, residual="fixup")


def test_zero_rule():
    expected = {f"block{index}/fc2/kernel": 0.0 for index in range(2)}
    scheme_against_plain(nested, expected, residual="zero")


def test_depth_scaled_rule_and_factor():
    last = ("ffn_out0", "attention0/attention_output", "ffn_out1", "attention1/attention_output")
    expected = {f"{path}/kernel": 1.0 / math.sqrt(4) for path in last}
    scheme_against_plain(encoder, expected, residual="depth_scaled")
    expected = {f"{path}/kernel": 0.3 for path in last}
    scheme_against_plain(encoder, expected, residual="depth_scaled", residual_factor=0.3)


def test_deepnet_rule():
    beta = (8 * 2) ** (-0.25)
    expected = {}
    for index in range(2):
        attention = (f"attention{index}/value", f"attention{index}/attention_output")
        for path in (*attention, f"ffn_in{index}", f"ffn_out{index}"):
            expected[f"{path}/kernel"] = beta
    report = scheme_against_plain(encoder, expected, residual="deepnet")
    assert "attention0/query/kernel" not in report.residual


def test_depth_scaled_and_deepnet_on_gpt2():
    last = [
        f"transformer_layer_{layer}/{name}/kernel"
        for layer in range(2)
        for name in ("self_attention/attention_output", "feedforward_output_dense")
    ]
    scheme_against_plain(gpt2, {path: 1.0 / math.sqrt(4) for path in last}, residual="depth_scaled")
    beta = (8 * 2) ** (-0.25)
    scaled = [
        f"transformer_layer_{layer}/{name}/kernel"
        for layer in range(2)
        for name in (
            "self_attention/value",
            "self_attention/attention_output",
            "feedforward_intermediate_dense",
            "feedforward_output_dense",
        )
    ]
    scheme_against_plain(gpt2, {path: beta for path in scaled}, residual="deepnet")


def test_fixup_blocks_compute_their_skip_path():
    model = residual_mlp()
    reinitialize(model, seed=SEED, residual="fixup")
    x = np.random.default_rng(0).standard_normal((4, WIDTH)).astype("float32")
    stream = model.stem(x)
    for block in model.residual_blocks:
        output = block(stream)
        np.testing.assert_allclose(values(output), values(stream), atol=IDENTITY_TOLERANCE, rtol=0)
        stream = output
    assert not np.any(values(model(x)))


def test_method_none_applies_only_the_scheme_to_the_weights_as_built(monkeypatch):
    model = encoder()
    before = {weight.path: values(weight.variable).copy() for weight in _all_weights(model)}
    broadcast: list = []
    monkeypatch.setattr(current(), "broadcast_from_chief", lambda variables: broadcast.extend(variables))
    report = reinitialize(model, None, residual="depth_scaled")
    last = {f"{path}/kernel" for path in ("ffn_out0", "attention0/attention_output", "ffn_out1", "attention1/attention_output")}
    for weight in _all_weights(model):
        factor = 0.5 if weight.path in last else 1.0  # 1 / sqrt(L), L = 4 merges
        np.testing.assert_allclose(values(weight.variable), before[weight.path] * factor, rtol=FACTOR_TOLERANCE, atol=0)
    assert set(report.residual) == last
    assert dict(report) == {}
    kernels = {path for path in before if path.endswith("/kernel")}
    assert kernels <= {path for path, entry in report.skipped.items() if entry.reason.startswith("method=None")}
    assert {id(variable) for variable in broadcast} == {
        id(weight.variable) for weight in _all_weights(model) if weight.path in last
    }


def test_method_none_needs_a_scheme():
    with pytest.raises(ValueError, match=r"Received: method=None, residual=None"):
        reinitialize(encoder(), None)


def test_no_scheme_leaves_a_plain_model_as_before():
    model = plain_mlp()
    reinitialize(model, seed=SEED)
    before = [values(weight).copy() for weight in model.weights]
    report = reinitialize(model, seed=SEED, residual=None)
    for weight, value in zip(model.weights, before):
        np.testing.assert_array_equal(values(weight), value)
    assert report.residual == {}
    assert report.structure is None


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------


def test_unknown_scheme():
    with pytest.raises(ValueError, match=r"Received: residual='rezero'"):
        reinitialize(residual_mlp(), residual="rezero")


def test_scheme_on_a_model_without_merges():
    model = plain_mlp()
    before = [values(weight).copy() for weight in model.weights]
    with pytest.raises(ValueError, match=r"'plain' has none\. Received: residual='fixup'"):
        reinitialize(model, residual="fixup")
    for weight, value in zip(model.weights, before):
        np.testing.assert_array_equal(values(weight), value)


def test_deepnet_needs_attention():
    with pytest.raises(ValueError, match=r"'residual_mlp' has none\. Received: residual='deepnet'"):
        reinitialize(residual_mlp(), residual="deepnet")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (dict(residual="depth_scaled", residual_factor=-0.5), r"Received: residual_factor=-0\.5"),
        (dict(residual="depth_scaled", residual_factor=0), r"Received: residual_factor=0"),
        (dict(residual="fixup", residual_factor=0.5), r"Received: residual_factor=0\.5 with residual='fixup'"),
        (dict(residual_factor=0.5), r"Received: residual_factor=0\.5 with residual=None"),
    ],
)
def test_bad_residual_factor(arguments, message):
    with pytest.raises(ValueError, match=message):
        reinitialize(residual_mlp(), **arguments)


def test_residual_factor_type():
    with pytest.raises(TypeError, match=r"Received: residual_factor='0\.5'"):
        reinitialize(residual_mlp(), residual="depth_scaled", residual_factor="0.5")


def test_scheme_changed_weights_are_broadcast(monkeypatch):
    model = residual_mlp()
    broadcast: list = []
    monkeypatch.setattr(current(), "broadcast_from_chief", lambda variables: broadcast.extend(variables))
    report = reinitialize(model, seed=SEED, residual="fixup")
    sent = {id(variable) for variable in broadcast}
    weights = model_graph(model).weights()
    changed = {weight.path: weight.variable for weight in weights if weight.path in report.residual}
    assert set(changed) == set(report.residual)
    assert all(id(variable) in sent for variable in changed.values())
    assert len(sent) == len(broadcast) == len(report.drawn) + 1  # the kernels, and the head's bias
