"""TFLite export of the RNN-T: the float export computes what TF computes, int8 is ~4x smaller."""
import numpy as np
import pytest
import tensorflow as tf

from clients.speech import tflite_export
from clients.speech.decoding import greedy_decode
from clients.speech.rnnt import RNNT, RNNTConfig


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tf.keras.utils.set_random_seed(0)
    model = RNNT(RNNTConfig(encoder_layers=3, encoder_units=96, pred_units=96, joint_units=96, input_stack=3,
                            input_stride=3))
    model((tf.zeros([1, 60, 80]), tf.constant([60]), tf.zeros([1, 1], tf.int32)))
    out = tmp_path_factory.mktemp("tflite")
    return model, out, tflite_export.export(model, out, quantize=False), tflite_export.export(model, out, quantize=True)


def test_float_tflite_matches_tf(exported):
    model, _, float_paths, _ = exported
    rec = tflite_export.TFLiteRecognizer(float_paths)
    x = np.random.default_rng(1).normal(size=(131, 80)).astype(np.float32)
    enc_tf = model.encode(x[None], np.array([131]))[0].numpy()[0]
    enc_lite = rec.encode(x)
    assert enc_lite.shape == enc_tf.shape
    np.testing.assert_allclose(enc_lite, enc_tf, atol=1e-4)
    # greedy decoding through the interpreters picks the same symbols as through TF
    assert greedy_decode(rec, enc_lite).tokens == greedy_decode(model, enc_tf).tokens
    # variable length: a second, shorter utterance resizes the encoder input
    assert rec.encode(x[:61]).shape[0] == model.config.output_lengths(61)


def test_int8_export_is_about_four_times_smaller(exported):
    _, _, float_paths, int8_paths = exported
    size = lambda paths: sum(p.stat().st_size for p in paths.values())  # noqa: E731
    assert size(float_paths) / size(int8_paths) > 3.0
    rec = tflite_export.TFLiteRecognizer(int8_paths)
    x = np.random.default_rng(2).normal(size=(90, 80)).astype(np.float32)
    assert np.isfinite(rec.encode(x)).all()
