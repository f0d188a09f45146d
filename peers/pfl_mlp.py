"""pfl-research's side of `make bench-peers`: a bench workload in pfl's simulation (TF backend).

Run by the peers virtualenv (`.venv-peers/bin/python peers/pfl_mlp.py WORKLOAD OUT`); it
imports no fedpop code. WORKLOAD is the .npz that `experiments/bench_peers.py` writes (the
same file Flower reads, see `flower_mlp.load_workload`): each device's x/y, the layer sizes
and initial weights, the per-round cohorts, lr, batch size and epochs, and fedpop's final
weights. The layer sizes pick the model: 784-200-200-10 is the MLP workload, 784-10 (no
hidden layer) the logistic-regression workload. OUT gets a JSON result: seconds per round
(wall clock, from the end of the previous round, or from the start of training for round 1,
to the end of the round's model update, as pfl's own `StopwatchCallback` laps them), the
versions used and the final weights' largest difference to fedpop's.

The simulation is written the way pfl's documentation and its TF benchmarks
(benchmarks/image_classification/tf/train.py in apple/pfl-research) write one:
  * a Keras model compiled with `SGD` (pfl resets its learning rate to
    `local_learning_rate` for every device) and sparse cross-entropy from logits, wrapped
    in `pfl.model.tensorflow.TFModel` with `SGD(1.0)` as the central optimizer, so the
    server step adds the averaged update, as fedpop's server lr 1 does;
  * the devices as a `FederatedDataset.from_slices` of user id -> [x, y];
  * `SimulatedBackend` with `WeightByDatapoints` (fedpop weights updates by examples),
    no privacy mechanism;
  * `FederatedAveraging().run(NNAlgorithmParams, backend, model, NNTrainHyperParams,
    callbacks=[...])` with the workload's lr, batch size and epochs.

What differs from pfl's examples, to keep the workload identical to fedpop's:
  * the cohorts: the user sampler is pfl's `MinimizeReuseUserSampler` over the rounds'
    cohorts laid end to end; it hands out user ids in that order, so round r trains
    exactly `cohorts[r]` (pfl's other samplers would draw their own cohorts);
  * no central or per-device evaluation and no metrics: pfl evaluates each device before
    and after training in iterations where `iteration % evaluation_frequency == 0`,
    which always includes the first, so round 1 carries those forward passes as well as
    the graph tracing (the median over rounds leaves round 1 out).

Backend choice: TensorFlow, through legacy Keras (`tf-keras`, which pfl's `tf` extra
installs via tensorflow-probability[tf]; `TF_USE_LEGACY_KERAS=1` before TF is imported).
pfl 0.6's `TFModel` keys the model's variables by `variable.name`, which under Keras 3 is
only "kernel" or "bias", so a model of more than one layer would collapse to two entries;
under tf-keras the names are unique ("dense/kernel:0", ...).

Processes: `--processes 1` (default) runs one process (TF's `OneDeviceStrategy` on the CPU, TF
using all cores). `--processes N` runs pfl's own multi-worker mode as its generic platform
documents it: N copies of this script on this machine, each told the worker addresses
(`PFL_WORKER_ADDRESSES`, loopback ports) and its rank (`PFL_WORKER_RANK`); pfl then splits
each cohort between the ranks and all-reduces their sums through TF's
`MultiWorkerMirroredStrategy`. Each rank pins TensorFlow to its share of the cores (intra-op
threads cores/N, inter-op 1), as fedpop's workers and Flower's 1-CPU clients are pinned.
Rank 0 writes OUT (its laps are the round times: the all-reduce ends every round together).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before TensorFlow is imported; see the module doc

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from flower_mlp import load_workload  # noqa: E402  (the shared workload format; numpy only)

RANK_ENV, ADDRESSES_ENV = "PFL_WORKER_RANK", "PFL_WORKER_ADDRESSES"  # pfl's generic platform reads these


def keras_model(layer_sizes: list[int], learning_rate: float):
    """The workload's model in legacy Keras: Dense+ReLU hidden layers, logits out, local SGD."""
    import tensorflow as tf

    model = tf.keras.Sequential([tf.keras.Input(shape=(layer_sizes[0],))]
                                + [tf.keras.layers.Dense(w, activation="relu") for w in layer_sizes[1:-1]]
                                + [tf.keras.layers.Dense(layer_sizes[-1])])
    model.compile(optimizer=tf.keras.optimizers.SGD(learning_rate),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def run(workload: str) -> dict:
    import tensorflow as tf

    world = len(os.environ[ADDRESSES_ENV].split(",")) if ADDRESSES_ENV in os.environ else 1
    if world > 1:  # before TF runs anything
        tf.config.threading.set_intra_op_parallelism_threads(max(1, (os.cpu_count() or 1) // world))
        tf.config.threading.set_inter_op_parallelism_threads(1)
    import pfl
    import tf_keras
    from pfl.aggregate.simulate import SimulatedBackend
    from pfl.aggregate.weighting import WeightByDatapoints
    from pfl.algorithm import FederatedAveraging, NNAlgorithmParams
    from pfl.callback.base import TrainingProcessCallback
    from pfl.data.federated_dataset import FederatedDataset
    from pfl.data.sampling import get_user_sampler
    from pfl.hyperparam import NNTrainHyperParams
    from pfl.internal.ops.selector import get_default_framework_module
    from pfl.metrics import Metrics
    from pfl.model.tensorflow import TFModel

    if not tf.keras.Sequential.__module__.startswith("tf_keras"):
        raise RuntimeError("pfl's TFModel needs legacy Keras here: set TF_USE_LEGACY_KERAS=1 before importing TF")

    class RoundTimer(TrainingProcessCallback):
        """Laps each central iteration, as pfl's StopwatchCallback does, at full precision."""

        def __init__(self):
            self.laps: list[float] = []
            self._t = time.perf_counter()

        def on_train_begin(self, *, model):
            self._t = time.perf_counter()
            return Metrics()

        def after_central_iteration(self, aggregate_metrics, model, *, central_iteration):
            now = time.perf_counter()
            self.laps.append(now - self._t)
            self._t = now
            return False, Metrics()

    np.random.seed(0)  # pfl draws its per-device seeds from numpy's global state
    w = load_workload(workload)
    cohorts = w["cohorts"]
    rounds, cohort = int(cohorts.shape[0]), int(cohorts.shape[1])

    data = {d: [x, y] for d, (x, y) in w["devices"].items()}
    sampler = get_user_sampler("minimize_reuse", cohorts.ravel().tolist())  # round r -> cohorts[r], in order
    train_data = FederatedDataset.from_slices(data, sampler)
    val_data = FederatedDataset.from_slices(data, get_user_sampler("minimize_reuse", list(data)))  # unused

    keras = keras_model(w["layer_sizes"], w["lr"])
    keras.set_weights(w["init"])
    model = TFModel(model=keras, metrics={}, central_optimizer=tf.keras.optimizers.SGD(1.0))
    backend = SimulatedBackend(training_data=train_data, val_data=val_data, postprocessors=[WeightByDatapoints()])
    algorithm_params = NNAlgorithmParams(central_num_iterations=rounds, evaluation_frequency=rounds + 1,
                                         train_cohort_size=cohort, val_cohort_size=None)
    train_params = NNTrainHyperParams(local_learning_rate=w["lr"], local_num_epochs=w["epochs"],
                                      local_batch_size=w["batch_size"])
    timer = RoundTimer()
    t0 = time.perf_counter()
    FederatedAveraging().run(algorithm_params=algorithm_params, backend=backend, model=model,
                             model_train_params=train_params, callbacks=[timer], send_metrics_to_platform=False)
    total = time.perf_counter() - t0
    if len(timer.laps) != rounds:
        raise RuntimeError(f"pfl finished {len(timer.laps)} of {rounds} rounds")
    processes = int(get_default_framework_module().distributed.world_size)
    if processes != world:
        raise RuntimeError(f"pfl runs {processes} worker processes, {world} were started")
    out = {"pfl_version": pfl.__version__, "tensorflow_version": tf.__version__,
           "keras_version": tf_keras.__version__, "backend": "tensorflow (tf-keras)", "processes": processes,
           "model": "-".join(map(str, w["layer_sizes"])), "cohort": cohort, "rounds": rounds,
           "per_round_s": timer.laps, "s_per_round": statistics.median(timer.laps), "total_s": total}
    final = np.concatenate([np.asarray(a, np.float32).ravel() for a in keras.get_weights()])
    out["final_weights_size"] = int(final.size)
    if w["expected_final"] is not None:
        out["max_abs_diff_vs_fedpop_weights"] = float(np.abs(final - w["expected_final"]).max())
    return out


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def launch(workload: str, out: str, processes: int) -> dict:
    """pfl's multi-worker simulation: ``processes`` ranks of this script on loopback ports;
    rank 0's result. A rank that fails stops the others (they would wait in the all-reduce)."""
    addresses = ",".join(f"127.0.0.1:{p}" for p in _free_ports(processes))
    procs = []
    for rank in range(processes):
        env = {**os.environ, ADDRESSES_ENV: addresses, RANK_ENV: str(rank)}
        rank_out = out if rank == 0 else f"{out}.rank{rank}"
        procs.append(subprocess.Popen([sys.executable, os.path.abspath(__file__), workload, rank_out], env=env))
    try:
        while any(p.poll() is None for p in procs):
            if any(p.poll() not in (None, 0) for p in procs):
                break
            time.sleep(0.1)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            p.wait()
    codes = [p.returncode for p in procs]
    for rank in range(1, processes):
        if os.path.exists(f"{out}.rank{rank}"):
            os.remove(f"{out}.rank{rank}")
    if any(codes):
        raise RuntimeError(f"pfl's worker processes exited with {codes}")
    with open(out) as f:
        return json.load(f)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("workload", help=".npz written by experiments/bench_peers.py")
    p.add_argument("out", help="JSON file to write")
    p.add_argument("--processes", type=int, default=1, help="pfl worker processes on this machine")
    args = p.parse_args(argv)
    if args.processes > 1 and RANK_ENV not in os.environ:
        result = launch(args.workload, args.out, args.processes)
        print(json.dumps({k: v for k, v in result.items() if k != "per_round_s"}))
        return 0
    result = run(args.workload)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps({k: v for k, v in result.items() if k != "per_round_s"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
