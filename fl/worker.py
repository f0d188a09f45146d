"""A long-lived device worker: builds the task's model once, then trains many devices.

One worker per CPU share (pfl-research's design): per round it receives the global
weights once (zero-copy from the object store), trains its devices in chunks through one
traced function (fl/trainer.py) and returns only the partial sums of their updates
and metrics (float64, in device-id order), plus one small record per device.
"""
from __future__ import annotations

import math
import os
import pickle
import time
import traceback

import numpy as np

from fl.aggregators import linear_weight
from fl.status import ACCEPTED, DROPPED, FAILED, NONFINITE, REJECTED
from fl.seeding import hash_uniform, rng_for


class DeviceWorker:
    def __init__(self, config: dict, worker_index: int = 0, threads: int = 1, task_cls: type | None = None,
                 data=None, algorithm=None, aggregator=None):
        """``task_cls``: the task class when given from Python (else ``experiment.task`` names it);
        ``data``: a user's `fl.data.FederatedData` (else the task makes each device's data);
        ``algorithm`` / ``aggregator``: a `fl.algorithms.Algorithm` and an aggregator chain given
        from Python (else ``client.algorithm`` and ``aggregator`` name them).
        A task that cannot be built here (its constructor, model or example spec raises) does
        not kill the actor: `ping` reports the error and its traceback to the pool."""
        self.setup_error = None
        try:
            self._setup(config, worker_index, threads, task_cls, data, algorithm, aggregator)
        except Exception as e:  # reported by ping(), raised by the pool as a TaskError
            self.setup_error = {"error": f"{type(e).__name__}: {e}", "traceback": format_traceback(e)}

    def _setup(self, config: dict, worker_index: int, threads: int, task_cls, data, algorithm, aggregator) -> None:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        from fl.aggregators import from_config as aggregator_from_config
        from fl.algorithms import resolve_algorithm
        from fl.cache import DeviceCache
        from fl.config import load_config
        from fl.task import make_task
        from fl.trainer import DeviceTrainer

        self.cfg = load_config(config, task=task_cls, algorithm=algorithm)
        self.index = worker_index
        seed = self.cfg.experiment.seed
        self.task = make_task(task_cls or self.cfg.experiment.task, self.cfg.task, seed)
        if data is not None:  # a user's federated dataset replaces the task's own device data
            self.task.device_data = data.device_data
        tf.keras.utils.set_random_seed(seed)  # a user model without seeded initializers is still reproducible
        self.algorithm = resolve_algorithm(algorithm or self.cfg.client.algorithm).bind(self.cfg.client)
        self.trainer = DeviceTrainer(self.task, self.cfg.client, self.algorithm)
        self.algorithm.prepare(self.task, self.trainer)
        self._initial = self.trainer.get_weights()  # (training moves the model's variables)
        self.aggregator = aggregator_from_config(self.cfg.aggregator, self.cfg.cohort.goal,
                                                 self.cfg.population.size, aggregator)
        self.data = data
        namespace = self.task.cache_namespace if data is None else None
        self.cache = (DeviceCache(self.cfg.workers.cache_dir or None, namespace, self.cfg.workers.cache_memory_mb)
                      if namespace else None)
        self.store = None  # device state of stateful algorithms; its directory comes with each round

    def ping(self) -> dict:
        import ray

        return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id(), "setup_error": self.setup_error}

    def initial_weights(self) -> np.ndarray:
        """The task model's weights as built: the same whatever this worker trained since."""
        return self._initial.copy()

    def _data(self, device_id: int, n: int, split: str):
        if self.data is not None:
            return self.data.device_data(device_id, n, split)
        if self.cache is None:
            return self.task.device_data(device_id, n, split)
        return self.cache.get_or_make(f"{device_id}-{split}-{n}",
                                      lambda: self.task.device_data(device_id, n, split))

    def run(self, round_num: int, weights: np.ndarray, device_ids: np.ndarray, num_examples: np.ndarray,
            mode: str = "train", secure=None, positions: np.ndarray | None = None,
            options: dict | None = None, attempt: int = 0) -> dict:
        """Train (or evaluate) devices in id order; return partial sums and per-device records.
        ``attempt`` > 0: a re-run of a crashed worker's devices (injected crashes hit attempt 0 only).

        With `secure` (a `fl.secure_sum.SecureRound`), updates are not summed in the clear:
        each device quantizes its update, becomes SecAgg client number `positions[i]` and
        returns its advertised keys; `secure_stage` runs the later protocol stages.
        """
        if mode == "personalize":
            return self._personalize(weights, device_ids, num_examples, **(options or {}))
        seed, faults = self.cfg.experiment.seed, self.cfg.faults
        t0 = time.perf_counter()
        if self.algorithm.stateful:
            self._use_store((options or {})["state_dir"])
        import tensorflow as tf

        global_w = tf.constant(np.asarray(weights, np.float32))  # one host->TF copy per round
        self._round = {"total": np.zeros(global_w.shape[0], np.float64) if mode == "train" else None,
                       "weight": 0.0, "metrics": {}, "advertised": [], "secure": secure, "positions": positions,
                       "round": round_num, "mode": mode, "extras": {},
                       "broadcast": (options or {}).get("aggregator"), "stack": [], "stack_weights": []}
        if secure is not None:
            from secagg.prg import MaskExpander

            self._round["expander"] = MaskExpander(secure.config.m, secure.config.bits, secure.config.prg)
            self._secure = {"round": round_num, "clients": {}, "secure": secure}
        kill = round_num == faults.kill_worker_round or (
            faults.kill_worker_every > 0 and (round_num + 1) % faults.kill_worker_every == 0)
        crash_at = len(device_ids) // 2 if (mode == "train" and kill and self.index == 0
                                           and attempt == 0) else -1
        records, ready = [], []  # ready: (record, index in this chunk, batches)
        for i, (dev, n) in enumerate(zip(device_ids.tolist(), num_examples.tolist())):
            if i == crash_at:
                os._exit(1)  # simulated worker crash: the process dies mid-round
            rec = {"device_id": dev, "status": ACCEPTED, "examples": int(n), "loss": np.nan,
                   "accuracy": np.nan, "error": "", "compute_s": 0.0}
            records.append(rec)
            try:
                if (mode == "train" and faults.device_error_rate > 0
                        and hash_uniform(seed, dev, round_num * 2 + 1) < faults.device_error_rate):
                    raise RuntimeError(f"injected device fault on device {dev}")
                split = "train" if mode == "train" else "eval"
                ready.append((rec, i, self.trainer.batches(self._data(dev, n, split), seed, round_num, dev,
                                                           train=mode == "train")))
            except Exception as e:  # a failing device never takes the worker down
                _fail(rec, e)
        if self.algorithm.stateful and mode == "train":
            broadcast = (options or {}).get("broadcast", {})
            global_np = np.asarray(weights, np.float32)
            for item in ready:
                self._run_stateful(global_w, global_np, item, broadcast)
        else:
            for start in range(0, len(ready), self.trainer.chunk):
                self._run_chunk(global_w, ready[start:start + self.trainer.chunk])
        if self.algorithm.personalizes and mode == "eval":
            self._evaluate_personal(np.asarray(weights, np.float32), ready)
        r = self._round
        if self.aggregator.accumulate == "stack" and mode == "train":
            r["total"] = (np.stack(r["stack"]) if r["stack"]
                          else np.zeros((0, global_w.shape[0]), np.float32))  # [devices, P], device-id order
        from fl.memory import rss_mb

        return {"sum": None if secure is not None else r["total"], "weight": r["weight"], "metrics": r["metrics"],
                "records": pack_records(records), "advertise": r["advertised"], "compute_s": time.perf_counter() - t0,
                "rss_mb": rss_mb(),
                "cache_rebuilt": self.cache.rebuilt if self.cache else 0, "extras": r["extras"]}

    def _use_store(self, path: str) -> None:
        from pathlib import Path

        from fl.device_state import DeviceStateStore

        if self.store is None or self.store.root != Path(path):
            self.store = DeviceStateStore(path)

    def _run_stateful(self, global_w, global_np, item, broadcast) -> None:
        """One device of a stateful algorithm (fl/algorithms.py): its state from the store,
        the algorithm's device step, the new state written back under this round."""
        rec, i, batches = item
        t, r = time.perf_counter(), self._round
        try:
            state = self.store.load(rec["device_id"], r["round"])
            delta, stats, new_state, extras = self.algorithm.device_step(self.trainer, global_np, global_w, batches,
                                                                         state, broadcast)
            if all(np.all(np.isfinite(v)) for v in new_state.values()):
                self.store.save(rec["device_id"], r["round"], new_state)  # discarded unless accepted
            rec["compute_s"] = time.perf_counter() - t
            self._finish_device(rec, i, delta, stats, extras)
        except Exception as e:  # a failing device never takes the worker down
            _fail(rec, e)

    def _evaluate_personal(self, global_np, ready) -> None:
        """Personalized metrics: each evaluated device's own model (its personal weights or
        head) on its held-out data; devices that never trained have none (NaN)."""
        import tensorflow as tf

        for rec, _, batches in ready:
            if rec["status"] != ACCEPTED:
                continue
            try:
                state = self.store.load(rec["device_id"], self._round["round"])
                weights = self.algorithm.personal_weights(self.trainer, global_np, state)
                if weights is None:
                    continue
                stats = self.trainer.evaluate(tf.constant(weights), batches)
            except Exception as e:
                rec["error"] = f"personalized evaluation failed: {type(e).__name__}: {e}"[:500]
                continue
            rec.update(personalized_loss=_mean_loss(stats),
                       personalized_accuracy=stats["correct_sum"] / max(stats["examples"], 1))
            if not all(math.isfinite(v) for v in stats.values()):
                rec["error"] = "non-finite personalized evaluation loss or metric (NaN/Inf)"
                continue
            _add(self._round["metrics"], {f"personalized_{k}": v for k, v in stats.items()})

    def _personalize(self, weights, device_ids, num_examples, strategies=("all",), runs=None) -> dict:
        """Per device: the task's metrics (`Task.evaluate_metrics`) of the global model on its
        held-out data (once), then for each run fine-tune the variables its strategy selects
        (`Task.trainable_mask`) on its training data, starting from the global model, and the
        metrics again. ``runs``: (training examples, strategy) pairs, a learning curve: each run
        trains on the first n of the device's training examples (nested subsets; 0 = all);
        default: every strategy on all of them. With client.validation_fraction > 0, some of a
        run's training targets are held back and the fine-tuned model is kept only if it lowers
        their loss; else the device keeps the global model. `Task.personalization_record` names
        the columns (e.g. the speech recipe, clients/speech/personalization.py). One record per
        device and run; nothing leaves the device but metrics and losses."""
        import tensorflow as tf

        from fl.trainer import hold_out_validation

        t0, tr, seed = time.perf_counter(), self.trainer, self.cfg.experiment.seed
        global_w = np.asarray(weights, np.float32)
        global_t = tf.constant(global_w)
        runs = [(0, s) for s in strategies] if runs is None else [(int(n), s) for n, s in runs]
        records = []
        for dev, n in zip(device_ids.tolist(), num_examples.tolist()):
            t_dev, before, test, full = time.perf_counter(), None, None, None
            for size, strategy in runs:
                rec = {"device_id": dev, "status": ACCEPTED, "strategy": strategy, "error": ""}
                try:
                    if before is None:
                        test, full = self._data(dev, n, "eval"), self._data(dev, n, "train")
                        tr.set_weights(global_t)
                        before = self.task.evaluate_metrics(tr.model, test)
                    subset = {k: v[:size] for k, v in full.items()} if size else full
                    train, val = hold_out_validation(subset, self.cfg.client.validation_fraction,
                                                     rng_for(seed, "validation", dev))
                    rec.update(requested_examples=size, train_examples=int(len(subset["y"])))
                    tr.set_trainable(self.task.trainable_mask(tr.model, strategy))
                    try:
                        delta, stats = tr.train(global_t, tr.batches(train, seed, 0, dev))
                    finally:
                        tr.set_trainable(None)
                    tuned_w = tf.constant(global_w + delta)
                    tr.set_weights(tuned_w)
                    tuned = after = self.task.evaluate_metrics(tr.model, test)
                    validation = None
                    if len(val["y"]):  # the device keeps the fine-tuned model only if it lowers this loss
                        val_batches = tr.batches(val, seed, 0, dev, train=False)
                        validation = (_mean_loss(tr.evaluate(global_t, val_batches)),
                                      _mean_loss(tr.evaluate(tuned_w, val_batches)))
                        if not validation[1] < validation[0]:
                            after = before
                    rec.update(self.task.personalization_record(before, after, tuned, validation))
                    rec["train_loss"] = _mean_loss(stats)
                except Exception as e:
                    _fail(rec, e)
                rec["compute_s"] = time.perf_counter() - t_dev
                t_dev = time.perf_counter()
                records.append(rec)
        return {"sum": None, "weight": 0.0, "metrics": {}, "records": pack_records(records), "advertise": [],
                "compute_s": time.perf_counter() - t0, "cache_rebuilt": self.cache.rebuilt if self.cache else 0}

    def _run_chunk(self, global_w, chunk: list) -> None:
        """Train/evaluate a chunk of devices in one traced call; if the call fails, retry
        the devices one by one so only the faulty device is marked failed."""
        t, r = time.perf_counter(), self._round
        batches = [b for _, _, b in chunk]
        weight_of = self._in_call_weight()
        try:
            if r["mode"] == "eval":
                outputs = [(None, s) for s in self.trainer.evaluate_many(global_w, batches)]
            elif weight_of is not None:  # the call adds the weighted deltas to the round's sum
                weights = [weight_of(float(b.w.sum())) for b in batches]  # = the examples each trains on
                r["total"], stats, finite = self.trainer.train_sum(global_w, batches, weights, r["total"])
            else:
                deltas, stats = self.trainer.train_many(global_w, batches)
                outputs = list(zip(deltas, stats))
        except Exception as e:
            if len(chunk) == 1:
                _fail(chunk[0][0], e)
                return
            for item in chunk:
                self._run_chunk(global_w, [item])
            return
        per_device_s = (time.perf_counter() - t) / len(chunk)
        if weight_of is not None:
            for (rec, _, _), s, w, ok in zip(chunk, stats, weights, finite):
                rec.update(compute_s=per_device_s, loss=_mean_loss(s),
                           accuracy=s["correct_sum"] / max(s["examples"], 1))
                if not ok:
                    rec.update(status=REJECTED, error="non-finite update (NaN/Inf) rejected")
                    continue
                r["weight"] += w
                _add(r["metrics"], {**s, "reports": 1.0})
            return
        for (rec, i, _), (delta, stats) in zip(chunk, outputs):
            rec["compute_s"] = per_device_s
            try:
                self._finish_device(rec, i, delta, stats)
            except Exception as e:
                _fail(rec, e)

    def _in_call_weight(self):
        """The linear aggregator's weight function (`fl.aggregators.linear_weight`) when this
        round's updates can be summed inside the training call (in device order, with the same
        float64 operations, so the same bits, as `_finish_device` one device at a time): plain
        training, no SecAgg, no robust aggregator and no injected update faults; else None."""
        r, faults = self._round, self.cfg.faults
        if (r["mode"] != "train" or r["secure"] is not None or self.aggregator.accumulate != "sum"
                or faults.nan_rate > 0 or faults.byzantine_rate > 0):
            return None
        return linear_weight(self.aggregator)

    def _finish_device(self, rec: dict, i: int, delta, stats: dict, extras: dict | None = None) -> None:
        """Check one device's update and add it to the partial sum (or to SecAgg)."""
        r, seed, dev = self._round, self.cfg.experiment.seed, rec["device_id"]
        rec.update(loss=_mean_loss(stats),
                   accuracy=stats["correct_sum"] / max(stats["examples"], 1))
        if r["mode"] == "eval":
            if not all(math.isfinite(v) for v in stats.values()):  # left out of the round's evaluation
                rec.update(status=NONFINITE, error="non-finite evaluation loss or metric (NaN/Inf)")
                return
            _add(r["metrics"], stats)
            return
        delta = delta.astype(np.float64)
        faults = self.cfg.faults  # (a draw in [0, 1) is never below a rate of 0: skip the hash)
        if faults.nan_rate > 0 and hash_uniform(seed, dev, r["round"] * 2) < faults.nan_rate:
            delta[0] = np.nan
        if faults.byzantine_rate > 0 and hash_uniform(seed, dev, r["round"] * 2 + 7_919) < faults.byzantine_rate:
            attack = rng_for(seed, "byzantine", r["round"], dev).normal(0.0, 1.0, delta.shape)
            delta = attack * (100.0 * max(float(np.linalg.norm(delta)), 1.0) / np.linalg.norm(attack))
        if not np.all(np.isfinite(delta)):
            rec.update(status=REJECTED, error="non-finite update (NaN/Inf) rejected")
        else:
            contrib, w, info = self.aggregator.client(delta, stats["examples"], r["broadcast"])
            if r["secure"] is not None:  # the chain's secure_sum: quantize, then SecAgg client
                try:
                    q = r["secure"].encode(contrib, w, rng_for(seed, "quantize", r["round"], dev))
                except ValueError as e:  # a weight the quantizer cannot hold would wrap the sum around
                    rec.update(status=REJECTED, error=str(e))
                    return
                pos = int(r["positions"][i])
                client = r["secure"].client(pos, r["expander"])
                r["advertised"].append(client.advertise_keys())
                self._secure["clients"][pos] = (client, q)
                # the weight travels inside the secure sum; the chain's per-report info (e.g. clip flags)
                # is not revealed in the clear
                _add(r["metrics"], {**stats, "reports": 1.0})
                return
            if self.aggregator.accumulate == "stack":  # robust aggregators need every update
                r["stack"].append(np.asarray(contrib, np.float32))
                r["stack_weights"].append(w)
            else:
                r["total"] += contrib
            r["weight"] += w
            _add(r["metrics"], {**stats, **info, "reports": 1.0})
            for k, v in (extras or {}).items():  # e.g. SCAFFOLD's control-variate deltas
                r["extras"][k] = r["extras"][k] + v if k in r["extras"] else np.array(v, np.float64)

    def secure_stage(self, stage: str, messages: dict) -> list:
        """Run one SecAgg stage for this worker's clients; masked inputs are pre-summed
        mod 2^b here. A client that fails a stage drops out of the protocol (the server
        copes with up to n - t dropouts); its error is not fatal to the others."""
        from secagg import SecAggError

        state = getattr(self, "_secure", None)
        if state is None:
            return []  # a replacement worker: its clients' secrets died with the old one
        out = []
        for pos, msg in sorted(messages.items()):
            client, q = state["clients"].get(pos, (None, None))
            if client is None:
                continue
            try:
                if stage == "share_keys":
                    out.append(client.share_keys(msg))
                elif stage == "masked_input":
                    out.append(client.masked_input(msg, q))
                elif stage == "consistency":
                    out.append(client.consistency(msg))
                elif stage == "unmask":
                    out.append(client.unmask(msg))
                else:
                    raise ValueError(f"unknown secure aggregation stage {stage!r}")
            except SecAggError:
                state["clients"].pop(pos)
        if stage == "masked_input" and out:  # the server's addition, done here (signatures checked first)
            out = [state["secure"].presum(out, state["clients"])]
        if stage == "unmask":
            self._secure = None  # the round is over: forget the secrets
        return out


def pack_records(records: list[dict]) -> bytes:
    """Per-device records as one pickle: Ray serializes a list of many small dicts several
    times slower (500 records: ~6 ms against ~1 ms per result, measured between two actors)."""
    return pickle.dumps(records, protocol=pickle.HIGHEST_PROTOCOL)


def unpack_records(result: dict) -> dict:
    if isinstance(result.get("records"), bytes):
        result["records"] = pickle.loads(result["records"])
    return result


def _mean_loss(stats: dict) -> float:
    return stats["loss_sum"] / max(stats["examples"], 1.0)


def format_traceback(e: BaseException, limit: int = 4000, message_limit: int = 1500) -> str:
    """``e``'s traceback as Python prints it, keeping the innermost frames that fit in ``limit``
    characters and the first ``message_limit`` characters of the exception's text."""
    frames = traceback.format_tb(e.__traceback__)
    kept, size = [], 0
    for frame in reversed(frames):
        if kept and size + len(frame) > limit:
            kept.append("  ...\n")
            break
        kept.append(frame)
        size += len(frame)
    message = "".join(traceback.format_exception_only(type(e), e))
    if len(message) > message_limit:
        message = message[:message_limit] + " ...\n"
    return "Traceback (most recent call last):\n" + "".join(reversed(kept)) + message


def _fail(rec: dict, e: Exception) -> None:
    rec.update(status=FAILED, error=f"{type(e).__name__}: {e}"[:500], loss=np.nan, accuracy=np.nan,
               traceback=format_traceback(e))


def _add(acc: dict, stats: dict) -> None:
    for k, v in stats.items():
        acc[k] = acc.get(k, 0.0) + float(v)


def crashed_result(device_ids: np.ndarray, num_examples: np.ndarray, error: str) -> dict:
    """What a worker that died mid-round contributes: nothing, and its devices are dropouts."""
    return {"sum": None, "weight": 0.0, "metrics": {}, "compute_s": 0.0, "cache_rebuilt": 0, "advertise": [], "extras": {},
            "records": [{"device_id": int(d), "status": DROPPED, "examples": int(n), "loss": np.nan,
                         "accuracy": np.nan, "error": error, "compute_s": 0.0}
                        for d, n in zip(device_ids.tolist(), num_examples.tolist())]}
