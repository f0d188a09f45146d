"""Federated analytics for fedpop: private heavy hitters and population statistics.

Modules (one concept each):

* :mod:`analytics.secure_histogram` - secure sums / histograms over many devices
  via :func:`secagg.run_protocol` in SecAgg+ groups (optionally in worker processes).
* :mod:`analytics.triehh` - TrieHH (Zhu et al., AISTATS 2020): (eps, delta) -> (theta, gamma),
  the prefix trie, device votes, the round loop.
* :mod:`analytics.iblt` - invertible Bloom lookup tables, layout-compatible with
  ``tff.analytics.heavy_hitters.iblt``.
* :mod:`analytics.central_dp` - Gaussian noise + threshold release of item counts.
* :mod:`analytics.new_words` - devices holding new words (vectorised TypingPopulation law).
* :mod:`analytics.now_playing` - regional song catalog and recognition histories.
* :mod:`analytics.population_stats` - mean / quantiles of a per-device metric via secure histograms.
* :mod:`analytics.evaluation` - precision / recall / F1 at k against ground truth, plots.
* :mod:`analytics.config` - validated study configs (``fedpop run new-words`` / ``now-playing``).
"""
