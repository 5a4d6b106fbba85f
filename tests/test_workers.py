"""Multi-worker runs: only the chief writes event files; lsuv and reinitialize leave every
worker with the chief's weights, bit for bit, seeded or not.

The multi-worker tests start 2 worker processes on 127.0.0.1, one per backend:
``tf.distribute.MultiWorkerMirroredStrategy`` (``TF_CONFIG``), ``jax.distributed`` and
``torch.distributed`` (gloo). Each worker runs :data:`WORKER_SCRIPT` and dumps its weights at
every stage; the test compares them across the workers and reads the event files back.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_inits import backend

from _stats_helpers import read_run

WORKERS = 2
#: Seconds a worker may take before the test stops it (a worker that waits for a collective
#: its peer never joins would otherwise wait forever).
WORKER_TIMEOUT = 240
#: Steps of ``fit(x[64], batch_size=16, epochs=2)`` with ``update_freq="epoch"``.
EXPECTED_STEPS = [0, 4, 8]
#: Stages after which every worker must hold the same weights, bit for bit. "fit" starts
#: with lsuv from its callback (broadcast), and the training steps are deterministic: under
#: MultiWorkerMirroredStrategy they all-reduce the gradients, elsewhere every process trains
#: on the same unshuffled data.
BROADCAST_STAGES = ("lsuv", "reinitialize", "reinitialize_in_scope", "fit")
#: The same operations with the broadcast switched off: the workers' weights differ.
LOCAL_STAGES = ("lsuv_local", "reinitialize_local")

WORKER_SCRIPT = textwrap.dedent(
    """
    import contextlib
    import json
    import os
    import sys

    backend_name, rank, ports, out_dir, tests_dir = sys.argv[1:6]
    rank = int(rank)
    ports = ports.split(",")
    scope = contextlib.nullcontext

    if backend_name == "tensorflow":
        os.environ["TF_CONFIG"] = json.dumps({
            "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
            "task": {"type": "worker", "index": rank},
        })
        import tensorflow as tf
        import keras
        from keras.src.backend.tensorflow import trainer

        # Keras 3.15.1's fit under MultiWorkerMirroredStrategy (keras-team/keras#20585,
        # tensorflow/tensorflow#72388), patched here, in the test harness only:
        # 1. `_maybe_symbolic_build` reduces the whole (x, y) batch with one
        #    `strategy.reduce`, which under MWMS takes one distributed value, not a nest
        #    ("Attempt to convert a value (PerReplica...) to a Tensor"): reduce leaf by leaf.
        # 2. `reduce_per_replica` averages across workers with `axis=0`, which fails on the
        #    scalar loss ("Invalid reduction dimension 0 for input with 0 dimensions"):
        #    average across the workers only (`axis=None`).
        def _maybe_symbolic_build(self, iterator=None, data_batch=None):
            if self._distribute_strategy is None:
                return
            strategy = self.distribute_strategy

            def reduce(value):
                if isinstance(value, tf.distribute.DistributedValues):
                    return strategy.reduce("MEAN", value, axis=None)
                return value

            if iterator is not None:
                for _, _, batches in iterator:
                    data_batch = keras.tree.map_structure(reduce, next(batches))
                    break
            with strategy.scope():
                self._symbolic_build(data_batch=data_batch)

        keras_reduce_per_replica = trainer.reduce_per_replica

        def reduce_per_replica(values, strategy, reduction):
            multi_worker = trainer._collective_all_reduce_multi_worker(strategy)
            if multi_worker and reduction in ("auto", "mean"):
                return keras.tree.map_structure(
                    lambda value: strategy.reduce("MEAN", value, axis=None), values
                )
            return keras_reduce_per_replica(values, strategy, reduction)

        trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
        trainer.reduce_per_replica = reduce_per_replica
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        scope = strategy.scope
    elif backend_name == "jax":
        import jax

        jax.distributed.initialize(
            coordinator_address=f"127.0.0.1:{ports[0]}", num_processes=2, process_id=rank
        )
    else:
        import torch.distributed

        torch.distributed.init_process_group(
            "gloo", rank=rank, world_size=2, init_method=f"tcp://127.0.0.1:{ports[0]}"
        )

    import keras
    import numpy as np

    import keras_inits
    from keras_inits import backend

    sys.path.insert(0, tests_dir)
    from _stats_helpers import batch, mlp, weights_of

    seam = backend.current()
    with scope():
        model = mlp(widths=(16, 8))
        model.compile(optimizer="sgd", loss="mse")
    # Each worker measures its own batch: the broadcast covers batches that differ, too.
    x_local, _ = batch(64, seed=100 + rank)
    stages = {}
    keras_inits.lsuv(model, x_local, seed=None)
    stages["lsuv"] = weights_of(model)
    keras_inits.reinitialize(model, "he", seed=None)
    stages["reinitialize"] = weights_of(model)

    # Control: the same calls with the broadcast switched off.
    broadcast_from_chief = seam.broadcast_from_chief
    seam.broadcast_from_chief = lambda variables: None
    keras_inits.lsuv(model, x_local, seed=None)
    stages["lsuv_local"] = weights_of(model)
    keras_inits.reinitialize(model, "he", seed=None)
    stages["reinitialize_local"] = weights_of(model)
    seam.broadcast_from_chief = broadcast_from_chief

    with scope():
        keras_inits.reinitialize(model, "he", seed=None)
        chief_in_scope = seam.is_chief()
    stages["reinitialize_in_scope"] = weights_of(model)

    x, y = batch(64)
    callback = keras_inits.ActivationStatistics(
        os.path.join(out_dir, f"logs_{rank}"), x[:32], images=False
    )
    # lsuv once more, from its callback inside fit, on each worker's own batch.
    callbacks = [keras_inits.LSUV(x_local), callback]
    model.fit(x, y, batch_size=16, epochs=2, shuffle=False, callbacks=callbacks, verbose=0)
    callback.close()
    stages["fit"] = weights_of(model)

    arrays = {
        f"{stage}/{index}": weight
        for stage, weights in stages.items()
        for index, weight in enumerate(weights)
    }
    np.savez(os.path.join(out_dir, f"weights_{rank}.npz"), **arrays)
    facts = {
        "chief": seam.is_chief(),
        "chief_in_scope": chief_in_scope,
        "iterations": int(seam.to_numpy(model.optimizer.iterations)),
        "last_std": {path: float(s.std) for path, s in callback.last_statistics.items()},
    }
    with open(os.path.join(out_dir, f"facts_{rank}.json"), "w") as file:
        json.dump(facts, file)
    print("WORKER DONE", rank)
    """
)


def free_ports(count):
    """``count`` distinct ports that are free on 127.0.0.1 (bound, read, released)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def run_workers(tmp_path, backend_name, port_count):
    """Run :data:`WORKER_SCRIPT` on ``WORKERS`` processes; their weights and facts by rank."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER_SCRIPT)
    ports = ",".join(str(port) for port in free_ports(port_count))
    repository = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(
        os.environ,
        KERAS_BACKEND=backend_name,
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONPATH=os.pathsep.join([repository, os.environ.get("PYTHONPATH", "")]),
    )
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    processes = [
        subprocess.Popen(
            [sys.executable, str(script), backend_name, str(rank), ports, str(tmp_path), tests_dir],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        for rank in range(WORKERS)
    ]
    outputs = []
    for process in processes:
        try:
            outputs.append(process.communicate(timeout=WORKER_TIMEOUT))
        except subprocess.TimeoutExpired:
            for other in processes:
                other.kill()
            outputs.append(process.communicate())
    report = "\n".join(
        f"--- worker {rank} (exit {process.returncode})\n{out[-2000:]}\n{err[-6000:]}"
        for rank, (process, (out, err)) in enumerate(zip(processes, outputs))
    )
    assert all(process.returncode == 0 for process in processes), report
    weights = [dict(np.load(tmp_path / f"weights_{rank}.npz")) for rank in range(WORKERS)]
    facts = [json.loads((tmp_path / f"facts_{rank}.json").read_text()) for rank in range(WORKERS)]
    return weights, facts


def stage_weights(weights, stage):
    """The weights of one worker at ``stage``, in ``model.weights`` order."""
    keys = sorted((key for key in weights if key.startswith(f"{stage}/")),
                  key=lambda key: int(key.split("/")[1]))
    assert keys, f"no weights dumped at stage {stage!r}"
    return [weights[key] for key in keys]


def bitwise_equal(first, second):
    """Same dtypes, shapes and bytes (``-0.0 != 0.0`` here, and a NaN equals itself)."""
    if len(first) != len(second):
        return False
    return all(
        a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
        for a, b in zip(first, second)
    )


def check_workers(tmp_path, weights, facts):
    """What every backend's 2-worker run must show (see :data:`WORKER_SCRIPT`)."""
    for stage in BROADCAST_STAGES:
        first, second = (stage_weights(dump, stage) for dump in weights)
        assert bitwise_equal(first, second), f"the workers' weights differ after {stage}"
    for stage in LOCAL_STAGES:
        first, second = (stage_weights(dump, stage) for dump in weights)
        assert not bitwise_equal(first, second), f"without the broadcast they differ: {stage}"
    assert [fact["chief"] for fact in facts] == [True, False]
    assert [fact["chief_in_scope"] for fact in facts] == [True, False]
    assert [fact["iterations"] for fact in facts] == [EXPECTED_STEPS[-1]] * WORKERS
    run = read_run(tmp_path / "logs_0" / "activations")
    assert [step for step, _ in run["activations/std/00_dense_0"]] == EXPECTED_STEPS
    assert not (tmp_path / "logs_1").exists(), "a worker that is not the chief wrote files"
    # The other worker measured the last step too (it runs every probe pass, writes none),
    # with the same weights: the same statistics, which the chief wrote.
    assert facts[1]["last_std"] == facts[0]["last_std"]
    written = run["activations/std/00_dense_0"][-1][1]
    assert float(written) == pytest.approx(facts[0]["last_std"]["dense_0"], rel=1e-6)


@pytest.mark.backends("tensorflow")
def test_multi_worker_mirrored_strategy_two_workers(tmp_path):
    weights, facts = run_workers(tmp_path, "tensorflow", port_count=WORKERS)
    check_workers(tmp_path, weights, facts)


@pytest.mark.backends("jax")
def test_jax_distributed_two_processes(tmp_path):
    weights, facts = run_workers(tmp_path, "jax", port_count=1)
    check_workers(tmp_path, weights, facts)


@pytest.mark.backends("torch")
def test_torch_distributed_two_processes(tmp_path):
    weights, facts = run_workers(tmp_path, "torch", port_count=1)
    check_workers(tmp_path, weights, facts)


# --------------------------------------------------------------------------------------
# Single process, every backend
# --------------------------------------------------------------------------------------


def test_single_process_is_chief():
    assert backend.current().is_chief() is True


def test_single_process_broadcast_leaves_values_bit_for_bit():
    values = np.array([[1.5, -0.0], [np.nan, -3.25e-30]], dtype="float32")
    variable = keras.Variable(values, dtype="float32")
    counter = keras.Variable(np.array([7, -2], dtype="int32"), dtype="int32", trainable=False)
    backend.current().broadcast_from_chief([variable, counter])
    backend.current().broadcast_from_chief([])
    read = backend.current().to_numpy
    assert read(variable).tobytes() == values.tobytes()
    assert read(counter).tolist() == [7, -2]


ROUND_TRIP_DTYPES = ["float16", "bfloat16", "float32", "float64", "int8", "uint8", "int64", "bool"]


@pytest.mark.backends("tensorflow")
@pytest.mark.parametrize("dtype", ROUND_TRIP_DTYPES)
def test_tensorflow_words_round_trip_bit_for_bit(dtype):
    """The all-reduce carries 32-bit words: every dtype comes back with its exact bits."""
    import tensorflow as tf

    from keras_inits.backend import tensorflow as tf_backend

    rng = np.random.default_rng(0)
    if dtype == "bool":
        array = rng.random((3, 5)) < 0.5
    elif dtype in ("int8", "uint8", "int64"):
        info = np.iinfo(dtype)
        array = rng.integers(info.min, info.max, size=(3, 5), dtype=dtype, endpoint=True)
    else:
        special = np.array([-0.0, np.nan, -np.inf, 1e-3])
        array = np.concatenate([special, rng.normal(size=11)]).reshape(3, 5)
    values = tf.cast(tf.constant(array), dtype)
    words = tf_backend._to_words(values)
    restored = tf_backend._from_words(words, values.dtype, values.shape)
    assert words.dtype == tf.int32
    assert words.shape.rank == 1
    assert restored.dtype == values.dtype
    assert restored.shape == values.shape
    assert restored.numpy().tobytes() == values.numpy().tobytes()


@pytest.mark.backends("tensorflow")
@pytest.mark.parametrize(
    "cluster, task, chief",
    [
        ({"worker": ["a:1", "b:1"]}, {"type": "worker", "index": 0}, True),
        ({"worker": ["a:1", "b:1"]}, {"type": "worker", "index": 1}, False),
        ({"chief": ["c:1"], "worker": ["a:1"]}, {"type": "chief", "index": 0}, True),
        ({"chief": ["c:1"], "worker": ["a:1"]}, {"type": "worker", "index": 0}, False),
        ({"chief": ["c:1"], "evaluator": ["e:1"]}, {"type": "evaluator", "index": 0}, True),
    ],
)
def test_tensorflow_chief_read_from_tf_config_outside_a_strategy(monkeypatch, cluster, task, chief):
    """Outside ``strategy.scope()`` (where fit runs callbacks) the cluster comes from TF_CONFIG."""
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
    assert backend.current().is_chief() is chief
