"""A request-rate limit per API token: a token bucket per token, in this process.

Each authenticated token has a bucket of ``burst`` requests that refills at
``rate`` requests a second (the token-bucket algorithm: RFC 2697 and RFC 2698
meter traffic the same way). A request takes one from its token's bucket; an
empty bucket answers **429 RATE_LIMITED** with ``Retry-After`` (RFC 6585 §4,
RFC 9110 §10.2.3: whole seconds until one request's worth has refilled) and
``extensions: {code: RATE_LIMITED, retryable: true, retryAfter: <seconds>}``.
Retrying after that is safe for writes too: record ids are idempotency keys.

* **Per token, never per org or per address**: another token — of the same
  organisation or another — has its own bucket and is never slowed.
* **Checked after authentication**, keyed by the token's id (the safe-to-log
  part of ``rlt_<id>_<secret>``): made-up tokens are refused 401 before they
  reach a bucket, so nobody can drain a real token's bucket by sending its id
  with a wrong secret.
* **Per server process.** ``rledger serve --workers N`` runs N processes, each
  with its own buckets, so a token may get up to N × ``rate`` (and N ×
  ``burst``) in all, depending on how the kernel spreads its connections.
  Sharing the buckets through the database would cost a write per request;
  the limit is a guard against a runaway client, not a quota (ADR 0004).
* **Writes** are limited by requests too: a ``recordEvents`` call carries at
  most ``Limits.max_batch`` records, so records/s per token is at most
  ``rate`` × ``max_batch``.

Configured by environment for ``rledger serve`` (:meth:`RateLimit.from_env`):
``RLEDGER_RATE_LIMIT`` requests a second per token (default 100; ``0`` or
``off`` turns the limit off) and ``RLEDGER_RATE_BURST`` (default twice the
rate). :func:`schema.app.create_app` takes ``rate_limit=RateLimit(...)``; without
one (the default for an app built in code, e.g. in tests) nothing is limited.

Memory: one small entry per token seen recently, least recently used out past
``max_entries`` (an evicted bucket comes back full: generous, never wrong in
the caller's disfavour).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ledger.tokens import token_id_of
from schema.errors import ApiError

__all__ = [
    "DEFAULT_BURST_FACTOR",
    "DEFAULT_RATE",
    "RateLimit",
    "RateLimited",
    "RateLimiter",
]

DEFAULT_RATE = 100.0  # requests a second per token
DEFAULT_BURST_FACTOR = 2  # burst = 2 x rate unless set
ENV_RATE = "RLEDGER_RATE_LIMIT"
ENV_BURST = "RLEDGER_RATE_BURST"
OFF = ("0", "off", "false", "no")


class RateLimited(ApiError):
    """429 RATE_LIMITED: this token sent more than its rate; retry after ``retry_after`` s."""

    def __init__(self, retry_after: float, limit: RateLimit) -> None:
        self.retry_after_seconds = max(1, math.ceil(retry_after))
        super().__init__(
            "RATE_LIMITED",
            f"this API token sent more than {limit.rate:g} requests a second (bursts of "
            f"{limit.burst}); retry after {self.retry_after_seconds} s, send fewer and larger "
            "batches, or ask the operator for another token or a higher limit",
        )

    def extensions(self) -> dict[str, object]:
        return {"code": self.code, "retryable": True, "retryAfter": self.retry_after_seconds}

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_seconds)}


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``rate`` requests a second per token, in bursts of at most ``burst``."""

    rate: float
    burst: int

    def __post_init__(self) -> None:
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError(f"a rate limit needs a positive rate, not {self.rate!r}")
        if self.burst < 1:
            raise ValueError(f"a rate limit's burst must be at least 1, not {self.burst!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RateLimit | None:
        """The limit set by RLEDGER_RATE_LIMIT / RLEDGER_RATE_BURST (defaults: 100 a second,
        bursts of 200); None when RLEDGER_RATE_LIMIT turns it off."""
        env = os.environ if environ is None else environ
        text = env.get(ENV_RATE, "").strip().lower()
        if text in OFF:
            return None
        try:
            rate = float(text) if text else DEFAULT_RATE
            if not (rate > 0 and math.isfinite(rate)):  # also NaN
                raise ValueError(f"the rate must be a positive number, not {text!r}")
            burst_text = env.get(ENV_BURST, "").strip()
            burst = (
                int(burst_text) if burst_text else max(1, math.ceil(rate * DEFAULT_BURST_FACTOR))
            )
            return cls(rate, burst)
        except ValueError as exc:
            raise ValueError(
                f"{ENV_RATE}={env.get(ENV_RATE, '')!r} {ENV_BURST}={env.get(ENV_BURST, '')!r}: "
                f"set {ENV_RATE} to requests a second per token (e.g. 100; 0 turns the limit "
                f"off) and {ENV_BURST} to a whole number of requests ({exc})"
            ) from None


class RateLimiter:
    """Token buckets keyed by API token id; :meth:`check` raises :class:`RateLimited`."""

    def __init__(
        self,
        limit: RateLimit,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 100_000,
    ) -> None:
        self.limit = limit
        self.clock = clock
        self.max_entries = max_entries
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # id: (level, at)
        self._lock = threading.Lock()

    def take(self, key: str, cost: float = 1.0) -> float:
        """Take ``cost`` from ``key``'s bucket: 0.0 when it held that much, else the
        seconds until it will (nothing is taken then)."""
        rate, burst = self.limit.rate, float(self.limit.burst)
        with self._lock:
            now = self.clock()
            level, at = self._buckets.get(key, (burst, now))
            level = min(burst, level + max(0.0, now - at) * rate)
            if level >= cost:
                wait, level = 0.0, level - cost
            else:
                wait = (cost - level) / rate
            self._buckets[key] = (level, now)
            self._buckets.move_to_end(key)
            while len(self._buckets) > self.max_entries:
                self._buckets.popitem(last=False)
            return wait

    def check(self, token: str | None) -> None:
        """Count one request of an authenticated ``token``; RateLimited if it is over."""
        key = token_id_of(token) if token else None
        if key is None:  # not a token: authentication refuses it, nothing to count
            return
        wait = self.take(key)
        if wait > 0:
            raise RateLimited(wait, self.limit)
