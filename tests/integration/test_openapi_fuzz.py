"""schemathesis against the OpenAPI document of a real API server: no input gives a 5xx.

The server is ``create_app(platform, reconcile=False)`` under uvicorn on loopback. The
schema is loaded from its ``/openapi.json`` (authenticated, so a platform-admin API token
is issued), and for every operation schemathesis (Hypothesis under it) generates
requests from the schema — valid ones, and invalid ones (negative mode: wrong types,
out-of-range values, missing fields) — sends them with the admin token and applies its
``not_a_server_error`` check. Generation is derandomized and bounded (``MAX_EXAMPLES``
per operation and mode), so a run is repeatable and takes about a minute.

Two passes:

1. every operation with generated parameters (cluster names that exist nowhere, so
   these reach validation and the 404 paths);
2. every ``/api/v1/clusters/{name}…`` operation with ``{name}`` pinned to a real local
   cluster of the test's own (``fuzz-target``, 3 simulated nodes), so the generated
   queries and bodies reach health probes, inventory, SLA, upgrade planning,
   operations and backups of a live cluster. ``…/stop`` and ``DELETE`` run last, on
   that cluster only.

Nothing is excluded, and nothing can touch the session's shared cluster: the platform is
one of its own (its own store), opened with an empty binary cache once ``fuzz-target``
is up, so a generated ``POST /api/v1/clusters`` is refused (422, binaries missing)
instead of starting control-plane processes. ``GET /api/v1/fleet/stream`` never ends
by design: its status line is read and the stream closed.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase

from pilothouse import errors
from pilothouse.api.app import create_app
from pilothouse.binaries.cache import BinaryCache
from pilothouse.fleet import requests
from pilothouse.identity.policy import Role
from pilothouse.platform import Platform
from pilothouse.settings import Settings, load_settings
from tests.integration.api_server import serving

Operation = schemathesis.APIOperation[Any, Any, Any, Any]
Case = schemathesis.Case[Operation]
MAX_EXAMPLES = 15
#: Past this, no further operation is started (the whole test stays under 2 minutes).
TIME_BUDGET_SECONDS = 100.0
TARGET = "fuzz-target"
CLUSTER_ROUTES = "/api/v1/clusters/{name}"
STREAMING = {("GET", "/api/v1/fleet/stream")}
#: Run last in the pinned pass: they end the target cluster.
ENDING = {("POST", CLUSTER_ROUTES + "/stop"), ("DELETE", CLUSTER_ROUTES)}
MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)


@pytest.fixture(scope="module")
async def fuzz_platform(
    settings: Settings, installed_binaries: BinaryCache, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Platform]:
    """A store of its own with one running local cluster; served with an empty binary cache."""
    home: Path = tmp_path_factory.mktemp("fuzz")
    where = {"data_dir": home / "data", "config_dir": home / "config"}
    builder = Platform.open(load_settings(**where))
    try:
        await builder.clusters.create_local(requests.parse(requests.CreateLocalCluster, name=TARGET, nodes=3))
    finally:
        builder.close()
    platform = Platform.open(load_settings(**where, cache_dir=home / "empty-cache"))
    try:
        yield platform
    finally:
        with contextlib.suppress(errors.NotFound):
            await platform.clusters.delete(TARGET)
        platform.close()


def check_stream(case: Case, base_url: str, headers: dict[str, str]) -> None:
    """A request to an endless stream: its status only (read the headers, then close)."""
    kwargs = case.as_transport_kwargs(base_url=base_url, headers=headers)
    with httpx.stream(
        kwargs["method"],
        kwargs["url"],
        params=kwargs.get("params"),
        headers=kwargs.get("headers"),
        timeout=10,
    ) as response:
        assert response.status_code < 500, f"{case.operation.label} → {response.status_code}"


def fuzz(
    operation: Operation,
    mode: schemathesis.GenerationMode,
    send: Callable[[Case], None],
) -> str | None:
    """Run ``send`` over generated cases of ``operation``; the failure, if any."""

    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Case) -> None:
        send(case)

    try:
        run()
    except hypothesis.errors.Unsatisfiable:
        return None  # negative mode, but nothing about this operation can be made invalid
    except Exception as exc:
        return f"{operation.label} ({mode.value}): {exc}"
    return None


def test_no_operation_answers_5xx(fuzz_platform: Platform) -> None:
    admin_name = f"fuzz-admin-{secrets.token_hex(8)}"
    token, _info = fuzz_platform.tokens.issue(admin_name, (Role.PLATFORM_ADMIN.value,))
    headers = {"Authorization": f"Bearer {token}"}
    failures: list[str] = []
    tried = {"generated": 0, "pinned": 0}
    calls = 0

    with serving(create_app(fuzz_platform, reconcile=False)) as api:
        schema = schemathesis.openapi.from_url(f"{api}/openapi.json", headers=headers, timeout=30)
        operations = [result.ok() for result in schema.get_all_operations()]
        started = time.monotonic()

        def sender(*, pin: bool) -> Callable[[Case], None]:
            def send(case: Case) -> None:
                nonlocal calls
                key = (case.method.upper(), case.operation.path)
                if pin:
                    case.path_parameters = {**(case.path_parameters or {}), "name": TARGET}
                elif (
                    key == ("DELETE", "/api/v1/tokens/{name}")
                    and (case.path_parameters or {}).get("name") == admin_name
                ):
                    hypothesis.reject()  # the fuzzer's own credentials
                calls += 1
                if key in STREAMING:
                    check_stream(case, api, headers)
                    return
                response = case.call(base_url=api, headers=headers, timeout=60)
                case.validate_response(response, checks=[schemathesis.checks.not_a_server_error])

            return send

        pinned = sorted(
            (o for o in operations if o.path == CLUSTER_ROUTES or o.path.startswith(CLUSTER_ROUTES + "/")),
            key=lambda o: (o.method.upper(), o.path) in ENDING,
        )
        for operation, pin in [(o, False) for o in operations] + [(o, True) for o in pinned]:
            if time.monotonic() - started > TIME_BUDGET_SECONDS:
                break
            for mode in MODES:
                failure = fuzz(operation, mode, sender(pin=pin))
                if failure:
                    failures.append(failure)
            tried["pinned" if pin else "generated"] += 1

        elapsed = time.monotonic() - started
        still_admin = httpx.get(f"{api}/api/v1/whoami", headers=headers)

    print(
        f"\nschemathesis: {tried['generated']} operations with generated parameters, "
        f"{tried['pinned']} pinned to a live cluster; {calls} requests in {elapsed:.1f} s"
    )
    assert failures == [], "\n\n".join(failures)
    assert still_admin.status_code == 200, "the fuzzer lost its own credentials: later answers were 401s"
    assert tried == {"generated": len(operations), "pinned": len(pinned)}, (
        f"the time budget cut the run short: {tried}"
    )
