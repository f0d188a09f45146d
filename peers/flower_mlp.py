"""Flower's side of `make bench-peers`: the engine bench's MLP workload in Flower's simulation.

Run by the Flower virtualenv (`.venv-peers/bin/python peers/flower_mlp.py WORKLOAD OUT`); it
imports no fedpop code. WORKLOAD is the .npz that `experiments/bench_peers.py` writes: each
device's x/y, the layer sizes and initial weights, the per-round cohorts, lr, batch size and
epochs (and fedpop's final weights, to compare against). OUT gets a JSON result: seconds per
round (wall clock, from the strategy's configure step to the end of its aggregation), the
versions used and the final weights' largest difference to fedpop's. Ray and the actors start
while round 1 runs, so round 1 carries the start-up (the median over rounds leaves it out).

The client is written the way Flower's own Keras quickstart writes it, so the comparison is
fair: examples/quickstart-tensorflow in the Flower repository (adap/flower),
  * `--api numpyclient` (default): tfexample/client_app.py and server_app.py as of Flower
    1.21 (before the example moved to the Message API in Sept. 2025): `client_fn` builds and
    compiles the Keras model (`load_model`) and returns a `NumPyClient` whose `fit` does
    `model.set_weights(parameters)`, `model.fit(x, y, epochs, batch_size, verbose)` and
    returns `model.get_weights(), len(x), {}`; the server is a `ServerApp(server_fn=...)`
    with the legacy `flwr.server.strategy.FedAvg`;
  * `--api message`: the same example today (Message API): `@app.train()` clears the Keras
    session, builds the model, `set_weights`, `fit`, and replies with an `ArrayRecord` and
    the example count; the server runs `flwr.serverapp.strategy.FedAvg.start`.
Both run under `flwr.simulation.run_simulation` on the Ray backend (Flower's simulation
extra), as the quickstart's local simulation does.

What differs from the quickstart, to keep the workload identical to fedpop's:
  * the model is the engine bench's 784-200-200-10 MLP (logits) with plain SGD at the
    workload's lr and sparse cross-entropy from logits (the quickstart: a CIFAR CNN, Adam);
  * `fit(..., shuffle=False)`: fedpop's mlp config trains batches in order (client.shuffle
    false), so both run the same SGD steps on the same batches;
  * the cohort: the simulation has one SuperNode per cohort slot and FedAvg trains all of
    them each round (fraction 1, no federated evaluation); slot p of round r trains device
    `cohorts[r][p]` (the round reaches the client in the fit config). Virtual clients keep
    no state between rounds in either API, so this is the same as sampling those devices
    from a larger population, minus the sampling;
  * device data: the workload file is read once per actor process and kept in memory
    (the quickstart keeps its `FederatedDataset` in a module global in the same way);
  * `client_resources`: 1 CPU per client (`--num-cpus`), so Ray runs one actor per core
    (Flower's default of 2 CPUs per client would give one actor on a 2-core machine).
FedAvg with example weights and server lr 1 is fedpop's update (all devices hold the same
number of examples here), so the final weights match fedpop's to float rounding.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

WORKLOAD_ENV = "FLOWER_MLP_WORKLOAD"
_DATA: dict = {}  # per process (each Ray actor): the workload file, read once
TIMES: dict[int, list[float]] = {}  # server round -> [start, end] (driver process)
FINAL: list = []  # the last aggregated weights (driver process)


def load_workload(path: str) -> dict:
    """The workload .npz as plain values: ``devices`` maps device id -> (x, y)."""
    with np.load(path) as z:
        f = {k: z[k] for k in z.files}
    ids = f["device_ids"].tolist()
    return {
        "cohorts": f["cohorts"].astype(np.int64),
        "devices": {d: (f[f"x_{d}"], f[f"y_{d}"]) for d in ids},
        "layer_sizes": f["layer_sizes"].astype(int).tolist(),
        "init": [f[f"init_{i}"] for i in range(int(f["num_weights"]))],
        "lr": float(f["lr"]), "batch_size": int(f["batch_size"]), "epochs": int(f["epochs"]),
        "expected_final": f.get("expected_final"),
    }


def _workload() -> dict:
    if not _DATA:
        _DATA.update(load_workload(os.environ[WORKLOAD_ENV]))
    return _DATA


def load_model(layer_sizes: list[int], learning_rate: float):
    """The quickstart's `load_model`, with the workload's MLP and optimizer."""
    import keras
    from keras import layers

    model = keras.Sequential([keras.Input(shape=(layer_sizes[0],))]
                             + [layers.Dense(w, activation="relu") for w in layer_sizes[1:-1]]
                             + [layers.Dense(layer_sizes[-1])])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


def _device_data(partition_id: int, server_round: int):
    w = _workload()
    return w["devices"][int(w["cohorts"][server_round - 1][partition_id])]


# -- the NumPyClient API (quickstart up to Flower 1.21) ------------------------------------
def numpyclient_apps():
    from flwr.client import ClientApp, NumPyClient
    from flwr.common import Context, ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.server import ServerApp, ServerAppComponents, ServerConfig
    from flwr.server.strategy import FedAvg

    class FlowerClient(NumPyClient):
        def __init__(self, learning_rate, partition_id, epochs, batch_size, verbose):
            self.model = load_model(_workload()["layer_sizes"], learning_rate)
            self.partition_id = partition_id
            self.epochs = epochs
            self.batch_size = batch_size
            self.verbose = verbose

        def fit(self, parameters, config):
            """Train the model with data of this client."""
            x_train, y_train = _device_data(self.partition_id, int(config["server_round"]))
            self.model.set_weights(parameters)
            self.model.fit(x_train, y_train, epochs=self.epochs, batch_size=self.batch_size,
                           verbose=self.verbose, shuffle=False)
            return self.model.get_weights(), len(x_train), {}

    def client_fn(context: Context):
        w = _workload()
        return FlowerClient(w["lr"], int(context.node_config["partition-id"]), w["epochs"], w["batch_size"],
                            0).to_client()

    class TimedFedAvg(FedAvg):
        def configure_fit(self, server_round, parameters, client_manager):
            TIMES[server_round] = [time.perf_counter()]
            return super().configure_fit(server_round, parameters, client_manager)

        def aggregate_fit(self, server_round, results, failures):
            if failures:
                raise RuntimeError(f"round {server_round}: {len(failures)} clients failed: {failures[0]!r}")
            params, metrics = super().aggregate_fit(server_round, results, failures)
            FINAL[:] = parameters_to_ndarrays(params)
            TIMES[server_round].append(time.perf_counter())
            return params, metrics

    def server_fn(context: Context):
        w = _workload()
        n = w["cohorts"].shape[1]
        strategy = TimedFedAvg(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=n, min_available_clients=n,
                               initial_parameters=ndarrays_to_parameters(w["init"]),
                               on_fit_config_fn=lambda r: {"server_round": r})
        return ServerAppComponents(strategy=strategy, config=ServerConfig(num_rounds=len(w["cohorts"])))

    return ServerApp(server_fn=server_fn), ClientApp(client_fn=client_fn)


# -- the Message API (quickstart since Flower 1.22) ----------------------------------------
def message_apps():
    import keras
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg

    client = ClientApp()

    @client.train()
    def train(msg: Message, context: Context):
        """Train the model on local data."""
        keras.backend.clear_session()
        w = _workload()
        x_train, y_train = _device_data(int(context.node_config["partition-id"]),
                                        int(msg.content["config"]["server-round"]))
        model = load_model(w["layer_sizes"], w["lr"])
        model.set_weights(msg.content["arrays"].to_numpy_ndarrays())
        model.fit(x_train, y_train, epochs=w["epochs"], batch_size=w["batch_size"], verbose=0, shuffle=False)
        content = RecordDict({"arrays": ArrayRecord(model.get_weights()),
                              "metrics": MetricRecord({"num-examples": len(x_train)})})
        return Message(content=content, reply_to=msg)

    class TimedFedAvg(FedAvg):
        def configure_train(self, server_round, arrays, config, grid):
            TIMES[server_round] = [time.perf_counter()]
            return super().configure_train(server_round, arrays, config, grid)

        def aggregate_train(self, server_round, replies):
            replies = list(replies)
            bad = [m for m in replies if m.has_error()]
            if bad:
                raise RuntimeError(f"round {server_round}: {len(bad)} clients failed: {bad[0].error}")
            arrays, metrics = super().aggregate_train(server_round, replies)
            FINAL[:] = arrays.to_numpy_ndarrays()
            TIMES[server_round].append(time.perf_counter())
            return arrays, metrics

    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        w = _workload()
        n = w["cohorts"].shape[1]
        strategy = TimedFedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=n, min_available_nodes=n)
        strategy.start(grid=grid, initial_arrays=ArrayRecord(w["init"]), num_rounds=len(w["cohorts"]),
                       train_config=ConfigRecord())

    return server, client


def run(workload: str, api: str = "numpyclient", num_cpus: float = 1.0) -> dict:
    import flwr
    import keras
    import tensorflow as tf
    from flwr.simulation import run_simulation

    os.environ[WORKLOAD_ENV] = os.path.abspath(workload)  # Ray's workers inherit it
    w = _workload()
    TIMES.clear()
    server, client = (message_apps if api == "message" else numpyclient_apps)()
    t0 = time.perf_counter()
    run_simulation(server_app=server, client_app=client, num_supernodes=int(w["cohorts"].shape[1]),
                   backend_config={"client_resources": {"num_cpus": num_cpus, "num_gpus": 0.0},
                                   # a private local Ray, never one that another process left running
                                   "init_args": {"address": "local"}})
    total = time.perf_counter() - t0
    rounds = len(w["cohorts"])
    done = [TIMES.get(r, []) for r in range(1, rounds + 1)]
    if any(len(t) != 2 for t in done):
        raise RuntimeError(f"Flower finished {sum(len(t) == 2 for t in done)} of {rounds} rounds")
    per_round = [end - start for start, end in done]
    out = {"flower_version": flwr.__version__, "tensorflow_version": tf.__version__, "keras_version": keras.__version__,
           "api": api, "client_num_cpus": num_cpus, "cohort": int(w["cohorts"].shape[1]), "rounds": rounds,
           "per_round_s": per_round, "s_per_round": statistics.median(per_round), "total_s": total}
    if w["expected_final"] is not None:
        final = np.concatenate([np.asarray(a, np.float32).ravel() for a in FINAL])
        out["max_abs_diff_vs_fedpop_weights"] = float(np.abs(final - w["expected_final"]).max())
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("workload", help=".npz written by experiments/bench_peers.py")
    p.add_argument("out", help="JSON file to write")
    p.add_argument("--api", choices=("numpyclient", "message"), default="numpyclient")
    p.add_argument("--num-cpus", type=float, default=1.0, help="Ray CPUs per client (Flower's default: 2)")
    args = p.parse_args(argv)
    result = run(args.workload, args.api, args.num_cpus)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps({k: v for k, v in result.items() if k != "per_round_s"}))
    return 0


if __name__ == "__main__":
    # run as the importable module `flower_mlp` (not `__main__`), so Ray's actors import it by
    # name (Flower hands them the driver's sys.path) and its per-process data cache works
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import flower_mlp

    sys.exit(flower_mlp.main())
