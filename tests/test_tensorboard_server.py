"""End to end: the real TensorBoard server reads what ActivationStatistics wrote.

Runs on every backend: the ``tensorboard`` program of the test's own environment (on jax and
torch an environment without TensorFlow, where TensorBoard uses its stub) serves the run on
127.0.0.1, and the test reads tags, series, histograms and the custom-scalars layout over HTTP.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

import keras
import pytest

import keras_inits

from _stats_helpers import batch, mlp

STARTUP_TIMEOUT_SECONDS = 90
REQUEST_TIMEOUT_SECONDS = 30
_SERVING_LINE = re.compile(r"TensorBoard .* at (http://127\.0\.0\.1:(\d+)/)")


def _tensorboard_program():
    """The ``tensorboard`` script installed beside the running interpreter."""
    program = os.path.join(os.path.dirname(sys.executable), "tensorboard")
    assert os.access(program, os.X_OK), f"no tensorboard program at {program}"
    return program


def _start_tensorboard(logdir):
    command = [
        _tensorboard_program(),
        "--logdir", str(logdir),
        "--host", "127.0.0.1",
        "--port", "0",
        "--load_fast=false",
        "--reload_interval=0",
        "--reload_task=blocking",
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, env=env)
    lines: "queue.Queue[str | None]" = queue.Queue()

    def pump():
        for line in process.stderr:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return process, lines


def _wait_for_url(process, lines):
    seen = []
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1.0)
        except queue.Empty:
            if process.poll() is not None:
                break
            continue
        if line is None:
            break
        seen.append(line)
        match = _SERVING_LINE.search(line)
        if match:
            return match.group(1)
    raise AssertionError("TensorBoard did not start:\n" + "".join(seen[-30:]))


def _get_json(opener, base, path, **query):
    url = base + path.lstrip("/")
    if query:
        url += "?" + urllib.parse.urlencode(query)
    with opener.open(url, timeout=REQUEST_TIMEOUT_SECONDS) as response:
        assert response.status == 200
        return json.loads(response.read().decode("utf-8"))


def test_tensorboard_server_serves_scalars_and_layout(tmp_path):
    model = mlp()
    model.compile(optimizer="sgd", loss="mse")
    x, y = batch(256)
    callback = keras_inits.ActivationStatistics(tmp_path, x[:64], images=False)
    model.fit(x, y, batch_size=64, epochs=2, callbacks=[callback], verbose=0)
    callback.close()
    expected_std = [callback.last_statistics["dense_1"].std]

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only
    process, lines = _start_tensorboard(tmp_path)
    try:
        base = _wait_for_url(process, lines)

        tags = _get_json(opener, base, "data/plugin/scalars/tags")
        assert "activations" in tags
        assert "activations/dense_1/std" in tags["activations"]
        assert "activations/out/cosine" in tags["activations"]

        histogram_tags = _get_json(opener, base, "data/plugin/histograms/tags")
        assert set(histogram_tags["activations"]) == {
            "activations/dense_0", "activations/dense_1", "activations/out"
        }
        histograms = _get_json(opener, base, "data/plugin/histograms/histograms",
                               run="activations", tag="activations/dense_1")
        assert [step for _, step, _ in histograms] == [0, 4, 8]
        assert sum(count for _, _, count in histograms[-1][2]) == 64 * 8

        series = _get_json(opener, base, "data/plugin/scalars/scalars",
                           run="activations", tag="activations/dense_1/std")
        assert [step for _, step, _ in series] == [0, 4, 8]
        assert series[-1][2] == pytest.approx(expected_std[0], rel=1e-6)

        layout = _get_json(opener, base, "data/plugin/custom_scalars/layout")
        category = layout["category"][0]
        assert category["title"] == "activations (by layer)"
        charts = {chart["title"]: chart["multiline"]["tag"][0] for chart in category["chart"]}
        assert charts["std"] == "activations/.*/std$"

        # The custom-scalars plugin itself resolves the chart's regex to every layer.
        matched = _get_json(opener, base, "data/plugin/custom_scalars/scalars",
                            run="activations", tag=charts["std"])
        assert matched["regex_valid"]
        assert set(matched["tag_to_events"]) == {
            "activations/dense_0/std", "activations/dense_1/std", "activations/out/std"
        }
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
