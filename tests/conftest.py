"""Shared test set-up: the backend marker.

The suite runs on every Keras backend (``make test`` runs it once per backend). A test that
only makes sense on some backends says so::

    @pytest.mark.backends("tensorflow")
    def test_tf_function_tracing(): ...

and is *deselected* elsewhere (it is not a skip: the run reports it as deselected).
"""

from __future__ import annotations

import keras
import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "backends(*names): run this test only on these Keras backends "
        "(tensorflow, jax, torch); it is deselected on the others",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    active = keras.backend.backend()
    kept, dropped = [], []
    for item in items:
        marker = item.get_closest_marker("backends")
        if marker is not None and active not in marker.args:
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
