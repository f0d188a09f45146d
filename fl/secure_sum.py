"""Model updates summed with SecAgg(+) across the worker pool.

Devices in the workers run the client side (Bonawitz et al., CCS 2017, with the SecAgg+
graph of Bell et al., CCS 2020); the coordinator runs the server side and only ever
sees masked vectors, pre-summed mod 2^b per worker. Each device sends
[clip(delta, C), C] * weight, quantized with stochastic rounding, so the decoded sum
gives both the weighted update sum and the weight sum: the same quantities plain
aggregation with `clipped(C, mean(weighting))` forms, up to the quantization bound.

Every round has a fresh random round id.  The server checks each message against the
transport identity of the worker it came from (a worker speaks only for the devices it
hosts).  With `aggregator.secagg_malicious` devices also sign every message with a
long-term Ed25519 identity key (derived on the workers from a per-run secret and the
device id; `DeviceIdentities` is the PKI stand-in that registers the public halves) and
the ConsistencyCheck round runs.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

from fl.config import AggregatorSection


@dataclass(frozen=True)
class SecureRound:
    """Public parameters of one secure sum, shipped to every worker."""
    config: object  # secagg.RoundConfig
    quantizer: object  # secagg.quantize.Quantizer
    clip: float
    identity_secret: bytes = field(default=b"", repr=False)  # active mode: devices derive their keys from it
    device_ids: tuple = ()  # device id of each SecAgg client position
    dp_sigma: float = 0.0  # distributed DP: each device's discrete Gaussian std, in quantized units

    def signing_key(self, position: int):
        """The long-term identity key of the device at ``position`` (active mode)."""
        return device_signing_key(self.identity_secret, self.device_ids[position]) if self.config.malicious else None

    def encode(self, delta: np.ndarray, weight: float, rng: np.random.Generator) -> np.ndarray:
        """Clip, weight, quantize; with distributed DP also add the device's discrete Gaussian
        noise (Kairouz et al. 2021) before anything leaves the device."""
        from secagg.quantize import clip_l2

        x = np.append(clip_l2(delta, self.clip), self.clip)  # norm <= sqrt(2) C: no second clip
        q = self.quantizer.encode(x, weight=weight, rng=rng)
        if self.dp_sigma > 0:
            from secagg.dp import add_discrete_gaussian

            q = add_discrete_gaussian(q, self.dp_sigma, self.quantizer.bits, rng)
        return q

    def decode(self, total: np.ndarray) -> tuple[np.ndarray, float]:
        s = self.quantizer.decode(total)
        return s[:-1], float(s[-1] / self.clip)


def device_signing_key(secret: bytes, device_id: int):
    """Ed25519 identity key of one device, derived from the run's identity secret."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from secagg.keys import hkdf_sha256

    raw = hkdf_sha256(secret, salt=b"fedpop-device-identity", info=int(device_id).to_bytes(8, "little"))
    return Ed25519PrivateKey.from_private_bytes(raw)


class DeviceIdentities:
    """PKI stand-in: each device's Ed25519 verification key, registered the first
    time the device takes part (memory grows with touched devices only)."""

    def __init__(self, secret: bytes | None = None):
        self.secret = secret or os.urandom(32)
        self._vk: dict[int, bytes] = {}

    def verify_keys(self, device_ids) -> list[bytes]:
        from secagg.signing import verify_key_bytes

        out = []
        for d in map(int, device_ids):
            vk = self._vk.get(d)
            if vk is None:
                vk = self._vk[d] = verify_key_bytes(device_signing_key(self.secret, d))
            out.append(vk)
        return out


def plan_secure_round(agg: AggregatorSection, device_ids, num_params: int, max_weight: float,
                      seed: int, round_num: int, identities: DeviceIdentities | None = None) -> SecureRound:
    """Public parameters of one secure sum over the cohort ``device_ids``.

    Raises `secagg.ConfigError` (naming the bound) when no safe threshold exists.
    """
    from secagg import make_config
    from secagg.quantize import make_quantizer

    device_ids = tuple(int(d) for d in device_ids)
    n = max(len(device_ids), 2)
    malicious = bool(agg.secagg_malicious)
    if malicious and identities is None:
        raise ValueError("aggregator.secagg_malicious needs the process's DeviceIdentities")
    vks = None
    if malicious:
        padded = device_ids + tuple(-1 - i for i in range(n - len(device_ids)))  # n >= 2 placeholders
        vks = identities.verify_keys(padded)
    cfg = make_config(n, num_params + 1, bits=agg.secagg_bits, mode=agg.secagg_mode,
                      dropout_rate=agg.secagg_dropout_rate, corrupt_fraction=agg.secagg_corrupt_fraction,
                      malicious=malicious, seed=seed * 100_003 + round_num, round_id=os.urandom(16),
                      verify_keys=vks)
    quantizer = make_quantizer(math.sqrt(2) * agg.clip_norm, agg.secagg_bits, n, max_weight=max_weight)
    sigma = 0.0
    if agg.secagg_dp_noise_multiplier > 0:
        quantizer, sigma = _distributed_dp_quantizer(agg, n, cfg.threshold, num_params + 1, max_weight)
    return SecureRound(cfg, quantizer, agg.clip_norm, identities.secret if malicious else b"", device_ids, sigma)


DP_SIGMA_MAX = 4096.0  # per-device noise std in quantized units: exact discrete Gaussian sampling stays in int64


def _distributed_dp_quantizer(agg: AggregatorSection, n: int, threshold: int, dim: int, max_weight: float):
    """(quantizer, per-device noise std) for distributed DP: the noise of the ``threshold``
    devices that must survive sums to std z x sensitivity, sensitivity being one device's
    quantized L2 norm (secagg.dp.quantized_sensitivity: clip x scale + sqrt(dim) for the
    rounding).  As in Kairouz et al. 2021 the scale is set by the noise: each device's std
    is at most DP_SIGMA_MAX units (the exact sampler's range), and the modulus keeps
    8-sigma headroom for the noise of all n devices."""
    from secagg.dp import quantized_sensitivity
    from secagg.errors import ConfigError as SecAggConfigError
    from secagg.quantize import Quantizer, make_quantizer

    clip, z = math.sqrt(2) * agg.clip_norm, agg.secagg_dp_noise_multiplier
    scale = (DP_SIGMA_MAX * math.sqrt(threshold) / z - math.sqrt(dim)) / clip
    if scale * clip < 10 * math.sqrt(dim):
        raise SecAggConfigError(f"distributed DP with z={z} over {threshold} devices cannot resolve {dim} coordinates: "
                                f"the rounding term sqrt(dim) would dominate the sensitivity (lower z or the model size)")
    wrap_safe = make_quantizer(clip, agg.secagg_bits, n, max_weight=max_weight, noise_std=DP_SIGMA_MAX).scale
    quantizer = Quantizer(clip=float(clip), bits=agg.secagg_bits, scale=min(scale, wrap_safe))
    return quantizer, z * quantized_sensitivity(clip, quantizer.scale, dim) / math.sqrt(threshold)


def run_server(pool, secure: SecureRound, advertised: list) -> tuple[np.ndarray, dict]:
    """Drive the protocol's stages through the pool; returns (sum mod 2^b, metrics).

    ``advertised`` holds ``(origin, AdvertiseKeys)`` pairs; ``origin`` is the set of client
    positions the sending worker hosts (its transport identity), checked on every message.
    A message the server rejects drops its sender from the protocol, as the paper's
    server does.  Raises `secagg.SecAggAbort` when too few clients remain: no partial
    sum exists.
    """
    from secagg import SecAggError, SecAggServer

    t0 = time.perf_counter()
    server = SecAggServer(secure.config)
    rejected = []

    def take(receive, items):
        for origin, msg in items:
            try:
                receive(msg, origin=origin)
            except SecAggError as e:
                rejected.append(repr(e))

    take(server.receive_advertise, advertised)
    take(server.receive_share_keys, pool.secure_stage("share_keys", server.broadcast_keys()))
    take(server.receive_masked_input, pool.secure_stage("masked_input", server.forward_shares()))
    if secure.config.malicious:
        take(server.receive_consistency, pool.secure_stage("consistency", server.consistency_requests()))
    take(server.receive_unmask, pool.secure_stage("unmask", server.unmask_requests()))
    total = server.finalize()
    metrics = {"secagg_k": secure.config.k, "secagg_threshold": secure.config.threshold,
               "secagg_clients": secure.config.n, "secagg_survivors": len(server.u3),
               "secagg_rejected": len(rejected), "secagg_malicious": secure.config.malicious,
               "secagg_dp_sigma": secure.dp_sigma, "secagg_scale": secure.quantizer.scale,
               "survivor_positions": sorted(server.u3),
               "secagg_server_s": time.perf_counter() - t0}
    return total, metrics
