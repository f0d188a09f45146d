"""On-device RNN-T: TFLite export with post-training quantization (He et al. 2019 ship the
recognizer with 8-bit weights, "4x" smaller than float, at no meaningful WER cost).

The recognizer is exported as the three pieces a streaming decoder calls: the encoder
(log-mel frames -> encoder frames), one prediction-network step (last label + LSTM states
-> output + new states) and one joint step. ``TFLiteRecognizer`` runs them with the TFLite
interpreter behind the decoder interface of ``clients.speech.decoding``, so greedy and beam
search work on it unchanged. Quantization is dynamic-range (int8 weights, float
activations): ``tf.lite.Optimize.DEFAULT`` with no representative dataset.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

PIECES = ("encoder", "prediction", "joint")


def _concrete_functions(model):
    import tensorflow as tf

    c = model.config
    enc_dim = model.encoder_layers[-1].output_dim * (c.reduction_stack if c.reduction_after == c.encoder_layers else 1)
    pred_dim = model.pred_lstms[-1].output_dim
    states = [tf.TensorSpec([1, layer.units], tf.float32) for layer in model.pred_lstms for _ in range(2)]

    @tf.function(input_signature=[tf.TensorSpec([1, None, c.n_mels], tf.float32)])
    def encoder(features):
        enc, _ = model.encode(features, tf.shape(features)[1:2])
        return enc

    @tf.function(input_signature=[tf.TensorSpec([1], tf.int32), *states])
    def prediction(label, *flat_state):
        state = [list(flat_state[i:i + 2]) for i in range(0, len(flat_state), 2)]
        out, new = model.prediction_step(label, state)
        return (out, *[t for s in new for t in s])

    @tf.function(input_signature=[tf.TensorSpec([1, enc_dim], tf.float32), tf.TensorSpec([1, pred_dim], tf.float32)])
    def joint(enc, pred):
        return model.joint_step(enc, pred)

    return {"encoder": encoder.get_concrete_function(), "prediction": prediction.get_concrete_function(),
            "joint": joint.get_concrete_function()}


def export(model, out_dir: str | Path, quantize: bool) -> dict[str, Path]:
    """Write encoder/prediction/joint .tflite files (``*_int8.tflite`` when quantized)."""
    import tensorflow as tf

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, fn in _concrete_functions(model).items():
        conv = tf.lite.TFLiteConverter.from_concrete_functions([fn], model)
        if quantize:
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
        path = out / f"{name}{'_int8' if quantize else ''}.tflite"
        path.write_bytes(conv.convert())
        paths[name] = path
    return paths


class TFLiteRecognizer:
    """The exported pieces behind the decoder interface (n = 1 hypothesis per call)."""

    def __init__(self, paths: dict[str, Path], threads: int = 1):
        import tensorflow as tf

        self.run = {}
        for name in PIECES:
            it = tf.lite.Interpreter(model_path=str(paths[name]), num_threads=threads)
            self.run[name] = it.get_signature_runner()  # inputs by name; resizes when shapes change
        inputs = self.run["prediction"].get_input_details()
        self._states = sorted((k for k in inputs if k.startswith("flat_state_")), key=lambda k: int(k.split("_")[-1]))
        self._state_shapes = [inputs[k]["shape"] for k in self._states]

    @staticmethod
    def _outputs(result: dict) -> list[np.ndarray]:
        return [result[k] for k in sorted(result, key=lambda k: int(k.split("_")[-1]))]

    def encode(self, features: np.ndarray) -> np.ndarray:
        """features [T, n_mels] -> encoder frames [T', E]."""
        return self.run["encoder"](features=np.asarray(features, np.float32)[None])["output_0"][0]

    def prediction_initial_state(self, n: int):
        if n != 1:
            raise ValueError("the exported prediction network decodes one hypothesis at a time (greedy)")
        flat = [np.zeros(s, np.float32) for s in self._state_shapes]
        return [flat[i:i + 2] for i in range(0, len(flat), 2)]

    def prediction_step(self, labels, state):
        flat = [np.asarray(t, np.float32) for s in state for t in s]
        outs = self._outputs(self.run["prediction"](label=np.asarray(labels, np.int32).reshape(1),
                                                    **dict(zip(self._states, flat))))
        return outs[0], [outs[i:i + 2] for i in range(1, len(outs), 2)]

    def joint_step(self, enc, pred):
        return self.run["joint"](enc=np.asarray(enc, np.float32).reshape(1, -1),
                                 pred=np.asarray(pred, np.float32).reshape(1, -1))["output_0"]


def evaluate(model, utterances: list[tuple[np.ndarray, str]], out_dir: str | Path) -> dict:
    """Export float and int8 models; WER of TF, TFLite float and TFLite int8 greedy decoding
    on ``utterances`` ([(features [T, n_mels], reference)]), sizes, and real-time factor of
    the int8 model on one thread (decode seconds / audio seconds, 10 ms frames)."""
    from clients.speech.decoding import greedy_decode, ids_to_text
    from clients.speech.wer import corpus_wer

    out = Path(out_dir)
    refs = [ref for _, ref in utterances]
    hyps = {"tf": [ids_to_text(greedy_decode(model, model.encode(f[None], np.array([len(f)]))[0].numpy()[0]).tokens)
                   for f, _ in utterances]}
    sizes, rtf = {}, {}
    for kind, quant in (("float", False), ("int8", True)):
        paths = export(model, out, quant)
        sizes[kind] = int(sum(p.stat().st_size for p in paths.values()))
        rec = TFLiteRecognizer(paths, threads=1)
        t = time.perf_counter()
        hyps[kind] = [ids_to_text(greedy_decode(rec, rec.encode(f)).tokens) for f, _ in utterances]
        audio_s = sum(len(f) for f, _ in utterances) * 0.010
        rtf[kind] = (time.perf_counter() - t) / max(audio_s, 1e-9)
    wer = {k: corpus_wer(refs, h) for k, h in hyps.items()}
    return {"utterances": len(utterances), "size_bytes": sizes, "size_ratio_float_over_int8": sizes["float"] / sizes["int8"],
            "wer": wer, "wer_change_int8_vs_float": wer["int8"] - wer["float"],
            "wer_change_int8_vs_tf": wer["int8"] - wer["tf"], "rtf_one_thread": rtf,
            "targets": {"size_ratio": ">= ~4", "wer_change": "<= 0.01 absolute"}}
