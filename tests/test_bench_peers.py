"""`fedpop bench peers`: the workload file Flower reads, the summary and targets, the missing-venv error."""
import importlib.util
import json

import numpy as np
import pytest

from experiments import bench_peers
from experiments.bench_engine import _config
from experiments.bench_peers import SCALARS, TARGETS, summarize_sittings, write_workload


def _flower_side():
    """peers/flower_mlp.py as a module (it imports only numpy at the top, so the main venv can load it)."""
    spec = importlib.util.spec_from_file_location("flower_mlp", bench_peers.FLOWER_SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


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


def _sitting(fedpop, tff, flower):
    s = {k: 0.0 for k in SCALARS}
    s.update(fedpop_s_per_round=fedpop, tff_s_per_round=tff, flower_s_per_round=flower,
             fedpop_vs_flower=flower / fedpop, fedpop_vs_tff=tff / fedpop)
    return {**s, "workload": {"cohort": 50},
            "flower": {"flower_version": "1.42.0", "tensorflow_version": "2.21.0", "keras_version": "3",
                       "api": "numpyclient", "client_num_cpus": 1.0, "total_s": 60.0}}


def test_summary_is_the_median_over_sittings_with_spread_and_targets():
    out = summarize_sittings([_sitting(0.1, 0.9, 3.0), _sitting(0.2, 1.0, 6.0), _sitting(0.1, 0.7, 2.0)],
                             {"tensorflow": "2.14.1"})
    assert out["repeats"] == 3 and len(out["sittings"]) == 3
    assert out["fedpop_s_per_round"] == pytest.approx(0.1)
    assert out["spread"]["fedpop_s_per_round"] == pytest.approx([0.1, 0.2])
    assert out["flower_s_per_round"] == pytest.approx(3.0)
    assert out["fedpop_vs_flower"] == pytest.approx(30.0)  # median of the per-sitting ratios 30, 30, 20
    assert out["spread"]["fedpop_vs_flower"] == pytest.approx([20.0, 30.0])
    assert out["fedpop_vs_tff"] == pytest.approx(7.0)  # 9, 5, 7
    assert out["targets"] == TARGETS == {"fedpop_vs_flower_min": 25.0, "fedpop_vs_tff_min": 8.0}
    assert out["met"] == {"fedpop_vs_flower": True, "fedpop_vs_tff": False}
    assert out["headline"]["flower_s_per_round"] == out["flower_s_per_round"] and out["headline"]["met"] == out["met"]
    assert out["versions"] == {"tensorflow": "2.14.1", "flower_flower_version": "1.42.0",
                               "flower_tensorflow_version": "2.21.0", "flower_keras_version": "3"}
    json.dumps(out)


def test_missing_flower_venv_names_make_bench_peers(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="make bench-peers"):
        bench_peers.flower_python(tmp_path / "nope")
    monkeypatch.setattr(bench_peers, "PEERS_VENV", tmp_path / ".venv-peers")
    monkeypatch.setattr(bench_peers, "_config", lambda *a: pytest.fail("work started without the Flower venv"))
    with pytest.raises(FileNotFoundError, match=r"make bench-peers.*requirements-peers\.lock"):
        bench_peers.run_bench(str(tmp_path / "peers.json"), quick=True)
    assert not (tmp_path / "peers.json").exists()


@pytest.mark.slow
def test_quick_bench_runs_flower_on_the_same_workload(tmp_path, cache_dir):
    """Needs .venv-peers (`make bench-peers`): all four systems, one sitting, quick sizes."""
    import ray

    if not (bench_peers.PEERS_VENV / "bin" / "python").exists():
        pytest.skip("no .venv-peers: run `make bench-peers`")
    ray.shutdown()
    out = bench_peers.run_bench(str(tmp_path / "peers.json"), quick=True, cache_dir=cache_dir, repeats=1)
    assert json.loads((tmp_path / "peers.json").read_text())["repeats"] == 1
    assert len(out["sittings"][0]["per_round_s"]["flower"]) == 3
    assert out["flower_s_per_round"] > 0 and out["fedpop_vs_flower"] > 1
    assert out["max_abs_diff_fedpop_vs_flower_weights"] < 1e-4  # the same SGD steps, to float rounding
