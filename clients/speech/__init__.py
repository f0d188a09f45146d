"""Streaming speech recognition (RNN-T) for on-device / personalized ASR.

Modules: ``rnnt`` (model), ``rnnt_loss`` (loss), ``decoding`` (greedy / beam search,
text <-> ids), ``wer`` (word / character error rate), ``specaugment`` (augmentation).
"""
