"""Resilient list+watch of one kind: the feed behind the live inventory's caches.

``watch(connection, spec, sink)`` runs until cancelled. It LISTs the kind in
chunks, hands the sink ``Synced(objects)`` (the sink replaces its state), then
WATCHes from the list's resourceVersion with bookmarks and hands the sink
``Upserted``/``Deleted``/``Bookmark`` events, converted to compact summaries
(``kube.summaries``) as they arrive, so no whole object outlives its line.

Recovery, decided by the pure ``decide_recovery`` and ``backoff_delay``:

- a stream the server closes normally (``timeoutSeconds`` elapsed) is resumed
  at once from the last resourceVersion seen (an event's or a bookmark's);
- a connection failure, a 5xx or 429 answer, or a silent stream (no event or
  bookmark within ``inactivity_timeout``, enforced as the stream's read
  timeout) resumes from the last resourceVersion after a bounded, jittered
  backoff (``WatchSettings.backoff``, ``Retry-After`` respected), and tells
  the sink it is disconnected, with the translated error;
- ``410 Gone``, as an HTTP status or as an ``ERROR`` event (the version is
  older than the API server's watch cache, typically after an API server
  restart or a long outage), means events were lost: the watcher RELISTs
  and hands the sink a fresh ``Synced``. That is how a cache resyncs without
  missing a change, including deletions made while it was away.

lightkube does the HTTP, TLS and decoding. The LIST uses the public
``AsyncClient.list`` (chunked, exposes the list's resourceVersion). The WATCH
cannot use ``AsyncClient.watch`` as is, and goes one level down, to
``AsyncClient._client`` (lightkube's ``GenericAsyncClient``): in lightkube
1.0 ``watch()`` takes no ``allowWatchBookmarks`` parameter, would decode a
bookmark into the full resource class (an ``Event`` bookmark then fails,
``involvedObject`` being required), hides the moment a stream is opened (so
"connected" could not be told from "waiting for the first event"), and loops
internally on errors. This module reuses its request building
(``prepare_request``, ``build_adapter_request``), its transport (``send``)
and its decoders (``lightkube.core.decoders``) and keeps only the loop.
Pin lightkube below 2 (pyproject) so these stay as they are.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, NoReturn, Protocol, TypeAlias, TypeVar

import httpx2
import structlog
from lightkube import ApiError, AsyncClient
from lightkube.core import decoders

from pilothouse import errors
from pilothouse.kube import client as kube_client
from pilothouse.kube.credentials import ClusterCredentials
from pilothouse.kube.summaries import KindSpec, Summary

log = structlog.get_logger(__name__)

#: Seconds to wait before the n-th consecutive retry; the last value repeats.
DEFAULT_BACKOFF: tuple[float, ...] = (0.5, 1, 2, 4, 8, 15)
ALL_NAMESPACES = "*"
#: A stream closed normally sooner than this after opening is retried with backoff, not at once.
MIN_STREAM_SECONDS = 1.0

S = TypeVar("S", bound=Summary)


@dataclass(frozen=True, slots=True)
class WatchSettings:
    """How a watch retries and when it gives up on a stream; the defaults suit real clusters."""

    backoff: tuple[float, ...] = DEFAULT_BACKOFF
    jitter: float = 0.2  # each delay is scaled by a random factor in [1 - jitter, 1 + jitter]
    #: No event or bookmark for this long: the stream is considered dead and reopened. The API
    #: server sends a bookmark about every minute, later under load (seen past 90 s on a busy
    #: 2-core machine), and some watches get none at all (an idle cluster's Events watch was
    #: silent for minutes), so the server is asked to end every stream sooner (``server_timeout``)
    #: and a quiet but healthy stream is resumed, never reported as a disconnection. A hung API
    #: server is caught sooner by the health probes, which is what ClusterUnreachable alerts on.
    inactivity_timeout: float = 180.0
    #: The API server closes each watch after a random duration in this range (seconds); keep
    #: its upper end below ``inactivity_timeout``.
    server_timeout: tuple[int, int] = (120, 170)
    request_timeout: float = 10.0  # connect, and each LIST page
    chunk_size: int = 500
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if not self.backoff or any(delay < 0 for delay in self.backoff):
            raise ValueError("backoff must be a non-empty tuple of non-negative delays")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        if self.inactivity_timeout <= 0 or self.request_timeout <= 0 or self.chunk_size < 1:
            raise ValueError("inactivity_timeout, request_timeout and chunk_size must be positive")
        low, high = self.server_timeout
        if not 0 < low <= high:
            raise ValueError("server_timeout must be a (low, high) range of positive seconds")
        if high >= self.inactivity_timeout:
            raise ValueError(
                "server_timeout must end before inactivity_timeout, or quiet streams count as dead"
            )


# ----- events and sinks ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Synced(Generic[S]):
    """The complete current set after a (re)list: replace whatever was held."""

    objects: tuple[S, ...]
    resource_version: str


@dataclass(frozen=True, slots=True)
class Upserted(Generic[S]):
    obj: S


@dataclass(frozen=True, slots=True)
class Deleted(Generic[S]):
    obj: S  # its last state


@dataclass(frozen=True, slots=True)
class Bookmark:
    """Nothing changed up to ``resource_version``: the stream is alive."""

    resource_version: str


WatchEvent: TypeAlias = Synced[S] | Upserted[S] | Deleted[S] | Bookmark


class WatchSink(Protocol[S]):
    """Receives one kind's events and connection changes. Called from the event loop;
    must not block. ``on_connected`` follows each successful LIST or opened stream after
    a disconnect; ``on_disconnected`` follows every failed attempt, with its error."""

    def on_event(self, event: WatchEvent[S]) -> None: ...

    def on_connected(self) -> None: ...

    def on_disconnected(self, error: errors.PilothouseError) -> None: ...


# ----- pure decisions --------------------------------------------------------------------------


class Recovery(StrEnum):
    RESUME = "resume"  # watch again from the last resourceVersion seen
    RELIST = "relist"  # events were lost (or none were ever seen): list again


def decide_recovery(status_code: int | None, *, resource_version: str | None) -> Recovery:
    """What to do after a failed list or watch: ``410 Gone`` or no version to resume from → relist."""
    if resource_version is None or status_code == 410:
        return Recovery.RELIST
    return Recovery.RESUME


def backoff_delay(
    attempt: int,
    schedule: tuple[float, ...] = DEFAULT_BACKOFF,
    *,
    jitter: float = 0.2,
    rand: Callable[[], float] = random.random,
    retry_after: float | None = None,
    max_retry_after: float = 60.0,
) -> float:
    """Seconds before retry number ``attempt`` (0-based): the schedule's entry (its last one
    repeating), scaled by a random factor in [1 - jitter, 1 + jitter]; at least the server's
    ``Retry-After`` (capped at ``max_retry_after``)."""
    if not schedule:
        raise ValueError("the backoff schedule is empty")
    base = schedule[min(max(attempt, 0), len(schedule) - 1)]
    delay = base * (1 - jitter + 2 * jitter * rand())
    if retry_after is not None and retry_after > 0:
        delay = max(delay, min(retry_after, max_retry_after))
    return delay


def status_code_of(exc: BaseException) -> int | None:
    """The HTTP (or Status object) code of a failed request, None for transport failures."""
    if isinstance(exc, ApiError):
        status = getattr(exc, "status", None)
        if status is not None and status.code:
            return int(status.code)
    if isinstance(exc, httpx2.HTTPStatusError) and getattr(exc, "response", None) is not None:
        return exc.response.status_code
    return None


def retry_after_of(exc: BaseException) -> float | None:
    """The server's requested delay: a ``Retry-After`` header or ``details.retryAfterSeconds``."""
    if isinstance(exc, ApiError):
        status = getattr(exc, "status", None)
        details = status.details if status is not None else None
        if details is not None and details.retryAfterSeconds:
            return float(details.retryAfterSeconds)
    response = getattr(exc, "response", None) if isinstance(exc, httpx2.HTTPStatusError) else None
    if response is not None:
        header = response.headers.get("Retry-After")
        try:
            return float(header) if header is not None else None
        except ValueError:
            return None
    return None


# ----- connections -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connection:
    """An open client to one cluster, shared by that cluster's watches."""

    client: AsyncClient = field(repr=False)
    creds: ClusterCredentials


@asynccontextmanager
async def connect(creds: ClusterCredentials, *, timeout: float = 10.0) -> AsyncIterator[Connection]:
    """Open a client for the cluster (``kube.client.open_client``); closed on exit."""
    async with kube_client.open_client(creds, timeout=timeout) as client:
        yield Connection(client=client, creds=creds)


#: Failures a watch recovers from by itself; anything else is a bug for the supervisor.
_TRANSIENT = (httpx2.HTTPError, ssl.SSLError)


class Watcher(Generic[S]):
    """The list+watch loop of one kind on one cluster; ``run`` until cancelled."""

    def __init__(
        self,
        connection: Connection,
        spec: KindSpec[S],
        sink: WatchSink[S],
        *,
        settings: WatchSettings | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.connection = connection
        self.spec = spec
        self.sink = sink
        self.settings = settings or WatchSettings()
        self.resource_version: str | None = None
        self._rand = rand
        self._failures = 0
        self._connected: bool | None = None  # None: never tried
        self._down_since: float | None = None
        self._kind = spec.kind.value

    async def run(self) -> NoReturn:
        while True:
            try:
                if self.resource_version is None:
                    await self._list()
                opened = time.monotonic()
                await self._watch_once()
                if time.monotonic() - opened < MIN_STREAM_SECONDS:  # closed at once: don't spin
                    await asyncio.sleep(self._delay(None))
                    self._failures += 1
            except _TRANSIENT as exc:
                await self._recover(exc)

    # -- one attempt each --

    async def _list(self) -> None:
        lister = self.connection.client.list(
            self.spec.resource,
            namespace=ALL_NAMESPACES if self.spec.namespaced else None,
            chunk_size=self.settings.chunk_size,
        )
        summarize = self.spec.summarize
        objects = tuple([summarize(obj) async for obj in lister])
        version = lister.resourceVersion
        self._mark_connected()
        self.sink.on_event(Synced(objects=objects, resource_version=version))
        self.resource_version = version
        log.debug("watch.listed", kind=self._kind, objects=len(objects), resource_version=version)

    async def _watch_once(self) -> None:
        low, high = self.settings.server_timeout
        generic = self.connection.client._client  # see the module docstring
        request = generic.prepare_request(
            "list",
            res=self.spec.resource,
            namespace=ALL_NAMESPACES if self.spec.namespaced else None,
            watch=True,
            params={
                "resourceVersion": self.resource_version,
                "allowWatchBookmarks": "true",
                "timeoutSeconds": str(int(low + (high - low) * self._rand())),
            },
        )
        request.timeout = httpx2.Timeout(self.settings.request_timeout, read=self.settings.inactivity_timeout)
        response = await generic.send(  # type: ignore[no-untyped-call]  # lightkube leaves it untyped
            generic.build_adapter_request(request), stream=True
        )
        try:
            if response.status_code != 200:
                raise await _error_from(response)
            self._mark_connected()
            async for line in response.aiter_lines():
                if line:
                    self._handle_line(line)
        except httpx2.ReadTimeout as exc:
            raise _SilentStream(self.settings.inactivity_timeout) from exc
        finally:
            await response.aclose()

    def _handle_line(self, line: str) -> None:
        event = decoders.decode_watch_event(line)  # type: ignore[arg-type]  # msgspec decodes str too
        if event.type == "ERROR":
            raise ApiError(status=decoders.decode_status(event.object))
        if event.type == "BOOKMARK":
            raw = decoders.decode_object(event.object, dict)
            version = str((raw.get("metadata") or {}).get("resourceVersion") or "")
            if version:
                self.sink.on_event(Bookmark(resource_version=version))
                self.resource_version = version
            return
        obj = decoders.decode_object(event.object, self.spec.resource)
        summary = self.spec.summarize(obj)
        if event.type == "DELETED":
            self.sink.on_event(Deleted(summary))
        else:  # ADDED, MODIFIED
            self.sink.on_event(Upserted(summary))
        seen = obj.metadata.resourceVersion if obj.metadata is not None else None
        if seen:
            self.resource_version = str(seen)

    # -- state and recovery --

    def _mark_connected(self) -> None:
        self._failures = 0
        if self._connected is not True:
            if self._down_since is not None:
                log.info(
                    "watch.reconnected",
                    kind=self._kind,
                    down_seconds=round(time.monotonic() - self._down_since, 1),
                )
            self._connected = True
            self._down_since = None
            self.sink.on_connected()

    def _delay(self, exc: BaseException | None) -> float:
        settings = self.settings
        return backoff_delay(
            self._failures,
            settings.backoff,
            jitter=settings.jitter,
            rand=self._rand,
            retry_after=retry_after_of(exc) if exc is not None else None,
            max_retry_after=settings.max_retry_after,
        )

    async def _recover(self, exc: BaseException) -> None:
        code = status_code_of(exc)
        recovery = decide_recovery(code, resource_version=self.resource_version)
        if code == 410:
            # Not a connection problem: the version is too old. Relist at once the first time.
            log.info("watch.expired", kind=self._kind, resource_version=self.resource_version)
            delay = 0.0 if self._failures == 0 else self._delay(exc)
        else:
            error = self._translate(exc)
            if self._connected is not False:
                log.warning("watch.disconnected", kind=self._kind, error=error.message, code=error.code)
                self._down_since = time.monotonic()
            else:
                log.debug("watch.retry_failed", kind=self._kind, error=error.message, attempt=self._failures)
            self._connected = False
            self.sink.on_disconnected(error)
            delay = self._delay(exc)
        if recovery is Recovery.RELIST:
            self.resource_version = None
        self._failures += 1
        await asyncio.sleep(delay)

    def _translate(self, exc: BaseException) -> errors.PilothouseError:
        server = self.connection.creds.server
        if isinstance(exc, _SilentStream):
            return errors.ClusterUnreachable(
                f"the {self.spec.kind.value} watch at {server} was silent for {exc.seconds:g}s",
                hint="the API server may be hung or overloaded; check its health",
            )
        return kube_client.translate(exc, self.connection.creds)


class _SilentStream(httpx2.TimeoutException):
    """No event or bookmark within the inactivity timeout."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no watch event or bookmark for {seconds:g}s")
        self.seconds = seconds


async def _error_from(response: httpx2.Response) -> httpx2.HTTPStatusError:
    """The exception for a watch request answered with something other than 200."""
    await response.aread()
    if response.headers.get("Content-Type", "").startswith("application/json"):
        try:
            return ApiError(request=response.request, response=response)
        except (ValueError, TypeError):
            pass
    return httpx2.HTTPStatusError(
        f"the watch request was answered {response.status_code}", request=response.request, response=response
    )


async def watch(
    connection: Connection,
    spec: KindSpec[S],
    sink: WatchSink[S],
    *,
    settings: WatchSettings | None = None,
) -> NoReturn:
    """List and watch ``spec``'s kind on the connection's cluster, feeding ``sink``, until cancelled.

    Transient failures are retried forever (see the module docstring); an exception
    escaping this function is a bug (a summarizer choking on an object, say) for the
    caller's supervisor to log and restart.
    """
    await Watcher(connection, spec, sink, settings=settings).run()
