"""PyTorch: autodiff derivatives, probe gradients, reading variables."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import keras
import ml_dtypes
import numpy as np
import torch


#: Eager torch operations run synchronously on the CPU, and may write in place.
ASYNC_DISPATCH = False


def to_numpy(value: Any) -> np.ndarray:
    """A variable or tensor as a NumPy array.

    A copy (a snapshot: ``tensor.numpy()`` of a CPU tensor shares its memory, which the
    optimizer updates in place), made by torch: ``keras.ops.convert_to_numpy`` goes through
    ``__array__``, which warns under NumPy 2. bfloat16, which NumPy lacks, becomes
    ``ml_dtypes.bfloat16`` by way of float32 (exact), as Keras converts it.
    """
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, keras.Variable):
        value = value.value
    if not isinstance(value, torch.Tensor):
        return np.asarray(keras.ops.convert_to_numpy(value))
    tensor = value.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        return tensor.to(torch.float32).numpy().astype(ml_dtypes.bfloat16)
    return tensor.clone().numpy()


def elementwise_derivative(function: Callable) -> Callable[[np.ndarray], np.ndarray]:
    """``phi'`` by ``torch.autograd.grad`` in float64 (exact for kinked functions).

    ``phi`` is element-wise, so the gradient of ``sum(phi(x))`` is ``phi'(x)`` entry by entry.
    """

    def derivative(x: np.ndarray) -> np.ndarray:
        values = keras.ops.convert_to_tensor(np.asarray(x, dtype=np.float64), dtype="float64")
        inputs = values.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            outputs = function(inputs)
            if not isinstance(outputs, torch.Tensor):
                raise TypeError("the activation did not return a torch tensor")
            if not outputs.requires_grad:
                raise TypeError("the activation is not differentiable by torch")
            (gradient,) = torch.autograd.grad(outputs.sum(), inputs)
        return gradient.detach().cpu().numpy().astype(np.float64)

    return derivative


def fast_dense_draw(law: str, shape, scale: float, work_dtype: str, seed):
    """No fast path on this backend: the generic keras.random draw is used."""
    return None


def without_gradients() -> torch.no_grad:
    """``torch.no_grad()``: a pass that needs no gradient builds no autograd graph."""
    return torch.no_grad()


def loss_gradients(
    run: Callable[[Callable[[Any], Any]], tuple[Any, list[Any]]], kernels: Sequence[Any]
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """One differentiated probe pass: the values, ``d loss / d tap`` and ``d loss / d kernel``.

    ``torch.autograd.grad`` of the loss with respect to zero "taps" added to the probed
    outputs and to detached copies of the kernels read through a ``keras.StatelessScope``
    (so frozen kernels, whose parameters do not require a gradient, get one too).

    Args:
        run: ``run(tap) -> (loss, kept)``: runs the probed forward pass and the loss with
            ``tap`` applied to every recorded floating output (the pass goes on with what
            ``tap`` returns); ``kept`` is a flat list of the tensors to return as values.
        kernels: The kernel variables whose gradients are wanted (trainable or not).

    Returns:
        ``(values, tap_gradients, kernel_gradients)``: ``kept`` as NumPy arrays, and one
        float32 NumPy array per tap (in the order ``tap`` was called) and per kernel.
    """
    taps: list[torch.Tensor] = []

    def tap(tensor: torch.Tensor) -> torch.Tensor:
        zero = torch.zeros_like(tensor, requires_grad=True)
        taps.append(zero)
        return tensor + zero

    kernel_values = [
        torch.as_tensor(variable.value).detach().clone().requires_grad_(True)
        for variable in kernels
    ]
    with torch.enable_grad():
        with keras.StatelessScope(state_mapping=list(zip(kernels, kernel_values))):
            loss, kept = run(tap)
        targets = taps + kernel_values
        gradients = torch.autograd.grad(loss, targets, allow_unused=True)
    as_float32 = [
        np.zeros(tuple(target.shape), dtype=np.float32)
        if gradient is None
        else np.asarray(to_numpy(gradient), dtype=np.float32)
        for target, gradient in zip(targets, gradients)
    ]
    values = [to_numpy(tensor) for tensor in kept]
    return values, as_float32[: len(taps)], as_float32[len(taps) :]


def float64_available() -> bool:
    """PyTorch always has float64 tensors."""
    return True


# ----------------------------------------------------------------------------------------------
# Multi-process runs (torch.distributed).
# ----------------------------------------------------------------------------------------------

#: The rank whose values every process receives.
CHIEF_RANK = 0


def _distributed() -> bool:
    """Whether a ``torch.distributed`` process group of more than one process is set up."""
    return (
        torch.distributed.is_available()
        and torch.distributed.is_initialized()
        and torch.distributed.get_world_size() > 1
    )


def is_chief() -> bool:
    """Whether this is rank 0 of a ``torch.distributed`` run (``True`` without a process group)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return True
    return torch.distributed.get_rank() == CHIEF_RANK


def broadcast_from_chief(variables: Sequence[Any]) -> None:
    """Give every process of a ``torch.distributed`` run rank 0's values, bit for bit.

    ``torch.distributed.broadcast(tensor, src=0)`` of each value (a copy of the bytes), then
    an ``assign`` on every process. Every process must call it with the same variables in
    the same order. A no-op without a process group of more than one process.

    Args:
        variables: The Keras variables to make identical on every process.
    """
    if not _distributed():
        return
    for variable in variables:
        tensor = variable.value.detach().clone().contiguous()
        torch.distributed.broadcast(tensor, src=CHIEF_RANK)
        variable.assign(tensor)
