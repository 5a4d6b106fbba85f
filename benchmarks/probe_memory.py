"""Peak extra memory of ``activation_statistics`` on ResNet50V2, before and after streaming.

Each configuration runs in its own subprocess (peak RSS only grows within a process). A child
builds ``keras.applications.ResNet50V2(weights=None, input_shape=(64, 64, 3))``, draws 64
samples, makes one warm-up call of the same configuration on 2 samples (a warm-up on the full
batch would leave the allocator's heap at that call's peak and hide the measured call), reads
its current RSS, then runs the configuration once on the 64 samples and reports
``ru_maxrss`` minus that RSS:

* ``forward``: a plain forward pass without gradients, for reference (what the model itself
  needs, probe or not);
* ``keep``: the 0.1 algorithm (git main): every monitored layer's float32 output is kept
  until the pass ends, then the statistics are computed;
* ``stream``: 0.2's ``activation_statistics``: each output is reduced to its statistics as
  the pass goes and dropped.

Run once per backend (one venv each)::

    KERAS_BACKEND=jax python benchmarks/probe_memory.py

Measured on this project's machine (2 shared cores, 103 monitored layers, MiB of peak RSS above
the RSS after the warm-up; the float32 outputs alone are 471 MiB):

| backend | forward | keep (0.1) | stream (0.2) |
|---|---|---|---|
| tensorflow | 657 | 1135 | 655 |
| jax | 843 | 1296 | 821 |
| torch | 661 | 1077 | 644 |

So streaming costs nothing above the plain forward pass, which Keras itself needs (a
Functional model holds every intermediate tensor until its call returns).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

VARIANTS = ("forward", "keep", "stream")
WARMUP_SAMPLES = 2
SAMPLES = 64
IMAGE_SIZE = 64
KIB_PER_MIB = 1024


def _current_rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        resident_pages = int(handle.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / (KIB_PER_MIB * KIB_PER_MIB)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KIB_PER_MIB


def _child(variant: str) -> dict:
    import keras
    import numpy as np

    from keras_inits import _probe, backend
    from keras_inits.stats import activation_statistics, statistics_from_records

    def forward(batch: np.ndarray) -> tuple[int, float]:
        with backend.current().without_gradients():
            model(batch, training=False)
        return 0, 0.0

    def keep(batch: np.ndarray) -> tuple[int, float]:
        records = _probe.run_probe(model, batch)  # every float32 output kept to the end
        held = sum(a.nbytes for r in records.values() for a in r.outputs)
        held += sum(a.nbytes for r in records.values() for a in (r.pre_activations or ()))
        return len(statistics_from_records(records, batch)), held / 2**20

    def stream(batch: np.ndarray) -> tuple[int, float]:
        return len(activation_statistics(model, batch)), 0.0

    run = {"forward": forward, "keep": keep, "stream": stream}[variant]
    model = keras.applications.ResNet50V2(
        weights=None, input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3)
    )
    x = np.random.default_rng(0).normal(size=(SAMPLES, IMAGE_SIZE, IMAGE_SIZE, 3))
    x = x.astype("float32")
    run(x[:WARMUP_SAMPLES])
    baseline = _current_rss_mib()
    peak_before = _peak_rss_mib()
    layers, kept_mib = run(x)
    peak_after = _peak_rss_mib()
    return {
        "variant": variant,
        "backend": keras.backend.backend(),
        "layers": layers,
        "baseline_mib": baseline,
        "warmup_peak_extra_mib": peak_before - baseline,
        "peak_extra_mib": peak_after - baseline,
        "arrays_held_at_end_mib": kept_mib,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        print(json.dumps(_child(arguments.child)))
        return
    rows = []
    for variant in VARIANTS:
        completed = subprocess.run(
            [sys.executable, __file__, "--child", variant],
            check=True, capture_output=True, text=True,
        )
        rows.append(json.loads(completed.stdout.strip().splitlines()[-1]))
    print("| backend | variant | layers | peak extra RSS (MiB) | warm-up peak above baseline (MiB) "
          "| float32 arrays held at the end (MiB) |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['backend']} | {row['variant']} | {row['layers']} | "
              f"{row['peak_extra_mib']:.0f} | {row['warmup_peak_extra_mib']:.0f} | "
              f"{row['arrays_held_at_end_mib']:.0f} |")


if __name__ == "__main__":
    main()
