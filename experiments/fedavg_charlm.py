"""`fedpop run fedavg-charlm`: federated char-LM, then new-word discovery by sampling.

No typed word leaves a device, yet words that are missing from the global dictionary
but typed on many devices appear when sampling from the global model (the Gboard
new-word experiment of "Federated Analytics" / Chen et al. 2019).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from fl.task import make_task, model_with_weights
from experiments.fedavg_train import summarize
from fl.runner import engine, train


def new_word_report(cfg, weights: np.ndarray, population_size: int) -> tuple[pd.DataFrame, dict]:
    task = make_task("charlm", cfg.task, cfg.experiment.seed)
    model = model_with_weights(task, weights)
    sampled = Counter(task.sample_words(model, cfg.task.sample_words, cfg.experiment.seed))
    holders = task.typing.new_word_device_counts(np.arange(min(population_size, 200_000)))
    dictionary = set(task.typing.dictionary)
    df = pd.DataFrame({"word": list(holders), "devices": list(holders.values())})
    df["times_sampled"] = df["word"].map(lambda w: sampled.get(w, 0))
    df["discovered"] = df["times_sampled"] > 0
    df = df.sort_values("devices", ascending=False, ignore_index=True)
    oov = {w: c for w, c in sampled.items() if w not in dictionary}
    top10 = df.head(10)
    summary = {
        "sampled_words": int(sum(sampled.values())),
        "sampled_out_of_dictionary": int(sum(oov.values())),
        "new_words": int(len(df)),
        "new_words_discovered": int(df["discovered"].sum()),
        "top10_new_words_discovered": int(top10["discovered"].sum()),
        "discovered": df.loc[df["discovered"], "word"].tolist(),
        "top_out_of_dictionary_samples": [w for w, _ in Counter(oov).most_common(15)],
    }
    return df, summary


def run(cfg, out_dir: Path, progress: bool = True) -> dict:
    with engine(cfg) as process:
        state, recorder = train(process, out_dir, progress)
        summary = summarize(process, state, recorder)
        pop = process.population.size
    table, words = new_word_report(cfg, state.weights, pop)
    table.to_parquet(Path(out_dir) / "new_words.parquet", index=False)
    summary["new_word_discovery"] = words
    summary["new_words_found"] = f"{words['new_words_discovered']} of {words['new_words']} " \
                                 f"({words['top10_new_words_discovered']} of the 10 most widely held)"
    recorder.finish(summary)
    return summary
