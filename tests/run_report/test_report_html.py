"""report.html from a run directory: what it holds, escaping, partial directories, errors."""
import base64
import json
import re

import pandas as pd
import pytest
from report_study import PNG_NAMES, SCRIPT

from report import ReportError, render, write_report
from report.html import aggregator_chain, per_device, run_header
from report.population import final_per_device, personalized_vs_global


def _section(html, anchor):
    m = re.search(rf'<section id="{anchor}">(.*?)</section>', html, re.S)
    assert m, f"no section {anchor}"
    return m.group(1)


def test_the_page_holds_config_targets_every_plot_and_sortable_tables(study_dir):
    html = render(study_dir)
    assert "name: hand-made-study" in _section(html, "config") and "goal: 10" in html
    targets = _section(html, "targets")
    assert "2 of 3 targets met" in targets
    rows = re.findall(r'<tr class="([a-z-]+)"><td>([a-z_]+)</td>', targets)
    assert rows == [("met", "cer_low"), ("not-met", "study_wall_s"), ("met", "exact_counts"),
                    ("unknown", "wall_seconds")]
    assert "✔ met" in targets and "✘ not met" in targets and "&lt;= 3600" in targets
    # every PNG, embedded byte for byte
    uris = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]+)"', html)
    assert sorted(alt for _, alt in uris) == sorted(PNG_NAMES)
    for data, alt in uris:
        assert base64.b64decode(data) == (study_dir / alt).read_bytes()
    for anchor in ("summary", "rounds", "clients", "writers", "speakers", "tables", "nested"):
        assert '<table class="sortable' in _section(html, anchor), anchor
    assert "<th>cer</th>" in _section(html, "summary")  # {name: {metric: value}} as a table
    assert "lm_tuning.csv" in _section(html, "tables") and "runs/points" in _section(html, "nested")
    assert "SORTER" not in html and 'querySelectorAll("table.sortable")' in html
    assert not re.search(r"https?://", html)


def test_text_from_the_run_is_escaped(study_dir):
    html = render(study_dir)
    assert SCRIPT not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in _section(html, "summary")
    assert "&lt;script&gt;" in _section(html, "writers")
    assert html.count("<script>") == 1  # the table sorter


def test_big_tables_show_their_first_rows_and_say_how_many(study_dir):
    html = render(study_dir, max_rows=50)
    clients = _section(html, "clients")
    assert "first 50 of 132 rows shown; the file holds them all" in clients
    assert "30 devices (by device id)" in clients
    body = re.search(r"<summary>Raw rows</summary>.*?<tbody>(.*?)</tbody>", clients, re.S).group(1)
    assert body.count("<tr>") == 50


def test_per_device_aggregates_each_devices_rows():
    clients = pd.DataFrame({"round": [0, 0, 1, 1], "device_id": [3, 5, 3, 3], "status": ["accepted", "dropped",
                            "accepted", "failed"], "examples": [10, 20, 30, 40], "loss": [1.0, 2.0, 3.0, None]})
    d = per_device(clients).set_index("device_id")
    assert d.loc[3, "rows"] == 3 and d.loc[3, "rounds"] == 2 and d.loc[3, "status_accepted"] == 2
    assert d.loc[3, "status_failed"] == 1 and d.loc[5, "status_dropped"] == 1
    assert d.loc[3, "total_examples"] == 80 and d.loc[3, "mean_loss"] == 2.0


def test_a_directory_with_some_files_gets_only_those_sections(tmp_path):
    pd.DataFrame({"round": [0, 1], "train_loss": [1.0, 0.5]}).to_parquet(tmp_path / "rounds.parquet")
    out = write_report(tmp_path)
    html = out.read_text()
    assert out == tmp_path / "report.html"
    assert re.findall(r'<section id="([a-z]+)"', html) == ["population", "rounds"]
    assert re.findall(r'<figure class="chart-fig" id="([a-z-]+)"', html) == ["chart-loss"]
    assert 'id="run-header"' not in html  # no config, no summary: nothing to name
    # a summary without targets, and an unreadable table, which is named instead of failing the report
    (tmp_path / "summary.json").write_text(json.dumps({"rounds": 2}))
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    html = render(tmp_path, config={"experiment": {"name": "from-the-cli"}})
    assert re.findall(r'<section id="([a-z]+)"', html) == ["population", "config", "summary", "rounds", "problems"]
    assert "name: from-the-cli" in html and "broken.parquet" in _section(html, "problems")


@pytest.mark.parametrize("kind", ["missing", "file", "empty", "unrelated"])
def test_not_a_run_directory_is_a_clear_error(tmp_path, kind, capsys):
    from experiments.cli import main

    path = tmp_path / "x"
    if kind == "file":
        path.write_text("hello")
    elif kind in ("empty", "unrelated"):
        path.mkdir()
        if kind == "unrelated":
            (path / "notes.txt").write_text("hello")
    with pytest.raises(ReportError, match=re.escape(str(path))):
        render(path)
    assert main(["report", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fedpop report: {path} ") and not (path / "report.html").exists()


def test_the_header_names_task_algorithm_aggregators_population_and_seed(study_dir):
    html = render(study_dir)
    header = re.search(r'<dl id="run-header">(.*?)</dl>', html, re.S).group(1)
    pairs = dict(re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", header))
    assert pairs["task"] == "mlp" and pairs["algorithm"] == "ditto (server adam, lr 0.01)"
    assert pairs["aggregators"] == "clip → mean" and pairs["seed"] == "7"
    assert pairs["population"] == "30 devices, availability always" and pairs["rounds"] == "3"


def test_the_aggregator_chain_is_the_configs_or_the_one_its_flat_keys_stand_for():
    assert aggregator_chain({"chain": ["zeroing", "trimmed_mean"]}) == ["zeroing", "trimmed_mean"]
    assert aggregator_chain({"kind": "mean"}) == ["mean"]
    assert aggregator_chain({"kind": "secagg", "clip_norm": 0.1}) == ["clip", "secure_sum", "mean"]
    assert aggregator_chain({"dp_noise_multiplier": 1.0, "clip_norm": 0.5}) == ["dp_mean"]
    assert run_header({}, {"population": 5000, "seed": 3}) == [("population", "5,000 devices"), ("seed", "3")]


def test_the_population_section_has_every_chart_with_rounds_as_in_the_tables(study_dir):
    pop = _section(render(study_dir), "population")
    ids = re.findall(r'<figure class="chart-fig" id="([a-z-]+)"', pop)
    assert ids == ["chart-status", "chart-loss", "chart-accuracy", "chart-update-norm", "chart-wall",
                   "chart-coverage", "chart-final-cdf", "chart-personalized"]
    status = re.search(r'id="chart-status".*?</figure>', pop, re.S).group(0)
    bars = re.findall(r'data-status="([a-z]+)" data-round="(\d+)"', status)
    assert {r for _, r in bars} == {"0", "1", "2"}  # rounds 0..2, as rounds.parquet numbers them
    assert ("dropped", "0") in bars and ("accepted", "2") in bars
    wall = re.search(r'id="chart-wall".*?</figure>', pop, re.S).group(0)
    assert [t for t in re.findall(r'text-anchor="middle">(\d+)</text>', wall)] == ["0", "1", "2"]  # x ticks
    assert 'data-n="12"' in re.search(r'id="chart-final-cdf".*?</figure>', pop, re.S).group(0)
    assert "Final accuracy per device (CDF, round 2)" in pop
    assert len(re.findall(r'class="point"', pop)) == 12  # one per device with a personal model


def test_final_metric_and_personal_models_come_from_the_last_evaluation():
    clients = pd.DataFrame({"round": [0, 0, 1, 1, 1], "device_id": [1, 2, 1, 2, 3],
                            "status": ["accepted", "accepted", "accepted", "nonfinite", "accepted"],
                            "phase": ["eval"] * 5, "accuracy": [0.1, 0.2, 0.5, float("nan"), 0.7],
                            "personalized_accuracy": [None, None, 0.6, None, 0.9]})
    metric, rnd, values = final_per_device(clients)
    assert (metric, rnd, sorted(values)) == ("accuracy", 1, [0.5, 0.7])  # the NaN row is not a device's score
    rnd, rows = personalized_vs_global(clients)
    assert rnd == 1 and list(rows["device_id"]) == [1, 3]
    assert final_per_device(clients.iloc[:0]) is None and personalized_vs_global(clients.drop(
        columns="personalized_accuracy")) is None
