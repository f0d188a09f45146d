"""A user's own algorithm and aggregator, defined outside the engine and named by import path
(``client.algorithm: user_extensions:ServerMomentumFedAvg``, ``aggregator.chain:
[user_extensions:halved, mean]``); the Ray workers import this module as they import a task."""
import numpy as np

import fedpop


class ServerMomentumFedAvg(fedpop.Algorithm):
    """FedAvgM (Hsu et al. 2019, "Measuring the Effects of Non-Identical Data Distribution for
    Federated Visual Classification"): the server keeps a velocity v <- beta v + mean delta and
    applies v in place of the mean delta; the devices run FedAvg's client step unchanged."""

    name = "server_momentum_fedavg"
    beta = 0.9

    def server_init(self, num_params):
        return {"velocity": np.zeros(num_params)}

    def server_update(self, state, mean_delta, extras, reports, population_size):
        velocity = self.beta * state["velocity"] + mean_delta
        return velocity, {"velocity": velocity}


def halved(inner: fedpop.Aggregator) -> fedpop.Aggregator:
    """A wrapper with both halves: each device reports that it went through it (summed over
    the round's reports), and the server halves the inner aggregator's update."""

    def client(delta, examples, broadcast=None):
        out, w, info = inner.client(delta, examples, broadcast)
        return out, w, {**info, "halved_reports": 1.0}

    def finalize(state, acc, weight, reports, seed, round_info=None):
        update, state, metrics = inner.finalize(state, acc, weight, reports, seed, round_info)
        seen = (round_info or {}).get("client_info", {}).get("halved_reports", 0.0)
        return 0.5 * update, state, {**metrics, "halved_reports": seen}

    return inner._replace(client=client, finalize=finalize)
