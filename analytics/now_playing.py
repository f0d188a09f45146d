"""Now Playing: a regional song catalog and per-device recognition histories.

"Federated Analytics: Collaborative Data Science without Data Collection"
(Ramage & Mazzocchi, Google AI blog, 2020): Pixel phones recognise songs
against an on-device regional database; which songs are recognised most is
computed with secure aggregation over a few hundred phones per round, and the
database is updated from the totals.

Simulation: ``songs`` songs, each with a genre and a Zipf base popularity.
Every locale of :data:`fl.population.LOCALES` is a region with its own
popularity (base log-popularity plus Gaussian noise of ``regional_sigma``).
A device's history: ``LogNormal(log(recognitions_median), recognitions_sigma)``
recognitions, each drawn from its region's popularity (probability
``1 - taste_weight``) or from one genre of its personal taste (Dirichlet over
genres, ``taste_alpha``) by the region's popularity within that genre.  Each
device's history is a pure function of (seed, device id): ``rng_for(seed,
'now-playing-history', id)``.  Ground truth (the population's per-song totals)
is known only to the simulator.
"""
from __future__ import annotations

import numpy as np

from fl.seeding import rng_for


GENRES = ("pop", "rock", "hip-hop", "dance", "r&b", "country", "latin", "indie", "jazz", "classical", "folk",
          "metal", "soul", "reggae", "k-pop", "blues")


class SongCatalog:
    """Songs with titles, genres, base popularity and per-region popularity."""

    def __init__(self, songs: int, seed: int, *, genres: int = 12, zipf: float = 1.0, regional_sigma: float = 1.0,
                 regions: int | None = None):
        from fl.population import LOCALES

        if songs < 1:
            raise ValueError(f"the catalog needs at least one song, got {songs}")
        if genres < 1:
            raise ValueError("genres must be >= 1")
        self.n = int(songs)
        self.regions = len(LOCALES) if regions is None else int(regions)
        self.region_names = [name for name, _, _ in LOCALES][: self.regions]
        rng = rng_for(seed, "now-playing-catalog")
        self.genre = rng.integers(0, genres, size=self.n)
        self.genres = int(genres)
        self.titles = [f"song-{i:05d} ({GENRES[g % len(GENRES)]})" for i, g in enumerate(self.genre)]
        base = 1.0 / np.arange(1, self.n + 1) ** zipf
        base = base[rng.permutation(self.n)]
        logp = np.log(base)[None, :] + regional_sigma * rng.standard_normal((self.regions, self.n))
        p = np.exp(logp - logp.max(axis=1, keepdims=True))
        self.region_p = p / p.sum(axis=1, keepdims=True)
        self._cdf = np.cumsum(self.region_p, axis=1)
        self._cdf[:, -1] = 1.0
        # per (region, genre): songs of that genre and the cdf of their regional popularity
        self._genre_songs = [np.flatnonzero(self.genre == g) for g in range(self.genres)]
        self._genre_cdf = [[None] * self.genres for _ in range(self.regions)]
        for r in range(self.regions):
            for g, idx in enumerate(self._genre_songs):
                if len(idx):
                    c = np.cumsum(self.region_p[r, idx])
                    self._genre_cdf[r][g] = c / c[-1]

    def sample(self, region: int, genre_choice: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Songs for draws: ``genre_choice[j] = -1`` -> regional popularity, else within that genre."""
        out = np.minimum(np.searchsorted(self._cdf[region], u, side="right"), self.n - 1)
        for g in np.unique(genre_choice[genre_choice >= 0]):
            sel = genre_choice == g
            idx, cdf = self._genre_songs[g], self._genre_cdf[region][g]
            out[sel] = idx[np.minimum(np.searchsorted(cdf, u[sel], side="right"), len(idx) - 1)]
        return out


class ListeningHistories:
    """Per-device song recognition counts (never leave the device except inside SecAgg)."""

    def __init__(self, catalog: SongCatalog, region_of: np.ndarray, seed: int, *, recognitions_median: float = 40.0,
                 recognitions_sigma: float = 0.8, taste_weight: float = 0.5, taste_alpha: float = 0.3,
                 max_per_song: int = 0):
        self.catalog = catalog
        # indexed per device: a lazy population column (fl/population.py) or an array
        self.region_of = region_of
        self.seed = seed
        self.median, self.sigma = recognitions_median, recognitions_sigma
        self.taste_weight, self.taste_alpha = taste_weight, taste_alpha
        self.max_per_song = int(max_per_song)

    def device_songs(self, device_id: int) -> np.ndarray:
        """The device's recognised songs (one entry per recognition)."""
        c = self.catalog
        rng = rng_for(self.seed, "now-playing-history", int(device_id))
        n = int(np.rint(np.exp(rng.normal(np.log(self.median), self.sigma))))
        taste = rng.dirichlet(np.full(c.genres, self.taste_alpha))
        personal = rng.random(n) < self.taste_weight
        genre = np.where(personal, rng.choice(c.genres, size=n, p=taste), -1)
        return c.sample(int(self.region_of[device_id]) % c.regions, genre, rng.random(n))

    def histograms(self, device_ids: np.ndarray, dtype=np.uint32) -> np.ndarray:
        """(n, songs) recognition counts per device (capped at ``max_per_song`` if > 0)."""
        ids = np.asarray(device_ids, np.int64)
        out = np.zeros((len(ids), self.catalog.n), dtype)
        for i, d in enumerate(ids.tolist()):
            out[i] = np.bincount(self.device_songs(d), minlength=self.catalog.n)
        if self.max_per_song > 0:
            np.minimum(out, self.max_per_song, out=out)
        return out

    def totals(self, device_ids: np.ndarray, chunk: int = 2000) -> np.ndarray:
        """Ground truth: per-song totals over ``device_ids`` (simulator only)."""
        ids = np.asarray(device_ids, np.int64)
        tot = np.zeros(self.catalog.n, np.int64)
        for a in range(0, len(ids), chunk):
            tot += self.histograms(ids[a:a + chunk]).sum(axis=0, dtype=np.int64)
        return tot
