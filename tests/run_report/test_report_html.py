"""report.html from a run directory: what it holds, escaping, partial directories, errors."""
import base64
import json
import re

import pandas as pd
import pytest
from report_study import PNG_NAMES, SCRIPT

from report import ReportError, render, write_report
from report.html import per_device


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
    assert "first 50 of 120 rows shown; the file holds them all" in clients
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
    assert re.findall(r'<section id="([a-z]+)"', html) == ["rounds"]
    # a summary without targets, and an unreadable table, which is named instead of failing the report
    (tmp_path / "summary.json").write_text(json.dumps({"rounds": 2}))
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    html = render(tmp_path, config={"experiment": {"name": "from-the-cli"}})
    assert re.findall(r'<section id="([a-z]+)"', html) == ["config", "summary", "rounds", "problems"]
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
