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

    def client(self, position: int, expander):
        """The SecAgg client of the device at ``position``, with that device's memory of
        the round ids it joined (it refuses one it has seen: `device_ledger`)."""
        from secagg import SecAggClient

        return SecAggClient(position, self.config, expander=expander, signing_key=self.signing_key(position),
                            ledger=device_ledger(self.device_ids[position]))

    def presum(self, outs: list, clients: dict):
        """A worker's masked inputs pre-summed mod 2^b, each covered device's signature
        (active mode) checked first and carried along (`secagg.presum`)."""
        from secagg import presum

        if not self.config.malicious:
            return presum(outs)
        bindings = {m.client_ids[0]: clients[m.client_ids[0]][0].binding for m in outs}
        return presum(outs, registry=self.config.registry(), bindings=bindings)

    max_weight: float = 1.0  # the largest weight a report may carry (the quantizer's no-wrap bound)

    def encode(self, contribution: np.ndarray, weight: float, rng: np.random.Generator) -> np.ndarray:
        """Quantize one device's contribution from the aggregator chain (its clipped update
        times ``weight``), with the scaled weight appended: [contribution, C weight].  With
        distributed DP also add the device's discrete Gaussian noise (Kairouz et al. 2021)
        before anything leaves the device.  A weight over ``max_weight`` could wrap the
        modular sum around and is refused (ValueError)."""
        from secagg.quantize import clip_l2, stochastic_round

        if not 0 <= weight <= self.max_weight:
            raise ValueError(f"report weight {weight} is outside the secure sum's range [0, {self.max_weight}]")
        x = np.append(np.asarray(contribution, np.float64), self.clip * weight)
        x = clip_l2(x, self.quantizer.clip * weight)  # the bound the no-wrap scale assumes, enforced
        q = self.quantizer.wrap(stochastic_round(x * self.quantizer.scale, rng))
        if self.dp_sigma > 0:
            from secagg.dp import add_discrete_gaussian

            q = add_discrete_gaussian(q, self.dp_sigma, self.quantizer.bits, rng)
        return q

    def decode(self, total: np.ndarray) -> tuple[np.ndarray, float]:
        s = self.quantizer.decode(total)
        return s[:-1], float(s[-1] / self.clip)


_LEDGERS: dict = {}  # device id -> secagg.ledger.RoundLedger, in this worker process


def device_ledger(device_id: int):
    """The round ids a device has joined (its `secagg.ledger.RoundLedger`).  A device's
    memory lives in the worker process that simulates it: a device hosted by another
    worker in a later round starts with an empty memory there (the instance binding of
    its signatures still ties each one to a single execution)."""
    from secagg.ledger import RoundLedger

    led = _LEDGERS.get(int(device_id))
    if led is None:
        led = _LEDGERS[int(device_id)] = RoundLedger()
    return led


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
    """Public parameters of one secure sum over the cohort ``device_ids``
    (``agg.secagg_dp_noise_multiplier`` > 0: with distributed DP).

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
    return SecureRound(cfg, quantizer, agg.clip_norm, identities.secret if malicious else b"", device_ids, sigma,
                       float(max_weight))


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


class SecureSum:
    """The secure-sum step of an aggregator chain (`fl.summation` interface): SecAgg(+) run
    by the devices in the workers, the server side here.  ``settings`` are the
    ``aggregator.secagg_*`` keys and the clip norm; ``noise_multiplier`` > 0 adds
    distributed DP (each device's discrete Gaussian) inside the sum."""

    def __init__(self, settings: AggregatorSection, noise_multiplier: float = 0.0):
        import dataclasses

        self.settings = dataclasses.replace(settings, secagg_dp_noise_multiplier=float(noise_multiplier))
        self._identities = None  # active mode's PKI stand-in, made once per process on the coordinator

    def plan(self, device_ids, num_params, max_weight, seed, round_num) -> SecureRound:
        from secagg import ConfigError as SecAggConfigError

        from fl.summation import RoundNotPossible

        if self.settings.secagg_malicious and self._identities is None:
            self._identities = DeviceIdentities()
        try:
            return plan_secure_round(self.settings, device_ids, num_params, max_weight, seed, round_num,
                                     self._identities)
        except SecAggConfigError as e:  # e.g. too few accepted devices for a safe threshold
            raise RoundNotPossible(f"secure aggregation not possible with {len(device_ids)} devices: {e}") from None

    def collect(self, pool, results, secure: SecureRound, device_ids, clients, num_params):
        """Run the server side over the pool; devices that left mid-protocol become dropouts."""
        from secagg import SecAggAbort

        from fl.cohort import ACCEPTED, DROPPED

        advertised = [(pool.hosted(w), m) for w, res in enumerate(results) for m in res["advertise"]]
        try:
            total_q, metrics = run_server(pool, secure, advertised)
            survivors = {int(device_ids[p]) for p in metrics.pop("survivor_positions")}
            error = ""
        except SecAggAbort as e:
            total_q, metrics, survivors = None, {}, set()
            error = f"secure aggregation aborted: {e}"
        for rec in clients:
            if rec["status"] == ACCEPTED and rec["device_id"] not in survivors:
                rec.update(status=DROPPED, error=error or "left during secure aggregation")
        if total_q is None:
            return np.zeros(num_params), 0.0, metrics, error
        total, weight = secure.decode(total_q)
        return total, weight, metrics, ""
