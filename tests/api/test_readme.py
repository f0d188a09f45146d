"""The README's Python API example runs exactly as written, so the docs cannot rot."""
import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def _example() -> str:
    text = README.read_text()
    m = re.search(r"<!-- readme-example -->\s*```python\n(.*?)```", text, re.S)
    assert m, "README lost its marked Python example"
    return m.group(1)


def test_readme_example_is_short_and_runs(ray_local, capsys):
    code = _example()
    assert len(code.strip().splitlines()) <= 30
    namespace = {"__name__": "readme_example"}
    exec(compile(code, str(README), "exec"), namespace)
    out = capsys.readouterr().out
    rounds = namespace["process"].rounds
    assert list(rounds["round"]) == [0, 1, 2, 3, 4]
    assert rounds["train_loss"].iloc[-1] < rounds["train_loss"].iloc[0]
    assert 0.5 < rounds["eval_accuracy"].iloc[-1] <= 1.0  # 3 separable-ish classes: well above chance
    assert "eval_accuracy" in out


def test_readme_analytics_query_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    code = next(b for b in blocks if "run_query(" in b)
    ns: dict = {}
    exec(compile(code, str(README), "exec"), ns)
    import numpy as np

    assert len(ns["rounds"]) == 5
    np.testing.assert_array_equal(ns["state"]["counts"], ns["has_word"].sum(axis=0))  # no dropouts: exact


def test_readme_aggregator_example_is_short_and_works():
    import numpy as np

    code = next(b for b in re.findall(r"```python\n(.*?)```", README.read_text(), re.S) if "norm_logged" in b)
    assert len(code.strip().splitlines()) <= 20
    ns: dict = {}
    exec(compile(code, str(README), "exec"), ns)
    agg = ns["agg"]
    outs = [agg.client(np.full(4, k), 3) for k in (1.0, 3.0)]
    info = {"norm_sum": sum(o[2]["norm_sum"] for o in outs)}
    update, _, metrics = agg.finalize(agg.init(), outs[0][0] + outs[1][0], 6.0, 2, 0, {"client_info": info})
    np.testing.assert_allclose(update, np.full(4, 2.0))
    assert metrics["mean_update_norm"] == 4.0  # (2 + 6) / 2
