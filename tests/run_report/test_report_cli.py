"""`fedpop report DIR [--out FILE]`, and the report.html that `fedpop run` writes at its end."""
import os
import subprocess
import sys

from report_study import PNG_NAMES


def _fedpop(*args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # as a user runs it, from anywhere
    return subprocess.run([sys.executable, "-m", "experiments.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


def test_fedpop_report_writes_the_page(study_dir, tmp_path):
    r = _fedpop("report", str(study_dir), "--out", str(tmp_path / "a" / "page.html"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    page = (tmp_path / "a" / "page.html").read_text()
    assert r.stdout.strip() == f"report: {tmp_path / 'a' / 'page.html'}"
    assert page.count("<img src=\"data:image/png;base64,") == len(PNG_NAMES) and "2 of 3 targets met" in page
    r = _fedpop("report", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip() == f"fedpop report: {tmp_path / 'nowhere'} does not exist"


def test_fedpop_run_ends_with_report_html(tmp_path, cache_dir):
    out = tmp_path / "run"
    sets = ["experiment.rounds=2", "population.size=8", "cohort.goal=3", "task.input_dim=4", "task.hidden=[8]",
            "task.classes=3", "workers.num=1", "eval.every=2", "eval.cohort=4"]
    r = _fedpop("run", "fedavg-mlp", "--out", str(out), "--quiet", "--cache-dir", cache_dir,
                *[a for s in sets for a in ("--set", s)], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"report: {out / 'report.html'}" in r.stdout and "report.html" in r.stdout.splitlines()[-1]
    page = (out / "report.html").read_text()
    assert "name: fedavg-mlp" in page and "input_dim: 4" in page  # config.yaml
    assert page.count("<img src=\"data:image/png;base64,") == 1  # training_curve.png
    assert "<dt>task</dt><dd>mlp</dd>" in page and "<dt>algorithm</dt><dd>fedavg" in page
    assert "<dt>aggregators</dt><dd>mean</dd>" in page and "<dt>seed</dt><dd>0</dd>" in page
    for chart in ("status", "loss", "update-norm", "wall", "final-cdf"):
        assert f'<figure class="chart-fig" id="chart-{chart}">' in page, chart
    for anchor in ("population", "config", "summary", "plots", "rounds", "clients"):
        assert f'<section id="{anchor}">' in page, anchor
    assert "2 rounds; click a column to sort." in page


def test_a_report_that_cannot_be_written_warns_and_keeps_the_run(tmp_path, capsys):
    from experiments.cli import write_run_report

    (tmp_path / "report.html").mkdir()  # the page's place is taken: writing it fails
    (tmp_path / "summary.json").write_text("{}")
    assert write_run_report(tmp_path) is None
    err = capsys.readouterr().err
    assert err.startswith(f"fedpop: warning: could not write {tmp_path / 'report.html'}: ")
    assert (tmp_path / "summary.json").read_text() == "{}"
