"""Standard federated dataset formats, from Python and from a config's data section: a table
with a client-id column (DataFrame, parquet, CSV), LEAF JSON, a TFF ClientData."""
import json

import numpy as np
import pandas as pd
import pytest
import yaml

import fedpop
from fl.config import DataSection

SIZES = {"u1": 7, "u2": 12, "u3": 5}
CFG = {"experiment.rounds": 1, "cohort.goal": 3, "cohort.min_reports": 2, "eval.every": 1, "eval.cohort": 3,
       "workers.num": 2, "experiment.task": "tiny_tasks:NoData"}


def _table(seed=0):
    rng = np.random.default_rng(seed)
    rows = [{"client_id": c, "f0": rng.normal(), "f1": rng.normal(), "f2": rng.normal(), "label": int(rng.integers(2))}
            for c, n in SIZES.items() for _ in range(n)]
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0).reset_index(drop=True)  # clients interleaved


def _leaf(sizes, seed=0):
    rng = np.random.default_rng(seed)
    users = list(sizes)
    return {"users": users, "num_samples": [sizes[u] for u in users],
            "user_data": {u: {"x": rng.normal(size=(sizes[u], 3)).tolist(), "y": rng.integers(0, 2, sizes[u]).tolist()}
                          for u in users}}


def _check(data, ids, sizes, eval_sizes=None):
    assert list(data.client_ids) == ids and data.sizes.tolist() == sizes
    for cid in ids:
        tr = data.client_data(cid, "train")
        assert tr["x"].dtype == np.float32 and tr["x"].shape[1:] == (3,) and tr["y"].dtype == np.int32
    if eval_sizes is not None:
        assert [len(data.client_data(c, "eval")["y"]) for c in ids] == eval_sizes


def test_dataframe_parquet_and_csv(tmp_path):
    df = _table()
    order = list(dict.fromkeys(df["client_id"]))  # clients in the order of their first row
    held = {c: SIZES[c] - round(0.2 * SIZES[c]) for c in SIZES}
    data = fedpop.FederatedData.from_dataframe(df, y_column="label")
    _check(data, order, [held[c] for c in order])
    df.to_parquet(tmp_path / "d.parquet")
    df.to_csv(tmp_path / "d.csv", index=False)
    for path in ("d.parquet", "d.csv"):
        _check(fedpop.FederatedData.from_file(tmp_path / path, y_column="label", x_columns=["f0", "f1", "f2"]),
               order, [held[c] for c in order])
    ev = _table(seed=1)
    ev = ev[ev["client_id"] != "u3"]  # a client without held-out rows gets an empty eval split
    data = fedpop.FederatedData.from_dataframe(df, y_column="label", eval=ev)
    _check(data, order, [SIZES[c] for c in order], [SIZES[c] if c != "u3" else 0 for c in order])
    arrays = pd.DataFrame({"client_id": ["a", "a", "b"], "x": [np.ones(3), np.zeros(3), np.ones(3)], "y": [0, 1, 1]})
    stacked = fedpop.FederatedData.from_dataframe(arrays, eval_fraction=0.0)
    assert stacked.client_data("a")["x"].shape == (2, 3) and stacked.sizes.tolist() == [2, 1]
    with pytest.raises(ValueError, match="no column 'cid'"):
        fedpop.FederatedData.from_dataframe(df, client_column="cid")


def test_leaf_json_file_and_directory(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    (tmp_path / "train" / "part0.json").write_text(json.dumps(_leaf({"w1": 6, "w2": 9})))
    (tmp_path / "train" / "part1.json").write_text(json.dumps(_leaf({"w3": 4}, seed=1)))
    (tmp_path / "test" / "all.json").write_text(json.dumps(_leaf({"w1": 2, "w2": 3, "w3": 1}, seed=2)))
    data = fedpop.FederatedData.from_leaf(tmp_path / "train", tmp_path / "test")
    _check(data, ["w1", "w2", "w3"], [6, 9, 4], [2, 3, 1])
    single = fedpop.FederatedData.from_leaf(tmp_path / "train" / "part0.json", eval_fraction=0.0)
    _check(single, ["w1", "w2"], [6, 9])
    bad = _leaf({"w1": 6})
    bad["num_samples"] = [5]
    with pytest.raises(ValueError, match="num_samples 5 but 6 examples"):
        fedpop.FederatedData.from_leaf(bad)


def test_tff_client_data():
    from first_hour_tasks import tff_clients

    cd = tff_clients()
    data = fedpop.FederatedData.from_tff(cd, eval=cd)
    _check(data, ["a", "b", "c"], [6, 9, 4], [6, 9, 4])
    assert fedpop.as_federated_data(cd).sizes.tolist() == [6 - 1, 9 - 2, 4 - 1]
    from_yaml = fedpop.FederatedData.from_config(DataSection(format="tff", loader="first_hour_tasks:tff_clients",
                                                             eval_fraction=0.0))
    _check(from_yaml, ["a", "b", "c"], [6, 9, 4])


def test_data_section_is_validated():
    with pytest.raises(fedpop.ConfigError, match=r"'data\.format'.*allowed: none, table, leaf, tff"):
        fedpop.load_config({"data": {"format": "hdf5"}, "experiment": {"task": "mlp"}})
    with pytest.raises(fedpop.ConfigError, match=r"'data\.path': data.format=leaf needs a file"):
        fedpop.load_config({"data": {"format": "leaf"}, "experiment": {"task": "mlp"}})
    with pytest.raises(fedpop.ConfigError, match=r"'data\.loader'"):
        fedpop.load_config({"data": {"format": "tff"}, "experiment": {"task": "mlp"}})
    with pytest.raises(fedpop.ConfigError, match=r"bad value for 'data': data file .*missing.csv does not exist"):
        fedpop.build_process("tiny_tasks:NoData", {"data.format": "table", "data.path": "/nonexistent/missing.csv"})


def test_dataframe_from_python_and_leaf_from_yaml_train(ray_local, tmp_path):
    with fedpop.build_process("tiny_tasks:NoData", CFG, data=_table().rename(columns={"label": "y"})) as process:
        process.run()
        population = process.population
    assert len(population) == 3 and process.rounds["updated"].all()
    assert set(process.clients["client_id"]) == set(SIZES)

    (tmp_path / "leaf").mkdir()
    (tmp_path / "leaf" / "train.json").write_text(json.dumps(_leaf({"w1": 6, "w2": 9, "w3": 4})))
    cfg = {"experiment": {"task": "tiny_tasks:NoData", "rounds": 1}, "cohort": {"goal": 3, "min_reports": 2},
           "eval": {"every": 1, "cohort": 3}, "workers": {"num": 2},
           "data": {"format": "leaf", "path": "leaf/train.json"}}  # relative to the YAML file
    (tmp_path / "my.yaml").write_text(yaml.safe_dump(cfg))
    with fedpop.build_process("tiny_tasks:NoData", str(tmp_path / "my.yaml")) as process:
        process.run()
        population = process.population
    assert process.cfg.population.size == 3 and population["num_examples"].tolist() == [5, 7, 3]
    assert process.rounds["updated"].all() and process.rounds["eval_devices"].eq(3).all()
    assert set(process.coverage["client_id"]) == {"w1", "w2", "w3"}
