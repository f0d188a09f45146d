"""TFLite export of the RNN-T: the float export computes what TF computes (each piece, every
call, and the logits along a greedy search), int8 is ~4x smaller and decodes like float."""
import numpy as np
import pytest
import tensorflow as tf

from clients.speech import tflite_export
from clients.speech.decoding import BLANK, greedy_decode
from clients.speech.rnnt import RNNT, RNNTConfig, stack_frames

LENGTHS = (61, 90, 131, 200)  # input frames (30 ms encoder frames: 21, 30, 44, 67)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A residual LayerNorm encoder with a CTC head, like the base model (narrower), with
    perturbed weights (non-trivial outputs); 16 integrating units per encoder layer (high
    forget, input and cell biases: cell states beyond 10, as in trained encoders); a stronger
    prediction-network input to the joint (the emitted labels matter) and a blank bias such
    that greedy search emits labels on about half of the frames."""
    tf.keras.utils.set_random_seed(0)
    model = RNNT(RNNTConfig(encoder_layers=3, encoder_units=64, pred_units=64, joint_units=64, input_stack=3,
                            input_stride=3, reduction_after=0, residual=True, ctc_head=True))
    model((tf.zeros([1, 60, 80]), tf.constant([60]), tf.zeros([1, 1], tf.int32)))
    rng = np.random.default_rng(0)
    for v in model.weights:
        v.assign(1.5 * v.numpy() + rng.normal(scale=0.1, size=v.shape).astype(np.float32))
    for layer in model.encoder_layers:  # gates i, f, c, o
        bias = layer.lstm.cell.bias.numpy()
        bias[:16] += 2
        bias[64:80] += 4
        bias[128:144] += 2 * np.sign(rng.normal(size=16))
        layer.lstm.cell.bias.assign(bias)
    model.joint_pred.kernel.assign(4 * model.joint_pred.kernel.numpy())
    bias = model.joint_out.bias.numpy()
    bias[BLANK] += 5.0
    model.joint_out.bias.assign(bias)
    out = tmp_path_factory.mktemp("tflite")
    return model, tflite_export.export(model, out, quantize=False), tflite_export.export(model, out, quantize=True)


def features(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 80)).astype(np.float32)


def tf_encode(model, x):
    return model.encode(x[None], np.array([len(x)]))[0].numpy()[0]


class Recording:
    """A decoder that records every joint call's logits."""

    def __init__(self, decoder):
        self.decoder, self.logits = decoder, []
        self.prediction_initial_state, self.prediction_step = decoder.prediction_initial_state, decoder.prediction_step

    def joint_step(self, enc, pred):
        logits = np.asarray(self.decoder.joint_step(enc, pred))
        self.logits.append(logits[0])
        return logits


def test_pieces_match_tf(exported):
    """Also with encoder cell states beyond 10: the converter's fused LSTM op (from a Keras
    LSTM layer) clipped them at +-10, which TF does not."""
    model, float_paths, _ = exported
    rec = tflite_export.TFLiteRecognizer(float_paths)
    for i, n in enumerate(LENGTHS):
        x = features(n, i)
        stacked, _ = stack_frames(x[None], np.array([n]), 3, 3)
        assert np.abs(model.encoder_layers[0].lstm(stacked)[2]).max() > 10  # final cell state
        enc = rec.encode(x)
        assert enc.shape == (model.config.output_lengths(n), 64)
        np.testing.assert_allclose(enc, tf_encode(model, x), atol=2e-4)
    rng = np.random.default_rng(1)
    state = [[rng.normal(scale=0.5, size=(1, 64)).astype(np.float32) for _ in range(2)] for _ in model.pred_lstms]
    for label in (BLANK, 5, 28):
        out_tf, new_tf = model.prediction_step(tf.constant([label]), [[tf.constant(t) for t in s] for s in state])
        out, new = rec.prediction_step([label], state)
        np.testing.assert_allclose(out, out_tf.numpy(), atol=1e-4)
        for s, s_tf in zip(new, new_tf):
            for t, t_tf in zip(s, s_tf):
                np.testing.assert_allclose(t, t_tf.numpy(), atol=1e-4)
        enc = rng.normal(size=(1, 64)).astype(np.float32)
        np.testing.assert_allclose(rec.joint_step(enc, out), model.joint_step(enc, out_tf).numpy(), atol=1e-4)


def test_encoder_and_prediction_keep_no_state_between_calls(exported):
    """The defect of the Keras-converted export: TFLite's fused LSTM op keeps its state in
    variable tensors, so an utterance of the same length as the previous one started from
    that one's final state (only a shape change reallocated and zeroed it)."""
    model, float_paths, _ = exported
    rec = tflite_export.TFLiteRecognizer(float_paths)
    x, other = features(90, 10), features(90, 11)
    for feats in (x, x, other, x):
        np.testing.assert_allclose(rec.encode(feats), tf_encode(model, feats), atol=2e-4)
    # the prediction step uses the states it is given, not zeros or the previous call's
    rng = np.random.default_rng(2)
    states = [[[rng.normal(size=(1, 64)).astype(np.float32) for _ in range(2)] for _ in model.pred_lstms]
              for _ in range(2)]
    zero = rec.prediction_initial_state(1)
    outs = [rec.prediction_step([5], s)[0] for s in (states[0], states[1], zero, states[0])]
    assert min(np.abs(outs[0] - outs[1]).max(), np.abs(outs[0] - outs[2]).max()) > 1e-2
    np.testing.assert_array_equal(outs[3], outs[0])


def test_float_greedy_decoding_matches_tf(exported):
    """Same tokens, and the same joint logits at every step of the search, over utterances
    of several lengths decoded one after the other by one recognizer."""
    model, float_paths, _ = exported
    rec = tflite_export.TFLiteRecognizer(float_paths)
    emitted = []
    for i, n in enumerate(LENGTHS):
        x = features(n, 20 + i)
        dec_tf, dec_lite = Recording(model), Recording(rec)
        hyp_tf, hyp_lite = greedy_decode(dec_tf, tf_encode(model, x)), greedy_decode(dec_lite, rec.encode(x))
        assert hyp_lite.tokens == hyp_tf.tokens
        np.testing.assert_allclose(np.array(dec_lite.logits), np.array(dec_tf.logits), atol=1e-3)
        emitted += hyp_tf.tokens
    frames = sum(model.config.output_lengths(n) for n in LENGTHS)
    assert 0.2 * frames < len(emitted) < 2 * frames and len(set(emitted)) >= 5  # labels win often, blank too


def test_int8_export_is_about_four_times_smaller_and_decodes_like_float(exported):
    """int8 pieces, fed the float search's labels, pick its symbol at >= 85 % of the steps
    (94 % when written; this model's weights are perturbed, harder on int8 than trained ones)."""
    model, float_paths, int8_paths = exported
    size = lambda paths: sum(p.stat().st_size for p in paths.values())  # noqa: E731
    assert size(float_paths) / size(int8_paths) > 3.0
    rec, rec8 = tflite_export.TFLiteRecognizer(float_paths), tflite_export.TFLiteRecognizer(int8_paths)
    agree = steps = 0
    for i, n in enumerate(LENGTHS):
        x = features(n, 30 + i)
        dec = Recording(rec)
        greedy_decode(dec, rec.encode(x))
        enc8, state = rec8.encode(x), rec8.prediction_initial_state(1)
        pred, state = rec8.prediction_step([BLANK], state)
        t = symbols = 0
        for logits in dec.logits:  # replay the float search: its choice k at frame t
            k = int(np.argmax(logits))
            agree += int(np.argmax(rec8.joint_step(enc8[t:t + 1], pred)) == k)
            steps += 1
            if k != BLANK:
                pred, state = rec8.prediction_step([k], state)
                symbols += 1
            if k == BLANK or symbols == 5:  # greedy_decode's max_symbols_per_frame
                t, symbols = t + 1, 0
    assert agree >= 0.85 * steps


def test_export_has_only_tflite_builtins_and_no_stateful_lstm(exported, capsys):
    _, float_paths, int8_paths = exported
    for path in [*float_paths.values(), *int8_paths.values()]:
        tf.lite.experimental.Analyzer.analyze(model_path=str(path))
        report = capsys.readouterr().out
        assert "Flex" not in report  # select TF ops would need the Flex delegate
        assert "UNIDIRECTIONAL_SEQUENCE_LSTM" not in report  # keeps its state across calls


def test_projection_and_time_reduction_match_tf(tmp_path):
    tf.keras.utils.set_random_seed(1)
    model = RNNT(RNNTConfig(encoder_layers=3, encoder_units=32, encoder_proj=24, reduction_after=2, pred_units=32,
                            pred_proj=16, joint_units=32, input_stack=3, input_stride=3, residual=True))
    model((tf.zeros([1, 60, 80]), tf.constant([60]), tf.zeros([1, 1], tf.int32)))
    rec = tflite_export.TFLiteRecognizer(tflite_export.export(model, tmp_path, quantize=False))
    for n in (61, 90):
        x = features(n, 40 + n)
        enc = rec.encode(x)
        assert enc.shape == (model.config.output_lengths(n), 24)
        np.testing.assert_allclose(enc, tf_encode(model, x), atol=2e-4)
    state = [[np.full((1, 32), 0.3, np.float32), np.full((1, 32), -0.5, np.float32)] for _ in model.pred_lstms]
    out_tf, _ = model.prediction_step(tf.constant([4]), [[tf.constant(t) for t in s] for s in state])
    out, _ = rec.prediction_step([4], state)
    assert out.shape == (1, 16)
    np.testing.assert_allclose(out, out_tf.numpy(), atol=1e-4)
    np.testing.assert_allclose(rec.joint_step(enc[:1], out), model.joint_step(enc[:1], out_tf).numpy(), atol=1e-4)
