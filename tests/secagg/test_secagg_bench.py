import json

from secagg.bench import run_bench


def test_quick_bench_writes_json(tmp_path):
    out = tmp_path / "b.json"
    rep = run_bench(str(out), quick=True, parallel_headline=False, repeats=2)
    data = json.loads(out.read_text())
    head = data["headline"]
    assert head["ratio"] == rep["headline"]["ratio"] > 1.0
    assert head["prg_floor_s"] > 0
    # the primitives floor contains the keystream floor and every other primitive
    assert head["primitives_floor_s"] > head["prg_floor_s"]
    assert head["primitives_floor_parts"]["x25519_count"] > 0
    assert head["malicious_total_s"] > 0 and head["malicious_k"] >= head["k"]
    assert len(head["total_s_spread"]["runs"]) == 2 and head["total_s_spread"]["min"] <= head["total_s"]
    assert set(head["meets_targets"]) == {"total_vs_primitives_floor", "total_s", "malicious_vs_semihonest_same_graph"}
    # the floor prices HKDF and the share commitments, and keeps the earlier definition beside it
    parts = head["primitives_floor_parts"]
    assert parts["hkdf_count"] > 0 and parts["sha256_commitment_count"] > 0
    assert head["primitives_floor_s_without_hkdf_commitments"] < head["primitives_floor_s"]
    modes = {(c["mode"], c["malicious"]) for c in data["cases"]}
    assert modes == {("secagg", False), ("secagg+", False), ("secagg+", True)}
    for c in data["cases"]:
        assert c["total_s"] >= c["prg_floor_s"] > 0
        assert c["prg_bytes"] == c["prg_bytes_clients"] + c["prg_bytes_server"]
        stages = {"advertise_keys", "share_keys", "masked_input", "unmasking"}
        assert set(c["per_stage_s"]) == (stages | {"consistency"} if c["malicious"] else stages)
        assert c["bytes_sent_per_client"] > 4 * c["m"]
        assert (c["primitives_floor_parts"]["ed25519_verify_count"] > 0) == c["malicious"]
