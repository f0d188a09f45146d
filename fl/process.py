"""The federated training process, shaped like `tff.learning`'s iterative processes:
`state = process.initialize()`, then `state, output = process.next(state)` per round.

A round: plan the cohort on the simulated clock -> the worker pool trains the accepted
devices -> the aggregator's summation (fl/summation.py: plain partial sums in worker
order, every update, or SecAgg run by the devices) collects them -> the aggregator turns
them into the mean update -> the server optimizer applies it (Reddi et al. 2021 server step).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from fl import aggregators, optimizers
from fl.algorithms import resolve_algorithm
from fl.cohort import plan_round, select_cohort
from fl.config import Config
from fl.memory import rss_mb
from fl.notices import WarnOnce
from fl.population import Population
from fl.summation import RoundNotPossible, summation_of
from fl.seeding import rng_for, seed_words
from fl.status import ACCEPTED, DROPPED, FAILED, NONFINITE, REJECTED, STRAGGLER
from fl.worker import crashed_result


@dataclass
class ServerState:
    round: int
    weights: np.ndarray  # float32, flat
    opt_state: dict = field(default_factory=dict)
    agg_state: dict = field(default_factory=dict)
    algo_state: dict = field(default_factory=dict)  # a stateful algorithm's server side (e.g. SCAFFOLD's c)


@dataclass
class RoundOutput:
    metrics: dict
    clients: list[dict]


class FederatedProcess:
    def __init__(self, cfg: Config, pool, population: Population, state_store=None, algorithm=None,
                 aggregator=None):
        """``state_store``: the `fl.device_state.DeviceStateStore` the workers write device
        state to (stateful algorithms only); the process discards what unaccepted reports wrote.
        ``algorithm`` (a `fl.algorithms.Algorithm`) and ``aggregator`` (a chain of pieces) given
        from Python replace what ``client.algorithm`` and the ``aggregator`` section name."""
        self.cfg, self.pool, self.population = cfg, pool, population
        self.optimizer = optimizers.from_config(cfg.server)
        self.aggregator = aggregators.from_config(cfg.aggregator, cfg.cohort.goal, population.size, aggregator)
        self.algorithm = resolve_algorithm(algorithm or cfg.client.algorithm).bind(cfg.client)
        self.state_store, self._temp_state = state_store, None
        self.summation = summation_of(self.aggregator)  # plain, stacked or secure (fl/summation.py)
        self.last_eval_clients: list[dict] = []
        self.warn = WarnOnce()  # RunWarnings, once per cause
        self.data = None  # the user's fl.data.FederatedData when it defines the population (fl.runner.engine)

    def use_state_dir(self, path, fresh: bool) -> None:
        """Keep device state (stateful algorithms) under ``path``; ``fresh`` clears it (a new run)."""
        from fl.device_state import DeviceStateStore

        if not self.algorithm.stateful:
            return
        self.state_store = DeviceStateStore(path)
        if fresh:
            self.state_store.clear()

    def _options(self, state: ServerState) -> dict | None:
        """What the workers get with the round besides the weights: the aggregator's client
        state (e.g. the adaptive clip norm) and a stateful algorithm's broadcast and store."""
        options = {}
        agg = self.aggregator.broadcast(state.agg_state)
        if agg:
            options["aggregator"] = agg
        if self.algorithm.stateful:
            if self.state_store is None:  # no run directory (Python API): a temporary one, removed by close()
                import tempfile

                self._temp_state = tempfile.TemporaryDirectory(prefix="fedpop-device-state-")
                self.use_state_dir(self._temp_state.name, fresh=True)
            options.update(broadcast=self.algorithm.broadcast(state.algo_state), state_dir=str(self.state_store.root))
        return options or None

    def close(self) -> None:
        if self._temp_state is not None:
            self._temp_state.cleanup()
            self._temp_state = None

    def initialize(self, weights: np.ndarray | None = None) -> ServerState:
        """Round-0 state from the task model's initial weights, or from ``weights`` (a warm start)."""
        w = np.asarray(self.pool.initial_weights() if weights is None else weights, np.float32)
        algo = self.algorithm.server_init(w.size)
        return ServerState(0, w, self.optimizer.init(w.astype(np.float64)), self.aggregator.init(), algo)

    def next(self, state: ServerState) -> tuple[ServerState, RoundOutput]:
        """One round, composed as TFF's learning processes are: cohort and broadcast -> client
        work (the workers) -> aggregation (the aggregator's summation) -> finalization (the
        aggregator's finalize, the algorithm's server update, the server optimizer); then the
        device state of unaccepted reports is discarded and, every eval.every rounds, evaluation."""
        cfg, r, t0 = self.cfg, state.round, time.perf_counter()
        plan = plan_round(self.population, cfg.cohort, r, cfg.experiment.seed, cfg.client.epochs,
                          model_bytes=4 * state.weights.size)
        if len(plan.device_ids) < cfg.cohort.goal:
            self.warn("small-pool", self._small_pool_message(r, len(plan.device_ids)))
        results, planned, sum_error = self._client_work(state, plan.accepted_ids)
        clients = [rec for res in results for rec in res["records"]]
        total, weight, sum_metrics = np.zeros(state.weights.size), 0.0, {}
        if not sum_error:
            total, weight, sum_metrics, sum_error = self.summation.collect(
                self.pool, results, planned, plan.accepted_ids, clients, state.weights.size)
        clients = self._train_records(plan, clients, r)
        counts = {s: sum(rec["status"] == s for rec in clients) for s in (ACCEPTED, DROPPED, STRAGGLER, FAILED, REJECTED)}
        sums, extras = _summed(results)
        metrics = {**self._round_metrics(plan, results, counts, sums, r), **sum_metrics}
        new_state = ServerState(r + 1, state.weights, state.opt_state, state.agg_state, state.algo_state)
        metrics["message"] = self._no_update(r, sum_error, counts[ACCEPTED], clients)
        if not metrics["message"]:
            new_state = self._finalize(state, plan, total, weight, counts[ACCEPTED], sums, extras, metrics)
        if self.state_store is not None:  # device state advances only with an accepted report of an updating round
            for rec in clients:
                if rec["status"] != ACCEPTED or not metrics["updated"]:
                    self.state_store.discard(rec["device_id"], r)
        if cfg.eval.every and (r + 1) % cfg.eval.every == 0:
            metrics.update(self.evaluate(new_state))
            clients += [{**rec, "round": r, "phase": "eval"} for rec in self.last_eval_clients]
        metrics["wall_s"] = time.perf_counter() - t0
        return new_state, RoundOutput(metrics, clients)

    def _client_work(self, state: ServerState, ids: np.ndarray) -> tuple[list[dict], object, str]:
        """The workers train the accepted devices: (results in worker order, the summation's
        public plan, why the round cannot be summed or "")."""
        cfg, ex = self.cfg, self.population.columns["num_examples"]
        # the largest weight one report can carry (a secure sum sizes its quantizer by it)
        max_w = cfg.population.examples_max * cfg.client.epochs if cfg.aggregator.weighting == "examples" else 1.0
        try:
            planned = self.summation.plan(ids, state.weights.size, max_w, cfg.experiment.seed, state.round)
        except RoundNotPossible as e:
            return [crashed_result(ids, ex[ids], str(e))], None, str(e)
        return self.pool.run(state.round, state.weights, ids, ex[ids], "train", planned, self._options(state)), planned, ""

    def _train_records(self, plan, clients: list[dict], r: int) -> list[dict]:
        """The round's records: the workers' and one per planned device that never trained, by id."""
        ex = self.population.columns["num_examples"]
        clients += [{"device_id": int(d), "status": s, "examples": int(ex[d]), "loss": np.nan,
                     "accuracy": np.nan, "error": "", "compute_s": 0.0}
                    for d, s in zip(plan.device_ids.tolist(), plan.status) if s != ACCEPTED]
        for rec in clients:
            rec["round"] = r
        clients.sort(key=lambda rec: rec["device_id"])
        for rec in clients:
            rec["phase"] = "train"
        return clients

    def _round_metrics(self, plan, results: list[dict], counts: dict, sums: dict, r: int) -> dict:
        metrics = {"round": r, "sim_seconds": plan.sim_seconds, "selected": len(plan.device_ids),
                   "accepted": counts[ACCEPTED], "dropped": counts[DROPPED], "stragglers": counts[STRAGGLER],
                   "failed": counts[FAILED], "rejected": counts[REJECTED],
                   "train_loss": sums.get("loss_sum", np.nan) / max(sums.get("examples", 0), 1),
                   "train_accuracy": sums.get("correct_sum", np.nan) / max(sums.get("examples", 0), 1),
                   "train_examples": sums.get("examples", 0.0),
                   "device_compute_s": max((res["compute_s"] for res in results), default=0.0),
                   "worker_rss_mb": max((res.get("rss_mb", 0.0) for res in results), default=0.0),
                   "coordinator_rss_mb": rss_mb(),
                   "updated": False, "message": ""}
        if "clipped" in sums:
            metrics["clipped_fraction"] = sums["clipped"] / max(sums["reports"], 1)
        return metrics

    def _no_update(self, r: int, sum_error: str, reports: int, clients: list[dict]) -> str:
        """Why round ``r`` makes no update ("" if it does); warned once per cause."""
        if sum_error:
            message = f"round {r} made no update: {sum_error}"
        elif reports < self.cfg.cohort.min_reports:
            message = (f"round {r} made no update: only {reports} devices reported, "
                       f"cohort.min_reports is {self.cfg.cohort.min_reports}")
        else:
            return ""
        failed = [rec for rec in clients if rec["status"] == FAILED]
        if failed:
            message += (f"; {len(failed)} devices failed, the first (device {failed[0]['device_id']}) "
                        f"with {failed[0]['error']}")
        self.warn(f"no-update-{'failed' if failed else 'summation' if sum_error else 'reports'}", message)
        return message

    def _finalize(self, state: ServerState, plan, total, weight: float, reports: int, sums: dict, extras: dict,
                  metrics: dict) -> ServerState:
        """The aggregator's finalize, the algorithm's server update and the server optimizer's
        step (Reddi et al. 2021); adds their metrics to ``metrics``."""
        cfg, r = self.cfg, state.round
        round_seed = int(np.random.SeedSequence(seed_words(cfg.experiment.seed, "aggregate", r)).generate_state(1)[0])
        round_info = {"selected": len(plan.device_ids), "client_info": sums}
        if cfg.aggregator.dp_noise_multiplier > 0 or cfg.aggregator.secagg_dp_noise_multiplier > 0:
            # the pool the cohort was drawn from (a closed-form lower bound: fl/population.py)
            round_info["eligible"] = max(self.population.eligible_count(plan.t_start), len(plan.device_ids))
        t_agg = time.perf_counter()
        mean_delta, agg_state, agg_metrics = self.aggregator.finalize(state.agg_state, total, weight, reports,
                                                                      round_seed, round_info)
        agg_metrics = {**agg_metrics, "aggregate_s": time.perf_counter() - t_agg}
        update, algo_state = self.algorithm.server_update(state.algo_state, mean_delta, extras, reports,
                                                         self.population.size)
        step, opt_state = self.optimizer.update(state.opt_state, -update)
        new_w = (state.weights.astype(np.float64) + step).astype(np.float32)
        metrics.update(agg_metrics, updated=True, update_norm=float(np.linalg.norm(mean_delta)))
        return ServerState(r + 1, new_w, opt_state, agg_state, algo_state)

    def _small_pool_message(self, r: int, selected: int) -> str:
        goal = self.cfg.cohort.goal
        if self.population.always_available:
            return (f"round {r}: the population has {self.population.size} devices, fewer than cohort.goal={goal}; "
                    f"every round trains all {selected}")
        return (f"round {r}: only {selected} devices were eligible, fewer than cohort.goal={goal}, under the "
                "phone-like availability model (population.availability=phone: eligible_prob, night_start_hour, "
                "night_hours, dropout_per_hour); population.availability=always makes every device available")

    def evaluate(self, state: ServerState) -> dict:
        """Federated evaluation on a fresh cohort's held-out data, example-weighted."""
        cfg = self.cfg
        t = cfg.cohort.start_hour_utc * 3600.0 + state.round * cfg.cohort.round_interval_s
        ids = select_cohort(self.population, cfg.eval.cohort, t, rng_for(cfg.experiment.seed, "eval", state.round))
        ex = np.minimum(self.population.columns["num_examples"][ids], 50)
        results = self.pool.run(state.round, state.weights, ids, ex, "eval", options=self._options(state))
        s: dict = {}
        for res in results:
            for k, v in res["metrics"].items():
                s[k] = s.get(k, 0.0) + v
        self.last_eval_clients = sorted((rec for res in results for rec in res["records"]),
                                        key=lambda rec: rec["device_id"])
        n = max(s.get("examples", 0.0), 1.0)
        nonfinite = int(sum(r["status"] == NONFINITE for r in self.last_eval_clients))
        # devices with a non-finite loss or metric are left out of the sums (in the workers)
        out = {"eval_loss": s.get("loss_sum", np.nan) / n if s.get("examples") else np.nan,
               "eval_accuracy": s.get("correct_sum", np.nan) / n if s.get("examples") else np.nan,
               "eval_devices": int(sum(r["status"] == ACCEPTED for r in self.last_eval_clients)),
               "eval_nonfinite": nonfinite}
        if nonfinite:
            self.warn("eval-nonfinite", f"evaluation after round {state.round - 1}: {nonfinite} of "
                      f"{len(self.last_eval_clients)} devices had a non-finite loss or metric (NaN/Inf); they are "
                      "left out of eval_loss/eval_accuracy (status 'nonfinite' in the clients table)")
        if self.algorithm.personalizes:
            pn = s.get("personalized_examples", 0.0)
            out.update(eval_personalized_loss=s.get("personalized_loss_sum", np.nan) / pn if pn else np.nan,
                       eval_personalized_accuracy=s.get("personalized_correct_sum", np.nan) / pn if pn else np.nan,
                       eval_personalized_devices=int(sum("personalized_loss" in r for r in self.last_eval_clients)))
        return out


def _summed(results: list[dict]) -> tuple[dict, dict]:
    """The workers' metric sums and algorithm extras, added in fixed worker order (same bits for
    the same worker count)."""
    sums, extras = {}, {}
    for res in results:
        for k, v in res["metrics"].items():
            sums[k] = sums.get(k, 0.0) + v
        for k, v in res.get("extras", {}).items():
            extras[k] = extras[k] + v if k in extras else np.array(v, np.float64)
    return sums, extras
