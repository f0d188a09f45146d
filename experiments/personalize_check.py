"""Does the faster on-device training change what personalization achieves? The bottom-5 recipe
of euphonia-personalization (its config file, read from this checkout) on the same base model
and the same moderate/severe speakers, run with the code on PYTHONPATH: this checkout or an
older one (a `git worktree`), so that WER after fine-tuning can be compared speaker by speaker.

    PYTHONPATH=OLD_TREE python experiments/personalize_check.py BASE_RUN_DIR old.json 6
    PYTHONPATH=.        python experiments/personalize_check.py BASE_RUN_DIR new.json 6
"""
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import yaml

CONFIG = Path(__file__).resolve().parent / "configs" / "euphonia-personalization.yaml"


def main(base_dir: str, out: str, n_speakers: int) -> None:
    import tensorflow as tf

    from clients.speech.task import ASRTask
    from fl import checkpoint
    from fl.config import ClientSection
    from fl.seeding import rng_for
    from fl.trainer import DeviceTrainer, hold_out_validation

    raw = yaml.safe_load(CONFIG.read_text())
    known = lambda cls, d: {k: v for k, v in d.items() if k in {f.name for f in dataclasses.fields(cls)}}  # noqa: E731
    task = ASRTask(ASRTask.Config(**known(ASRTask.Config, raw["task"])), seed=0)
    client = ClientSection(**known(ClientSection, raw["client"]))
    trainer = DeviceTrainer(task, client)
    weights = checkpoint.load(base_dir).weights.astype(np.float32)
    start = tf.constant(weights)
    table = task.corpus.table()
    chosen = [s for s in task.atypical if table.loc[s, "severity"] in ("moderate", "severe")][:n_speakers]
    rows = []
    for speaker in chosen:
        t, dev = time.perf_counter(), task.speaker_index(speaker)
        test, full = task.device_data(dev, 0, "eval"), task.device_data(dev, 0, "train")
        train, _ = hold_out_validation(full, client.validation_fraction, rng_for(0, "validation", dev))
        trainer.set_weights(start)
        before = task.decode_metrics(trainer.model, test)["wer"]
        trainer.set_trainable(task.trainable_mask(trainer.model, "bottom5"))
        delta, stats = trainer.train(start, trainer.batches(train, 0, 0, dev))
        trainer.set_trainable(None)
        trainer.set_weights(tf.constant(weights + delta))
        after = task.decode_metrics(trainer.model, test)["wer"]
        rows.append({"speaker": speaker, "severity": str(table.loc[speaker, "severity"]), "wer_before": before,
                     "wer_after": after, "train_utterances": int(len(train["y"])), "seconds": time.perf_counter() - t})
        print(rows[-1], flush=True)
    Path(out).write_text(json.dumps({"base": str(base_dir), "rows": rows}, indent=1))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
