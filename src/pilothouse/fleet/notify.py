"""Notification channels and delivery: the I/O half of alerting.

``fleet.alerting.evaluate`` decides *what* to tell; this module tells it.
Channels (pydantic models, discriminated by ``type``):

- ``webhook``: a JSON ``POST`` of ``{"version", "status", "alert"}`` to a URL;
- ``slack``: a Slack-compatible incoming webhook, ``{"text": ...}`` (plus
  ``blocks`` when asked);
- ``alertmanager``: Alertmanager's API v2, ``POST /api/v2/alerts`` with
  ``labels``, ``annotations``, ``startsAt``, ``endsAt`` (set for a resolved
  notice) and ``generatorURL``;
- ``email``: a plain-text message over SMTP (stdlib ``smtplib`` in a worker
  thread; optional STARTTLS / implicit TLS and login).

``deliver`` sends every notice to every channel at once. Each channel works
through its notices on its own (at most ``concurrency`` at a time), each
attempt under the channel's ``timeout_seconds``, retried up to ``attempts``
times with exponential backoff (``backoff_seconds`` doubling, capped at
``max_backoff_seconds``). A channel that refuses, fails or hangs costs the
others nothing: nothing waits on a channel but its own task. Every attempt
is handed to the ``DeliveryLog`` (``store.alerts.AlertStore``).

Secrets — webhook URLs (their paths carry tokens), header values, the SMTP
password — are ``SecretStr``: they never appear in a log line, an error
recorded in the delivery log, or a ``repr``. Errors name the channel, the
exception type and a scrubbed, cut message; response bodies are cut to
200 characters.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Annotated, Any, Literal, Protocol

import httpx
import structlog
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from pilothouse.fleet import alerting
from pilothouse.store.alerts import DeliveryAttempt

log = structlog.get_logger(__name__)

_ERROR_LIMIT = 200
Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]


def _utcnow() -> datetime:
    return datetime.now(UTC)


# ----- channel configuration -------------------------------------------------------------------


class _Channel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=96)
    timeout_seconds: float = Field(default=10.0, gt=0)
    attempts: int = Field(default=4, ge=1, le=20)
    backoff_seconds: float = Field(default=1.0, ge=0)
    max_backoff_seconds: float = Field(default=60.0, ge=0)
    #: Notices this channel sends at the same time.
    concurrency: int = Field(default=4, ge=1)

    def backoff(self, attempt: int) -> float:
        """The pause after failed attempt ``attempt`` (1-based): 1x, 2x, 4x … capped."""
        return float(min(self.max_backoff_seconds, self.backoff_seconds * 2 ** (attempt - 1)))

    def secrets(self) -> tuple[str, ...]:
        """Every secret value of the channel, to scrub from error text."""
        return ()


class WebhookChannel(_Channel):
    type: Literal["webhook"] = "webhook"
    url: SecretStr
    headers: dict[str, SecretStr] = Field(default_factory=dict)

    def secrets(self) -> tuple[str, ...]:
        return (self.url.get_secret_value(), *(v.get_secret_value() for v in self.headers.values()))


class SlackChannel(_Channel):
    type: Literal["slack"] = "slack"
    url: SecretStr
    blocks: bool = False

    def secrets(self) -> tuple[str, ...]:
        return (self.url.get_secret_value(),)


class AlertmanagerChannel(_Channel):
    type: Literal["alertmanager"] = "alertmanager"
    #: Base URL, e.g. ``http://127.0.0.1:9093``.
    url: str
    #: Where ``generatorURL`` points (Pilothouse's API or dashboard); "" to leave it out.
    generator_url: str = ""


class EmailChannel(_Channel):
    type: Literal["email"] = "email"
    host: str
    port: int = Field(default=25, ge=1, le=65535)
    sender: str
    recipients: tuple[str, ...] = Field(min_length=1)
    username: str | None = None
    password: SecretStr | None = None
    starttls: bool = False
    implicit_tls: bool = False
    subject_prefix: str = "[pilothouse]"

    def secrets(self) -> tuple[str, ...]:
        return (self.password.get_secret_value(),) if self.password is not None else ()


AnyChannel = WebhookChannel | SlackChannel | AlertmanagerChannel | EmailChannel
#: A channel in configuration, told apart by its ``type``.
Channel = Annotated[AnyChannel, Field(discriminator="type")]


class NotificationConfig(BaseModel):
    """The channels every notice goes to (e.g. ``alerts.channels`` in the settings file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: tuple[Channel, ...] = ()


# ----- payloads (pure) -------------------------------------------------------------------------


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def alert_document(note: alerting.Notification) -> dict[str, Any]:
    """The alert as plain JSON-able data, shared by the webhook and e-mail bodies."""
    a = note.alert
    return {
        "fingerprint": a.fingerprint,
        "status": note.kind.value,
        "rule": a.rule.value,
        "severity": a.severity.value,
        "labels": dict(a.labels),
        "summary": a.summary,
        "startsAt": _iso(a.fired_at or a.started_at),
        "endsAt": _iso(a.resolved_at),
        "repeat": note.repeat,
    }


def webhook_payload(note: alerting.Notification) -> dict[str, Any]:
    return {
        "version": "1",
        "receiver": "pilothouse",
        "status": note.kind.value,
        "alert": alert_document(note),
    }


def headline(note: alerting.Notification) -> str:
    a = note.alert
    state = "RESOLVED" if note.kind is alerting.NotificationKind.RESOLVED else a.severity.value.upper()
    return f"[{state}] {a.rule.value} {a.cluster}: {a.summary}"


def slack_payload(note: alerting.Notification, *, blocks: bool) -> dict[str, Any]:
    text = headline(note)
    payload: dict[str, Any] = {"text": text}
    if blocks:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(note.alert.labels.items()))
        payload["blocks"] = [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{text}*"}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": labels}]},
        ]
    return payload


def alertmanager_payload(note: alerting.Notification, *, generator_url: str = "") -> list[dict[str, Any]]:
    a = note.alert
    item: dict[str, Any] = {
        "labels": {**a.labels, "severity": a.severity.value},
        "annotations": {"summary": a.summary, "fingerprint": a.fingerprint},
        "startsAt": _iso(a.fired_at or a.started_at),
    }
    if note.kind is alerting.NotificationKind.RESOLVED:
        item["endsAt"] = _iso(a.resolved_at)
    if generator_url:
        item["generatorURL"] = generator_url
    return [item]


def email_message(note: alerting.Notification, channel: EmailChannel) -> EmailMessage:
    doc = alert_document(note)
    message = EmailMessage()
    message["Subject"] = f"{channel.subject_prefix} {headline(note)}".strip()[:250]
    message["From"] = channel.sender
    message["To"] = ", ".join(channel.recipients)
    lines = [headline(note), ""]
    lines += [f"{k}: {v}" for k, v in sorted(note.alert.labels.items())]
    lines += ["", f"started: {doc['startsAt']}", f"fingerprint: {note.alert.fingerprint}"]
    if doc["endsAt"]:
        lines.append(f"resolved: {doc['endsAt']}")
    message.set_content("\n".join(lines) + "\n")
    return message


# ----- sending ---------------------------------------------------------------------------------


class DeliveryError(Exception):
    """One failed attempt; the message is already scrubbed of secrets."""


class DeliveryLog(Protocol):
    def record_delivery(self, attempt: DeliveryAttempt) -> None: ...


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = " ".join(text.split())
    return text if len(text) <= _ERROR_LIMIT else text[: _ERROR_LIMIT - 1] + "…"


async def _post(http: httpx.AsyncClient, url: str, body: Any, headers: dict[str, str]) -> None:
    response = await http.post(url, json=body, headers=headers)
    if not 200 <= response.status_code < 300:
        raise DeliveryError(f"HTTP {response.status_code}: {response.text[:_ERROR_LIMIT]}")


def _send_mail(channel: EmailChannel, message: EmailMessage) -> None:
    """Blocking SMTP delivery (runs in a worker thread)."""
    smtp_class = smtplib.SMTP_SSL if channel.implicit_tls else smtplib.SMTP
    with smtp_class(channel.host, channel.port, timeout=channel.timeout_seconds) as smtp:
        if channel.starttls and not channel.implicit_tls:
            smtp.starttls(context=ssl.create_default_context())
        if channel.username and channel.password is not None:
            smtp.login(channel.username, channel.password.get_secret_value())
        smtp.send_message(message)


async def send_once(channel: AnyChannel, note: alerting.Notification, http: httpx.AsyncClient) -> None:
    """One attempt to deliver ``note`` on ``channel``; raises on any failure."""
    if isinstance(channel, WebhookChannel):
        headers = {k: v.get_secret_value() for k, v in channel.headers.items()}
        await _post(http, channel.url.get_secret_value(), webhook_payload(note), headers)
    elif isinstance(channel, SlackChannel):
        await _post(http, channel.url.get_secret_value(), slack_payload(note, blocks=channel.blocks), {})
    elif isinstance(channel, AlertmanagerChannel):
        url = channel.url.rstrip("/") + "/api/v2/alerts"
        await _post(http, url, alertmanager_payload(note, generator_url=channel.generator_url), {})
    else:
        await asyncio.to_thread(_send_mail, channel, email_message(note, channel))


async def _deliver_one(
    channel: AnyChannel,
    note: alerting.Notification,
    http: httpx.AsyncClient,
    *,
    record: Callable[[DeliveryAttempt], Awaitable[None]],
    clock: Clock,
    sleep: Sleep,
) -> bool:
    """Deliver one notice on one channel with retries; True once an attempt succeeded."""
    secrets = channel.secrets()
    for attempt in range(1, channel.attempts + 1):
        error: str | None = None
        try:
            async with asyncio.timeout(channel.timeout_seconds):
                await send_once(channel, note, http)
        except TimeoutError:
            error = f"no answer within {channel.timeout_seconds:g}s"
        except DeliveryError as exc:
            error = _scrub(str(exc), secrets)
        except (httpx.HTTPError, OSError, smtplib.SMTPException, ssl.SSLError) as exc:
            error = _scrub(f"{type(exc).__name__}: {exc}", secrets)
        await record(
            DeliveryAttempt(
                fingerprint=note.alert.fingerprint,
                kind=note.kind.value,
                channel=channel.name,
                attempt=attempt,
                ok=error is None,
                error=error,
                at=clock(),
            )
        )
        if error is None:
            log.info(
                "notify.delivered",
                channel=channel.name,
                fingerprint=note.alert.fingerprint,
                kind=note.kind.value,
                attempt=attempt,
            )
            return True
        last = attempt == channel.attempts
        log.warning(
            "notify.attempt_failed",
            channel=channel.name,
            fingerprint=note.alert.fingerprint,
            attempt=attempt,
            error=error,
            giving_up=last,
        )
        if not last:
            await sleep(channel.backoff(attempt))
    return False


async def _deliver_channel(
    channel: AnyChannel,
    notes: Sequence[alerting.Notification],
    *,
    record: Callable[[DeliveryAttempt], Awaitable[None]],
    clock: Clock,
    sleep: Sleep,
) -> list[bool]:
    gate = asyncio.Semaphore(channel.concurrency)
    async with httpx.AsyncClient(timeout=httpx.Timeout(channel.timeout_seconds), trust_env=False) as http:

        async def one(note: alerting.Notification) -> bool:
            async with gate:
                return await _deliver_one(channel, note, http, record=record, clock=clock, sleep=sleep)

        return list(await asyncio.gather(*(one(n) for n in notes)))


async def deliver(
    notifications: Sequence[alerting.Notification],
    channels: Sequence[AnyChannel],
    *,
    delivery_log: DeliveryLog | None = None,
    clock: Clock = _utcnow,
    sleep: Sleep = asyncio.sleep,
) -> dict[str, list[bool]]:
    """Send every notice to every channel, channels independently; per channel, one
    success flag per notice (in order). Never raises for a failing channel."""
    if not notifications or not channels:
        return {c.name: [] for c in channels}

    async def record(attempt: DeliveryAttempt) -> None:
        if delivery_log is None:
            return
        try:
            await asyncio.to_thread(delivery_log.record_delivery, attempt)
        except Exception as exc:  # the log is best effort: never lose the delivery over it
            log.error("notify.log_failed", channel=attempt.channel, error=type(exc).__name__)

    async def guarded(channel: AnyChannel) -> list[bool]:
        try:
            return await _deliver_channel(channel, notifications, record=record, clock=clock, sleep=sleep)
        except Exception as exc:  # a bug in one channel must not cost the others
            log.error("notify.channel_crashed", channel=channel.name, error=type(exc).__name__)
            return [False] * len(notifications)

    results = await asyncio.gather(*(guarded(c) for c in channels))
    return {c.name: r for c, r in zip(channels, results, strict=True)}
