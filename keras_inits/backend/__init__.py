"""The backend seam: the only place that imports TensorFlow, JAX or PyTorch.

Keras 3 runs on tensorflow, jax and torch. What keras_inits needs from the backend itself
is small, and each backend module (``tensorflow.py``, ``jax.py``, ``torch.py``) provides the
same functions:

* ``elementwise_derivative(function)``: ``phi'`` of an element-wise activation by the
  backend's autodiff, as a NumPy ``float64 -> float64`` function (``None`` when the backend
  cannot differentiate it);
* ``loss_gradients(run, kernels)``: one differentiated probe pass, ``d loss / d output`` of
  every recorded layer output (through zero taps that ``run`` adds) and ``d loss / d
  kernel`` (see :func:`keras_inits._probe.gradient_pass`, which supplies ``run``);
* ``without_gradients()``: a context for a pass that needs no gradient (``torch.no_grad``);
* ``fast_dense_draw(law, shape, scale, work_dtype, seed)``: an optional faster draw of the
  very values the generic ``keras.random`` path gives (``None``: use the generic path);
* ``to_numpy(value)``: a variable or tensor as a NumPy array, without the warnings that
  ``keras.ops.convert_to_numpy`` or ``variable.numpy()`` raise on some backends;
* ``is_chief()``: whether this process is the chief of a multi-worker run (the one that
  writes files): TensorFlow's chief (task ``"chief"``, else worker 0), JAX's process 0,
  torch's rank 0; ``True`` in a single-process run;
* ``broadcast_from_chief(variables)``: after a change made on every worker (lsuv,
  reinitialize), every worker gets the chief's values, bit for bit (a no-op in a
  single-process run). Every worker must call it, with the same variables in the same order.

and one constant:

* ``ASYNC_DISPATCH``: whether eager operations return before their result is computed and
  tensors are immutable (JAX), so that the probe may convert a layer's output once the next
  layer has been dispatched (see :func:`keras_inits._probe.run_probe`). ``False`` on
  TensorFlow and torch: eager operations run synchronously on the CPU, and a later torch
  operation may write into an earlier output in place.

:func:`current` returns the module of the active Keras backend, imported on first use, so
importing keras_inits never imports a framework that Keras does not use.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import keras

SUPPORTED_BACKENDS: tuple[str, ...] = ("tensorflow", "jax", "torch")

_MODULES: dict[str, ModuleType] = {}


def name() -> str:
    """The active Keras backend: ``"tensorflow"``, ``"jax"`` or ``"torch"``."""
    return keras.backend.backend()


def current() -> ModuleType:
    """The keras_inits backend module of the active Keras backend.

    Raises:
        ValueError: for a Keras backend keras_inits does not support (``numpy``, ``openvino``).
    """
    backend = name()
    module = _MODULES.get(backend)
    if module is None:
        if backend not in SUPPORTED_BACKENDS:
            raise ValueError(
                f"keras_inits supports the Keras backends {SUPPORTED_BACKENDS}. "
                f"Received: KERAS_BACKEND={backend!r}"
            )
        module = _MODULES[backend] = importlib.import_module(f"keras_inits.backend.{backend}")
    return module
