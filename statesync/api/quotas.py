"""What one identity may hold and do per process: websockets, subscriptions, commits.

The admin is not limited. An identity is its user id, or for anonymous requests the
client's address (see ``statesync.identity``). Limits are per process: behind a load
balancer spreading an identity over N API processes, it may have N times as much.
Commits and emits draw on a token bucket (``commit_rate_per_identity`` per second, up to
``commit_burst_per_identity`` at once); buckets that are full again are forgotten, so
the table holds only identities that committed lately.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from statesync.config import Settings
from statesync.errors import RateLimited, TooManySubscriptions
from statesync.identity import Identity

MAX_BUCKETS = 100_000


class TooManyWebsockets(Exception):
    """Over ``max_websockets_per_identity``: the websocket is closed with 1013."""


@dataclass
class _Bucket:
    tokens: float
    at: float


class Quotas:
    def __init__(self, settings: Settings) -> None:
        self.max_websockets = settings.max_websockets_per_identity
        self.max_subscriptions = settings.max_subscriptions_per_identity
        self.rate = settings.commit_rate_per_identity
        self.burst = float(settings.commit_burst_per_identity)
        self.websockets: Counter[str] = Counter()
        self.subscriptions: Counter[str] = Counter()
        self._buckets: dict[str, _Bucket] = {}

    @contextlib.contextmanager
    def websocket(self, identity: Identity) -> Iterator[None]:
        with self._held(identity, self.websockets, self.max_websockets, TooManyWebsockets(
                f"{identity.key} already has {self.max_websockets} websockets open")):
            yield

    @contextlib.contextmanager
    def subscription(self, identity: Identity) -> Iterator[None]:
        refusal = TooManySubscriptions(
            f"this identity already runs {self.max_subscriptions} subscriptions",
            limit=self.max_subscriptions)
        with self._held(identity, self.subscriptions, self.max_subscriptions, refusal):
            yield

    @contextlib.contextmanager
    def _held(self, identity: Identity, counts: Counter[str], limit: int, refusal: Exception
              ) -> Iterator[None]:
        if identity.is_admin:
            yield
            return
        key = identity.key
        if counts[key] >= limit:
            raise refusal
        counts[key] += 1
        try:
            yield
        finally:
            counts[key] -= 1
            if not counts[key]:
                del counts[key]

    def commit(self, identity: Identity, now: float | None = None) -> None:
        """Take one commit from the identity's bucket, or RateLimited with ``retryAfter``."""
        if identity.is_admin:
            return
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get(identity.key)
        if bucket is None:
            if len(self._buckets) >= MAX_BUCKETS:
                self._forget_full(now)
            bucket = self._buckets[identity.key] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        if bucket.tokens < 1:
            wait = (1 - bucket.tokens) / self.rate
            raise RateLimited(f"over {self.rate:g} commits per second; retry in {wait:.2f}s",
                              retryAfter=round(wait, 3))
        bucket.tokens -= 1

    def _forget_full(self, now: float) -> None:
        full = [key for key, b in self._buckets.items()
                if b.tokens + (now - b.at) * self.rate >= self.burst]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) >= MAX_BUCKETS:  # every one of them busy: forget the oldest
            for key in sorted(self._buckets, key=lambda k: self._buckets[k].at)[:MAX_BUCKETS // 10]:
                del self._buckets[key]
