"""Loading a model calls nothing that Keras itself would not (issue 9, part 2).

An initializer computes its gain from its activation, so a config that names any function as
the activation would get it called while the model loads (measured on 0.2's first half:
`keras.config.set_epsilon` ran under `load_model(..., safe_mode=True)`). Here every such config
is written into a `.keras` file, an `.h5` file, a JSON model and a plain initializer config, and
must be refused with a ValueError that names it, while spies show that nothing ran: epsilon,
floatx and max_epochs unchanged, no sentinel file, no call of a registered spy activation. The
allowed forms (Keras names, `keras.activations` functions, registered functions and classes)
still load, with safe_mode True and False, and give the same kernels.
"""

from __future__ import annotations

import copy
import json
import warnings
import zipfile
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from custom_activation_helper import scaled_tanh
from keras_inits import He, ScaledRandom, Sparse, Xavier, backend

# Keras's own saving code calls np.array(tensor) (keras/src/backend/tensorflow/core.py), which
# NumPy 2 flags; nothing of ours.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)

INPUT_SIZE = 4
UNITS = 3
KERNEL_SHAPE = (INPUT_SIZE, UNITS)
SEED = 11

# ----------------------------------------------------------------------------------------------
# Spies: what a refused config must not have done.
# ----------------------------------------------------------------------------------------------

#: Every call of the registered spy activation, (input size, scale as given).
SPY_CALLS: list[tuple[int, object]] = []
#: Set by the tests: the file that `touch_sentinel` and the serialized lambda create (the
#: lambda finds it in the environment: a deserialized lambda has no module globals).
SENTINEL = {"path": None}
SENTINEL_VARIABLE = "KERAS_INITS_TEST_SENTINEL"


@keras.saving.register_keras_serializable(package="keras_inits_safe_loading_tests")
def spy_tanh(x, scale=1.0):
    """A registered activation that records each call."""
    SPY_CALLS.append((int(np.size(x)), scale))
    return scale * keras.ops.tanh(x)


@keras.saving.register_keras_serializable(package="keras_inits_safe_loading_tests")
class ScaledSoftsign:
    """A registered activation class (an instance is the activation)."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    def __call__(self, x):
        return self.scale * keras.ops.softsign(x)

    def get_config(self) -> dict:
        return {"scale": self.scale}

    @classmethod
    def from_config(cls, config: dict) -> "ScaledSoftsign":
        return cls(**config)


def touch_sentinel(x, path=None):
    """An unregistered function with a visible effect: it creates the sentinel file."""
    Path(path or SENTINEL["path"]).write_text("called")
    return x


class Sentinel:
    """An unregistered class whose construction creates the sentinel file."""

    def __init__(self, path=None) -> None:
        touch_sentinel(None, path)

    def __call__(self, x):
        return x

    @classmethod
    def from_config(cls, config: dict) -> "Sentinel":
        return cls(**config)


def lambda_config() -> dict:
    """A serialized lambda (what Keras writes) whose body creates the sentinel file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras warns that a lambda is unsafe: that is the point
        return keras.saving.serialize_keras_object(
            lambda x: open(__import__("os").environ["KERAS_INITS_TEST_SENTINEL"], "w").write("1")
            and x
        )


def set_sentinel(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    SENTINEL["path"] = str(path)
    monkeypatch.setenv(SENTINEL_VARIABLE, str(path))


@pytest.fixture
def spies(tmp_path, monkeypatch):
    """Records the global state a call could change; checks after the test that none did."""
    set_sentinel(tmp_path / "sentinel", monkeypatch)
    SPY_CALLS.clear()
    before = (keras.config.epsilon(), keras.config.floatx(), keras.config.max_epochs())
    yield tmp_path
    after = (keras.config.epsilon(), keras.config.floatx(), keras.config.max_epochs())
    # Restored first, so that a failure here does not leak into the next test.
    keras.config.set_epsilon(before[0])
    keras.config.set_floatx(before[1])
    keras.config.set_max_epochs(before[2])
    assert repr(after) == repr(before)
    assert not Path(SENTINEL["path"]).exists()
    assert SPY_CALLS == []


def test_the_spies_see_a_call(tmp_path, monkeypatch):
    # A spy that cannot fire proves nothing: each one fires when its function is called.
    set_sentinel(tmp_path / "sentinel", monkeypatch)
    touch_sentinel(None)
    assert Path(SENTINEL["path"]).exists()
    Path(SENTINEL["path"]).unlink()
    Sentinel()
    assert Path(SENTINEL["path"]).exists()
    Path(SENTINEL["path"]).unlink()
    function = keras.saving.deserialize_keras_object(lambda_config(), safe_mode=False)
    function(1)
    assert Path(SENTINEL["path"]).exists()
    SPY_CALLS.clear()
    He(spy_tanh, activation_kwargs={"scale": 2.0})
    assert SPY_CALLS and all(scale == 2.0 for _, scale in SPY_CALLS)
    SPY_CALLS.clear()


# ----------------------------------------------------------------------------------------------
# The configs to refuse.
# ----------------------------------------------------------------------------------------------


def function_config(name: str, module: str | None, registered_name: str | None = None) -> dict:
    """A function config as `keras.saving.serialize_keras_object` writes one."""
    return {
        "module": module,
        "class_name": "function",
        "config": name,
        "registered_name": registered_name,
    }


BAD_ACTIVATIONS = {
    # Public Keras functions that Keras's deserializer returns, and 0.2's first half called.
    "keras.config.set_epsilon": lambda: function_config("set_epsilon", "keras.config"),
    "keras.config.set_floatx": lambda: function_config("set_floatx", "keras.config"),
    "keras.config.set_max_epochs": lambda: function_config("set_max_epochs", "keras.config"),
    "set_epsilon as builtins": lambda: function_config("set_epsilon", "builtins", "function"),
    # A Keras function that is not an activation (keras.losses, found through "builtins").
    "keras.losses function": lambda: function_config("mean_squared_error", "builtins"),
    # Module paths of arbitrary functions.
    "os.system": lambda: function_config("system", "os"),
    "builtins.eval": lambda: function_config("eval", "builtins", "function"),
    "unregistered module function": lambda: function_config("touch_sentinel", "test_safe_loading"),
    # Registered names nobody registered, and registered classes named as functions.
    "unregistered registered_name": lambda: function_config(
        "nobody>touch_sentinel", "builtins", "function"
    ),
    "registered class as a function": lambda: function_config("keras_inits>He", "builtins"),
    "unregistered class": lambda: {
        "module": "test_safe_loading",
        "class_name": "Sentinel",
        "config": {},
        "registered_name": "nobody>Sentinel",
    },
    "Keras built-in class": lambda: {
        "module": "keras.layers",
        "class_name": "ReLU",
        "config": {},
        "registered_name": None,
    },
    "lambda": lambda_config,
    "numpy array": lambda: {
        "class_name": "__numpy__",
        "config": {"value": [1.0], "dtype": "float32"},
    },
    "a key Keras does not write": lambda: {**function_config("relu", "builtins"), "call": "eval"},
    "no class_name": lambda: {"module": "os", "config": "system"},
}

# activation_kwargs that a config may not hold: each goes with the spy activation, which would
# record a call, and with leaky_relu.
NESTED_SET_EPSILON = {"scale": function_config("set_epsilon", "keras.config")}
BAD_KWARGS = {
    "nested function config": NESTED_SET_EPSILON,
    "nested seed generator config": {
        "scale": {
            "module": "keras.random",
            "class_name": "SeedGenerator",
            "config": {"seed": 1, "name": "s"},
            "registered_name": None,
        }
    },
    "nested lambda": {"scale": {"class_name": "__lambda__", "config": {"value": "x"}}},
    "list": {"scale": [2.0]},
}

BAD_SEEDS = {
    "function": function_config("set_epsilon", "keras.config"),
    "Keras class": {
        "module": "keras.layers",
        "class_name": "Dense",
        "config": {"units": 1},
        "registered_name": None,
    },
    "lambda": {"class_name": "__lambda__", "config": {"value": "x"}},
    "SeedGenerator with extra arguments": {
        "module": "keras.random",
        "class_name": "SeedGenerator",
        "config": {"seed": 1, "name": "s", "backend": "os"},
        "registered_name": None,
    },
}


def refusal(error: BaseException, argument: str) -> BaseException:
    """The ValueError in `error`'s chain whose message names `argument` (Keras wraps ours)."""
    seen = error
    while seen is not None:
        if isinstance(seen, ValueError) and f"Received: {argument}=" in str(seen):
            return seen
        seen = seen.__cause__ or seen.__context__
    raise AssertionError(f"no ValueError naming {argument!r} in the chain of {error!r}")


def as_json(value):
    """`value` as a JSON file gives it back (tuples become lists)."""
    try:
        return json.loads(json.dumps(value))
    except TypeError:  # a non-string key: not something a file can hold
        return value


def assert_refused(load, argument: str, value) -> None:
    """`load` fails with a ValueError that names `argument` and shows `value` (as JSON reads it
    back when `value` went through a file)."""
    with pytest.raises(Exception) as excinfo:
        load()
    message = str(refusal(excinfo.value, argument))
    shown = (f"Received: {argument}={value!r}", f"Received: {argument}={as_json(value)!r}")
    assert any(text in message for text in shown), message
    assert "Nothing was" in message


# ----------------------------------------------------------------------------------------------
# Files with a rewritten initializer config.
# ----------------------------------------------------------------------------------------------


def build_model(initializer=None) -> keras.Model:
    inputs = keras.Input((INPUT_SIZE,))
    kernel_initializer = initializer if initializer is not None else He(seed=SEED)
    outputs = keras.layers.Dense(UNITS, kernel_initializer=kernel_initializer, name="dense")(inputs)
    return keras.Model(inputs, outputs)


def kernel_initializer_nodes(node) -> list[dict]:
    """Every keras_inits initializer config inside a model config (found by registered name)."""
    found = []
    if isinstance(node, dict):
        if str(node.get("registered_name", "")).startswith("keras_inits>"):
            found.append(node)
        for value in node.values():
            found.extend(kernel_initializer_nodes(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(kernel_initializer_nodes(value))
    return found


def rewritten(model_config: dict, **entries) -> dict:
    """`model_config` with `entries` set in its (only) keras_inits initializer config."""
    model_config = copy.deepcopy(model_config)
    (node,) = kernel_initializer_nodes(model_config)
    node["config"].update(entries)
    return model_config


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A small model saved as .keras and .h5, with its model config in each format."""
    folder = tmp_path_factory.mktemp("safe_loading")
    model = build_model()
    paths = {"keras": folder / "model.keras", "h5": folder / "model.h5"}
    model.save(paths["keras"])
    keras.models.save_model(model, paths["h5"])
    with zipfile.ZipFile(paths["keras"]) as archive:
        keras_config = json.loads(archive.read("config.json"))
    with h5py.File(paths["h5"], "r") as file:
        h5_config = json.loads(file.attrs["model_config"])
    return {
        "paths": paths,
        "keras_config": keras_config,
        "h5_config": h5_config,
        "json_config": json.loads(model.to_json()),
    }


def write_keras_file(saved, path: Path, model_config: dict) -> Path:
    with zipfile.ZipFile(saved["paths"]["keras"]) as source, zipfile.ZipFile(path, "w") as target:
        for name in source.namelist():
            data = json.dumps(model_config) if name == "config.json" else source.read(name)
            target.writestr(name, data)
    return path


def write_h5_file(saved, path: Path, model_config: dict) -> Path:
    path.write_bytes(saved["paths"]["h5"].read_bytes())
    with h5py.File(path, "r+") as file:
        file.attrs["model_config"] = json.dumps(model_config)
    return path


def loaders(saved, tmp_path: Path, safe_mode: bool, **entries) -> dict:
    """{format: a function that loads the model with `entries` in its initializer config}."""
    keras_path = write_keras_file(
        saved, tmp_path / "crafted.keras", rewritten(saved["keras_config"], **entries)
    )
    h5_path = write_h5_file(
        saved, tmp_path / "crafted.h5", rewritten(saved["h5_config"], **entries)
    )
    json_text = json.dumps(rewritten(saved["json_config"], **entries))
    return {
        "keras": lambda: keras.saving.load_model(keras_path, safe_mode=safe_mode),
        "h5": lambda: keras.saving.load_model(h5_path, safe_mode=safe_mode),
        "json": lambda: keras.models.model_from_json(json_text),
    }


# ----------------------------------------------------------------------------------------------
# Refused: every bad activation, activation_kwargs and seed, in every format.
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("safe_mode", [True, False], ids=["safe_mode", "unsafe_mode"])
@pytest.mark.parametrize("name", sorted(BAD_ACTIVATIONS))
def test_bad_activation_in_a_file_is_refused_before_any_call(name, safe_mode, saved, spies):
    bad = BAD_ACTIVATIONS[name]()
    for load in loaders(saved, spies, safe_mode, activation=bad).values():
        assert_refused(load, "activation", bad)


@pytest.mark.parametrize("cls", [He, Xavier, Sparse])
@pytest.mark.parametrize("name", sorted(BAD_ACTIVATIONS))
def test_bad_activation_in_an_initializer_config_is_refused(name, cls, spies):
    bad = BAD_ACTIVATIONS[name]()
    config = {**cls(seed=SEED).get_config(), "activation": bad}
    serialized = {"class_name": f"keras_inits>{cls.__name__}", "config": config}
    assert_refused(lambda: keras.initializers.deserialize(serialized), "activation", bad)
    assert_refused(lambda: cls.from_config(config), "activation", bad)


@pytest.mark.parametrize("activation", [spy_tanh, "leaky_relu"], ids=["spy", "leaky_relu"])
@pytest.mark.parametrize("name", sorted(BAD_KWARGS))
def test_bad_activation_kwargs_are_refused_before_any_call(name, activation, saved, spies):
    bad = BAD_KWARGS[name]
    if activation == "leaky_relu":
        bad = {"negative_slope": bad["scale"]}
    activation_config = keras.saving.serialize_keras_object(activation)
    entries = {"activation": activation_config, "activation_kwargs": bad}
    for load in loaders(saved, spies, True, **entries).values():
        assert_refused(load, "activation_kwargs", bad)
    config = {**He(seed=SEED).get_config(), **entries}
    assert_refused(lambda: He.from_config(config), "activation_kwargs", bad)


def test_activation_kwargs_keys_must_be_strings(spies):
    bad = {1: 2.0}
    activation = keras.saving.serialize_keras_object(spy_tanh)
    config = {**He(seed=SEED).get_config(), "activation": activation, "activation_kwargs": bad}
    assert_refused(lambda: He.from_config(config), "activation_kwargs", bad)


@pytest.mark.parametrize("name", sorted(BAD_SEEDS))
def test_bad_seed_in_a_config_is_refused(name, saved, spies):
    bad = BAD_SEEDS[name]
    for load in loaders(saved, spies, False, seed=bad).values():
        assert_refused(load, "seed", bad)
    for cls in (He, Xavier, Sparse, ScaledRandom):
        config = {**cls(seed=SEED).get_config(), "seed": bad}
        assert_refused(lambda: cls.from_config(config), "seed", bad)


# ----------------------------------------------------------------------------------------------
# Allowed: Keras names, keras.activations functions, registered objects, in every format.
# ----------------------------------------------------------------------------------------------

GOOD_INITIALIZERS = {
    "Keras name": lambda: He("gelu", seed=SEED, activation_kwargs={"approximate": True}),
    "keras.activations function": lambda: Xavier(keras.activations.tanh, seed=SEED),
    "registered function": lambda: He(scaled_tanh, seed=SEED),
    "registered function with kwargs": lambda: Sparse(
        connections=2, activation=spy_tanh, seed=SEED, activation_kwargs={"scale": np.float32(2.0)}
    ),
    "registered class": lambda: He(ScaledSoftsign(1.5), mode="fan_out", seed=SEED),
}

# The dict forms of a Keras activation that Keras itself writes or reads.
KERAS_ACTIVATION_FORMS = {
    "builtins": function_config("gelu", "builtins", "function"),
    "keras.activations": function_config("gelu", "keras.activations"),
    "no module": {"class_name": "function", "config": "gelu"},
}


def drawn(initializer) -> np.ndarray:
    return backend.current().to_numpy(initializer(KERNEL_SHAPE))


def loaded_initializer(model: keras.Model):
    return model.get_layer("dense").kernel_initializer


@pytest.mark.parametrize("safe_mode", [True, False], ids=["safe_mode", "unsafe_mode"])
@pytest.mark.parametrize("name", sorted(GOOD_INITIALIZERS))
def test_allowed_activations_load_with_identical_kernels(name, safe_mode, tmp_path):
    initializer = GOOD_INITIALIZERS[name]()
    model = build_model(initializer)
    kernel = backend.current().to_numpy(model.get_layer("dense").kernel)
    np.testing.assert_array_equal(kernel, drawn(initializer))
    keras_path = tmp_path / "model.keras"
    h5_path = tmp_path / "model.h5"
    model.save(keras_path)
    keras.models.save_model(model, h5_path)
    loaded = {
        "keras": keras.saving.load_model(keras_path, safe_mode=safe_mode),
        "h5": keras.saving.load_model(h5_path, safe_mode=safe_mode),
        "json": keras.models.model_from_json(model.to_json()),
        "clone": keras.models.clone_model(model),
    }
    for form, other in loaded.items():
        rebuilt = loaded_initializer(other)
        assert type(rebuilt) is type(initializer), form
        assert rebuilt.get_config() == initializer.get_config(), form
        np.testing.assert_array_equal(drawn(rebuilt), drawn(initializer), err_msg=form)
        # .keras and .h5 read the saved kernel; JSON and clone_model draw it again.
        other_kernel = backend.current().to_numpy(other.get_layer("dense").kernel)
        np.testing.assert_array_equal(other_kernel, kernel, err_msg=form)


@pytest.mark.parametrize("form", sorted(KERAS_ACTIVATION_FORMS))
def test_dict_forms_of_a_keras_activation_load(form, saved, tmp_path):
    activation = KERAS_ACTIVATION_FORMS[form]
    reference = He("gelu", seed=SEED)
    for fmt, load in loaders(saved, tmp_path, True, activation=activation).items():
        rebuilt = loaded_initializer(load())
        assert rebuilt.activation is keras.activations.gelu, fmt
        assert rebuilt.gain == reference.gain, fmt
        np.testing.assert_array_equal(drawn(rebuilt), drawn(reference), err_msg=fmt)


def test_shared_seed_generator_config_loads(tmp_path):
    # Keras marks a generator serialized twice with a "shared_object_id" (on the second config
    # only, so Keras rebuilds two generators): such a seed config is a SeedGenerator config.
    generator = keras.random.SeedGenerator(SEED, name="shared_seed")
    inputs = keras.Input((INPUT_SIZE,))
    x = keras.layers.Dense(UNITS, kernel_initializer=He(seed=generator), name="first")(inputs)
    outputs = keras.layers.Dense(UNITS, kernel_initializer=He(seed=generator), name="second")(x)
    path = tmp_path / "shared.keras"
    keras.Model(inputs, outputs).save(path)
    with zipfile.ZipFile(path) as archive:
        seeds = [node["config"]["seed"] for node in kernel_initializer_nodes(
            json.loads(archive.read("config.json"))
        )]
    assert [("shared_object_id" in seed) for seed in seeds] == [False, True]
    loaded = keras.saving.load_model(path)
    for name in ("first", "second"):
        seed = loaded.get_layer(name).kernel_initializer.seed
        assert isinstance(seed, keras.random.SeedGenerator)
        assert seed.get_config() == {"seed": SEED, "name": "shared_seed"}


def test_custom_objects_given_to_load_model_count_as_registered(saved, tmp_path, spies):
    # The caller of load_model chose them: Keras resolves a name from custom_objects, so do we.
    activation = function_config("my_activation", "test_safe_loading")
    model_config = rewritten(saved["keras_config"], activation=activation)
    path = write_keras_file(saved, tmp_path / "custom.keras", model_config)
    loaded = keras.saving.load_model(path, custom_objects={"my_activation": scaled_tanh})
    rebuilt = loaded_initializer(loaded)
    assert rebuilt.activation is scaled_tanh
    assert rebuilt.gain == He(scaled_tanh).gain


def test_a_callable_given_in_python_is_unaffected():
    # Only configs are checked: a function passed to He in Python is the caller's own code.
    def local_activation(x):
        return keras.ops.tanh(x)

    assert He(local_activation).gain == pytest.approx(He("tanh").gain, rel=1e-5)
