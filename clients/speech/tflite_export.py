"""On-device RNN-T: TFLite export with post-training quantization (He et al. 2019 ship the
recognizer with 8-bit weights, "4x" smaller than float, at no meaningful WER cost).

The recognizer is exported as the three pieces a streaming decoder calls: the encoder
(log-mel frames -> encoder frames), one prediction-network step (last label + LSTM states
-> output + new states) and one joint step. ``TFLiteRecognizer`` runs them with the TFLite
interpreter behind the decoder interface of ``clients.speech.decoding``, so greedy and beam
search work on it unchanged. Quantization is dynamic-range (int8 weights, float
activations): ``tf.lite.Optimize.DEFAULT`` with no representative dataset.

The pieces are written from the model's weights (LSTM cells as matmuls and element-wise
ops, the encoder's time loop as a ``while`` loop; TFLite builtins only) rather than by
converting its Keras layers: the converter turns a Keras LSTM over a sequence into TFLite's
fused UNIDIRECTIONAL_SEQUENCE_LSTM op, which (TF 2.14) clips the cell state at +-10 (a
trained encoder's cells reach ~30, so every utterance decoded differently from TF) and
keeps its state in variable tensors that persist across invocations (an utterance as long
as the previous one started from that one's final state).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

PIECES = ("encoder", "prediction", "joint")


def _lstm_cell(z, c):
    """A Keras LSTM cell from its gate pre-activations z = x @ kernel + h @ recurrent_kernel
    + bias (gates i, f, c, o; sigmoid gates, tanh cell) and cell state c -> (h, c)."""
    import tensorflow as tf

    i, f, g, o = tf.split(z, 4, axis=-1)
    c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
    return tf.sigmoid(o) * tf.tanh(c), c


def _lstm_sequence(x, kernel, recurrent, bias):
    """x [T, D] -> h [T, U]: an LSTM from a zero state, as a while loop over time."""
    import tensorflow as tf

    xw = tf.matmul(x, kernel) + bias
    zero = tf.zeros([1, recurrent.shape[0]])

    def body(t, h, c, out):
        h, c = _lstm_cell(xw[t][None] + tf.matmul(h, recurrent), c)
        return t + 1, h, c, out.write(t, h[0])

    n = tf.shape(xw)[0]
    out = tf.TensorArray(tf.float32, size=n, element_shape=[recurrent.shape[0]])
    return tf.while_loop(lambda t, *_: t < n, body, (0, zero, zero, out))[3].stack()


def _weights(layer):
    """A ProjectedLSTM's weights as arrays: (kernel, recurrent kernel, bias, (projection
    kernel, bias) or None, (LayerNorm gamma, beta, epsilon) or None)."""
    cell = layer.lstm.cell
    proj = None if layer.projection is None else (layer.projection.kernel.numpy(), layer.projection.bias.numpy())
    norm = None if layer.norm is None else (layer.norm.gamma.numpy(), layer.norm.beta.numpy(), layer.norm.epsilon)
    return cell.kernel.numpy(), cell.recurrent_kernel.numpy(), cell.bias.numpy(), proj, norm


def _layer_output(x, h, proj, norm):
    """ProjectedLSTM's output from its input x and LSTM output h: the projection, then with
    ``norm`` LayerNorm and the residual connection (when the widths match)."""
    import tensorflow as tf

    y = h if proj is None else tf.matmul(h, proj[0]) + proj[1]
    if norm is None:
        return y
    mean, var = tf.nn.moments(y, axes=[-1], keepdims=True)
    y = (y - mean) * tf.math.rsqrt(var + norm[2]) * norm[0] + norm[1]
    return y + x if x.shape[-1] == y.shape[-1] else y


def _concrete_functions(model):
    """The three pieces as tf.functions written from the model's weights with matmuls and
    element-wise ops (not by calling its Keras layers: see the module docstring)."""
    import tensorflow as tf

    from clients.speech.rnnt import stack_frames

    c = model.config
    enc_dim = model.encoder_layers[-1].output_dim * (c.reduction_stack if c.reduction_after == c.encoder_layers else 1)
    pred_dim = model.pred_lstms[-1].output_dim
    encoder_w = [_weights(layer) for layer in model.encoder_layers]
    pred_w = [_weights(layer) for layer in model.pred_lstms]
    embedding = model.embedding.embeddings.numpy()
    joint_enc = model.joint_enc.kernel.numpy(), model.joint_enc.bias.numpy()
    joint_pred = model.joint_pred.kernel.numpy()
    joint_out = model.joint_out.kernel.numpy(), model.joint_out.bias.numpy()
    states = [tf.TensorSpec([1, layer.units], tf.float32) for layer in model.pred_lstms for _ in range(2)]

    @tf.function(input_signature=[tf.TensorSpec([1, None, c.n_mels], tf.float32)])
    def encoder(features):
        x = stack_frames(features, tf.shape(features)[1:2], c.input_stack, c.input_stride)[0][0]
        for i, (kernel, recurrent, bias, proj, norm) in enumerate(encoder_w):
            x = _layer_output(x, _lstm_sequence(x, kernel, recurrent, bias), proj, norm)
            if i + 1 == c.reduction_after:
                x = stack_frames(x[None], tf.shape(x)[:1], c.reduction_stack, c.reduction_stride)[0][0]
        return x[None]

    @tf.function(input_signature=[tf.TensorSpec([1], tf.int32), *states])
    def prediction(label, *flat_state):
        x, new = tf.gather(embedding, label), []
        for k, (kernel, recurrent, bias, proj, norm) in enumerate(pred_w):
            h, cell = flat_state[2 * k:2 * k + 2]
            h, cell = _lstm_cell(tf.matmul(x, kernel) + tf.matmul(h, recurrent) + bias, cell)
            x = _layer_output(x, h, proj, norm)
            new += [h, cell]
        return (x, *new)

    @tf.function(input_signature=[tf.TensorSpec([1, enc_dim], tf.float32), tf.TensorSpec([1, pred_dim], tf.float32)])
    def joint(enc, pred):
        h = tf.tanh(tf.matmul(enc, joint_enc[0]) + joint_enc[1] + tf.matmul(pred, joint_pred))
        return tf.matmul(h, joint_out[0]) + joint_out[1]

    return {"encoder": encoder.get_concrete_function(), "prediction": prediction.get_concrete_function(),
            "joint": joint.get_concrete_function()}


def export(model, out_dir: str | Path, quantize: bool) -> dict[str, Path]:
    """Write encoder/prediction/joint .tflite files (``*_int8.tflite`` when quantized)."""
    import tensorflow as tf

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, fn in _concrete_functions(model).items():
        conv = tf.lite.TFLiteConverter.from_concrete_functions([fn], tf.Module())  # a signature per piece
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no Flex (select TF) ops
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
    from clients.speech.decoding import compiled_greedy_decode, greedy_decode, ids_to_text
    from clients.speech.wer import corpus_wer

    out = Path(out_dir)
    refs = [ref for _, ref in utterances]
    tf_encode = lambda f: model.encode(f[None], np.array([len(f)]))[0].numpy()[0]  # noqa: E731
    hyps = {"tf": [ids_to_text(compiled_greedy_decode(model, tf_encode(f)).tokens) for f, _ in utterances]}
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
