"""The recognizer on device: TFLite export, float and int8 (Carbune et al. 2020 ship their
recognizers in TensorFlow Lite with 8-bit weights).

One signature, features [1, steps, F] -> log-probabilities [1, steps, classes]: the whole
word is read at once (the model is bidirectional), and CTC decoding (greedy, or beam search
with the character LM) runs on its output as on the Keras model's.  Quantization is
dynamic-range (int8 weights, float activations): ``tf.lite.Optimize.DEFAULT`` without a
representative dataset.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def concrete_function(model):
    import tensorflow as tf

    f = model.config.num_features

    @tf.function(input_signature=[tf.TensorSpec([1, None, f], tf.float32)])
    def recognize(features):
        return tf.nn.log_softmax(model(features, lengths=tf.shape(features)[1:2]))

    return recognize.get_concrete_function()


def export(model, path: str | Path, quantize: bool) -> Path:
    """Write the recognizer as one .tflite file (int8 weights when ``quantize``)."""
    import tensorflow as tf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conv = tf.lite.TFLiteConverter.from_concrete_functions([concrete_function(model)], model)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    path.write_bytes(conv.convert())
    return path


def constant_bytes(path: str | Path) -> int:
    """Bytes of the constant buffers (the weights) in a .tflite file; the rest of the file is
    the graph (ops, tensor metadata, names), a fixed cost that a small model cannot amortize."""
    from tensorflow.lite.python import schema_py_generated as schema_fb

    model = schema_fb.ModelT.InitFromPackedBuf(Path(path).read_bytes(), 0)
    return int(sum(len(b.data) for b in model.buffers if b.data is not None))


class TFLiteRecognizer:
    """A .tflite recognizer on one thread: ``log_probs(features [steps, F]) -> [steps, C]``."""

    def __init__(self, path: str | Path, threads: int = 1):
        import tensorflow as tf

        self.interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=threads)
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.output = self.interpreter.get_output_details()[0]["index"]
        self._steps = None

    def log_probs(self, features: np.ndarray) -> np.ndarray:
        feats = np.asarray(features, np.float32)[None]
        if self._steps != feats.shape[1]:
            self.interpreter.resize_tensor_input(self.input, feats.shape)
            self.interpreter.allocate_tensors()
            self._steps = feats.shape[1]
        self.interpreter.set_tensor(self.input, feats)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output)[0]


def word_latency_ms(log_probs_fn, words: list[np.ndarray], decode) -> np.ndarray:
    """Per-word wall time (ms) of recognition + decoding, after one warm-up word."""
    if words:
        decode(log_probs_fn(words[0]))
    out = []
    for feats in words:
        t = time.perf_counter()
        decode(log_probs_fn(feats))
        out.append((time.perf_counter() - t) * 1e3)
    return np.asarray(out)


def evaluate(model, words: list[tuple[np.ndarray, str]], out_dir: str | Path) -> dict:
    """Float and int8 exports of ``model`` into ``out_dir``: file sizes, greedy CER/WER on
    ``words`` ((features [steps, F], reference) pairs) for Keras, float and int8, and the
    median one-thread per-word latency of each .tflite file."""
    from clients.handwriting.decoding import cer, decode_ids, greedy_decode

    import tensorflow as tf

    out_dir = Path(out_dir)
    refs = [w for _, w in words]
    fn = concrete_function(model)
    keras_hyps = [decode_ids(greedy_decode(fn(tf.constant(f[None])).numpy()[0])) for f, _ in words]
    report = {"words": len(words), "keras": {"cer": cer(refs, keras_hyps)}}
    for name, quantize in (("float", False), ("int8", True)):
        path = export(model, out_dir / f"recognizer{'_int8' if quantize else ''}.tflite", quantize)
        rec = TFLiteRecognizer(path, threads=1)
        hyps = [decode_ids(greedy_decode(rec.log_probs(f))) for f, _ in words]
        lat = word_latency_ms(rec.log_probs, [f for f, _ in words], greedy_decode)
        report[name] = {"bytes": path.stat().st_size, "weight_bytes": constant_bytes(path), "cer": cer(refs, hyps),
                        "wer": float(np.mean([r != h for r, h in zip(refs, hyps)])) if refs else float("nan"),
                        "latency_ms_median": float(np.median(lat)) if len(lat) else float("nan")}
    report["size_ratio"] = report["float"]["bytes"] / report["int8"]["bytes"]
    report["weight_size_ratio"] = report["float"]["weight_bytes"] / report["int8"]["weight_bytes"]
    report["cer_change_points"] = 100.0 * (report["int8"]["cer"] - report["float"]["cer"])
    return report
