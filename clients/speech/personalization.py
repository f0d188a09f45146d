"""The per-speaker personalization record of Green et al. 2021 ("Automatic Speech Recognition
of Disordered Speech: Personalized models outperforming human listeners on short phrases"),
shared by the speech and handwriting tasks: error rates (``wer*``, ``cer*``) before and after
fine-tuning, other metrics (word counts) once as ``test_*``, the fine-tuned model's WER
whether or not it was kept (``finetuned_wer``), and ``kept_base`` when held-back phrases
rejected the fine-tuned model."""
from __future__ import annotations

import numpy as np


def is_error_rate(metric: str) -> bool:
    return metric.startswith(("wer", "cer"))


def error_rate_record(before: dict, after: dict, tuned: dict, validation=None) -> dict:
    """wer -> wer_before / wer_after, wer_home -> wer_home_before / ..., cer -> cer_before / ...,
    words -> test_words; plus finetuned_wer and, with validation, the losses and kept_base."""
    rec = {"finetuned_wer": tuned.get("wer", tuned.get("cer", np.nan))}
    if validation is not None:
        rec.update(val_loss_before=validation[0], val_loss_after=validation[1], kept_base=after is not tuned)
    for k, v in before.items():
        rec[f"{k}_before" if is_error_rate(k) else f"test_{k}"] = v
    rec.update({f"{k}_after": v for k, v in after.items() if is_error_rate(k)})
    return rec
