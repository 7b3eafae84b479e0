"""Searching the fleet's Kubernetes Events: the query, its matching and its order.

Pure. ``EventQuery`` is what the API and the CLI ask for (``from_text`` reads
their time bounds); ``store.events.EventStore.search`` answers it in SQL over
the persisted events (``fleet.event_log`` writes them from the watch caches,
and bounds them by age and count per cluster). ``search_events`` applies the
same matching and order to events in memory, read through the ``EventFields``
protocol: it is the reference the store's SQL is tested against. This module
imports no adapter.

Matching: cluster, namespace and involved object name are compared exactly;
kind, reason and type exactly but case-insensitively (``str.casefold``); text
is a case-insensitive substring of the message. ``since`` and ``until`` bound
an event's last timestamp (inclusive); an event without one matches no time
bound. Results are newest first (events without a timestamp last), ties
broken by cluster, namespace and name (by code point), then cut to ``limit``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pilothouse import errors
from pilothouse.shapes import EventFields

DEFAULT_LIMIT = 50
MAX_LIMIT = 5_000
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_OLDEST = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class EventQuery:
    """What to look for; ``None`` matches anything."""

    cluster: str | None = None
    namespace: str | None = None
    kind: str | None = None
    name: str | None = None
    reason: str | None = None
    type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    text: str | None = None
    limit: int | None = DEFAULT_LIMIT

    def __post_init__(self) -> None:
        if self.limit is not None and not 0 <= self.limit <= MAX_LIMIT:
            raise errors.InvalidInput(f"limit must be between 0 and {MAX_LIMIT}, not {self.limit}")
        for field, value in (("since", self.since), ("until", self.until)):
            if value is not None and value.tzinfo is None:
                raise errors.InvalidInput(f"{field} must carry a time zone")
        if self.since is not None and self.until is not None and self.since > self.until:
            raise errors.InvalidInput("since is after until")

    @classmethod
    def from_text(cls, *, since: str | None, until: str | None, now: datetime, **fields: Any) -> EventQuery:
        """A query whose time bounds are typed text (``"10m"`` or ISO 8601), as CLI and API take them."""
        return cls(
            since=None if since is None else parse_time(since, now=now),
            until=None if until is None else parse_time(until, now=now),
            **fields,
        )

    def matches(self, cluster: str, event: EventFields) -> bool:
        if self.cluster is not None and cluster != self.cluster:
            return False
        if self.namespace is not None and event.namespace != self.namespace:
            return False
        if self.name is not None and event.involved_name != self.name:
            return False
        for wanted, actual in (
            (self.kind, event.involved_kind),
            (self.reason, event.reason),
            (self.type, event.type),
        ):
            if wanted is not None and wanted.casefold() != actual.casefold():
                return False
        if self.text is not None and self.text.casefold() not in event.message.casefold():
            return False
        if self.since is not None or self.until is not None:
            stamp = event.last_timestamp
            if stamp is None:
                return False
            if self.since is not None and stamp < self.since:
                return False
            if self.until is not None and stamp > self.until:
                return False
        return True


@dataclass(frozen=True, slots=True)
class FoundEvent:
    """An event that matched, with the cluster it came from."""

    cluster: str
    event: EventFields


def _stamp(found: FoundEvent) -> tuple[bool, datetime]:
    stamp = found.event.last_timestamp
    return stamp is not None, stamp or _OLDEST


def search_events(rings: Mapping[str, Iterable[EventFields]], query: EventQuery) -> list[FoundEvent]:
    """The events of ``rings`` (cluster → its cached events) that match ``query``, newest first."""
    found = [
        FoundEvent(cluster, event)
        for cluster, events in rings.items()
        if query.cluster is None or cluster == query.cluster
        for event in events
        if query.matches(cluster, event)
    ]
    # ties in (cluster, namespace, name) order: sort by those first, then stably by stamp, newest first
    found.sort(key=lambda f: (f.cluster, f.event.namespace, f.event.name))
    found.sort(key=_stamp, reverse=True)
    return found if query.limit is None else found[: query.limit]


def parse_time(text: str, *, now: datetime) -> datetime:
    """A point in time: a duration back from ``now`` (``"30s"``, ``"10m"``, ``"2h"``, ``"1d"``)
    or an ISO 8601 timestamp (UTC when it names no zone)."""
    match = _DURATION.match(text)
    if match is not None:
        return now - timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
    try:
        stamp = datetime.fromisoformat(text.strip())
    except ValueError:
        raise errors.InvalidInput(
            f"not a time: {text!r}",
            hint="use a duration back from now (30s, 10m, 2h, 1d) or an ISO 8601 timestamp",
        ) from None
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)
