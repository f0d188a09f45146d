"""Prompts that speech devices read aloud, in three domains, generated as templates x slots.

The domains follow the phrase sets of Project Euphonia (Green et al. 2021, "Automatic Speech
Recognition of Disordered Speech: Personalized Models Outperforming Human Listeners on Short
Phrases"; MacDonald et al. 2021, "Disordered Speech Data Collection: Lessons Learned at 1 Million
Utterances from Project Euphonia"): home automation commands, caregiver requests and open
conversation. Phrases use only the recognizer's characters: a-z, space and apostrophe.
"""
from __future__ import annotations

import functools
import itertools
import re

import numpy as np

from fl.seeding import rng_for

DOMAINS = ("home", "caregiver", "conversation")
CHARSET = frozenset(" 'abcdefghijklmnopqrstuvwxyz")

_ROOMS = ["kitchen", "bedroom", "living room", "bathroom", "hallway", "garage", "office", "dining room"]
_DEVICES = ["tv", "lights", "radio", "fan", "heater", "oven", "kettle", "music", "air conditioner",
            "coffee maker", "dishwasher", "lamp"]
_TEMPLATES: dict[str, list[tuple[str, dict[str, list[str]]]]] = {
    "home": [
        ("turn {onoff} the {device}", {"onoff": ["on", "off"], "device": _DEVICES}),
        ("turn {onoff} the {room} {device}", {"onoff": ["on", "off"], "room": _ROOMS,
                                              "device": ["lights", "fan", "heater", "lamp", "tv", "radio"]}),
        ("set the {room} to {n} degrees", {"room": _ROOMS, "n": ["sixty", "sixty five", "seventy",
                                                                   "seventy two", "seventy five"]}),
        ("{verb} the {room} {thing}", {"verb": ["open", "close", "lock", "unlock"], "room": _ROOMS,
                                       "thing": ["door", "window", "blinds", "curtains"]}),
        ("{updown} the volume {amount}", {"updown": ["turn up", "turn down"],
                                          "amount": ["a little", "a lot", "please", "now"]}),
        ("play {what} in the {room}", {"what": ["some jazz", "the news", "my playlist", "the radio",
                                                "classical music", "the game"], "room": _ROOMS}),
        ("what's the {q} {when}", {"q": ["weather", "temperature", "forecast", "traffic"],
                                   "when": ["today", "tomorrow", "tonight", "this weekend", "outside"]}),
        ("set a timer for {n} minutes", {"n": ["two", "five", "ten", "fifteen", "twenty", "thirty", "forty"]}),
        ("dim the {room} lights", {"room": _ROOMS}),
        ("remind me to {task} at {time}", {"task": ["take my pills", "call the doctor", "feed the dog",
                                                    "water the plants", "check the mail"],
                                           "time": ["noon", "six", "eight", "nine thirty", "bedtime"]}),
    ],
    "caregiver": [
        ("i am {feeling}", {"feeling": ["hungry", "thirsty", "tired", "cold", "hot", "in pain", "sleepy",
                                        "bored", "uncomfortable", "feeling better", "dizzy", "okay"]}),
        ("i need {need}", {"need": ["my glasses", "a blanket", "some water", "my medicine", "to rest",
                                    "the bathroom", "help getting up", "my phone", "a tissue", "to sit up"]}),
        ("please {act} my {item}", {"act": ["bring me", "find", "pass me", "charge", "clean"],
                                    "item": ["glasses", "phone", "wheelchair", "book", "pillow", "cup",
                                             "shoes", "jacket"]}),
        ("can you call {who}", {"who": ["my daughter", "my son", "the nurse", "my doctor", "my wife",
                                        "my husband", "my sister", "my brother", "a friend"]}),
        ("my {part} hurts", {"part": ["head", "back", "leg", "arm", "neck", "stomach", "throat",
                                      "shoulder", "foot", "hand"]}),
        ("i'd like {food} for {meal}", {"food": ["soup", "eggs", "toast", "pasta", "fish", "salad",
                                                 "a sandwich", "rice"],
                                        "meal": ["breakfast", "lunch", "dinner"]}),
        ("please {adjust} the {thing}", {"adjust": ["raise", "lower", "move", "fix"],
                                         "thing": ["bed", "pillow", "chair", "table", "blanket"]}),
        ("i don't want {x}", {"x": ["to eat now", "any more", "to go out", "that", "the light on"]}),
        ("when is {event}", {"event": ["my appointment", "lunch", "the nurse coming", "my therapy",
                                       "my next dose", "the visit"]}),
    ],
    "conversation": [
        ("how was your {time}", {"time": ["day", "weekend", "trip", "morning", "week", "holiday"]}),
        ("let's {act} {when}", {"act": ["go for a walk", "watch a movie", "play cards", "have dinner",
                                        "call grandma", "go to the park", "read together"],
                                "when": ["later", "tonight", "tomorrow", "this afternoon", "on sunday"]}),
        ("did you see the {thing} {when}", {"thing": ["game", "news", "show", "birds", "sunset"],
                                            "when": ["last night", "yesterday", "this morning", "today"]}),
        ("i really {feel} {what}", {"feel": ["like", "love", "miss", "enjoy"],
                                    "what": ["the garden", "that song", "our old house", "summer",
                                             "my friends", "the ocean", "baking bread"]}),
        ("what do you think about {topic}", {"topic": ["the weather", "the election", "this book",
                                                       "the new neighbors", "that movie", "my idea"]}),
        ("thank you for {what}", {"what": ["coming", "the flowers", "your help", "dinner",
                                           "listening", "calling me"]}),
        ("it's {adj} {when}", {"adj": ["so nice", "really cold", "very warm", "quite windy", "raining"],
                               "when": ["today", "outside", "this morning", "again"]}),
        ("tell me about your {thing}", {"thing": ["family", "job", "garden", "dog", "vacation",
                                                  "childhood", "weekend"]}),
    ],
}


def clean(text: str) -> str:
    """Lowercase and keep only the recognizer's characters (a-z, space, apostrophe)."""
    text = re.sub(r"[^a-z' ]", " ", text.lower())
    return re.sub(r" +", " ", text).strip()


def is_valid(text: str) -> bool:
    return bool(text) and set(text) <= CHARSET and text == text.strip() and "  " not in text


@functools.lru_cache(maxsize=4)
def all_prompts(domain: str | None = None) -> tuple[str, ...]:
    """Every phrase of a domain (or all domains): the full product of each template's slots, sorted."""
    domains = DOMAINS if domain is None else (domain,)
    out: set[str] = set()
    for d in domains:
        for template, slots in _TEMPLATES[d]:
            names = list(slots)
            for values in itertools.product(*(slots[n] for n in names)):
                out.add(clean(template.format(**dict(zip(names, values)))))
    return tuple(sorted(out))


def prompt_pool(seed: int, size: int | None = None) -> list[tuple[str, str]]:
    """A seeded ordering of (phrase, domain) pairs; the first `size` are the pool speakers draw from.

    Speakers sample from this shared pool with Zipf-like popularity, so popular prompts are read by
    many speakers while most of the tail is unique to one speaker, as in Euphonia's prompt sets."""
    pairs = [(p, d) for d in DOMAINS for p in all_prompts(d)]
    order = rng_for(seed, "prompt-pool").permutation(len(pairs))
    pool = [pairs[i] for i in order]
    return pool if size is None else pool[:size]


@functools.lru_cache(maxsize=8)
def _domain_pools(seed: int) -> dict[str, tuple[tuple[str, str], ...]]:
    pool = prompt_pool(seed)
    return {d: tuple(pr for pr in pool if pr[1] == d) for d in DOMAINS}


def sample_prompts(seed: int, speaker_id: str, n: int, domain_weights=(0.4, 0.35, 0.25),
                   zipf: float = 1.0) -> list[tuple[str, str]]:
    """`n` distinct (phrase, domain) prompts for one speaker, deterministic in (seed, speaker_id).

    Each domain's pool is ranked by a seeded permutation; phrases are drawn without replacement with
    probability proportional to 1/rank**zipf, so a head of common phrases repeats across speakers."""
    rng = rng_for(seed, "prompts", speaker_id)
    pools = _domain_pools(seed)
    w = np.asarray(domain_weights, float)
    counts = rng.multinomial(n, w / w.sum())
    out: list[tuple[str, str]] = []
    for d, k in zip(DOMAINS, counts):
        pool = pools[d]
        k = min(int(k), len(pool))
        p = 1.0 / np.arange(1, len(pool) + 1) ** zipf
        idx = rng.choice(len(pool), size=k, replace=False, p=p / p.sum())
        out.extend(pool[i] for i in idx)
    order = rng.permutation(len(out))
    return [out[i] for i in order]
