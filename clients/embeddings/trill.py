"""TRILL: a ResNet-style embedding of 0.96 s log-mel windows learned with a triplet loss.

Shor et al. 2020, "Towards Learning a Universal Non-Semantic Representation of Speech": a
"ResNetish" network on [96, 64] log-mel windows, trained so that two windows from the same
clip within 10 s (anchor, positive) are closer than a window from another clip (negative),
with the triplet loss and semi-hard negatives of Schroff et al. 2015, "FaceNet: A Unified
Embedding for Face Recognition and Clustering".  The released model's ``embedding`` is
512-d and NOSS evaluates an intermediate layer, ``layer19``; here both are outputs of one
functional Keras model (`embedding_and_layer19`), the widths are configurable (a tiny CPU
default, `PAPER` for the 512-d size) and there is no batch normalization, so every
variable is a weight the engine averages.

Triplets are sampled (`sample_triplets`) from one set of clips, a device's own in federated
training; within a batch (`triplet_batch_loss`), each anchor's negative is re-mined among
the batch's windows of *other* clips as FaceNet's semi-hard negative: the closest one that
is still farther than the positive (if none is, the farthest one, as in TensorFlow
Addons' TripletSemiHardLoss).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from . import frontend as FE

MAX_POSITIVE_GAP_S = 10.0


@dataclasses.dataclass(frozen=True)
class TrillConfig:
    window_frames: int = FE.WINDOW_FRAMES
    n_mels: int = FE.N_MELS
    stem_width: int = 8
    widths: tuple[int, ...] = (8, 16, 32)   # one stage per width, each halves time and frequency
    blocks_per_stage: int = 1
    embedding_dim: int = 64
    layer19_stage: int = -2                 # stage whose flattened output is the "layer19" output


PAPER = TrillConfig(stem_width=64, widths=(64, 128, 256, 512), blocks_per_stage=2, embedding_dim=512,
                    layer19_stage=-2)  # TRILL-sized: 512-d embedding, a ResNet-18-like depth


def _block(x, width: int, stride: int, name: str):
    """Pre-activation residual block (He et al. 2016) without normalization."""
    import tensorflow as tf

    L = tf.keras.layers
    h = L.Activation("relu", name=f"{name}_relu1")(x)
    h = L.Conv2D(width, 3, stride, padding="same", name=f"{name}_conv1")(h)
    h = L.Activation("relu", name=f"{name}_relu2")(h)
    h = L.Conv2D(width, 3, 1, padding="same", kernel_initializer="zeros", name=f"{name}_conv2")(h)
    if stride != 1 or x.shape[-1] != width:
        x = L.Conv2D(width, 1, stride, name=f"{name}_shortcut")(x)
    return L.Add(name=f"{name}_add")([x, h])


def build_trill(config: TrillConfig = TrillConfig(), name: str = "trill"):
    """Keras model [B, window_frames, n_mels] log-mel -> [B, embedding_dim] (see
    `embedding_and_layer19` for the intermediate output)."""
    import tensorflow as tf

    c = config
    if not c.widths or c.embedding_dim < 1 or c.blocks_per_stage < 1:
        raise ValueError(f"a TRILL network needs stages, blocks and an embedding: {c}")
    L = tf.keras.layers
    inputs = tf.keras.Input((c.window_frames, c.n_mels), name="log_mel")
    x = L.Reshape((c.window_frames, c.n_mels, 1), name="add_channel")(inputs)
    x = L.Conv2D(c.stem_width, 3, 2, padding="same", name="stem")(x)
    for s, width in enumerate(c.widths):
        for b in range(c.blocks_per_stage):
            x = _block(x, width, 2 if b == 0 else 1, f"stage{s}_block{b}")
    x = L.Activation("relu", name="final_relu")(x)
    x = L.GlobalAveragePooling2D(name="pool")(x)
    out = L.Dense(c.embedding_dim, name="embedding")(x)
    return tf.keras.Model(inputs, out, name=name)


def embedding_and_layer19(model, config: TrillConfig = TrillConfig()):
    """The same weights with two outputs: (embedding, layer19), where layer19 is the flattened
    output of stage ``config.layer19_stage`` (``config`` must be the one the model was built with)."""
    import tensorflow as tf

    stage = range(len(config.widths))[config.layer19_stage]
    inner = model.get_layer(f"stage{stage}_block{config.blocks_per_stage - 1}_add").output
    return tf.keras.Model(model.inputs, [model.output, tf.keras.layers.Flatten(name="layer19")(inner)])


def layer19_model(model, config: TrillConfig = TrillConfig()):
    """The same weights with layer19 as the only output (what NOSS evaluates; one TFLite output)."""
    import tensorflow as tf

    two = embedding_and_layer19(model, config)
    return tf.keras.Model(two.inputs, two.outputs[1])


def layer19_dim(config: TrillConfig = TrillConfig()) -> int:
    """Size of the flattened "layer19" output (`embedding_and_layer19`) without building the model:
    the stem and the first block of every stage halve time and frequency ("same" padding)."""
    h, w = -(-config.window_frames // 2), -(-config.n_mels // 2)
    stage = range(len(config.widths))[config.layer19_stage]
    for _ in range(stage + 1):
        h, w = -(-h // 2), -(-w // 2)
    return h * w * config.widths[stage]


# -- triplet objective ---------------------------------------------------------------------
def squared_distances(a, b):
    """[n, m] squared Euclidean distances between rows of a [n, d] and b [m, d]."""
    import tensorflow as tf

    d = (tf.reduce_sum(tf.square(a), 1)[:, None] - 2.0 * tf.matmul(a, b, transpose_b=True)
         + tf.reduce_sum(tf.square(b), 1)[None, :])
    return tf.maximum(d, 0.0)


def semi_hard_negatives(anchor, positive, candidates, anchor_clip, candidate_clip):
    """For each anchor, the index of FaceNet's semi-hard negative among ``candidates`` whose clip
    differs from the anchor's: the closest with d(a, n) > d(a, p); if there is none, the farthest
    (TF Addons' rule).  Returns ([B] int32 indices, [B] bool: a candidate of another clip exists)."""
    import tensorflow as tf

    d_an = squared_distances(anchor, candidates)
    d_ap = tf.reduce_sum(tf.square(anchor - positive), 1)
    valid = tf.not_equal(anchor_clip[:, None], candidate_clip[None, :])
    outside = valid & (d_an > d_ap[:, None])
    big = tf.reduce_max(d_an) + 1.0
    closest_outside = tf.argmin(tf.where(outside, d_an, big + d_an), axis=1, output_type=tf.int32)
    farthest = tf.argmax(tf.where(valid, d_an, -1.0), axis=1, output_type=tf.int32)
    chosen = tf.where(tf.reduce_any(outside, 1), closest_outside, farthest)
    return chosen, tf.reduce_any(valid, 1)


def triplet_loss(anchor, positive, negative, margin: float):
    """Per-triplet hinge max(0, |a - p|^2 - |a - n|^2 + margin) (Schroff et al. 2015)."""
    import tensorflow as tf

    d_ap = tf.reduce_sum(tf.square(anchor - positive), -1)
    d_an = tf.reduce_sum(tf.square(anchor - negative), -1)
    return tf.maximum(d_ap - d_an + margin, 0.0)


def triplet_batch_loss(model, x, clips, margin: float = 0.2, semi_hard: bool = True, training: bool = True):
    """(per-triplet loss, per-triplet accuracy) of x [B, 3, frames, mels] (anchor, positive, negative)
    with clips [B, 2] (clip of anchor and positive, clip of the negative).  Embeddings are
    L2-normalized (FaceNet's hypersphere).  With ``semi_hard`` each anchor's negative is mined among
    all 3B windows of this batch whose clip differs from the anchor's.  Accuracy: the positive is
    closer than the sampled negative."""
    import tensorflow as tf

    shape = tf.shape(x)
    flat = tf.reshape(x, tf.concat([[-1], shape[2:]], 0))
    e = tf.math.l2_normalize(model(flat, training=training), axis=-1)
    e = tf.reshape(e, [shape[0], 3, -1])
    a, p, n = e[:, 0], e[:, 1], e[:, 2]
    accuracy = tf.cast(tf.reduce_sum(tf.square(a - p), -1) < tf.reduce_sum(tf.square(a - n), -1), tf.float32)
    if semi_hard:
        candidates = tf.reshape(e, [-1, tf.shape(e)[-1]])
        clips = tf.cast(clips, tf.int64)
        candidate_clip = tf.reshape(tf.stack([clips[:, 0], clips[:, 0], clips[:, 1]], 1), [-1])
        idx, _ = semi_hard_negatives(a, p, candidates, clips[:, 0], candidate_clip)
        n = tf.gather(candidates, idx)
    return triplet_loss(a, p, n, margin), accuracy


def sample_triplets(clip_feats: list[np.ndarray], clip_ids, n: int, rng: np.random.Generator,
                    window_frames: int = FE.WINDOW_FRAMES, max_gap_s: float = MAX_POSITIVE_GAP_S
                    ) -> tuple[np.ndarray, np.ndarray]:
    """n triplets from these clips only: x [n, 3, window_frames, mels], y [n, 2] (anchor clip id, negative
    clip id).  Anchor and positive are windows of one clip starting at most ``max_gap_s`` apart
    (different windows where the clip allows), the negative a window of another clip.  Clips
    shorter than a window are padded as in frontend.windows."""
    if len(clip_feats) < 2:
        raise ValueError(f"triplets need two or more clips (a negative comes from another clip), got {len(clip_feats)}")
    feats = [f if f.shape[0] >= window_frames else FE.windows(f, 1, window_frames)[0] for f in clip_feats]
    ids = np.asarray(clip_ids)
    gap = int(round(max_gap_s * 1000 / FE.HOP_MS))
    x = np.zeros((n, 3, window_frames, feats[0].shape[1]), np.float32)
    y = np.zeros((n, 2), ids.dtype if ids.dtype.kind == "i" else np.int64)
    for i in range(n):
        c = int(rng.integers(len(feats)))
        last = feats[c].shape[0] - window_frames
        ta = int(rng.integers(last + 1))
        lo, hi = max(0, ta - gap), min(last, ta + gap)
        tp = int(rng.integers(lo, hi)) if hi > lo else ta  # hi - lo choices ...
        if hi > lo and tp >= ta:
            tp += 1                                        # ... skipping the anchor's own start
        other = int(rng.integers(len(feats) - 1))
        other += other >= c
        tn = int(rng.integers(feats[other].shape[0] - window_frames + 1))
        x[i, 0] = feats[c][ta:ta + window_frames]
        x[i, 1] = feats[c][tp:tp + window_frames]
        x[i, 2] = feats[other][tn:tn + window_frames]
        y[i] = ids[c], ids[other]
    return x, y
