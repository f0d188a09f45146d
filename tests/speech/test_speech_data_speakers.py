import numpy as np
import pandas as pd

from clients.speech.speakers import (CONDITIONS, SEVERITIES, SUBSTITUTIONS, VOICES, SpeakerPopulation,
                                     articulate, make_speaker, recording_condition, render, split_phrases)


def test_population_table_and_determinism():
    pop = SpeakerPopulation(5, n_typical=4, n_atypical=12, utterances_per_speaker=(10, 30))
    t = pop.table()
    assert isinstance(t, pd.DataFrame) and len(t) == 16
    for col in ["speaker_id", "kind", "severity", "condition", "voice", "variant", "rate", "pitch",
                "pitch_range", "warp", "snr_db", "lowpass_hz", "n_train", "n_test"]:
        assert col in t.columns, col
    assert (t.kind == "typical").sum() == 4 and (t.kind == "atypical").sum() == 12
    atyp = t[t.kind == "atypical"]
    assert set(atyp.severity) <= set(SEVERITIES) and set(atyp.condition) <= set(CONDITIONS)
    assert set(t[t.kind == "typical"].severity) == {"none"} and t[t.kind == "typical"].lowpass_hz.isna().all()
    assert set(t.voice) <= set(VOICES)
    assert all(v[0] in "mf" and 1 <= int(v[1:]) <= 7 for v in t.variant)
    assert (t.n_train + t.n_test == [len(pop.utterances(s)) for s in t.speaker_id]).all()
    again = SpeakerPopulation(5, n_typical=4, n_atypical=12, utterances_per_speaker=(10, 30))
    pd.testing.assert_frame_equal(t, again.table())
    assert all(pop.utterances(s) == again.utterances(s) for s in pop.ids)
    other = SpeakerPopulation(6, n_typical=4, n_atypical=12, utterances_per_speaker=(10, 30)).table()
    assert not t[["pitch", "rate", "snr_db"]].equals(other[["pitch", "rate", "snr_db"]])


def test_atypical_utterance_count_is_separate():
    same = SpeakerPopulation(2, n_typical=3, n_atypical=4, utterances_per_speaker=12)
    more = SpeakerPopulation(2, n_typical=3, n_atypical=4, utterances_per_speaker=12, atypical_utterances=30)
    for sid in same.ids:
        typical = same.speaker(sid).kind == "typical"
        assert len(more.utterances(sid)) == (12 if typical else 30), sid
        if typical:  # typical speakers' data does not move
            assert more.utterances(sid) == same.utterances(sid)
    assert same.table().drop(columns=["n_train", "n_test", "n_phrases"]).equals(
        more.table().drop(columns=["n_train", "n_test", "n_phrases"]))


def test_effects_grow_with_severity():
    speakers = [make_speaker(0, f"a{i}", "atypical") for i in range(300)] + \
               [make_speaker(0, f"t{i}", "typical") for i in range(100)]
    by = {lv: [s for s in speakers if s.severity == lv] for lv in ("none", *SEVERITIES)}
    assert all(len(v) >= 20 for v in by.values())
    med = {lv: {k: np.median([8000.0 if getattr(s, k) is None else getattr(s, k) for s in v]) for k in
                ("rate", "snr_db", "lowpass_hz", "subst_p", "repeat_p", "rate_jitter")} for lv, v in by.items()}
    order = ["none", "mild", "moderate", "severe"]
    for k, sign in [("rate", -1), ("snr_db", -1), ("lowpass_hz", -1), ("subst_p", 1), ("repeat_p", 1),
                    ("rate_jitter", 1)]:
        vals = [sign * med[lv][k] for lv in order]
        assert vals == sorted(vals) and vals[0] < vals[-1], k


def test_train_test_phrases_never_overlap():
    pop = SpeakerPopulation(1, n_typical=3, n_atypical=7, utterances_per_speaker=(20, 60), repeat_fraction=0.3)
    for sid in pop.ids:
        train, test = pop.utterances(sid, "train"), pop.utterances(sid, "test")
        tr, te = {p for p, _ in train}, {p for p, _ in test}
        assert te and not (tr & te), sid
        distinct = len(tr | te)
        assert len(te) == max(1, round(0.1 * distinct))
        assert sorted(train + test) == sorted(pop.utterances(sid))
    # repeats exist (some phrase recorded twice) and still land on one side only
    assert any(len(pop.utterances(s)) > len({p for p, _ in pop.utterances(s)}) for s in pop.ids)
    utts = [("a b", "home"), ("c", "home"), ("a b", "home")] + [(f"x{i}", "home") for i in range(17)]
    train, test = split_phrases(0, "z", utts, 0.1)
    assert len({p for p, _ in test}) == 2 and not ({p for p, _ in train} & {p for p, _ in test})


def test_render_distorts_only_atypical_speech():
    phrase = "please bring me the glasses from the kitchen table"
    typ = make_speaker(0, "t1", "typical")
    assert render(typ, phrase, np.random.default_rng(0)) == [(phrase, 1.0)]
    severe = next(s for s in (make_speaker(0, f"a{i}", "atypical") for i in range(100)) if s.severity == "severe")
    outs = [render(severe, phrase, np.random.default_rng(i)) for i in range(30)]
    texts = [" ".join(t for t, _ in o) for o in outs]
    assert sum(t != phrase for t in texts) >= 25
    assert any(len(t.split()) > len(phrase.split()) for t in texts)  # repetitions
    assert any(len(o) > 1 and len({m for _, m in o}) > 1 for o in outs)  # irregular rate
    assert all(m > 0 for o in outs for _, m in o)
    subs = {b for _, b in SUBSTITUTIONS}
    changed = [w for t in texts for w in t.split() if w not in phrase.split()]
    assert any(any(b in w for b in subs) for w in changed)
    assert render(severe, phrase, np.random.default_rng(3)) == outs[3]


def test_articulation_is_consistent_within_a_speaker():
    speakers = [make_speaker(0, f"a{i}", "atypical") for i in range(60)]
    n_rules = {lv: {len(s.articulation) for s in speakers if s.severity == lv} for lv in SEVERITIES}
    assert n_rules == {"mild": {2}, "moderate": {4}, "severe": {6}}
    assert make_speaker(0, "t1", "typical").articulation == ()
    assert articulate("red rabbit", (("r", "w"),)) == "wed wabbit"
    assert articulate("kitchen", (("ch", "sh"), ("$", ""))) == "kitshe"
    phrase = "please bring the glasses from the kitchen table"
    for s in [s for s in speakers if s.severity == "severe"][:3]:
        for i in range(20):  # each word is said right or by the speaker's own rules, nothing else
            said = " ".join(t for t, _ in render(s, phrase, np.random.default_rng(i))).split()
            allowed = {w for word in phrase.split() for w in (word, articulate(word, s.articulation))}
            assert all(any(a.startswith(w) for a in allowed) for w in said), said  # repeats: a prefix


def test_recording_condition_varies_only_the_channel_and_rate():
    s = make_speaker(0, "t3", "typical")
    conds = [recording_condition(s, np.random.default_rng(i)) for i in range(200)]
    assert all(c.voice == s.voice and c.pitch == s.pitch and c.articulation == () for c in conds)
    rates = [c.rate / s.rate for c in conds]
    assert 0.49 <= min(rates) < 0.6 and 1.05 < max(rates) <= 1.16
    assert 5 <= min(c.snr_db for c in conds) < 8 and 37 < max(c.snr_db for c in conds) <= 40
    assert 0.35 < np.mean([c.lowpass_hz is None for c in conds]) < 0.65
