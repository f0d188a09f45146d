"""What became of a device in a round: one enum, shared by the cohort planner, the workers,
the secure sum and the results tables.  Records hold the values (plain strings), so tables
and parquet files read as before."""
from __future__ import annotations

from enum import Enum


class DeviceStatus(str, Enum):
    ACCEPTED = "accepted"  # reported in time; its update counts
    DROPPED = "dropped"  # left mid-round (or its worker crashed, or the secure sum lost it)
    STRAGGLER = "straggler"  # reported after the deadline
    FAILED = "failed"  # its training raised
    REJECTED = "rejected"  # its update was refused (non-finite, or a weight the quantizer cannot hold)
    NONFINITE = "nonfinite"  # evaluation: a non-finite loss or metric, left out of the sums


ACCEPTED, DROPPED, STRAGGLER, FAILED, REJECTED, NONFINITE = (s.value for s in DeviceStatus)
