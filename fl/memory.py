"""Resident memory of this process, reported every round by the coordinator and each worker
(memory that grows round after round is what users of the peer frameworks hit first)."""
from __future__ import annotations


def rss_mb() -> float:
    """Resident set size of the calling process, in MiB."""
    import psutil

    return psutil.Process().memory_info().rss / 2**20
