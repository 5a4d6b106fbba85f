"""End to end: the real TensorBoard server reads what ActivationStatistics wrote.

Runs on every backend: the ``tensorboard`` program of the test's own environment (on jax and
torch an environment without TensorFlow, where TensorBoard uses its stub) serves the run on
127.0.0.1, and the test reads tags, series, histograms and the custom-scalars layout over HTTP,
with both of TensorBoard's loaders (the Python one, ``--load_fast=false``, and the Rust data
server, ``--load_fast=true``): the depth-profile runs are served with step = depth index, and
a write while the server runs replaces the latest profile.
"""

from __future__ import annotations

import json
import math
import os
import queue
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import keras
import pytest

import keras_inits

from _stats_helpers import batch, mlp

STARTUP_TIMEOUT_SECONDS = 90
REQUEST_TIMEOUT_SECONDS = 30
#: How long a test waits for the server's reload to show what was written (not a speed goal).
LOAD_TIMEOUT_SECONDS = 90
POLL_SECONDS = 0.5
RELOAD_INTERVAL_SECONDS = 1
LAYERS = ("dense_0", "dense_1", "out")
_SERVING_LINE = re.compile(r"TensorBoard .* at (http://127\.0\.0\.1:(\d+)/)")


def _tensorboard_program():
    """The ``tensorboard`` script installed beside the running interpreter."""
    program = os.path.join(os.path.dirname(sys.executable), "tensorboard")
    assert os.access(program, os.X_OK), f"no tensorboard program at {program}"
    return program


def _start_tensorboard(logdir, load_fast="false"):
    """A TensorBoard server reloading every second: the Python loader or the Rust data server."""
    command = [
        _tensorboard_program(),
        "--logdir", str(logdir),
        "--host", "127.0.0.1",
        "--port", "0",
        f"--load_fast={load_fast}",
        f"--reload_interval={RELOAD_INTERVAL_SECONDS}",
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


def _series(opener, base, run, tag):
    """``[(step, value)]`` of one scalar tag of one run, as the server serves it."""
    points = _get_json(opener, base, "data/plugin/scalars/scalars", run=run, tag=tag)
    return [(step, value) for _, step, value in points]


def _wait_for_series(opener, base, run, tag, expected):
    """Poll the server until the series equals ``expected`` (or the load timeout passes)."""
    deadline = time.monotonic() + LOAD_TIMEOUT_SECONDS
    served = None
    while time.monotonic() < deadline:
        try:
            served = _series(opener, base, run, tag)
        except urllib.error.HTTPError:  # the run or tag is not loaded yet
            served = None
        if served is not None and len(served) == len(expected) and all(
            step == want_step and value == pytest.approx(want_value, rel=1e-6)
            for (step, value), (want_step, want_value) in zip(served, expected)
        ):
            return served
        time.sleep(POLL_SECONDS)
    raise AssertionError(f"{run} {tag}: served {served}, expected {expected}")


def _profile(statistics, name):
    """``[(depth index, value)]``: what the profile run must hold for one statistic."""
    return [(index, getattr(statistics[path], name)) for index, path in enumerate(LAYERS)]


@pytest.mark.parametrize("load_fast", ["false", "true"])
def test_tensorboard_server_serves_scalars_layout_and_the_live_depth_profile(tmp_path, load_fast):
    model = mlp()
    model.compile(optimizer="sgd", loss="mse")
    x, y = batch(256)
    at_init = keras_inits.activation_statistics(model, x[:64])
    callback = keras_inits.ActivationStatistics(tmp_path, x[:64], images=False)
    model.fit(x, y, batch_size=64, epochs=2, callbacks=[callback], verbose=0)
    at_step_8 = callback.last_statistics

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only
    process, lines = _start_tensorboard(tmp_path, load_fast)
    try:
        base = _wait_for_url(process, lines)
        std_tag = "activations/std/01_dense_1"
        profile_runs = ("activations_profile/init", "activations_profile/latest")
        _wait_for_series(opener, base, "activations_profile/latest", "depth_profile/std",
                         _profile(at_step_8, "std"))
        for run, statistics in zip(profile_runs, (at_init, at_step_8)):
            for name in ("std", "pre_std", "cosine"):
                _wait_for_series(opener, base, run, f"depth_profile/{name}",
                                 _profile(statistics, name))
            log10_pre_std = [(index, math.log10(value))
                             for index, value in _profile(statistics, "pre_std")]
            _wait_for_series(opener, base, run, "depth_profile/log10_pre_std", log10_pre_std)

        tags = _get_json(opener, base, "data/plugin/scalars/tags")
        assert std_tag in tags["activations"]
        assert "activations/cosine/02_out" in tags["activations"]
        assert "depth_profile/pre_std" in tags["activations_profile/latest"]
        # tanh layers are bounded: their saturation is in the profile run.
        assert "depth_profile/saturation_fraction" in tags["activations_profile/latest"]
        series = _series(opener, base, "activations", std_tag)
        assert [step for step, _ in series] == [0, 4, 8]
        assert series[0][1] == pytest.approx(at_init["dense_1"].std, rel=1e-6)
        assert series[-1][1] == pytest.approx(at_step_8["dense_1"].std, rel=1e-6)

        histogram_tags = _get_json(opener, base, "data/plugin/histograms/tags")
        assert set(histogram_tags["activations"]) == {
            f"activations/histogram/{index:02d}_{layer}" for index, layer in enumerate(LAYERS)
        }
        histograms = _get_json(opener, base, "data/plugin/histograms/histograms",
                               run="activations", tag="activations/histogram/01_dense_1")
        assert [step for _, step, _ in histograms] == [0, 4, 8]
        assert sum(count for _, _, count in histograms[-1][2]) == 64 * 8

        layout = _get_json(opener, base, "data/plugin/custom_scalars/layout")
        titles = [category["title"] for category in layout["category"]]
        assert titles == ["depth_profile (step = layer index)", "activations (by layer)"]
        charts = {chart["title"]: chart["multiline"]["tag"][0]
                  for chart in layout["category"][1]["chart"]}
        assert charts["std"] == "activations/std/"
        # The custom-scalars plugin itself resolves the chart's regex to every layer.
        matched = _get_json(opener, base, "data/plugin/custom_scalars/scalars",
                            run="activations", tag=charts["std"])
        assert matched["regex_valid"]
        assert set(matched["tag_to_events"]) == {
            f"activations/std/{index:02d}_{layer}" for index, layer in enumerate(LAYERS)
        }

        # A live server: one more epoch (step 12) replaces the latest profile, and the
        # served series is that profile alone (steps 0, 1, 2: nothing appended, nothing old).
        model.fit(x, y, batch_size=64, epochs=1, callbacks=[callback], verbose=0)
        at_step_12 = callback.last_statistics
        assert at_step_12["dense_1"].std != pytest.approx(at_step_8["dense_1"].std, rel=1e-6)
        for name in ("std", "pre_std", "cosine"):
            _wait_for_series(opener, base, "activations_profile/latest", f"depth_profile/{name}",
                             _profile(at_step_12, name))
            _wait_for_series(opener, base, "activations_profile/init", f"depth_profile/{name}",
                             _profile(at_init, name))
    finally:
        callback.close()
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
