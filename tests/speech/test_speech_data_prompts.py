from collections import Counter

from clients.speech.prompts import CHARSET, DOMAINS, all_prompts, clean, is_valid, prompt_pool, sample_prompts


def test_domains_are_large_and_in_charset():
    for d in DOMAINS:
        phrases = all_prompts(d)
        assert len(phrases) >= 100, d
        assert len(set(phrases)) == len(phrases)
        assert all(is_valid(p) and set(p) <= CHARSET for p in phrases), d
    assert len(all_prompts()) >= 600
    assert "turn on the tv" in all_prompts("home")
    assert "i am hungry" in all_prompts("caregiver")
    assert clean("What's UP, Doc?") == "what's up doc"
    assert not is_valid("Turn on") and not is_valid("turn  on") and not is_valid("tv 2")


def test_sampling_is_deterministic_and_distinct():
    a = sample_prompts(7, "a0001", 40)
    assert a == sample_prompts(7, "a0001", 40)
    assert a != sample_prompts(8, "a0001", 40) and a != sample_prompts(7, "a0002", 40)
    assert len(a) == 40 and len(set(p for p, _ in a)) == 40
    assert {d for _, d in a} == set(DOMAINS)
    assert all(p in all_prompts(d) for p, d in a)
    assert prompt_pool(3) == prompt_pool(3) and prompt_pool(3) != prompt_pool(4)


def test_some_phrases_repeat_across_speakers_but_most_are_rare():
    counts = Counter(p for i in range(60) for p, _ in sample_prompts(0, f"s{i}", 30))
    assert max(counts.values()) >= 10  # a popular head read by many speakers
    assert sum(c == 1 for c in counts.values()) >= 0.3 * len(counts)  # and a long tail
    assert len(counts) >= 300
