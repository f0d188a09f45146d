"""Shamir t-of-k secret sharing over the prime field GF(p), p = 2^256 + 297.

Implements Shamir (CACM 1979) as used by Bonawitz et al. (CCS 2017, §4, "SS.share /
SS.recon") to share each client's mask-key ``s_u^SK`` and self-mask seed ``b_u``
among its neighbours.  Any 32-byte string is a field element because p > 2^256.
Share holders are identified by their x-coordinate ``client_id + 1`` (never 0).
"""
from __future__ import annotations

import secrets
from functools import lru_cache
from typing import Callable, Sequence

from .errors import InconsistentSharesError, SecAggAbort

PRIME = 2**256 + 297  # smallest prime above 2^256
SHARE_BYTES = 33  # 257-bit field elements on the wire
SECRET_BYTES = 32


def x_of(client_id: int) -> int:
    """x-coordinate of the share held by ``client_id``."""
    return client_id + 1


def share_many(secrets_: Sequence[int], t: int, xs: Sequence[int],
               randbelow: Callable[[int], int] = secrets.randbelow) -> list[list[int]]:
    """Share each secret with a fresh random degree-(t-1) polynomial.

    Returns ``out[j][i]`` = share of secret ``j`` at ``xs[i]``.
    """
    if not 1 <= t <= len(xs):
        raise ValueError(f"threshold t={t} must be in [1, {len(xs)}]")
    out = []
    for s in secrets_:
        if not 0 <= s < PRIME:
            raise ValueError("secret outside the field")
        coeffs = [randbelow(PRIME) for _ in range(t - 1)]
        coeffs.reverse()
        row = []
        for x in xs:  # Horner with a single reduction (x is small, so acc stays short)
            acc = 0
            for c in coeffs:
                acc = (acc + c) * x
            row.append((acc + s) % PRIME)
        out.append(row)
    return out


def share(secret: int, t: int, xs: Sequence[int],
          randbelow: Callable[[int], int] = secrets.randbelow) -> list[int]:
    """Shares of one secret at the points ``xs`` (threshold ``t``)."""
    return share_many([secret], t, xs, randbelow)[0]


@lru_cache(maxsize=4096)
def _lagrange_at_zero(xs: tuple[int, ...]) -> tuple[int, ...]:
    # lambda_i = prod_{j!=i} x_j / (x_j - x_i); one modular inversion for all i
    # (Montgomery's batch-inversion trick).
    t = len(xs)
    nums, dens = [], []
    for i, xi in enumerate(xs):
        num, den = 1, 1
        for j, xj in enumerate(xs):
            if j != i:
                num *= xj
                den *= xj - xi
        nums.append(num % PRIME)
        dens.append(den % PRIME)
    prefix = [1] * (t + 1)
    for i, d in enumerate(dens):
        prefix[i + 1] = prefix[i] * d % PRIME
    inv = pow(prefix[t], -1, PRIME)
    coeffs = [0] * t
    for i in range(t - 1, -1, -1):
        coeffs[i] = nums[i] * inv * prefix[i] % PRIME  # inv == 1 / prod(dens[:i+1])
        inv = inv * dens[i] % PRIME
    return tuple(coeffs)


def _interpolate(points: Sequence[tuple[int, int]]) -> int:
    xs = tuple(x for x, _ in points)
    lam = _lagrange_at_zero(xs)
    return sum(l * y for l, (_, y) in zip(lam, points)) % PRIME


def reconstruct(points: Sequence[tuple[int, int]], t: int, verify: bool = True) -> int:
    """Recover the secret from ``>= t`` points ``(x, y)``.

    With ``verify`` and more than ``t`` points, a second interpolation over a
    shifted subset detects a corrupted share among the first ``t + 1``
    (raises :class:`InconsistentSharesError` instead of returning garbage).
    """
    if len(points) < t:
        raise SecAggAbort(f"need {t} shares, got {len(points)}")
    xs = [x for x, _ in points]
    if len(set(xs)) != len(xs) or any(not 0 < x < PRIME for x in xs):
        raise ValueError("share x-coordinates must be distinct and non-zero")
    if any(not 0 <= y < PRIME for _, y in points):
        raise InconsistentSharesError("share value outside the field")
    s = _interpolate(points[:t])
    if verify and len(points) > t:
        if _interpolate(points[1:t + 1]) != s:
            raise InconsistentSharesError("Shamir shares are inconsistent")
    return s


def int_to_bytes(v: int, n: int = SHARE_BYTES) -> bytes:
    return v.to_bytes(n, "little")


def bytes_to_int(b: bytes) -> int:
    return int.from_bytes(b, "little")


def _solve_mod(rows: list[list[int]], ncols: int) -> list[int] | None:
    """Solve an (over-determined) linear system mod PRIME by Gauss-Jordan
    elimination; rows are [a_0 .. a_{ncols-1}, b].  None if inconsistent; free
    variables are set to 0."""
    rows = [r[:] for r in rows]
    piv_cols, r = [], 0
    for c in range(ncols):
        p = next((i for i in range(r, len(rows)) if rows[i][c] % PRIME), None)
        if p is None:
            continue
        rows[r], rows[p] = rows[p], rows[r]
        inv = pow(rows[r][c], -1, PRIME)
        rows[r] = [v * inv % PRIME for v in rows[r]]
        for i in range(len(rows)):
            if i != r and rows[i][c] % PRIME:
                f = rows[i][c]
                rows[i] = [(a - f * b) % PRIME for a, b in zip(rows[i], rows[r])]
        piv_cols.append(c)
        r += 1
        if r == len(rows):
            break
    if any(all(v % PRIME == 0 for v in row[:ncols]) and row[ncols] % PRIME for row in rows[r:]):
        return None
    sol = [0] * ncols
    for i, c in enumerate(piv_cols):
        sol[c] = rows[i][ncols]
    return sol


def _poly_divmod(num: list[int], den: list[int]) -> tuple[list[int], list[int]]:
    """Polynomial division mod PRIME (coefficients lowest degree first)."""
    num = num[:]
    inv = pow(den[-1], -1, PRIME)
    q = [0] * max(len(num) - len(den) + 1, 1)
    for i in range(len(num) - len(den), -1, -1):
        f = num[i + len(den) - 1] * inv % PRIME
        q[i] = f
        for j, d in enumerate(den):
            num[i + j] = (num[i + j] - f * d) % PRIME
    return q, num[:len(den) - 1]


def _eval(poly: list[int], x: int) -> int:
    acc = 0
    for c in reversed(poly):
        acc = (acc * x + c) % PRIME
    return acc


def berlekamp_welch(points: Sequence[tuple[int, int]], t: int) -> tuple[int, list[int]]:
    """Decode a degree-(t-1) polynomial from ``r >= t`` points with up to
    ``(r - t) // 2`` wrong values (Welch & Berlekamp 1986, the Reed-Solomon
    decoder).  Returns ``(secret, x-coordinates of the wrong points)``; raises
    :class:`InconsistentSharesError` when there are more errors than that."""
    r = len(points)
    e = (r - t) // 2
    if e <= 0:
        raise InconsistentSharesError(f"{r} shares for threshold {t}: too few to correct any error")
    while e >= 1:
        # unknowns: Q (t + e coefficients), E (e low coefficients; monic of degree e)
        rows = []
        for x, y in points:
            xp = [pow(x, j, PRIME) for j in range(t + e + 1)]
            rows.append(xp[:t + e] + [(-y * xp[j]) % PRIME for j in range(e)] + [y * xp[e] % PRIME])
        sol = _solve_mod(rows, t + 2 * e)
        if sol is not None:
            q, err = sol[:t + e], sol[t + e:] + [1]
            poly, rem = _poly_divmod(q, err)
            if not any(rem):
                poly = (poly + [0] * t)[:t]
                bad = [x for x, y in points if _eval(poly, x) != y % PRIME]
                if len(bad) <= (r - t) // 2:
                    return poly[0], bad
        e -= 1
    raise InconsistentSharesError("Shamir shares are inconsistent beyond what can be corrected")


def reconstruct_checked(points: Sequence[tuple[int, int]], t: int, check: Callable[[int], bool]) -> tuple[int, list[int]]:
    """Recover a secret that ``check`` can verify (a commitment or a public key).

    Fast path: interpolate the first t points and verify.  If that fails and
    more than t + 1 points arrived, Berlekamp-Welch finds the polynomial and the
    wrong shares (returned as their x-coordinates, so their holders can be
    excluded).  Otherwise :class:`InconsistentSharesError`: never a wrong secret.
    """
    if len(points) < t:
        raise SecAggAbort(f"need {t} shares, got {len(points)}")
    if any(not 0 <= y < PRIME for _, y in points):
        bad = [x for x, y in points if not 0 <= y < PRIME]
        points = [(x, y) for x, y in points if 0 <= y < PRIME]
        if len(points) < t:
            raise InconsistentSharesError("share values outside the field")
    else:
        bad = []
    s = _interpolate(points[:t])
    if check(s):
        return s, bad
    if len(points) < t + 2:
        raise InconsistentSharesError(f"reconstructed secret fails its check and only {len(points)} shares "
                                      f"arrived for threshold {t}: the wrong share cannot be identified")
    s, wrong = berlekamp_welch(points, t)
    if not check(s):
        raise InconsistentSharesError("decoded secret fails its check")
    return s, bad + wrong
