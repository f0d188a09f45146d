"""Configuration of the analytics studies (``fedpop run new-words`` / ``now-playing``).

The engine's machinery (:func:`fl.config.build_sections`, ``--set`` parsing, merging), so an unknown key or a bad value raises
:class:`fl.config.ConfigError` naming the dotted key and what is allowed, and
``--set section.key=value`` overrides.  Cross-field checks (epsilon > 0,
feasible (theta, gamma), enough devices) also run here, before any work.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from fl.config import ConfigError, PopulationSection, bounded, build_sections, choice, merge, parse_overrides


@dataclass
class StudySection:
    name: str = "new-words"
    seed: int = 0


@dataclass
class SecAggSection:
    group_size: int = bounded(300, 2)  # devices per SecAgg round; groups' sums are added
    mode: str = choice("secagg+", "secagg+", "secagg")
    dropout_rate: float = bounded(0.1, 0, 0.5)  # assumed, for SecAgg+'s (k, t)
    corrupt_fraction: float = bounded(0.05, 0, 0.5)
    security_bits: float = bounded(40.0, 1, 128)
    simulated_dropout: float = bounded(0.0, 0, 0.5)  # fraction that really drops after sharing keys
    workers: int = bounded(1, 1, 64)  # processes running SecAgg groups in parallel
    malicious: bool = False  # active-security mode (signed messages + ConsistencyCheck round)

    def settings(self):
        from analytics.secure_histogram import SecAggSettings

        return SecAggSettings(**dataclasses.asdict(self))


@dataclass
class TypingSection:
    """New-word vocabulary (clients.typing_data.TypingPopulation)."""
    dictionary_size: int = bounded(3000, 100)
    new_words: int = bounded(1000, 1)
    new_words_per_device: int = bounded(2, 1, 16)
    new_word_zipf: float = bounded(1.0, 0)


@dataclass
class TrieHHSection:
    epsilon: float = 4.0
    delta: float = bounded(2.3e-12, 0, 1)
    max_word_len: int = bounded(10, 1, 32)
    theta: int = bounded(0, 0)  # 0: from (epsilon, delta) by Corollary 1
    gamma: float = bounded(0.0, 0, 1)  # 0: from (epsilon, theta)
    round_interval_s: float = bounded(3600.0, 0)
    start_hour_utc: float = bounded(0.0, 0, 24)


@dataclass
class IbltSection:
    devices: int = bounded(2000, 0)  # devices sampled for the IBLT comparison (0: skip)
    capacity: int = bounded(1000, 1, 99_999)
    string_max_bytes: int = bounded(12, 1)
    repetitions: int = bounded(3, 3, 8)
    max_items_per_device: int = bounded(2, 1)
    k_anonymity: int = bounded(2, 1)  # without DP: release items held by >= k devices
    dp_epsilon: float = bounded(4.0, 0)  # 0: no central DP
    dp_delta: float = bounded(1e-6, 0, 1)


@dataclass
class EvalSection:
    k: int = bounded(10, 1)
    curve_epsilons: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    curve_ks: tuple[int, ...] = (10, 50)
    curve_secure: bool = False  # sweep through SecAgg too (slower; totals are identical)


@dataclass
class NewWordsConfig:
    study: StudySection = field(default_factory=StudySection)
    population: PopulationSection = field(default_factory=lambda: PopulationSection(size=1_000_000))
    typing: TypingSection = field(default_factory=TypingSection)
    triehh: TrieHHSection = field(default_factory=TrieHHSection)
    iblt: IbltSection = field(default_factory=IbltSection)
    secagg: SecAggSection = field(default_factory=lambda: SecAggSection(workers=2))
    eval: EvalSection = field(default_factory=EvalSection)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class SongsSection:
    songs: int = bounded(5000, 1)
    genres: int = bounded(12, 1)
    zipf: float = bounded(1.0, 0)
    regional_sigma: float = bounded(1.0, 0)
    recognitions_median: float = bounded(40.0, 1)
    recognitions_sigma: float = bounded(0.8, 0)
    taste_weight: float = bounded(0.5, 0, 1)
    taste_alpha: float = bounded(0.3, 0)
    max_per_song: int = bounded(0, 0)  # 0: no per-device cap


@dataclass
class RoundsSection:
    goal: int = bounded(400, 2)  # devices per round (one SecAgg group if <= secagg.group_size)
    min_devices: int = bounded(10, 2)  # never aggregate fewer devices than this in a round
    round_interval_s: float = bounded(900.0, 0)
    start_hour_utc: float = bounded(0.0, 0, 24)
    max_rounds: int = bounded(1000, 1)
    top_k: int = bounded(20, 1)


@dataclass
class NowPlayingConfig:
    study: StudySection = field(default_factory=lambda: StudySection(name="now-playing"))
    population: PopulationSection = field(default_factory=lambda: PopulationSection(size=10_000))
    songs: SongsSection = field(default_factory=SongsSection)
    rounds: RoundsSection = field(default_factory=RoundsSection)
    secagg: SecAggSection = field(default_factory=lambda: SecAggSection(group_size=400, simulated_dropout=0.05,
                                                                        workers=2))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _build(cls, raw: dict | None, overrides: list[str] | None):
    return cls(**build_sections(cls, merge(raw or {}, parse_overrides(overrides or []))))


def load_new_words(raw: dict | None = None, overrides: list[str] | None = None) -> NewWordsConfig:
    """Validate a nested dict (YAML) plus ``key=value`` overrides; checks TrieHH's privacy parameters."""
    from analytics.triehh import TrieHHError, triehh_params

    cfg = _build(NewWordsConfig, raw, overrides)
    t = cfg.triehh
    if not (math.isfinite(t.epsilon) and t.epsilon > 0):
        raise ConfigError(f"bad value for 'triehh.epsilon': {t.epsilon!r} (must be > 0)")
    if not 0 < t.delta < 1:
        raise ConfigError(f"bad value for 'triehh.delta': {t.delta!r} (allowed range (0, 1))")
    for e in cfg.eval.curve_epsilons:
        if not (math.isfinite(e) and e > 0):
            raise ConfigError(f"bad value for 'eval.curve_epsilons': {e!r} (each must be > 0)")
    try:
        p = triehh_params(t.epsilon, t.delta, t.max_word_len, theta=t.theta or None, gamma=t.gamma or None)
    except TrieHHError as e:
        raise ConfigError(f"bad value for 'triehh': {e}") from None
    pop = cfg.population
    eligible = pop.eligible_prob * min(pop.night_hours, 24.0) / 24.0  # mean eligible fraction
    expected = p.gamma * pop.size * eligible
    if expected < p.theta:
        raise ConfigError(f"bad value for 'population.size': {pop.size} devices x ~{eligible:.2f} eligible x "
                          f"gamma={p.gamma:.4g} gives ~{expected:.1f} voters per round, fewer than "
                          f"theta={p.theta}: nothing could ever be discovered (impossible (theta, gamma) for this "
                          "population)")
    if cfg.iblt.devices == 1:
        raise ConfigError("bad value for 'iblt.devices': 1 (need 0 to skip or >= 2 for secure aggregation)")
    return cfg


def load_now_playing(raw: dict | None = None, overrides: list[str] | None = None) -> NowPlayingConfig:
    cfg = _build(NowPlayingConfig, raw, overrides)
    if cfg.population.size < 2:
        raise ConfigError(f"bad value for 'population.size': {cfg.population.size} (secure aggregation needs >= 2 "
                          "devices)")
    if cfg.rounds.min_devices > cfg.rounds.goal:
        raise ConfigError(f"bad value for 'rounds.min_devices': {cfg.rounds.min_devices} (allowed range "
                          f"[2, rounds.goal={cfg.rounds.goal}])")
    if cfg.rounds.top_k > cfg.songs.songs:
        raise ConfigError(f"bad value for 'rounds.top_k': {cfg.rounds.top_k} (allowed range [1, songs.songs="
                          f"{cfg.songs.songs}])")
    return cfg
