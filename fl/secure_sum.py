"""Model updates summed with SecAgg(+) across the worker pool.

Devices in the workers run the client side (Bonawitz et al., CCS 2017, with the SecAgg+
graph of Bell et al., CCS 2020); the coordinator runs the server side and only ever
sees masked vectors, pre-summed mod 2^b per worker. Each device sends
[clip(delta, C), C] * weight, quantized with stochastic rounding, so the decoded sum
gives both the weighted update sum and the weight sum: the same quantities plain
aggregation with `clipped(C, mean(weighting))` forms, up to the quantization bound.
"""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

import numpy as np

from fl.config import AggregatorSection


@dataclass(frozen=True)
class SecureRound:
    """Public parameters of one secure sum, shipped to every worker."""
    config: object  # secagg.RoundConfig
    quantizer: object  # secagg.quantize.Quantizer
    clip: float

    def encode(self, delta: np.ndarray, weight: float, rng: np.random.Generator) -> np.ndarray:
        from secagg.quantize import clip_l2

        x = np.append(clip_l2(delta, self.clip), self.clip)  # norm <= sqrt(2) C: no second clip
        return self.quantizer.encode(x, weight=weight, rng=rng)

    def decode(self, total: np.ndarray) -> tuple[np.ndarray, float]:
        s = self.quantizer.decode(total)
        return s[:-1], float(s[-1] / self.clip)


def plan_secure_round(agg: AggregatorSection, n_clients: int, num_params: int, max_weight: float,
                      seed: int, round_num: int) -> SecureRound:
    from secagg import make_config
    from secagg.quantize import make_quantizer

    round_id = hashlib.sha256(f"fedpop/{seed}/{round_num}".encode()).digest()[:16]
    cfg = make_config(max(n_clients, 2), num_params + 1, bits=agg.secagg_bits, mode=agg.secagg_mode,
                      dropout_rate=agg.secagg_dropout_rate, seed=seed * 100_003 + round_num, round_id=round_id)
    quantizer = make_quantizer(math.sqrt(2) * agg.clip_norm, agg.secagg_bits, max(n_clients, 2),
                               max_weight=max_weight)
    return SecureRound(cfg, quantizer, agg.clip_norm)


def run_server(pool, secure: SecureRound, advertised: list) -> tuple[np.ndarray, dict]:
    """Drive the four stages through the pool; returns (sum mod 2^b, metrics).

    Raises `secagg.SecAggAbort` when too few clients remain: no partial sum exists.
    """
    from secagg import SecAggServer

    t0 = time.perf_counter()
    server = SecAggServer(secure.config)
    for msg in advertised:
        server.receive_advertise(msg)
    for msg in pool.secure_stage("share_keys", server.broadcast_keys()):
        server.receive_share_keys(msg)
    for msg in pool.secure_stage("masked_input", server.forward_shares()):
        server.receive_masked_input(msg)
    for msg in pool.secure_stage("unmask", server.unmask_requests()):
        server.receive_unmask(msg)
    total = server.finalize()
    metrics = {"secagg_k": secure.config.k, "secagg_threshold": secure.config.threshold,
               "secagg_clients": secure.config.n, "secagg_survivors": len(server.u3),
               "survivor_positions": sorted(server.u3),
               "secagg_server_s": time.perf_counter() - t0}
    return total, metrics
