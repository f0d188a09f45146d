"""Secure aggregation for fedpop.

Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving Machine
Learning" (CCS 2017) double masking, with the sparse SecAgg+ neighbour graph of
Bell et al., "Secure Single-Server Aggregation with (Poly)Logarithmic
Overhead" (CCS 2020).  Quantisation and distributed discrete-Gaussian DP follow
Kairouz, Liu, Steinke, "The Distributed Discrete Gaussian Mechanism for
Federated Learning with Secure Aggregation" (ICML 2021).

Entry points: :func:`run_protocol` (a whole round in-process),
:class:`SecAggClient` / :class:`SecAggServer` (state machines for an engine),
:func:`presum` (worker-side pre-summing of masked inputs), :mod:`secagg.quantize`,
:mod:`secagg.dp`, :func:`secagg.bench.run_bench`.
"""
from .client import SecAggClient
from .config import RoundConfig, make_config
from .errors import (AuthenticationError, BadPublicKeyError, ClientCheckError, ConfigError, DecryptionError,
                     DuplicateClientError, InconsistentSharesError, MalformedMessageError, ProtocolStateError,
                     SecAggAbort, SecAggError, UnknownClientError)
from .graph import choose_k_t, harary_graph
from .messages import (AdvertiseKeys, ConsistencyRequest, ConsistencySignature, ForwardedShares, KeyBroadcast,
                       MaskedInput, ShareKeys, UnmaskRequest, UnmaskResponse, decode, presum)
from .protocol import ProtocolResult, run_protocol
from .server import ACTIVE_STAGES, STAGES, SecAggServer, stages_for
from .signing import KeyRegistry
from .workers import WorkerPool, run_clients_stage

__all__ = [
    "run_protocol", "ProtocolResult", "SecAggClient", "SecAggServer", "RoundConfig", "make_config", "STAGES",
    "presum", "decode", "WorkerPool", "run_clients_stage", "AdvertiseKeys", "KeyBroadcast", "ShareKeys", "ForwardedShares", "MaskedInput",
    "UnmaskRequest", "UnmaskResponse", "choose_k_t", "harary_graph", "SecAggError", "SecAggAbort",
    "MalformedMessageError", "DecryptionError", "DuplicateClientError", "UnknownClientError",
    "ProtocolStateError", "InconsistentSharesError", "AuthenticationError", "BadPublicKeyError", "ClientCheckError",
    "ConfigError", "ConsistencyRequest", "ConsistencySignature", "ACTIVE_STAGES", "stages_for", "KeyRegistry",
]
