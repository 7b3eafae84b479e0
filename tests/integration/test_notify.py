"""``fleet.notify`` against real receivers on loopback.

- a real HTTP server (``http.server`` in a thread) for the generic and the
  Slack-compatible webhooks;
- a real SMTP server (``aiosmtpd``'s controller, in its own thread);
- a real Alertmanager (Debian's ``prometheus-alertmanager``, run as our own
  process on a free port, clustering off), checked through its own
  ``GET /api/v2/alerts``;
- a closed port (nothing listens) and a "hanging" server that accepts
  connections and never answers.

What is checked: every channel gets the firing and the resolved notice in its
format; a failing channel is retried with backoff, every attempt logged, while
the others deliver; a hanging channel costs the others nothing beyond its own
timeout; secrets never reach a log line or the delivery log.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from pydantic import SecretStr
from structlog.testing import capture_logs

from pilothouse.fleet import alerting, notify
from pilothouse.store.alerts import AlertStore, DeliveryAttempt
from pilothouse.store.db import Database
from tests.integration.postgres import free_port

ALERTMANAGER = Path("/usr/bin/prometheus-alertmanager")
NOW = datetime.now(UTC).replace(microsecond=0)
FAST = {"backoff_seconds": 0.05, "max_backoff_seconds": 0.2}


# ----- receivers ---------------------------------------------------------------------------------


class Received:
    """What an HTTP receiver got: (monotonic arrival, path, JSON body)."""

    def __init__(self, fail_first: int = 0) -> None:
        self.requests: list[tuple[float, str, Any]] = []
        self.fail_first = fail_first
        self.lock = threading.Lock()


def _handler(received: Received) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with received.lock:
                received.requests.append((time.monotonic(), self.path, json.loads(body)))
                failing = len(received.requests) <= received.fail_first
            status = 500 if failing else 200
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"boom" if failing else b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def http_receiver() -> Iterator[tuple[str, Received]]:
    received = Received()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(received))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        self.messages.append((str(envelope.mail_from), list(envelope.rcpt_tos), content))
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, Mailbox]]:
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, mailbox
    controller.stop()


@pytest.fixture
def hanging_server() -> Iterator[str]:
    """Completes TCP handshakes (the listen backlog) and never reads or answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Alertmanager on a free loopback port, clustering off; its base URL."""
    if not ALERTMANAGER.is_file():
        pytest.fail(
            f"{ALERTMANAGER} not found; run `apt-get install prometheus-alertmanager` "
            "(scripts/setup.sh --dev installs it)"
        )
    root = tmp_path_factory.mktemp("alertmanager")
    config = root / "alertmanager.yml"
    config.write_text("route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (root / "alertmanager.log").open("wb")
    process = subprocess.Popen(
        [
            str(ALERTMANAGER),
            f"--config.file={config}",
            f"--storage.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Alertmanager did not start:\n{(root / 'alertmanager.log').read_text()}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(root / "data", ignore_errors=True)


# ----- helpers -----------------------------------------------------------------------------------


def firing(cluster: str = "alpha", *, node: str = "n0") -> alerting.Notification:
    labels = {"alertname": "NodeNotReady", "cluster": cluster, "node": node}
    state = alerting.AlertState(
        fingerprint=alerting.fingerprint(labels),
        rule=alerting.Rule.NODE_NOT_READY,
        labels=labels,
        severity=alerting.Severity.WARNING,
        status=alerting.AlertStatus.FIRING,
        summary=f"node {node} of cluster {cluster} is not Ready",
        started_at=NOW - timedelta(minutes=3),
        last_seen_at=NOW,
        fired_at=NOW - timedelta(minutes=1),
        notified=alerting.NotificationKind.FIRING,
        last_notified_at=NOW,
    )
    return alerting.Notification(alerting.NotificationKind.FIRING, state)


def resolved(note: alerting.Notification) -> alerting.Notification:
    state = alerting.AlertState(
        **{
            **note.alert.__dict__,
            "status": alerting.AlertStatus.RESOLVED,
            "resolved_at": NOW,
            "notified": alerting.NotificationKind.RESOLVED,
        }
    )
    return alerting.Notification(alerting.NotificationKind.RESOLVED, state)


class MemoryLog:
    def __init__(self) -> None:
        self.attempts: list[DeliveryAttempt] = []

    def record_delivery(self, attempt: DeliveryAttempt) -> None:
        self.attempts.append(attempt)

    def of(self, channel: str) -> list[tuple[int, bool]]:
        return [(a.attempt, a.ok) for a in self.attempts if a.channel == channel]


def alertmanager_alerts(url: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/api/v2/alerts", timeout=5)
    response.raise_for_status()
    alerts: list[dict[str, Any]] = response.json()
    return alerts


# ----- tests -------------------------------------------------------------------------------------


async def test_every_channel_gets_the_firing_and_the_resolved_notice(
    http_receiver: tuple[str, Received],
    smtp_server: tuple[int, Mailbox],
    alertmanager: str,
    tmp_path: Path,
) -> None:
    base, received = http_receiver
    smtp_port, mailbox = smtp_server
    channels: list[notify.AnyChannel] = [
        notify.WebhookChannel(
            name="hook", url=SecretStr(f"{base}/hook"), headers={"X-Token": SecretStr("t")}
        ),
        notify.SlackChannel(name="slack", url=SecretStr(f"{base}/slack/T0/B0/xyz"), blocks=True),
        notify.AlertmanagerChannel(
            name="am", url=alertmanager, generator_url="http://pilothouse.test/alerts"
        ),
        notify.EmailChannel(
            name="mail", host="127.0.0.1", port=smtp_port, sender="pilothouse@test", recipients=("ops@test",)
        ),
    ]
    database = Database(f"sqlite:///{tmp_path / 'alerts.db'}")
    database.migrate()
    store = AlertStore(database)
    note = firing()

    results = await notify.deliver([note], channels, delivery_log=store)

    assert results == {"hook": [True], "slack": [True], "am": [True], "mail": [True]}
    by_path = {path: body for _t, path, body in received.requests}
    assert by_path["/hook"]["status"] == "firing"
    assert by_path["/hook"]["alert"]["labels"] == dict(note.alert.labels)
    assert by_path["/hook"]["alert"]["fingerprint"] == note.alert.fingerprint
    slack = by_path["/slack/T0/B0/xyz"]
    assert slack["text"].startswith("[WARNING] NodeNotReady alpha:")
    assert slack["blocks"][0]["type"] == "section"
    sender, recipients, raw = mailbox.messages[0]
    mail = message_from_bytes(raw)
    assert (sender, recipients) == ("pilothouse@test", ["ops@test"])
    assert "NodeNotReady" in str(mail["Subject"])
    assert f"fingerprint: {note.alert.fingerprint}" in mail.get_payload()
    [arrived] = [a for a in alertmanager_alerts(alertmanager) if a["labels"].get("node") == "n0"]
    assert arrived["labels"] == {**note.alert.labels, "severity": "warning"}
    assert arrived["annotations"]["summary"] == note.alert.summary
    assert arrived["generatorURL"] == "http://pilothouse.test/alerts"
    assert arrived["status"]["state"] == "active"
    assert sorted(a.channel for a in store.deliveries()) == ["am", "hook", "mail", "slack"]
    assert all(a.ok and a.attempt == 1 and a.kind == "firing" for a in store.deliveries())

    results = await notify.deliver([resolved(note)], channels, delivery_log=store)

    assert results == {"hook": [True], "slack": [True], "am": [True], "mail": [True]}
    assert [body["status"] for _t, path, body in received.requests if path == "/hook"] == [
        "firing",
        "resolved",
    ]
    assert "[RESOLVED]" in str(message_from_bytes(mailbox.messages[-1][2])["Subject"])
    assert not [a for a in alertmanager_alerts(alertmanager) if a["labels"].get("node") == "n0"]
    assert len(store.deliveries(fingerprint=note.alert.fingerprint)) == 8
    database.dispose()


async def test_a_refused_channel_is_retried_with_backoff_while_the_others_deliver(
    http_receiver: tuple[str, Received], alertmanager: str
) -> None:
    base, received = http_receiver
    received.fail_first = 1  # the working webhook fails once (HTTP 500), then accepts
    closed = f"http://127.0.0.1:{free_port()}/hook"
    channels: list[notify.AnyChannel] = [
        notify.WebhookChannel(name="closed", url=SecretStr(closed), attempts=3, **FAST),
        notify.WebhookChannel(name="flaky", url=SecretStr(f"{base}/flaky"), attempts=3, **FAST),
        notify.AlertmanagerChannel(name="am", url=alertmanager, attempts=3, **FAST),
    ]
    log = MemoryLog()
    note = firing(node="n-retry")

    results = await notify.deliver([note], channels, delivery_log=log)

    assert results == {"closed": [False], "flaky": [True], "am": [True]}
    assert log.of("closed") == [(1, False), (2, False), (3, False)]
    assert log.of("flaky") == [(1, False), (2, True)]
    assert log.of("am") == [(1, True)]
    closed_errors = [a.error or "" for a in log.attempts if a.channel == "closed"]
    assert all("ConnectError" in e for e in closed_errors)
    assert next(a.error for a in log.attempts if a.channel == "flaky") == "HTTP 500: boom"
    stamps = [a.at for a in log.attempts if a.channel == "closed"]
    assert stamps[2] - stamps[1] >= stamps[1] - stamps[0]  # the backoff doubles
    assert [a for a in alertmanager_alerts(alertmanager) if a["labels"].get("node") == "n-retry"]


async def test_a_hanging_channel_does_not_delay_the_others(
    http_receiver: tuple[str, Received], smtp_server: tuple[int, Mailbox], hanging_server: str
) -> None:
    base, received = http_receiver
    smtp_port, mailbox = smtp_server
    timeout = 1.5
    channels: list[notify.AnyChannel] = [
        notify.WebhookChannel(
            name="hang", url=SecretStr(f"{hanging_server}/x"), timeout_seconds=timeout, attempts=1
        ),
        notify.SlackChannel(name="slack", url=SecretStr(f"{base}/slack")),
        notify.EmailChannel(
            name="mail", host="127.0.0.1", port=smtp_port, sender="p@test", recipients=("ops@test",)
        ),
    ]
    log = MemoryLog()
    notes = [firing(node=f"n{i}") for i in range(6)]

    started = time.monotonic()
    results = await notify.deliver(notes, channels, delivery_log=log)
    elapsed = time.monotonic() - started

    assert results == {"hang": [False] * 6, "slack": [True] * 6, "mail": [True] * 6}
    assert len(received.requests) == 6
    assert len(mailbox.messages) == 6
    assert max(t for t, _path, _body in received.requests) - started < 1.0  # not held up by "hang"
    assert timeout <= elapsed < 2 * timeout + 1.0  # 6 notices, 4 at a time: two rounds of the timeout
    assert {a.error for a in log.attempts if a.channel == "hang"} == {f"no answer within {timeout:g}s"}


async def test_secrets_stay_out_of_logs_errors_and_reprs(http_receiver: tuple[str, Received]) -> None:
    base, _received = http_receiver
    token = "xoxb-SECRET-91c3"
    password = "smtp-pass-0f7e"
    channels: list[notify.AnyChannel] = [
        notify.SlackChannel(
            name="slack",
            url=SecretStr(f"http://127.0.0.1:{free_port()}/services/{token}"),
            attempts=2,
            **FAST,
        ),
        notify.WebhookChannel(
            name="hook", url=SecretStr(f"{base}/h"), headers={"Authorization": SecretStr(token)}
        ),
        notify.EmailChannel(
            name="mail",
            host="127.0.0.1",
            port=free_port(),
            sender="p@test",
            recipients=("ops@test",),
            username="pilothouse",
            password=SecretStr(password),
            attempts=2,
            **FAST,
        ),
    ]
    log = MemoryLog()

    with capture_logs() as captured:
        results = await notify.deliver([firing()], channels, delivery_log=log)

    assert results == {"slack": [False], "hook": [True], "mail": [False]}
    text = (
        repr(captured)
        + repr(log.attempts)
        + repr(channels)
        + repr(notify.NotificationConfig(channels=tuple(channels)))
    )
    assert token not in text
    assert password not in text
    assert any(entry["event"] == "notify.attempt_failed" for entry in captured)


def test_channels_load_from_configuration_and_back_off_exponentially() -> None:
    config = notify.NotificationConfig.model_validate(
        {
            "channels": [
                {"type": "webhook", "name": "hook", "url": "https://example.test/h"},
                {"type": "slack", "name": "slack", "url": "https://hooks.example.test/T/B/x", "blocks": True},
                {"type": "alertmanager", "name": "am", "url": "http://127.0.0.1:9093"},
                {
                    "type": "email",
                    "name": "mail",
                    "host": "smtp.test",
                    "sender": "a@test",
                    "recipients": ["b@test"],
                },
            ]
        }
    )

    assert [type(c).__name__ for c in config.channels] == [
        "WebhookChannel",
        "SlackChannel",
        "AlertmanagerChannel",
        "EmailChannel",
    ]
    channel = notify.WebhookChannel(
        name="x", url=SecretStr("http://x"), backoff_seconds=1, max_backoff_seconds=5
    )
    assert [channel.backoff(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    with pytest.raises(ValueError, match="type"):
        notify.NotificationConfig.model_validate({"channels": [{"type": "pager", "name": "p"}]})


async def test_nothing_to_send_sends_nothing() -> None:
    assert await notify.deliver([], [notify.SlackChannel(name="s", url=SecretStr("http://127.0.0.1:9"))]) == {
        "s": []
    }
