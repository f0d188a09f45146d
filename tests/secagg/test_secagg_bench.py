import json

from secagg.bench import run_bench


def test_quick_bench_writes_json(tmp_path):
    out = tmp_path / "b.json"
    rep = run_bench(str(out), quick=True, parallel_headline=False)
    data = json.loads(out.read_text())
    assert data["headline"]["ratio"] == rep["headline"]["ratio"] > 1.0
    assert data["headline"]["prg_floor_s"] > 0
    modes = {c["mode"] for c in data["cases"]}
    assert modes == {"secagg", "secagg+"}
    for c in data["cases"]:
        assert c["total_s"] >= c["prg_floor_s"] > 0
        assert c["prg_bytes"] == c["prg_bytes_clients"] + c["prg_bytes_server"]
        assert set(c["per_stage_s"]) == {"advertise_keys", "share_keys", "masked_input", "unmasking"}
        assert c["bytes_sent_per_client"] > 4 * c["m"]
