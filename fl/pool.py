"""A pool of long-lived Ray actors (`DeviceWorker`) that the coordinator fans rounds out to.

Weights go out once per round (`ray.put`, or inside the call when small); devices are
split into contiguous id ranges, one per worker; a worker that dies mid-round is replaced
and its devices are re-run on the replacement (`workers.retry_crashed` times), else
reported as dropouts, so the round still completes.
"""
from __future__ import annotations

import logging
import os

import numpy as np
import ray

from fl.worker import DeviceWorker, crashed_result, unpack_records

log = logging.getLogger("fedpop")


_reaper = None  # fl.ray_reaper's watcher of the local cluster this process started


def start_ray(address: str = "", object_store_mb: int = 512, num_cpus: int | None = None) -> None:
    global _reaper
    if ray.is_initialized():
        return
    env = {"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}}
    if address:
        ray.init(address=address, runtime_env=env, logging_level=logging.WARNING, log_to_driver=True)
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count(), object_store_memory=object_store_mb * 2**20,
                 include_dashboard=False, runtime_env=env, logging_level=logging.WARNING)
        from fl import ray_reaper

        _reaper = ray_reaper.start(ray._private.worker.global_worker.node.get_session_dir_path())


def stop_ray() -> None:
    """Shut Ray down (and stop the local cluster's watcher: nothing is left for it to do)."""
    global _reaper
    ray.shutdown()
    if _reaper is not None:
        _reaper.terminate()
        _reaper.wait()
        _reaper = None


class WorkerPool:
    def __init__(self, config: dict, num_workers: int = 0, cpus_per_worker: int = 1, task_cls: type | None = None,
                 data=None, retry_crashed: int = 1, algorithm=None, aggregator=None):
        if num_workers <= 0:
            num_workers = max(1, int(ray.cluster_resources().get("CPU", 1)) // cpus_per_worker)
        self.config, self.cpus = config, cpus_per_worker
        # a task class, an algorithm and aggregator pieces from Python travel by value (cloudpickle);
        # a dataset goes to the object store once
        self._setup = {"task_cls": task_cls, "data": None if data is None else ray.put(data),
                       "algorithm": algorithm, "aggregator": aggregator}
        self._cls = ray.remote(num_cpus=cpus_per_worker, max_restarts=0)(DeviceWorker)
        self.retry_crashed = retry_crashed
        self.actors = [self._start(i) for i in range(num_workers)]
        pings = ray.get([a.ping.remote() for a in self.actors])  # wait until every model is built
        self.replaced = 0
        failed = next((p["setup_error"] for p in pings if p.get("setup_error")), None)
        if failed:
            from fl.task import TaskError

            self.shutdown()
            raise TaskError(f"the task could not be set up on a worker (constructor, build_model or example_spec): "
                            f"{failed['error']}\n{failed['traceback']}")

    def _start(self, index: int):
        return self._cls.remote(self.config, index, self.cpus, **self._setup)

    def _replace(self, index: int) -> None:
        self.actors[index] = self._start(index)
        self.replaced += 1

    def __len__(self) -> int:
        return len(self.actors)

    def initial_weights(self) -> np.ndarray:
        return ray.get(self.actors[0].initial_weights.remote())

    def run(self, round_num: int, weights: np.ndarray, device_ids: np.ndarray, num_examples: np.ndarray,
            mode: str = "train", secure=None, options: dict | None = None) -> list[dict]:
        """Run devices on all workers; results come back in worker order (deterministic).
        With `secure`, device i of `device_ids` is SecAgg client i, held by its worker."""
        # small weights travel inside the call (Ray inlines arguments under 100 KB); larger ones
        # go to the object store once and every worker reads them from there
        ref = weights if weights.nbytes <= 100 * 1024 else ray.put(weights)
        options = ray.put(options) if options else options
        splits = np.array_split(np.arange(len(device_ids)), len(self.actors))
        self._owner = {int(p): w for w, s in enumerate(splits) for p in s}
        futures = [a.run.remote(round_num, ref, device_ids[s], num_examples[s], mode, secure, s, options)
                   for a, s in zip(self.actors, splits)]
        results = []
        for i, (fut, s) in enumerate(zip(futures, splits)):
            for attempt in range(self.retry_crashed + 1):
                try:
                    results.append(unpack_records(ray.get(fut)))
                    break
                except ray.exceptions.RayActorError as e:
                    self._replace(i)
                    if attempt < self.retry_crashed:  # the same devices, same seeds: the same results
                        log.warning("worker %d died in round %d (%s); replaced, re-running its devices",
                                    i, round_num, type(e).__name__)
                        fut = self.actors[i].run.remote(round_num, ref, device_ids[s], num_examples[s], mode,
                                                        secure, s, options, attempt + 1)
                        continue
                    log.warning("worker %d died in round %d (%s); replaced, its devices are dropouts",
                                i, round_num, type(e).__name__)
                    results.append(crashed_result(device_ids[s], num_examples[s],
                                                  f"worker {i} crashed: {type(e).__name__}"))
        return results

    def hosted(self, worker: int) -> frozenset:
        """Client positions held by ``worker`` this round: its transport identity."""
        return frozenset(p for p, w in self._owner.items() if w == worker)

    def secure_stage(self, stage: str, messages: dict) -> list:
        """Send each client's message to the worker holding it; gather the replies as
        ``(origin, message)`` pairs, ``origin`` being the positions that worker hosts.
        A worker that died takes its clients with it: they are protocol dropouts."""
        by_worker: dict[int, dict] = {}
        for pos, msg in messages.items():
            by_worker.setdefault(self._owner[pos], {})[pos] = msg
        futures = {w: self.actors[w].secure_stage.remote(stage, msgs) for w, msgs in sorted(by_worker.items())}
        out = []
        for w, fut in futures.items():
            try:
                origin = self.hosted(w)
                out.extend((origin, m) for m in ray.get(fut))
            except ray.exceptions.RayActorError:
                log.warning("worker %d died during secure aggregation (%s); replacing it", w, stage)
                self._replace(w)
        return out

    def shutdown(self) -> None:
        for a in self.actors:
            ray.kill(a)
        self.actors = []
