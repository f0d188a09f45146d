"""Exception hierarchy of the secure-aggregation package.

Every error raised on purpose by :mod:`secagg` derives from :class:`SecAggError`
so callers (the round engine) can catch protocol problems without masking bugs.
"""


class SecAggError(Exception):
    """Base class of all secure-aggregation errors."""


class SecAggAbort(SecAggError):
    """The round aborted: too few parties remain to reconstruct the sum.

    Raised by the server (below the Shamir threshold t, Bonawitz et al. CCS'17
    §4) or by a client that refuses to continue.  No partial sum is released.
    """


class MalformedMessageError(SecAggError):
    """A message could not be parsed or violates the wire format / invariants."""


class DecryptionError(SecAggError):
    """An AES-GCM ciphertext failed authentication (tampered, replayed, misrouted)."""


class DuplicateClientError(SecAggError):
    """A client id was seen twice in a stage (duplicate or replayed message)."""


class UnknownClientError(SecAggError):
    """A message names a client id that is not part of the round / stage."""


class ProtocolStateError(SecAggError):
    """A state-machine method was called in the wrong stage (or twice)."""


class InconsistentSharesError(SecAggAbort):
    """Shamir shares of one secret do not lie on one polynomial (corrupted share)."""


class ConfigError(SecAggError, ValueError):
    """Round parameters that cannot be made safe (e.g. a neighbour count k for
    which no threshold meets the privacy bound); the message names the bound."""


class AuthenticationError(SecAggError):
    """A message is not bound to its claimed sender and round: a bad signature
    (active mode) or a sender id the transport did not authenticate."""


class BadPublicKeyError(SecAggError):
    """An advertised X25519 key is a low-order point (all-zero shared secrets)."""


class ClientCheckError(SecAggAbort):
    """A client refused a server request that breaks the protocol's checks
    (Bonawitz et al. Round 4 / ConsistencyCheck); it revealed nothing."""
