"""The docs site builds strictly, and the code in its pages runs as written.

Every ```python block of a page runs, in order, in one namespace per page, unless the line
before it is ``<!-- no-run: why -->``; YAML aggregator chains load through the config loader;
the benchmarks page is rendered from ``bench/*.json``.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
BLOCK = re.compile(r"(<!-- no-run:[^>]*-->\s*)?```python\n(.*?)```", re.S)


def _blocks(page: Path) -> list[str]:
    return [code for skip, code in BLOCK.findall(page.read_text()) if not skip]


def _run_page(name: str) -> dict:
    page = DOCS / name
    blocks = _blocks(page)
    assert blocks, f"{name} has no runnable Python block"
    ns: dict = {"__name__": f"docs_{page.stem}"}
    for code in blocks:
        exec(compile(code, str(page), "exec"), ns)
    return ns


def test_mkdocs_builds_strictly(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                       cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    site = tmp_path / "site"
    bench = (site / "benchmarks" / "index.html").read_text()
    assert "fedpop_s_per_round" in bench and "bench/engine.json" in bench  # rendered from the JSON
    assert "docs/studies" not in (site / "changelog" / "index.html").read_text()  # links rewritten for the site
    api = (site / "reference" / "fedpop" / "index.html").read_text()
    assert "build_process" in api and "FederatedData" in api  # mkdocstrings rendered the docstrings


def test_every_page_with_code_is_tested():
    """A new page with Python code must be added to the tests below (or mark its blocks no-run)."""
    tested = {"python-api.md", "analytics.md", "aggregators.md"}
    with_code = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md") if _blocks(p)}
    assert with_code == tested


def test_python_api_page_runs(ray_local):
    ns = _run_page("python-api.md")
    rounds = ns["process"].rounds
    assert len(rounds) == 2 and "client_id" in ns["process"].clients


def test_analytics_query_example_runs():
    ns = _run_page("analytics.md")
    assert len(ns["rounds"]) == 5
    np.testing.assert_array_equal(ns["state"]["counts"], ns["has_word"].sum(axis=0))  # no dropouts: exact


def test_aggregator_example_is_short_and_works():
    code = next(b for b in _blocks(DOCS / "aggregators.md") if "norm_logged" in b)
    assert len(code.strip().splitlines()) <= 20
    ns = _run_page("aggregators.md")
    agg = ns["agg"]
    outs = [agg.client(np.full(4, k), 3) for k in (1.0, 3.0)]
    info = {"norm_sum": sum(o[2]["norm_sum"] for o in outs)}
    update, _, metrics = agg.finalize(agg.init(), outs[0][0] + outs[1][0], 6.0, 2, 0, {"client_info": info})
    np.testing.assert_allclose(update, np.full(4, 2.0))
    assert metrics["mean_update_norm"] == 4.0  # (2 + 6) / 2


def test_every_aggregator_chain_on_the_page_loads():
    import yaml

    from fl.config import load_config

    text = (DOCS / "aggregators.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", text, re.S).group(1)
    lines = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert len(lines) >= 5
    for line in lines:
        cfg = load_config(yaml.safe_load(line))
        assert cfg.aggregator.chain, line


@pytest.mark.parametrize("page", sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")))
def test_fedpop_run_commands_name_real_studies(page):
    from experiments.registry import names

    text = (DOCS / page).read_text()
    for name in re.findall(r"fedpop run ([a-z][a-z0-9-]+)", text):
        assert name in names(), f"{page}: fedpop run {name}"


def test_bench_tables_render_every_file():
    sys.path.insert(0, str(DOCS / "hooks"))
    try:
        import bench_tables
    finally:
        sys.path.pop(0)
    text = bench_tables.render(ROOT / "bench")
    for path in sorted((ROOT / "bench").glob("*.json")):
        assert f"## {path.stem}\n" in text
    assert "| --- |" in text and "✔" in text


def test_the_aggregator_example_runs_inside_a_real_round(ray_local, cache_dir):
    """The page's `norm_logged`, defined in the page's namespace (as in a notebook), travels to
    the workers by value: its client half runs on every report, its metric is a round column."""
    import fedpop

    norm_logged = _run_page("aggregators.md")["norm_logged"]
    cfg = {"experiment.rounds": 2, "population.size": 40, "population.availability": "always", "cohort.goal": 6,
           "cohort.min_reports": 3, "eval.every": 0, "workers.num": 2, "workers.cache_dir": cache_dir,
           "aggregator.clip_norm": 0.5, "task": {"input_dim": 6, "hidden": [4], "classes": 3}}
    with fedpop.build_process("mlp", cfg, aggregator=[norm_logged, "clip", "mean"], progress=False) as process:
        process.run()
    rounds = process.rounds
    assert len(rounds) == 2 and rounds["updated"].all()
    assert (rounds["mean_update_norm"] > 0).all() and (rounds["clipped_fraction"] >= 0).all()
