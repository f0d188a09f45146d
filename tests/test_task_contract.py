"""Every method the engine calls on a task is declared on `fedpop.Task` with a default; the
speech personalization recipe lives with the speech task, not in the engine."""
import inspect

import numpy as np

from fl.task import Task, layers_mask


def test_the_engine_probes_no_task_method():
    import fl.trainer
    import fl.worker

    for module in (fl.trainer, fl.worker):
        source = inspect.getsource(module)
        assert "hasattr(" not in source and "getattr(self.task" not in source
    worker = inspect.getsource(fl.worker)
    for needle in ("kept_base", "finetuned_wer", "\"wer", "\"cer", "decode_metrics", "_is_error_rate"):
        assert needle not in worker, needle
    for method in ("batch_loss", "trainable_mask", "evaluate_metrics", "personalization_record", "example_lengths",
                   "personal_mask"):
        assert callable(getattr(Task, method)), method


def _model():
    import tensorflow as tf

    return tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(4, name="a"),
                                tf.keras.layers.Dense(2, name="b")])


def test_layers_mask_and_the_default_metrics():
    model = _model()
    choices = {"all": None, "head": [model.layers[-1]]}
    assert layers_mask(model, "all", choices) == [True] * 4
    assert layers_mask(model, "head", choices) == [False, False, True, True]
    try:
        layers_mask(model, "top3", choices)
        raise AssertionError("no error")
    except ValueError as e:
        assert "allowed: all, head" in str(e)
    task = Task()
    assert task.trainable_mask(model, "anything") is None
    data = {"x": np.ones((5, 3), np.float32), "y": np.array([0, 1, 0, 1, 1], np.int32)}
    m = task.evaluate_metrics(model, data)
    assert set(m) == {"loss", "metric"} and np.isfinite(m["loss"]) and 0 <= m["metric"] <= 1
    before, tuned = {"loss": 2.0}, {"loss": 1.0}
    assert task.personalization_record(before, tuned, tuned) == {"loss_before": 2.0, "loss_after": 1.0}
    kept = task.personalization_record(before, before, tuned, (0.5, 0.7))
    assert kept["loss_after"] == 2.0 and kept["kept_tuned"] is False


def test_the_speech_record_names_error_rates_and_the_kept_base_model():
    from clients.speech.personalization import error_rate_record

    before = {"wer": 0.5, "words": 10, "wer_home": 0.4}
    tuned = {"wer": 0.3, "words": 10, "wer_home": 0.2}
    rec = error_rate_record(before, tuned, tuned, (1.0, 0.9))
    assert rec == {"finetuned_wer": 0.3, "val_loss_before": 1.0, "val_loss_after": 0.9, "kept_base": False,
                   "wer_before": 0.5, "test_words": 10, "wer_home_before": 0.4, "wer_after": 0.3,
                   "wer_home_after": 0.2}
    rec = error_rate_record(before, before, tuned, (1.0, 1.1))  # validation rejected the fine-tuned model
    assert rec["kept_base"] is True and rec["wer_after"] == 0.5 and rec["finetuned_wer"] == 0.3
    assert "kept_base" not in error_rate_record(before, tuned, tuned)
