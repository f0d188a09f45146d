"""SpecAugment (Park et al. 2019, "SpecAugment: A Simple Data Augmentation Method for
Automatic Speech Recognition") on log-mel features, in TensorFlow.

Policy (applied in this order, on the valid frames of each utterance only):
  * time warp: a center c uniform in [W, L-W) is moved to c + w, w uniform in [-W, W]
    (W clamped so that c' stays inside); the time axis is resampled piecewise-linearly
    (two linear pieces joined at c -> c', end points fixed) with linear interpolation
    between frames. Simple replacement of the paper's sparse_image_warp.
  * ``freq_masks`` frequency masks, width f ~ U{0..freq_width}, start ~ U{0..F-f}.
  * ``time_masks`` time masks, width t ~ U{0..min(time_width, floor(time_ratio * L))},
    start ~ U{0..L-t}.
Masked cells are set to ``mask_value``. Randomness is stateless (``tf.random.stateless_*``)
from a seed pair, so a given (input, seed) always gives the same output.
Defaults: LibriSpeech-double (LD) policy, W=80, F=27, mF=2, T=100, p=1.0, mT=2.
"""
from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf


@dataclass
class SpecAugmentConfig:
    time_warp: int = 80
    freq_masks: int = 2
    freq_width: int = 27
    time_masks: int = 2
    time_width: int = 100
    time_ratio: float = 1.0
    mask_value: float = 0.0


def _uniform_int(seed, shape, high):
    """Integers uniform in [0, high] (inclusive; ``high`` broadcastable int tensor >= 0)."""
    u = tf.random.stateless_uniform(shape, seed=seed)
    return tf.minimum(tf.cast(tf.floor(u * tf.cast(high + 1, tf.float32)), tf.int32), high)


def _band_mask(seed, n_masks, max_width, size, axis_len):
    """[B, axis_len] bool: union of ``n_masks`` bands of width <= max_width[B] inside [0, size[B])."""
    B = tf.shape(size)[0]
    if n_masks == 0:
        return tf.zeros([B, axis_len], tf.bool)
    s1, s2 = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    width = _uniform_int(s1, [B, n_masks], tf.broadcast_to(max_width[:, None], [B, n_masks]))
    start = _uniform_int(s2, [B, n_masks], size[:, None] - width)
    idx = tf.range(axis_len)[None, None, :]
    inside = (idx >= start[:, :, None]) & (idx < (start + width)[:, :, None])
    return tf.reduce_any(inside, axis=1)


def _time_warp(seed, x, lengths, W):
    B, T = tf.shape(x)[0], tf.shape(x)[1]
    L = lengths
    w_max = tf.maximum(tf.minimum(W, (L - 1) // 2 - 1), 0)        # [B]; 0 disables
    s1, s2 = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    center = w_max + _uniform_int(s1, [B], tf.maximum(L - 2 * w_max - 1, 0))   # in [w, L-w)
    shift = _uniform_int(s2, [B], 2 * w_max) - w_max                          # in [-w, w]
    new_center = tf.clip_by_value(center + shift, 1, tf.maximum(L - 2, 1))
    c, c2 = tf.cast(center, tf.float32)[:, None], tf.cast(new_center, tf.float32)[:, None]
    last = tf.cast(L - 1, tf.float32)[:, None]
    i = tf.cast(tf.range(T), tf.float32)[None, :]
    left = i * c / c2
    right = c + (i - c2) * (last - c) / tf.maximum(last - c2, 1.0)
    src = tf.where(i < c2, left, right)
    valid = i < tf.cast(L, tf.float32)[:, None]
    active = (w_max > 0)[:, None] & valid
    src = tf.where(active, tf.clip_by_value(src, 0.0, last), i)
    lo = tf.cast(tf.floor(src), tf.int32)
    hi = tf.minimum(lo + 1, T - 1)
    frac = (src - tf.floor(src))[:, :, None]
    xl, xh = tf.gather(x, lo, batch_dims=1), tf.gather(x, hi, batch_dims=1)
    return tf.where(active[:, :, None], xl * (1.0 - frac) + xh * frac, x)


def spec_augment(features, seed, lengths=None, training: bool = True,
                 config: SpecAugmentConfig | None = None):
    """Augment log-mel ``features`` [T, F] or [B, T, F] (with optional ``lengths`` [B]).

    ``seed``: shape-[2] int seed pair. Returns a tensor of the input's shape; with
    ``training=False`` returns ``features`` unchanged. Frames at or after ``lengths`` are
    left untouched.
    """
    if not training:
        return features
    c = config or SpecAugmentConfig()
    x = tf.convert_to_tensor(features)
    single = x.shape.rank == 2
    if single:
        x = x[None]
    dtype = x.dtype
    x = tf.cast(x, tf.float32)
    B, T, F = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
    if lengths is None:
        lengths = tf.fill([B], T)
    lengths = tf.cast(tf.reshape(lengths, [-1]), tf.int32)
    s_warp, s_freq, s_time = tf.unstack(tf.random.experimental.stateless_split(
        tf.cast(seed, tf.int64), 3))

    if c.time_warp > 0:
        x = _time_warp(s_warp, x, lengths, c.time_warp)
    fmask = _band_mask(s_freq, c.freq_masks, tf.fill([B], tf.minimum(c.freq_width, F)),
                       tf.fill([B], F), F)                                      # [B, F]
    t_max = tf.minimum(c.time_width,
                       tf.cast(tf.floor(c.time_ratio * tf.cast(lengths, tf.float32)), tf.int32))
    tmask = _band_mask(s_time, c.time_masks, t_max, lengths, T)                 # [B, T]
    valid = tf.range(T)[None, :] < lengths[:, None]
    mask = (fmask[:, None, :] | tmask[:, :, None]) & valid[:, :, None]
    x = tf.where(mask, tf.cast(c.mask_value, tf.float32), x)
    x = tf.cast(x, dtype)
    return x[0] if single else x
