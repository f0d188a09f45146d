"""`fedpop bench peers`: the workload file Flower and pfl-research read, the summary and targets, the
missing-venv errors, and pfl-research's run of both workloads against fedpop's weights."""
import importlib.util
import json

import numpy as np
import pytest

from experiments import bench_peers
from experiments.bench_engine import _config
from experiments.bench_peers import SCALARS, TARGETS, small_compute_config, summarize_sittings, write_workload


def _peer_side(name, path):
    """A peers/ script as a module (each imports only numpy at the top, so the main venv can load it)."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _flower_side():
    return _peer_side("flower_mlp", bench_peers.FLOWER_SCRIPT)


def _pfl_side():
    return _peer_side("pfl_mlp", bench_peers.PFL_SCRIPT)


def _quick_cohorts(cfg):
    """The accepted cohorts the engine draws for the quick config (plan_round, as FederatedProcess.next)."""
    from fl.cohort import plan_round
    from fl.population import Population

    pop = Population.build(cfg.population, cfg.experiment.seed)
    return [plan_round(pop, cfg.cohort, r, cfg.experiment.seed, cfg.client.epochs, 4).accepted_ids
            for r in range(cfg.experiment.rounds)], pop.columns["num_examples"]


def test_workload_round_trips_into_the_flower_side(tmp_path):
    from fl.task import make_task

    cfg = _config(True, None)
    task = make_task(cfg.experiment.task, cfg.task, cfg.experiment.seed)
    cohorts, counts = _quick_cohorts(cfg)
    sizes = [cfg.task.input_dim, *cfg.task.hidden, cfg.task.classes]
    n = sum(a * b + b for a, b in zip(sizes, sizes[1:]))
    init = np.random.default_rng(0).normal(size=n).astype(np.float32)
    final = init + 1
    write_workload(tmp_path / "w.npz", task, cfg, cohorts, counts, init, expected_final=final)

    w = _flower_side().load_workload(str(tmp_path / "w.npz"))
    assert w["cohorts"].shape == (cfg.experiment.rounds, cfg.cohort.goal)
    assert [list(c) for c in w["cohorts"]] == [list(c) for c in cohorts]
    assert sorted(w["devices"]) == sorted(set(np.concatenate(cohorts).tolist()))
    for d, (x, y) in w["devices"].items():
        ref = task.device_data(d, int(counts[d]), "train")
        assert x.dtype == np.float32 and np.array_equal(x, ref["x"]) and np.array_equal(y, ref["y"])
    assert w["layer_sizes"] == sizes
    # Keras order: kernel (in, out) then bias per Dense layer, the flat vector's order
    assert [a.shape for a in w["init"]] == [s for a, b in zip(sizes, sizes[1:]) for s in ((a, b), (b,))]
    assert np.array_equal(np.concatenate([a.ravel() for a in w["init"]]), init)
    assert np.array_equal(w["expected_final"], final)
    assert (w["lr"], w["batch_size"], w["epochs"]) == (cfg.client.lr, cfg.client.batch_size, cfg.client.epochs)


def test_workload_refuses_weights_of_another_model(tmp_path):
    from fl.task import make_task

    cfg = _config(True, None)
    task = make_task(cfg.experiment.task, cfg.task, cfg.experiment.seed)
    with pytest.raises(ValueError, match="initial weights"):
        write_workload(tmp_path / "w.npz", task, cfg, [np.array([1, 2])], np.full(10, 50), np.zeros(7, np.float32))


def test_logistic_regression_workload_reaches_pfl_as_one_dense_layer(tmp_path):
    """The tiny-compute workload (no hidden layer): the pfl side reads a 784->10 model, kernel then bias."""
    from fl.task import make_task

    cfg = small_compute_config(_config(True, None), quick=True)
    assert (list(cfg.task.hidden), cfg.cohort.goal, cfg.experiment.rounds) == ([], 200, 5)
    assert (cfg.population.examples_min, cfg.population.examples_max) == (10, 10)
    task = make_task(cfg.experiment.task, cfg.task, cfg.experiment.seed)
    cohorts = [np.arange(5) * 7 + r for r in range(2)]
    init = np.arange(784 * 10 + 10, dtype=np.float32)
    write_workload(tmp_path / "w.npz", task, cfg, cohorts, np.full(100, 10), init)

    w = _pfl_side().load_workload(str(tmp_path / "w.npz"))
    assert w["layer_sizes"] == [784, 10]
    assert [a.shape for a in w["init"]] == [(784, 10), (10,)]
    assert np.array_equal(np.concatenate([a.ravel() for a in w["init"]]), init)
    assert all(x.shape == (10, 784) and y.shape == (10,) for x, y in w["devices"].values())
    assert w["expected_final"] is None


def _sitting(fedpop, tff, flower, pfl=0.5, small_fedpop=0.02, small_pfl=0.5):
    s = {k: 0.0 for k in SCALARS}
    s.update(fedpop_s_per_round=fedpop, tff_s_per_round=tff, flower_s_per_round=flower, pfl_s_per_round=pfl,
             fedpop_vs_flower=flower / fedpop, fedpop_vs_tff=tff / fedpop, fedpop_vs_pfl=pfl / fedpop,
             small_compute_fedpop_s_per_round=small_fedpop, small_compute_pfl_s_per_round=small_pfl,
             small_compute_fedpop_vs_pfl=small_pfl / small_fedpop)
    pfl_meta = {"pfl_version": "0.6.0", "tensorflow_version": "2.21.0", "keras_version": "2.21.0",
                "backend": "tensorflow (tf-keras)", "processes": 1, "total_s": 5.0}
    return {**s, "workload": {"cohort": 50},
            "flower": {"flower_version": "1.42.0", "tensorflow_version": "2.21.0", "keras_version": "3",
                       "api": "numpyclient", "client_num_cpus": 1.0, "total_s": 60.0},
            "pfl": pfl_meta,
            "small_compute": {"workload": {"model": "logistic regression 784->10", "cohort": 1000}, "pfl": pfl_meta,
                              "per_round_s": {"fedpop": [small_fedpop], "pfl": [small_pfl]}}}


def test_summary_is_the_median_over_sittings_with_spread_and_targets():
    out = summarize_sittings([_sitting(0.1, 0.9, 3.0, pfl=0.4), _sitting(0.2, 1.0, 6.0, pfl=0.1, small_pfl=0.01),
                              _sitting(0.1, 0.7, 2.0, pfl=0.3, small_pfl=0.04)], {"tensorflow": "2.14.1"})
    assert out["repeats"] == 3 and len(out["sittings"]) == 3
    assert out["fedpop_s_per_round"] == pytest.approx(0.1)
    assert out["spread"]["fedpop_s_per_round"] == pytest.approx([0.1, 0.2])
    assert out["flower_s_per_round"] == pytest.approx(3.0)
    assert out["fedpop_vs_flower"] == pytest.approx(30.0)  # median of the per-sitting ratios 30, 30, 20
    assert out["spread"]["fedpop_vs_flower"] == pytest.approx([20.0, 30.0])
    assert out["fedpop_vs_tff"] == pytest.approx(7.0)  # 9, 5, 7
    assert out["fedpop_vs_pfl"] == pytest.approx(3.0)  # 4, 0.5, 3
    assert out["spread"]["fedpop_vs_pfl"] == pytest.approx([0.5, 4.0])
    assert out["small_compute_fedpop_vs_pfl"] == pytest.approx(2.0)  # 25, 0.5, 2
    assert out["spread"]["small_compute_fedpop_vs_pfl"] == pytest.approx([0.5, 25.0])
    assert out["targets"] == TARGETS == {"fedpop_vs_flower_min": 25.0, "fedpop_vs_tff_min": 8.0,
                                         "fedpop_vs_pfl_min": 1.0, "small_compute_fedpop_vs_pfl_min": 1.0}
    assert out["met"] == {"fedpop_vs_flower": True, "fedpop_vs_tff": False, "fedpop_vs_pfl": True,
                          "small_compute_fedpop_vs_pfl": True}
    assert out["headline"]["flower_s_per_round"] == out["flower_s_per_round"] and out["headline"]["met"] == out["met"]
    assert out["headline"]["pfl_s_per_round"] == pytest.approx(0.3)
    assert out["headline"]["small_compute_pfl_s_per_round"] == pytest.approx(0.04)
    assert out["versions"] == {"tensorflow": "2.14.1", "flower_flower_version": "1.42.0",
                               "flower_tensorflow_version": "2.21.0", "flower_keras_version": "3",
                               "pfl_pfl_version": "0.6.0", "pfl_tensorflow_version": "2.21.0",
                               "pfl_keras_version": "2.21.0"}
    assert out["pfl_simulation"] == {"backend": "tensorflow (tf-keras)", "processes_tried": [1, 2],
                                     "processes_faster": [1, 1, 1], "small_compute_processes_faster": [1, 1, 1]}
    assert {"pfl_1proc_s_per_round", "pfl_2proc_s_per_round", "small_compute_pfl_2proc_s_per_round"} <= set(out)
    assert out["small_compute_workload"]["cohort"] == 1000
    json.dumps(out)


def test_summary_fails_the_pfl_targets_when_pfl_is_faster():
    out = summarize_sittings([_sitting(0.1, 1.0, 3.0, pfl=0.05, small_fedpop=0.2, small_pfl=0.1)])
    assert out["met"]["fedpop_vs_pfl"] is False and out["met"]["small_compute_fedpop_vs_pfl"] is False


def test_missing_flower_venv_names_make_bench_peers(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="make bench-peers"):
        bench_peers.flower_python(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="make bench-peers"):
        bench_peers.check_peers_venv(tmp_path / "nope")
    monkeypatch.setattr(bench_peers, "PEERS_VENV", tmp_path / ".venv-peers")
    monkeypatch.setattr(bench_peers, "_config", lambda *a: pytest.fail("work started without the Flower venv"))
    with pytest.raises(FileNotFoundError, match=r"make bench-peers.*requirements-peers\.lock"):
        bench_peers.run_bench(str(tmp_path / "peers.json"), quick=True)
    assert not (tmp_path / "peers.json").exists()


def test_peers_venv_without_pfl_names_make_bench_peers(tmp_path, monkeypatch):
    """A .venv-peers built from an older lock (Flower only) is refused before any work."""
    py = tmp_path / ".venv-peers" / "bin" / "python"
    py.parent.mkdir(parents=True)
    py.write_text("#!/bin/sh\necho pfl\n")  # answers the probe as a venv that lacks pfl
    py.chmod(0o755)
    with pytest.raises(FileNotFoundError, match=r"lacks pfl: run `make bench-peers`"):
        bench_peers.check_peers_venv(tmp_path / ".venv-peers")
    monkeypatch.setattr(bench_peers, "PEERS_VENV", tmp_path / ".venv-peers")
    monkeypatch.setattr(bench_peers, "_config", lambda *a: pytest.fail("work started without pfl"))
    with pytest.raises(FileNotFoundError, match="lacks pfl"):
        bench_peers.run_bench(str(tmp_path / "peers.json"), quick=True)


def _need_pfl():
    try:
        bench_peers.check_peers_venv()
    except FileNotFoundError as e:
        pytest.skip(f"pfl-research not available ({e})")


def _pfl_against_fedpop(cfg, tmp_path, processes):
    """fedpop's engine run of ``cfg`` (bench_engine's timed warm pass), then pfl-research on the
    same cohorts, device data and initial weights with each of ``processes`` worker processes;
    pfl's JSON results by process count."""
    from experiments.bench_engine import _fedpop
    from fl.task import make_task

    _, _, cohorts, init, final, _, counts = _fedpop(cfg)
    task = make_task(cfg.experiment.task, cfg.task, cfg.experiment.seed)
    write_workload(tmp_path / "w.npz", task, cfg, cohorts, counts, init, expected_final=final)
    outs = {}
    for n in processes:
        out = outs[n] = bench_peers.run_pfl(tmp_path / "w.npz", tmp_path / f"pfl{n}.json", timeout_s=300, processes=n)
        assert out["processes"] == n and out["final_weights_size"] == final.size
        assert out["rounds"] == len(cohorts) and len(out["per_round_s"]) == len(cohorts)
        assert out["cohort"] == cfg.cohort.goal
        assert out["max_abs_diff_vs_fedpop_weights"] < 1e-5  # the same SGD steps, to float rounding
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"pfl{n}.json" for n in processes] + ["w.npz"])
    return outs


def test_pfl_trains_the_mlp_workload_to_fedpops_weights(tmp_path, cache_dir, ray_local):
    """Needs .venv-peers (`make bench-peers`): the quick MLP workload (784-32-32-10, cohort 10, 3 rounds),
    pfl in one process."""
    _need_pfl()
    for out in _pfl_against_fedpop(_config(True, cache_dir), tmp_path, [1]).values():
        assert out["model"] == "784-32-32-10" and out["pfl_version"] == "0.6.0"
        assert out["backend"] == "tensorflow (tf-keras)" and out["s_per_round"] > 0


def test_pfl_trains_the_logistic_regression_workload_to_fedpops_weights(tmp_path, cache_dir, ray_local):
    """Needs .venv-peers: the tiny-compute workload, cut to cohort 40 and 2 rounds, pfl in its
    multi-worker mode (2 processes on loopback ports; no rank's output left behind)."""
    from fl.config import load_config

    _need_pfl()
    cfg = small_compute_config(_config(True, cache_dir), quick=True)
    cfg = load_config(cfg.to_dict(), ["cohort.goal=40", "experiment.rounds=2", "population.size=1000"])
    assert all(out["model"] == "784-10" for out in _pfl_against_fedpop(cfg, tmp_path, [2]).values())


@pytest.mark.slow
def test_quick_bench_runs_flower_on_the_same_workload(tmp_path, cache_dir):
    """Needs .venv-peers (`make bench-peers`): every system on both workloads, one sitting, quick sizes."""
    import ray

    if not (bench_peers.PEERS_VENV / "bin" / "python").exists():
        pytest.skip("no .venv-peers: run `make bench-peers`")
    _need_pfl()
    ray.shutdown()
    out = bench_peers.run_bench(str(tmp_path / "peers.json"), quick=True, cache_dir=cache_dir, repeats=1)
    assert json.loads((tmp_path / "peers.json").read_text())["repeats"] == 1
    assert len(out["sittings"][0]["per_round_s"]["flower"]) == 3
    assert out["flower_s_per_round"] > 0 and out["fedpop_vs_flower"] > 1
    assert out["max_abs_diff_fedpop_vs_flower_weights"] < 1e-4  # the same SGD steps, to float rounding
    assert [len(out["sittings"][0]["per_round_s"][f"pfl_{n}proc"]) for n in (1, 2)] == [3, 3]
    assert out["pfl_s_per_round"] > 0 and out["max_abs_diff_fedpop_vs_pfl_weights"] < 1e-4
    small = out["sittings"][0]["small_compute"]
    assert small["workload"]["cohort"] == 200 and len(small["per_round_s"]["pfl_2proc"]) == 5
    assert out["small_compute_pfl_s_per_round"] > 0 and out["small_compute_fedpop_s_per_round"] > 0
    assert out["max_abs_diff_fedpop_vs_pfl_small_compute_weights"] < 1e-4
