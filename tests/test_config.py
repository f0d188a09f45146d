import pytest

from fl.config import ConfigError, load_config, parse_overrides


def test_defaults_validate():
    cfg = load_config({})
    assert cfg.experiment.task == "charlm" and cfg.task.hidden > 0


def test_unknown_key_names_key_and_allowed():
    with pytest.raises(ConfigError, match=r"unknown key 'cohort\.gaol' \(allowed: goal,"):
        load_config({"cohort": {"gaol": 3}})
    with pytest.raises(ConfigError, match=r"unknown key 'cohrt'"):
        load_config({"cohrt": {}})
    with pytest.raises(ConfigError, match=r"unknown key 'task\.widht'"):
        load_config({"experiment": {"task": "mlp"}, "task": {"widht": 3}})


def test_bad_values_name_allowed_values():
    with pytest.raises(ConfigError, match=r"'server\.optimizer': 'lamb' \(allowed: sgd, momentum, adam, yogi\)"):
        load_config({}, ["server.optimizer=lamb"])
    with pytest.raises(ConfigError, match=r"'cohort\.goal': 'many' \(expected int\)"):
        load_config({}, ["cohort.goal=many"])
    with pytest.raises(ConfigError, match=r"'client\.lr': -1.0 \(allowed range"):
        load_config({}, ["client.lr=-1"])
    with pytest.raises(ConfigError, match=r"'experiment\.task': 'speech'"):
        load_config({}, ["experiment.task=speech"])
    with pytest.raises(ConfigError, match=r"cohort\.min_reports"):
        load_config({}, ["cohort.goal=5", "cohort.min_reports=6"])
    with pytest.raises(ConfigError, match=r"prox_mu"):
        load_config({}, ["client.algorithm=fedprox"])


def test_overrides_parse_yaml_values():
    assert parse_overrides(["a.b=3", "a.c=[1, 2]", "d=adam"]) == {"a": {"b": 3, "c": [1, 2]}, "d": "adam"}
    cfg = load_config({"experiment": {"task": "mlp"}}, ["task.hidden=[4, 5]", "client.shuffle=false"])
    assert cfg.task.hidden == (4, 5) and cfg.client.shuffle is False
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["cohort.goal"])


def test_cli_rejects_bad_config_before_work(capsys):
    from experiments.cli import main

    assert main(["run", "fedavg-charlm", "--out", "/nonexistent/x", "--set", "cohort.gaol=3"]) == 2
    assert "unknown key 'cohort.gaol'" in capsys.readouterr().err


def test_secagg_aggregator_needs_a_clip_bound():
    with pytest.raises(ConfigError, match=r"aggregator\.clip_norm.*secagg needs clip_norm > 0"):
        load_config({}, ["aggregator.kind=secagg"])
    with pytest.raises(ConfigError, match=r"'aggregator\.secagg_mode': 'full' \(allowed: secagg\+, secagg\)"):
        load_config({}, ["aggregator.kind=secagg", "aggregator.clip_norm=1", "aggregator.secagg_mode=full"])
    cfg = load_config({}, ["aggregator.kind=secagg", "aggregator.clip_norm=1"])
    assert cfg.aggregator.secagg_bits == 32
