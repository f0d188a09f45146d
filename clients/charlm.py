"""Character-level LSTM language model of what a device types (Gboard-style next-char model).

Sampling words from the federated global model recovers new words that were typed on
many devices although no typed word left a device (Hard et al. 2018, "Federated
Learning for Mobile Keyboard Prediction"; Chen et al. 2019, OOV words).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clients.typing_data import ALPHABET, TypingPopulation, decode, encode
from fl.seeding import tf_seed
from fl.task import Task


class CharLMTask(Task):
    @dataclass
    class Config:
        seq_len: int = 24
        embed: int = 16
        hidden: int = 128
        dictionary_size: int = 3000
        new_words: int = 40
        new_words_per_device: int = 2
        new_word_rate: float = 0.08
        topic_skew: float = 3.0
        sample_words: int = 2000
        sample_temperature: float = 1.0

    name = "charlm"
    vocab = len(ALPHABET)

    def __init__(self, config: "CharLMTask.Config", seed: int):
        self.config, self.seed = config, seed
        c = config
        self.typing = TypingPopulation(seed, c.dictionary_size, c.new_words, c.new_words_per_device,
                                       c.new_word_rate, topic_skew=c.topic_skew)

    @property
    def cache_namespace(self) -> str:
        c = self.config
        return (f"charlm-{self.seed}-{c.seq_len}-{c.dictionary_size}-{c.new_words}-"
                f"{c.new_words_per_device}-{c.new_word_rate}-{c.topic_skew}")

    def example_spec(self):
        import tensorflow as tf
        L = self.config.seq_len
        return tf.TensorSpec([None, L], tf.int32), tf.TensorSpec([None, L], tf.int32)

    def build_model(self):
        import tensorflow as tf
        c = self.config
        s = self.seed * 1000
        return tf.keras.Sequential([
            tf.keras.layers.Input((None,), dtype=tf.int32),
            tf.keras.layers.Embedding(self.vocab, c.embed,
                                      embeddings_initializer=tf.keras.initializers.RandomUniform(-0.05, 0.05, seed=s)),
            tf.keras.layers.LSTM(c.hidden, return_sequences=True,
                                 kernel_initializer=tf.keras.initializers.GlorotUniform(seed=s + 1),
                                 recurrent_initializer=tf.keras.initializers.Orthogonal(seed=s + 2)),
            tf.keras.layers.Dense(self.vocab, kernel_initializer=tf.keras.initializers.GlorotUniform(seed=s + 3)),
        ])

    def device_data(self, device_id: int, num_examples: int, split: str = "train") -> dict[str, np.ndarray]:
        """`num_examples` windows of seq_len next-character pairs from the device's typing."""
        L = self.config.seq_len
        need = num_examples * L + 1
        words = self.typing.device_words(device_id, need // 4 + 8, split)
        ids = encode(" " + " ".join(words) + " ")
        while len(ids) < need:  # rare: many short words; type more
            ids = np.concatenate([ids, encode(" ".join(self.typing.device_words(device_id, need // 4, split + "+")) + " ")])
        ids = ids[:need]
        x = ids[:-1].reshape(num_examples, L)
        y = ids[1:].reshape(num_examples, L)
        return {"x": x, "y": y}

    def sample_words(self, model, n_words: int, seed: int, max_len: int = 16) -> list[str]:
        """Sample n words from the model, each started after a space (batched, stateless RNG)."""
        import tensorflow as tf

        temp = self.config.sample_temperature
        batch = np.zeros((n_words, 1), np.int32)  # start at a word boundary
        out = np.zeros((n_words, 0), np.int32)
        seq = tf.constant(batch)
        for step in range(max_len):
            logits = model(seq, training=False)[:, -1, :] / temp
            nxt = tf.random.stateless_categorical(logits, 1, seed=tf_seed(seed, "sample", step), dtype=tf.int32)
            seq = tf.concat([seq, nxt], axis=1)
            out = np.concatenate([out, nxt.numpy()], axis=1)
        words = []
        for row in out:
            cut = np.flatnonzero(row == 0)
            if len(cut) and cut[0] > 0:
                words.append(decode(row[: cut[0]]))
        return words
