"""A table-driven sweep of bad inputs over every public name of keras_inits.

Every bad case must raise a ValueError or TypeError raised by keras_inits itself (the
traceback's last frame is in the package, never inside NumPy or a backend), whose message
names the argument and shows the received value as ``repr(value)``. Every NumPy scalar
where a Python number is meant must be accepted and behave exactly like that number.
(`ActivationStatistics` is swept by tests/test_callbacks.py.)
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings

import keras
import numpy as np
import pytest

import keras_inits
from keras_inits import (
    LSUV,
    Dirac,
    He,
    ScaledRandom,
    Sparse,
    Xavier,
    activation_statistics,
    compute_fans,
    gain,
    lsuv,
    reinitialize,
    variance_slope,
)

PACKAGE_DIR = os.path.dirname(keras_inits.__file__)
SHAPE = (4, 3)
FEATURES = 4


def _model(activation: str = "tanh") -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(3, activation=activation, name="hidden"),
            keras.layers.Dense(2, name="out"),
        ]
    )


MODEL = _model()
X = np.random.default_rng(0).standard_normal((8, FEATURES)).astype("float32")
Y = np.zeros((8, 2), "float32")


class _Unrepresentable:
    """An object whose repr is distinctive, to check that messages use ``!r``."""

    def __repr__(self) -> str:
        return "<Unrepresentable>"


# ----------------------------------------------------------------------------------------
# The table.
# ----------------------------------------------------------------------------------------

CASES: list = []


def bad(label: str, call, argument: str, value, shows: str | None = None) -> None:
    """Registers a bad input: `call()` must refuse it, naming `argument` and showing `value`."""
    text = repr(value) if shows is None else shows
    # The same id in every process (a function's repr holds its address): `pytest -k`, --lf
    # and pytest-xdist's workers see one collection.
    CASES.append(pytest.param(call, argument, text, id=re.sub(r" at 0x[0-9a-fA-F]+", "", label)))


NAN = float("nan")
INF = float("inf")

SEED_BAD = [
    -1, -(2**63), 2**63, 2**64, 1.5, 1.0, "1", True, False, np.bool_(True), [1], (1,),
    NAN, INF, np.float64(1.0), np.int64(-1), np.array(3), np.array([3]), 1j, b"1",
    _Unrepresentable(),
]
POSITIVE_BAD = [
    0, 0.0, -1, -0.5, NAN, INF, -INF, "0.1", True, False, np.bool_(True), None, [0.1],
    np.array(0.1), np.array([0.1]), 1j, np.float32("nan"), np.float64("inf"), np.int64(-2),
    _Unrepresentable(),
]
CHOICE_BAD = ["x", "", None, 1, 1.0, True, b"fan_in", ["fan_in"], "FAN_IN", " fan_in",
              np.str_("nope"), _Unrepresentable()]
LAYOUT_BAD = ["x", "", None, 1, True, "Standard", ["standard"], b"standard", _Unrepresentable()]
DISTRIBUTION_BAD = ["x", "", None, 1, "Normal", "gaussian", ["uniform"], b"uniform"]
ACTIVATION_BAD_TYPE = [1, 1.5, True, np.float32(1.0), [1], ("relu",), b"relu", np.array(1.0)]
ACTIVATION_BAD_NAME = ["nope", "", "relu ", "Relu", "softmax", "log_softmax", "get", "_private"]
ACTIVATION_KWARGS_BAD = [[1], "a", 1, True, ("negative_slope", 0.1), _Unrepresentable()]
LEAKY_KWARGS_BAD = [
    {"negative_slope": 1e200}, {"negative_slope": -1e300}, {"negative_slope": "0.1"}, {"negative_slope": NAN}, {"negative_slope": INF},
    {"negative_slope": None}, {"negative_slope": True}, {"negative_slope": [0.1]},
    {"slope": 0.1}, {"negative_slope": 1j}, {"negative_slope": np.array([0.1])},
]


def _divergent(x):
    return np.exp(x**2)


def _reciprocal(x):
    return 1.0 / x


def _zero(x):
    return x * 0.0


def _nan(x):
    return x * np.nan


def _inf(x):
    return x + np.inf


def _reciprocal_sqrt(x):
    return 1.0 / np.sqrt(np.abs(x))


def _log_abs(x):
    return keras.ops.log(keras.ops.abs(x))


def _mixing(x):
    return x - np.mean(x)


def _shape_changing(x):
    return np.sum(x)


# activation -> which gains do not exist ("forward", "backward" or both).
NO_GAIN = [
    (_divergent, ("forward", "backward")),
    (_reciprocal, ("forward", "backward")),
    (_zero, ("forward", "backward")),
    (_nan, ("forward", "backward")),
    (_inf, ("forward",)),
    (_reciprocal_sqrt, ("forward", "backward")),
    (_log_abs, ("backward",)),
]
def _broken(x):
    return x.no_such_attribute


def _raising(x):
    raise RuntimeError("boom")


NOT_ELEMENTWISE = [_mixing, _shape_changing, _broken, _raising]

INITIALIZERS = {
    "He": lambda **kw: He(**kw),
    "Xavier": lambda **kw: Xavier(**kw),
    "Sparse": lambda **kw: Sparse(**kw),
    "ScaledRandom": lambda **kw: ScaledRandom(**kw),
}
ACTIVATION_INITIALIZERS = ("He", "Xavier", "Sparse")

for name, make in INITIALIZERS.items():
    for value in SEED_BAD:
        bad(f"{name}-seed={value!r}", lambda make=make, value=value: make(seed=value), "seed", value)
    for value in DISTRIBUTION_BAD:
        if name != "Sparse":
            bad(f"{name}-distribution={value!r}",
                lambda make=make, value=value: make(distribution=value), "distribution", value)
    if name == "ScaledRandom":
        continue
    for value in LAYOUT_BAD:
        bad(f"{name}-layout={value!r}", lambda make=make, value=value: make(layout=value),
            "layout", value)
    for value in ACTIVATION_BAD_TYPE + ACTIVATION_BAD_NAME:
        bad(f"{name}-activation={value!r}", lambda make=make, value=value: make(activation=value),
            "activation", value)
    for value in ACTIVATION_KWARGS_BAD:
        bad(f"{name}-activation_kwargs={value!r}",
            lambda make=make, value=value: make(activation="relu", activation_kwargs=value),
            "activation_kwargs", value)
    for value in LEAKY_KWARGS_BAD:
        bad(f"{name}-leaky-activation_kwargs={value!r}",
            lambda make=make, value=value: make(activation="leaky_relu", activation_kwargs=value),
            "activation_kwargs", value)
    for function, directions in NO_GAIN:
        needed = {"He": ("forward",), "Xavier": ("forward", "backward"), "Sparse": ("forward",)}
        if set(needed[name]) & set(directions):
            bad(f"{name}-activation={function.__name__}",
                lambda make=make, function=function: make(activation=function),
                "activation", function)
    for function in NOT_ELEMENTWISE:
        bad(f"{name}-activation={function.__name__}",
            lambda make=make, function=function: make(activation=function), "activation", function)

for value in CHOICE_BAD:
    bad(f"He-mode={value!r}", lambda value=value: He(mode=value), "mode", value)
bad("He-fan_out-activation", lambda: He(_log_abs, mode="fan_out"), "activation", _log_abs)
for value in POSITIVE_BAD:
    bad(f"ScaledRandom-scale={value!r}", lambda value=value: ScaledRandom(scale=value), "scale", value)
    if value is not None:
        bad(f"Sparse-std={value!r}", lambda value=value: Sparse(std=value), "std", value)
for value in [1.0, 1.5, -0.1, NAN, INF, "0.5", True, np.bool_(False), [0.5], np.array(0.5), 1j,
              np.float64(1.0), np.float32("nan"), _Unrepresentable()]:
    bad(f"Sparse-sparsity={value!r}", lambda value=value: Sparse(sparsity=value), "sparsity", value)
for value in [0, -1, 1.5, 2.0, "3", True, np.bool_(True), [3], np.array(3), np.float64(3.0), NAN,
              INF, np.int64(0), _Unrepresentable()]:
    bad(f"Sparse-connections={value!r}", lambda value=value: Sparse(connections=value),
        "connections", value)
bad("Sparse-sparsity-and-connections", lambda: Sparse(sparsity=0.5, connections=2), "connections", 2)
for value in [NAN, INF, -INF, "1", True, np.bool_(True), None, [1.0], np.array(1.0), 1j,
              np.float32("inf"), _Unrepresentable()]:
    bad(f"Dirac-gain={value!r}", lambda value=value: Dirac(gain=value), "gain", value)

# __call__(shape, dtype): every initializer.
CALLABLE_INITIALIZERS = {
    "He": lambda: He(seed=0),
    "Xavier": lambda: Xavier(seed=0),
    "Sparse": lambda: Sparse(connections=2, seed=0),
    "ScaledRandom": lambda: ScaledRandom(seed=0),
    "Dirac": lambda: Dirac(),
}
SHAPE_BAD = ["ab", "", None, 5, 2.5, (3, -1), (2.5, 3), (3, "4"), (3, None), (True, 3),
             [3, 4.0], (3, np.float64(4.0)), ((3,), 4), {3: 4}, np.array([3.0, 4.0]), (3, 1j),
             _Unrepresentable()]
DTYPE_BAD = ["int32", "int8", "bool", "uint8", "foo", 1, 1.5, True, [], "complex64",
             np.int32, "float", _Unrepresentable()]
for name, make in CALLABLE_INITIALIZERS.items():
    for value in SHAPE_BAD:
        bad(f"{name}()-shape={value!r}", lambda make=make, value=value: make()(value), "shape", value)
    for value in DTYPE_BAD:
        bad(f"{name}()-dtype={value!r}",
            lambda make=make, value=value: make()((3, 3), dtype=value), "dtype", value)

# A scale that overflows the dtype: refused at call time, naming the argument and the dtype.
OVERFLOWS = [
    ("ScaledRandom-scale=1e39-float32", lambda: ScaledRandom(scale=1e39), "float32", "scale", 1e39),
    ("ScaledRandom-scale=1e5-float16", lambda: ScaledRandom(scale=1e5), "float16", "scale", 1e5),
    ("ScaledRandom-uniform-float16", lambda: ScaledRandom(scale=7e4, distribution="uniform"),
     "float16", "scale", 7e4),
    ("ScaledRandom-truncated-float16",
     lambda: ScaledRandom(scale=4e4, distribution="truncated_normal"), "float16", "scale", 4e4),
    ("ScaledRandom-scale=1e39-bfloat16", lambda: ScaledRandom(scale=1e39), "bfloat16", "scale",
     1e39),
    ("Sparse-std=1e39-float32", lambda: Sparse(std=1e39, connections=2), "float32", "std", 1e39),
    ("Sparse-std=1e5-float16", lambda: Sparse(std=1e5, connections=2), "float16", "std", 1e5),
    ("Dirac-gain=1e39-float32", lambda: Dirac(gain=1e39), "float32", "gain", 1e39),
    ("Dirac-gain=-1e39-float32", lambda: Dirac(gain=-1e39), "float32", "gain", -1e39),
    ("Dirac-gain=1e5-float16", lambda: Dirac(gain=1e5), "float16", "gain", 1e5),
]
for label, make, dtype, argument, value in OVERFLOWS:
    bad(label, lambda make=make, dtype=dtype: make()((3, 3), dtype=dtype), argument, value)
    CASES.append(pytest.param(lambda make=make, dtype=dtype: make()((3, 3), dtype=dtype),
                              "dtype", repr(dtype), id=f"{label}-names-dtype"))


def _scaled(x, factor):
    return x * factor


def _tiny_scale(x):
    return 1e-30 * x


def _tinier_scale(x):
    return 1e-200 * x


for name in ("He", "Xavier", "Sparse"):
    make = INITIALIZERS[name]
    bad(f"{name}-huge-gain-float16",
        lambda make=make: make(activation=_tiny_scale)((3, 3), dtype="float16"),
        "activation", _tiny_scale)
    bad(f"{name}-huge-gain-float32",
        lambda make=make: make(activation=_tinier_scale)((3, 3), dtype="float32"),
        "activation", _tinier_scale)

# compute_fans.
for value in SHAPE_BAD:
    bad(f"compute_fans-shape={value!r}", lambda value=value: compute_fans(value), "shape", value)
for value in LAYOUT_BAD:
    bad(f"compute_fans-layout={value!r}", lambda value=value: compute_fans((3, 3, 2, 2), value),
        "layout", value)
bad("compute_fans-depthwise-rank2", lambda: compute_fans((3, 3), "depthwise"), "shape", (3, 3))
bad("compute_fans-transpose-rank1", lambda: compute_fans((3,), "transpose"), "shape", (3,))

# gain and variance_slope.
for function_name, function in (("gain", gain), ("variance_slope", variance_slope)):
    for value in ACTIVATION_BAD_TYPE + ACTIVATION_BAD_NAME + NOT_ELEMENTWISE:
        bad(f"{function_name}-activation={value!r}",
            lambda function=function, value=value: function(value), "activation", value)
    for kwargs in LEAKY_KWARGS_BAD:
        bad(f"{function_name}-leaky_relu-{kwargs!r}",
            lambda function=function, kwargs=kwargs: function("leaky_relu", **kwargs),
            "activation_kwargs", kwargs)
    for activation, directions in NO_GAIN:
        if "forward" in directions:
            bad(f"{function_name}-{activation.__name__}",
                lambda function=function, activation=activation: function(activation),
                "activation", activation)
    bad(f"{function_name}-relu-kwarg-unknown",
        lambda function=function: function("relu", slope=0.1), "activation_kwargs", {"slope": 0.1})
    bad(f"{function_name}-gelu-approximate=1",
        lambda function=function: function("gelu", approximate=1), "activation_kwargs",
        {"approximate": 1})
    bad(f"{function_name}-elu-alpha=nan",
        lambda function=function: function("elu", alpha=NAN), "activation_kwargs", {"alpha": NAN})
for activation, directions in NO_GAIN:
    if "backward" in directions:
        bad(f"gain-backward-{activation.__name__}",
            lambda activation=activation: gain(activation, "backward"), "activation", activation)
for value in CHOICE_BAD + ["Forward", "fan_in"]:
    bad(f"gain-direction={value!r}", lambda value=value: gain("relu", value), "direction", value)

# lsuv and its callback.
LSUV_NUMBERS = {"target_std": POSITIVE_BAD, "tol": POSITIVE_BAD}
MAX_ITER_BAD = [0, -1, 1.5, 2.0, "3", True, np.bool_(True), None, [3], np.array(3),
                np.float64(3.0), NAN, INF, np.int64(0), _Unrepresentable()]
BOOL_BAD = [1, 0, "yes", "True", None, 1.0, [True], np.array(True), np.int64(1), _Unrepresentable()]
for argument, values in {**LSUV_NUMBERS, "max_iter": MAX_ITER_BAD, "orthogonal": BOOL_BAD,
                         "seed": SEED_BAD}.items():
    for value in values:
        if argument == "seed" and value is None:
            continue
        bad(f"lsuv-{argument}={value!r}",
            lambda argument=argument, value=value: lsuv(MODEL, X, **{argument: value}),
            argument, value)
        bad(f"LSUV-{argument}={value!r}",
            lambda argument=argument, value=value: LSUV(X, **{argument: value}), argument, value)
MODEL_BAD = ["model", None, 1, X, keras.layers.Dense(2), _Unrepresentable()]
for value in MODEL_BAD:
    shows = repr(value) if not isinstance(value, (np.ndarray, keras.layers.Layer)) else None
    shows = shows or ("Dense" if isinstance(value, keras.layers.Layer) else "array(")
    bad(f"lsuv-model={type(value).__name__}", lambda value=value: lsuv(value, X), "model", value,
        shows=shows)
    bad(f"reinitialize-model={type(value).__name__}", lambda value=value: reinitialize(value),
        "model", value, shows=shows)
    bad(f"activation_statistics-model={type(value).__name__}",
        lambda value=value: activation_statistics(value, X), "model", value, shows=shows)
DATA_BAD = [
    ("None", None, "None"),
    ("str", "abc", "str"),
    ("int", 3, "int"),
    ("empty", np.zeros((0, FEATURES), "float32"), "(0, 4)"),
    ("wrong-features", np.zeros((8, 5), "float32"), "(8, 5)"),
    ("wrong-rank", np.zeros((8,), "float32"), "(8,)"),
    ("0-d", np.array(1.0), "ndarray"),
    ("list-of-floats", [1.0, 2.0], "float"),
    ("empty-list", [], "[]"),
]
for label, value, shows in DATA_BAD:
    bad(f"lsuv-x-{label}", lambda value=value: lsuv(MODEL, value), "x", value, shows=shows)
    bad(f"activation_statistics-x-{label}",
        lambda value=value: activation_statistics(MODEL, value), "x", value, shows=shows)
    if value is not None:  # reinitialize's default x
        bad(f"reinitialize-x-{label}", lambda value=value: reinitialize(MODEL, x=value), "x",
            value, shows=shows)
    if not label.startswith("wrong"):  # whether x fits needs the model: lsuv checks that
        bad(f"LSUV-data-{label}", lambda value=value: LSUV(value), "x", value, shows=shows)
bad("LSUV-data-3-tuple", lambda: LSUV((X, Y, Y)), "data", 3, shows="3 elements")
bad("gain-elu-alpha=1e300", lambda: gain("elu", alpha=1e300), "activation", "elu")
bad("gain-callable-kwargs-wrong-type", lambda: gain(_scaled, factor="2"), "activation_kwargs",
    {"factor": "2"})
bad("gain-callable-kwargs-unknown", lambda: gain(_scaled, scale=2.0), "activation_kwargs",
    {"scale": 2.0})
bad("gain-callable-kwargs-missing", lambda: gain(_scaled), "activation_kwargs", {})
bad("lsuv-x-one-sample", lambda: lsuv(MODEL, X[:1]), "x", X[:1], shows="1 sample")
bad("LSUV-unknown-kwarg", lambda: LSUV(X, target=1.0), "target", "target", shows="'target'")
LAYERS_BAD = [5, 1.5, True, "nope", [], ["nope"], [5], keras.layers.Conv2D, (keras.layers.Dense(2),)]
for value in LAYERS_BAD:
    shows = {keras.layers.Conv2D: "Conv2D"}.get(value) if isinstance(value, type) else None
    if isinstance(value, tuple):
        shows = "Dense"
    bad(f"lsuv-layers={value!r}", lambda value=value: lsuv(MODEL, X, layers=value), "layers",
        value, shows=shows)
    bad(f"activation_statistics-layers={value!r}",
        lambda value=value: activation_statistics(MODEL, X, layers=value), "layers", value,
        shows=shows)
    if not isinstance(value, str) and value != ["nope"] and not isinstance(value, type):
        # Which names and classes exist needs the model: the callback checks types only.
        bad(f"LSUV-layers={value!r}", lambda value=value: LSUV(X, layers=value), "layers", value,
            shows=shows)

# reinitialize.
for value in CHOICE_BAD + ["HE", "glorot", "xavier_uniform"]:
    bad(f"reinitialize-method={value!r}", lambda value=value: reinitialize(MODEL, value), "method",
        value)
    bad(f"reinitialize-mode={value!r}", lambda value=value: reinitialize(MODEL, mode=value), "mode",
        value)
for value in SEED_BAD:
    bad(f"reinitialize-seed={value!r}", lambda value=value: reinitialize(MODEL, seed=value), "seed",
        value)

# activation_statistics.
for argument in ("gradients", "training"):
    for value in BOOL_BAD:
        bad(f"activation_statistics-{argument}={value!r}",
            lambda argument=argument, value=value: activation_statistics(
                MODEL, X, y=Y, loss="mse", **{argument: value}), argument, value)
for value in [5, "nope", 1.5, [1], _Unrepresentable()]:
    bad(f"activation_statistics-loss={value!r}",
        lambda value=value: activation_statistics(MODEL, X, y=Y, gradients=True, loss=value),
        "loss", value)
for label, value, shows in [("wrong-shape", np.zeros((8, 7), "float32"), "(8, 7)"),
                            ("wrong-batch", np.zeros((3, 2), "float32"), "(3, 2)"),
                            ("str", "abc", "str")]:
    bad(f"activation_statistics-y-{label}",
        lambda value=value: activation_statistics(MODEL, X, y=value, gradients=True, loss="mse"),
        "y", value, shows=shows)
bad("activation_statistics-gradients-without-y",
    lambda: activation_statistics(MODEL, X, gradients=True), "y", None)


def _last_frame_in_package(excinfo: pytest.ExceptionInfo) -> bool:
    return os.path.abspath(str(excinfo.traceback[-1].path)).startswith(PACKAGE_DIR)


@pytest.mark.parametrize("call, argument, shows", CASES)
def test_bad_input_is_refused_by_name(call, argument, shows):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises((ValueError, TypeError)) as excinfo:
            call()
    message = str(excinfo.value)
    assert type(excinfo.value) in (ValueError, TypeError), repr(excinfo.value)
    assert _last_frame_in_package(excinfo), excinfo.getrepr(style="short")
    assert argument in message, message
    assert shows in message, message


def test_the_sweep_is_large():
    assert len(CASES) >= 300


# ----------------------------------------------------------------------------------------
# NumPy scalars are accepted and behave like the Python numbers they hold.
# ----------------------------------------------------------------------------------------

NUMPY_INTS = [np.int8(3), np.int16(3), np.int32(3), np.int64(3), np.uint8(3), np.uint32(3),
              np.uint64(3)]
NUMPY_FLOATS = [np.float16(0.5), np.float32(0.5), np.float64(0.5)]


def _same_values(a, b) -> None:
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


def _config_is_plain(initializer) -> dict:
    config = initializer.get_config()
    assert json.loads(json.dumps(config)) == config
    return config


@pytest.mark.parametrize("seed", NUMPY_INTS, ids=lambda v: type(v).__name__)
@pytest.mark.parametrize("name", ["He", "Xavier", "Sparse", "ScaledRandom"])
def test_numpy_int_seed_is_the_python_seed(name, seed):
    make = INITIALIZERS[name]
    with_numpy = make(seed=seed)
    with_python = make(seed=int(seed))
    _same_values(with_numpy(SHAPE), with_python(SHAPE))
    assert _config_is_plain(with_numpy) == _config_is_plain(with_python)


@pytest.mark.parametrize("value", NUMPY_FLOATS, ids=lambda v: type(v).__name__)
def test_numpy_float_arguments_are_python_floats(value):
    pairs = [
        (ScaledRandom(scale=value, seed=1), ScaledRandom(scale=float(value), seed=1)),
        (Sparse(sparsity=value, seed=1), Sparse(sparsity=float(value), seed=1)),
        (Sparse(std=value, connections=2, seed=1), Sparse(std=float(value), connections=2, seed=1)),
        (Dirac(gain=value), Dirac(gain=float(value))),
        (He("leaky_relu", activation_kwargs={"negative_slope": value}, seed=1),
         He("leaky_relu", activation_kwargs={"negative_slope": float(value)}, seed=1)),
    ]
    for with_numpy, with_python in pairs:
        _same_values(with_numpy(SHAPE), with_python(SHAPE))
        assert _config_is_plain(with_numpy) == _config_is_plain(with_python)
    assert gain("leaky_relu", negative_slope=value) == gain("leaky_relu", negative_slope=float(value))
    assert variance_slope("elu", alpha=value) == variance_slope("elu", alpha=float(value))


@pytest.mark.parametrize("value", NUMPY_INTS, ids=lambda v: type(v).__name__)
def test_numpy_int_arguments_are_python_ints(value):
    sparse = Sparse(connections=value, seed=1)
    _same_values(sparse(SHAPE), Sparse(connections=int(value), seed=1)(SHAPE))
    assert _config_is_plain(sparse)["connections"] == 3
    fans = compute_fans((value, np.int64(5)))
    assert fans == (3, 5) and all(type(fan) is int for fan in fans)
    assert compute_fans(np.array([2, 2, 3, 4], dtype=type(value))) == (12, 16)
    _same_values(Dirac()((value, value)), Dirac()((3, 3)))
    assert ScaledRandom(scale=value, seed=0).scale == 3.0


@pytest.mark.parametrize("value", [np.float32(0.1), np.float16(0.3)], ids=lambda v: type(v).__name__)
def test_numpy_activation_kwargs_compute_in_float64(value):
    assert gain("leaky_relu", negative_slope=value) == gain("leaky_relu", negative_slope=float(value))
    assert gain("elu", "backward", alpha=value) == gain("elu", "backward", alpha=float(value))


def test_numpy_bool_is_a_bool():
    assert gain("gelu", approximate=np.bool_(True)) == gain("gelu", approximate=True)


def _kernels(model) -> list[np.ndarray]:
    to_numpy = keras_inits.backend.current().to_numpy
    return [np.array(to_numpy(weight)) for weight in model.weights]


def test_lsuv_takes_numpy_scalars():
    with_python = _model()
    with_numpy = _model()
    report = lsuv(with_python, X, target_std=1.0, tol=0.25, max_iter=4, orthogonal=True, seed=7)
    numpy_report = lsuv(
        with_numpy, X, target_std=np.float32(1.0), tol=np.float64(0.25), max_iter=np.int64(4),
        orthogonal=np.bool_(True), seed=np.uint16(7),
    )
    assert report == numpy_report
    for a, b in zip(_kernels(with_python)[::2], _kernels(with_numpy)[::2]):
        np.testing.assert_array_equal(a, b)


def test_lsuv_callback_takes_numpy_scalars():
    callback = LSUV(X, target_std=np.float32(1.0), tol=np.float16(0.25), max_iter=np.int8(4),
                    orthogonal=np.bool_(False), seed=np.int64(2))
    assert callback.lsuv_kwargs["max_iter"] == 4


def test_reinitialize_takes_a_numpy_seed():
    with_python = _model()
    with_numpy = _model()
    reinitialize(with_python, "he", seed=11)
    reinitialize(with_numpy, "he", seed=np.int32(11))
    for a, b in zip(_kernels(with_python)[::2], _kernels(with_numpy)[::2]):
        np.testing.assert_array_equal(a, b)


def test_largest_seed_is_accepted():
    largest = 2**63 - 1
    _same_values(He(seed=largest)(SHAPE), He(seed=np.uint64(largest))(SHAPE))
    reinitialize(_model(), seed=largest)


def test_activation_statistics_takes_numpy_bools():
    stats = activation_statistics(MODEL, X, y=Y, loss="mse", gradients=np.bool_(True),
                                  training=np.bool_(False))
    assert list(stats) == ["hidden", "out"]
    assert all(math.isfinite(entry.grad_std) for entry in stats.values())


# ----------------------------------------------------------------------------------------
# lsuv never calls a non-finite model converged.
# ----------------------------------------------------------------------------------------


def _overflowing_model(squash: bool = False) -> keras.Model:
    """Finite up to `exp`, whose output overflows float32; `squash` maps the inf back to 1."""
    return keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(3, activation="tanh", name="hidden"),
            keras.layers.Dense(3, activation="exponential", name="grows",
                               bias_initializer=keras.initializers.Constant(200.0)),
            keras.layers.Activation("tanh") if squash else keras.layers.Dense(2, name="out"),
        ]
    )


def test_lsuv_refuses_a_model_whose_later_layer_overflows():
    model = _overflowing_model()
    before = _kernels(model)
    with pytest.raises(ValueError) as excinfo:
        lsuv(model, X, seed=0)
    message = str(excinfo.value)
    assert "'out'" in message or "'grows'" in message, message
    assert "not finite" in message, message
    for a, b in zip(before, _kernels(model)):
        np.testing.assert_array_equal(a, b)


def test_lsuv_refuses_a_huge_bias_at_the_output():
    model = _model()
    hidden = model.get_layer("hidden")
    hidden.kernel.assign(np.zeros((FEATURES, 3), "float32"))
    hidden.bias.assign(np.ones((3,), "float32"))  # every hidden output is tanh(1) = 0.76
    model.get_layer("out").kernel.assign(np.full((3, 2), 3e38, "float32"))  # 6.9e38: inf
    with pytest.raises(ValueError, match="not finite"):
        lsuv(model, X, seed=0, orthogonal=False)


def test_lsuv_refuses_an_overflowing_layer_whose_inf_a_later_layer_squashes():
    model = _overflowing_model(squash=True)
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(model(X))))
    before = _kernels(model)
    with pytest.raises(ValueError) as excinfo:
        lsuv(model, X, seed=0)
    message = str(excinfo.value)
    assert "'grows'" in message and "output is not finite" in message, message
    for a, b in zip(before, _kernels(model)):
        np.testing.assert_array_equal(a, b)


def test_a_cached_bool_does_not_let_an_int_through():
    """True == 1 and they hash alike: the resolve cache must still refuse the int."""
    gain("gelu", approximate=True)
    gain("leaky_relu", negative_slope=1)
    with pytest.raises(TypeError, match=r"approximate.*Received: activation_kwargs=\{'approximate': 1\}"):
        gain("gelu", approximate=1)
    with pytest.raises(TypeError, match=r"negative_slope.*Received: activation_kwargs="):
        gain("leaky_relu", negative_slope=True)
