"""Configs, Keras (de)serialization and saved models of the keras_inits initializers.

A `.keras` file is written here and loaded in another Python process, which is what a user
does; that process must `import keras_inits` first (tested both ways).
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from custom_activation_helper import scaled_tanh
from keras_inits import Dirac, He, ScaledRandom, Sparse, Xavier, backend

# Keras's own saving code calls np.array(tensor) (keras/src/backend/tensorflow/core.py), which
# NumPy 2 flags; nothing of ours.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)

TESTS_DIR = Path(__file__).resolve().parent
SUBPROCESS_TIMEOUT_S = 240

# Every class with non-default arguments (Sparse twice: by connections and by sparsity).
NON_DEFAULT = {
    "He": lambda: He(
        "gelu",
        mode="fan_out",
        distribution="uniform",
        seed=3,
        activation_kwargs={"approximate": True},
        layout="depthwise",
    ),
    "Xavier": lambda: Xavier(
        "leaky_relu",
        distribution="truncated_normal",
        seed=4,
        activation_kwargs={"negative_slope": 0.1},
        layout="transpose",
    ),
    "Sparse-connections": lambda: Sparse(
        connections=3, activation="tanh", std=0.2, seed=5, layout="transpose"
    ),
    "Sparse-sparsity": lambda: Sparse(
        sparsity=0.8, activation="leaky_relu", seed=6, activation_kwargs={"negative_slope": 0.3}
    ),
    "Dirac": lambda: Dirac(gain=2.5),
    "ScaledRandom": lambda: ScaledRandom(scale=0.2, distribution="truncated_normal", seed=7),
}
EXPECTED_CONFIGS = {
    "He": {
        "activation": "gelu",
        "mode": "fan_out",
        "distribution": "uniform",
        "seed": 3,
        "activation_kwargs": {"approximate": True},
        "layout": "depthwise",
    },
    "Xavier": {
        "activation": "leaky_relu",
        "distribution": "truncated_normal",
        "seed": 4,
        "activation_kwargs": {"negative_slope": 0.1},
        "layout": "transpose",
    },
    "Sparse-connections": {
        "sparsity": None,
        "connections": 3,
        "activation": "tanh",
        "std": 0.2,
        "seed": 5,
        "activation_kwargs": {},
        "layout": "transpose",
    },
    "Sparse-sparsity": {
        "sparsity": 0.8,
        "connections": None,
        "activation": "leaky_relu",
        "std": None,
        "seed": 6,
        "activation_kwargs": {"negative_slope": 0.3},
        "layout": "standard",
    },
    "Dirac": {"gain": 2.5},
    "ScaledRandom": {"scale": 0.2, "distribution": "truncated_normal", "seed": 7},
}
KERNEL_SHAPE = (3, 3, 4, 5)


def values_of(initializer, shape=KERNEL_SHAPE) -> np.ndarray:
    return backend.current().to_numpy(initializer(shape))


# The attributes under which Keras layers keep their main kernel's initializer.
INITIALIZER_ATTRIBUTES = ("kernel_initializer", "depthwise_initializer")


def kernel_initializer_configs(model) -> dict:
    """{layer name: serialized kernel (or depthwise kernel) initializer} of every layer."""
    configs = {}
    for layer in model.layers:
        for attribute in INITIALIZER_ATTRIBUTES:
            initializer = getattr(layer, attribute, None)
            if initializer is not None:
                configs[layer.name] = keras.initializers.serialize(initializer)
                break
    return configs


# ----------------------------------------------------------------------------------------------
# get_config / from_config / keras.initializers.
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(NON_DEFAULT))
def test_get_config_holds_every_constructor_argument(name):
    initializer = NON_DEFAULT[name]()
    config = initializer.get_config()
    parameters = set(inspect.signature(type(initializer).__init__).parameters) - {"self"}
    assert set(config) == parameters
    assert config == EXPECTED_CONFIGS[name]
    json.dumps(config)


@pytest.mark.parametrize("name", sorted(NON_DEFAULT))
def test_from_config_gives_equal_config_and_values(name):
    initializer = NON_DEFAULT[name]()
    rebuilt = type(initializer).from_config(initializer.get_config())
    assert rebuilt.get_config() == initializer.get_config()
    np.testing.assert_array_equal(values_of(rebuilt), values_of(initializer))


@pytest.mark.parametrize("name", sorted(NON_DEFAULT))
def test_keras_serialize_deserialize_and_get(name):
    initializer = NON_DEFAULT[name]()
    serialized = keras.initializers.serialize(initializer)
    cls_name = type(initializer).__name__
    assert serialized["registered_name"] == f"keras_inits>{cls_name}"
    for rebuilt in (
        keras.initializers.deserialize(serialized),
        keras.initializers.get(serialized),
        keras.initializers.deserialize(json.loads(json.dumps(serialized))),
    ):
        assert type(rebuilt) is type(initializer)
        assert rebuilt.get_config() == initializer.get_config()
        np.testing.assert_array_equal(values_of(rebuilt), values_of(initializer))


@pytest.mark.parametrize("cls", [He, Xavier, Dirac, ScaledRandom])
def test_get_by_registered_name(cls):
    initializer = keras.initializers.get(f"keras_inits>{cls.__name__}")
    assert type(initializer) is cls
    assert initializer.get_config() == cls().get_config()


def test_dense_with_registered_name_string():
    layer = keras.layers.Dense(4, kernel_initializer="keras_inits>He")
    layer.build((None, 6))
    assert type(layer.kernel_initializer) is He
    assert tuple(layer.kernel.shape) == (6, 4)
    assert layer.get_config()["kernel_initializer"]["registered_name"] == "keras_inits>He"


def test_seed_generator_seed_round_trips():
    initializer = He(seed=keras.random.SeedGenerator(17, name="he_seed"))
    config = initializer.get_config()
    assert config["seed"]["class_name"] == "SeedGenerator"
    assert config["seed"]["config"] == {"seed": 17, "name": "he_seed"}
    rebuilt = He.from_config(json.loads(json.dumps(config)))
    assert rebuilt.get_config() == config
    twin = He(seed=keras.random.SeedGenerator(17))
    np.testing.assert_array_equal(values_of(rebuilt), values_of(twin))


def test_dirac_keeps_gain_unlike_keras_identity():
    ours = Dirac.from_config(Dirac(gain=3.0).get_config())
    assert ours.gain == 3.0
    np.testing.assert_array_equal(values_of(ours, (3, 3)), 3.0 * np.eye(3))


def test_keras_activation_function_serialized_as_its_name():
    initializer = He(keras.activations.gelu, activation_kwargs={"approximate": True}, seed=1)
    config = initializer.get_config()
    assert config["activation"] == "gelu"
    rebuilt = He.from_config(config)
    assert rebuilt.get_config() == config
    assert rebuilt.gain == initializer.gain
    np.testing.assert_array_equal(values_of(rebuilt), values_of(initializer))


def test_linear_activation_none_round_trips():
    config = Xavier(None, seed=1).get_config()
    assert config["activation"] is None
    assert Xavier.from_config(config).forward_gain == 1.0


def test_custom_registered_activation_in_config():
    config = He(scaled_tanh, seed=9).get_config()
    assert config["activation"]["config"] == "keras_inits_tests>scaled_tanh"
    rebuilt = He.from_config(json.loads(json.dumps(config)))
    assert rebuilt.activation is scaled_tanh
    assert rebuilt.gain == pytest.approx(He(scaled_tanh).gain)


def test_unregistered_callable_raises_at_get_config():
    def local_activation(x):
        return keras.ops.tanh(x)

    for activation in (local_activation, lambda x: keras.ops.tanh(x)):
        initializer = He(activation, seed=1)  # usable: it draws fine
        assert tuple(initializer((3, 2)).shape) == (3, 2)
        with pytest.raises(ValueError, match="register_keras_serializable"):
            initializer.get_config()


# ----------------------------------------------------------------------------------------------
# Saved models.
# ----------------------------------------------------------------------------------------------


def build_model_with_every_initializer():
    inputs = keras.Input((6, 6, 4))
    layers = keras.layers
    dirac = Dirac(gain=2.5)
    x = layers.Conv2D(4, 3, padding="same", kernel_initializer=dirac, name="dirac")(inputs)
    sparse = NON_DEFAULT["Sparse-connections"]()  # layout="transpose"
    x = layers.Conv2DTranspose(5, 3, activation="tanh", kernel_initializer=sparse, name="sparse")(x)
    he = NON_DEFAULT["He"]()  # layout="depthwise"
    x = layers.DepthwiseConv2D(3, activation="gelu", depthwise_initializer=he, name="he")(x)
    xavier = NON_DEFAULT["Xavier"]()  # layout="transpose"
    x = layers.Conv2DTranspose(4, 3, kernel_initializer=xavier, name="xavier")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(8, kernel_initializer=He(), name="he_unseeded")(x)
    sparse_dense = NON_DEFAULT["Sparse-sparsity"]()
    x = layers.Dense(8, kernel_initializer=sparse_dense, name="sparse_dense")(x)
    scaled = NON_DEFAULT["ScaledRandom"]()
    outputs = layers.Dense(3, kernel_initializer=scaled, name="scaled")(x)
    return keras.Model(inputs, outputs)


def build_model_with_custom_activation():
    inputs = keras.Input((5,))
    outputs = keras.layers.Dense(
        3, activation=scaled_tanh, kernel_initializer=He(scaled_tanh, seed=9), name="custom"
    )(inputs)
    return keras.Model(inputs, outputs)


BUILDERS = [build_model_with_every_initializer, build_model_with_custom_activation]

LOAD_SCRIPT = """
import json, sys
{imports}
import keras

results = {{}}
for path in sys.argv[1:]:
    model = keras.models.load_model(path, safe_mode=True)
    results[path] = {{}}
    for layer in model.layers:
        for attribute in ("kernel_initializer", "depthwise_initializer"):
            initializer = getattr(layer, attribute, None)
            if initializer is not None:
                results[path][layer.name] = {{
                    "config": keras.initializers.serialize(initializer),
                    "module": type(initializer).__module__,
                }}
                break
print("RESULT " + json.dumps(results))
"""


def run_python(script: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.setdefault("KERAS_BACKEND", "tensorflow")
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    paths = [str(TESTS_DIR)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
        env=env,
    )


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved")
    models = {
        "every": build_model_with_every_initializer(),
        "custom": build_model_with_custom_activation(),
    }
    paths = {}
    for name, model in models.items():
        paths[name] = str(folder / f"{name}.keras")
        model.save(paths[name])
    return models, paths


@pytest.fixture(scope="module")
def loaded_in_other_process(saved_models):
    _, paths = saved_models
    imports = "import keras_inits\nimport custom_activation_helper"
    completed = run_python(LOAD_SCRIPT.format(imports=imports), paths["every"], paths["custom"])
    assert completed.returncode == 0, completed.stderr[-3000:]
    line = next(line for line in completed.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def test_keras_file_loads_in_another_process(saved_models, loaded_in_other_process):
    models, paths = saved_models
    loaded = loaded_in_other_process[paths["every"]]
    expected = kernel_initializer_configs(models["every"])
    assert {name: entry["config"] for name, entry in loaded.items()} == expected
    assert all(entry["module"].startswith("keras_inits.initializers.") for entry in loaded.values())
    assert loaded["dirac"]["config"]["config"] == {"gain": 2.5}
    assert loaded["he_unseeded"]["config"]["config"]["seed"] is None


def test_keras_file_written_by_0_1_loads():
    # tests/data/model_written_by_0.1.keras: saved by keras_inits 0.1 (module
    # "keras_inits.initializers", no `layout`, He's "normal" meaning untruncated).
    model = keras.models.load_model(TESTS_DIR / "data" / "model_written_by_0.1.keras")
    initializers = {
        layer.name: layer.kernel_initializer
        for layer in model.layers
        if getattr(layer, "kernel_initializer", None) is not None
    }
    assert {name: type(value) for name, value in initializers.items()} == {
        "dirac": Dirac,
        "sparse": Sparse,
        "he": He,
        "xavier": Xavier,
        "sparse_dense": Sparse,
        "scaled": ScaledRandom,
    }
    assert initializers["dirac"].gain == 2.5
    assert initializers["sparse"].get_config()["connections"] == 3
    assert initializers["he"].distribution == "untruncated_normal"  # 0.1's "normal"
    assert initializers["he"].layout == "standard"
    assert initializers["xavier"].distribution == "truncated_normal"
    assert initializers["sparse_dense"].sparsity == 0.8
    scaled_config = {"scale": 0.2, "distribution": "normal", "seed": 7}
    assert initializers["scaled"].get_config() == scaled_config
    kernel = model.get_layer("sparse").kernel
    nonzeros = np.count_nonzero(backend.current().to_numpy(kernel).reshape(-1, 5), axis=0)
    np.testing.assert_array_equal(nonzeros, 3)


def test_custom_activation_round_trips_through_keras_file(saved_models, loaded_in_other_process):
    models, paths = saved_models
    loaded = loaded_in_other_process[paths["custom"]]
    expected = kernel_initializer_configs(models["custom"])
    assert {name: entry["config"] for name, entry in loaded.items()} == expected
    activation = loaded["custom"]["config"]["config"]["activation"]
    assert activation["config"] == "keras_inits_tests>scaled_tanh"


def test_keras_file_without_import_keras_inits_fails(saved_models):
    # Keras never imports a plugin while loading: `import keras_inits` must come first. The
    # error (Keras 3.15) is a chain: ValueError "Could not interpret initializer identifier:
    # {... 'registered_name': 'keras_inits>Dirac'}" inside TypeErrors "Error when deserializing
    # class 'Conv2D'" / "<class 'Functional'> could not be deserialized properly".
    _, paths = saved_models
    completed = run_python(LOAD_SCRIPT.format(imports=""), paths["every"])
    assert completed.returncode != 0
    assert "RESULT" not in completed.stdout
    assert "\nTypeError: " in completed.stderr
    assert "Could not interpret initializer identifier" in completed.stderr
    assert "'registered_name': 'keras_inits>" in completed.stderr


@pytest.mark.parametrize("builder", BUILDERS)
def test_h5_round_trip(builder, tmp_path):
    model = builder()
    path = str(tmp_path / "model.h5")
    keras.models.save_model(model, path)
    loaded = keras.models.load_model(path)
    assert kernel_initializer_configs(loaded) == kernel_initializer_configs(model)


@pytest.mark.parametrize("builder", BUILDERS)
def test_json_round_trip(builder):
    model = builder()
    loaded = keras.models.model_from_json(model.to_json())
    assert kernel_initializer_configs(loaded) == kernel_initializer_configs(model)
    assert [w.shape for w in loaded.weights] == [w.shape for w in model.weights]


@pytest.mark.parametrize("builder", BUILDERS)
def test_clone_model(builder):
    model = builder()
    clone = keras.models.clone_model(model)
    original = kernel_initializer_configs(model)
    cloned = kernel_initializer_configs(clone)
    assert sorted(cloned.values(), key=json.dumps) == sorted(original.values(), key=json.dumps)
