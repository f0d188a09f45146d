"""A device's memory of the rounds it has taken part in.

Bonawitz et al. (CCS 2017, §4) assume every execution of the protocol has a fresh,
unique session id.  The id comes from the server, so a client has to enforce the
uniqueness itself: it refuses an id it has already used.  Together with the
instance binding of signed statements (:func:`secagg.signing.instance_binding`) this
keeps an active server from combining the messages of several executions run under
one id (each honest client then signs at most one survivor set per id).
"""
from __future__ import annotations

from .errors import ClientCheckError


class ReplayedRoundError(ClientCheckError):
    """The server asked a client to join a round id it has already taken part in."""


class RoundLedger:
    """The round ids one device has joined (16 bytes each; a phone joins a few a day)."""

    def __init__(self, seen=()):
        self._seen: set[bytes] = {bytes(r) for r in seen}

    def claim(self, round_id: bytes, who: int | str = "") -> None:
        """Record ``round_id``; :class:`ReplayedRoundError` if it was recorded before."""
        rid = bytes(round_id)
        if rid in self._seen:
            raise ReplayedRoundError(f"client {who} refuses: it already took part in round {rid.hex()}")
        self._seen.add(rid)

    def __contains__(self, round_id) -> bool:
        return bytes(round_id) in self._seen

    def __len__(self) -> int:
        return len(self._seen)

    def rounds(self) -> list[bytes]:
        """The recorded ids, sorted (to persist them with the device's state)."""
        return sorted(self._seen)
