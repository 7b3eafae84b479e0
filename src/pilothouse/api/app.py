"""The FastAPI application: routers, error mapping, and the reconcile loop's lifetime."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI

from pilothouse import __version__
from pilothouse.api import (
    access,
    alerts,
    backups,
    capacity,
    clusters,
    errors,
    events,
    health,
    inventory,
    limits,
    metrics,
    operations,
    session,
    sso,
    stream,
    teams,
    tokens,
    users,
)
from pilothouse.api import bindings as role_bindings
from pilothouse.api.auth import Access, Principal, authenticate, guarded
from pilothouse.platform import Platform
from pilothouse.reconcile.loop import run_background

Background = Callable[[], Coroutine[Any, Any, Any]]


def create_app(
    platform: Platform, *, reconcile: bool = True, background: Sequence[Background] = ()
) -> FastAPI:
    """The API app. ``background`` operations start with the server and are cancelled with it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.tasks = {asyncio.create_task(start()) for start in background}
        loop_task = asyncio.create_task(run_background(platform)) if reconcile else None
        try:
            yield
        finally:
            if loop_task is not None:
                loop_task.cancel()
            pending: set[asyncio.Task[Any]] = app.state.tasks
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, *([loop_task] if loop_task else []), return_exceptions=True)
            await platform.inventory.stop()

    app = FastAPI(
        title="Pilothouse",
        version=__version__,
        description="Self-hosted managed-Kubernetes control plane. Every route needs `Authorization: Bearer <token>`.",
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.platform = platform
    app.state.tasks = set()
    errors.install(app)
    app.include_router(clusters.router)
    app.include_router(health.router)
    app.include_router(inventory.router)
    app.include_router(stream.router)
    app.include_router(metrics.router)
    app.include_router(capacity.router)
    app.include_router(events.router)
    app.include_router(alerts.router)
    app.include_router(operations.router)
    app.include_router(backups.router)
    app.include_router(session.router)
    app.include_router(sso.router)
    app.include_router(users.router)
    app.include_router(teams.router)
    app.include_router(role_bindings.router)
    app.include_router(tokens.router)
    app.include_router(access.router)
    app.add_middleware(limits.BodyLimit, max_bytes=platform.settings.api_max_body_bytes)

    @app.get("/healthz", tags=["health"], **guarded(Access.PUBLIC))
    def healthz() -> dict[str, str]:
        """Liveness of the Pilothouse server itself (no data; open for load balancers)."""
        return {"status": "ok"}

    @app.get("/openapi.json", tags=["meta"], **guarded(Access.AUTHENTICATED))
    def openapi(_principal: Annotated[Principal, Depends(authenticate)]) -> dict[str, Any]:
        """The OpenAPI document of this API (authenticated like every other route)."""
        return app.openapi()

    @app.get("/api/v1/whoami", tags=["identity"], **guarded(Access.AUTHENTICATED))
    def whoami(principal: Annotated[Principal, Depends(authenticate)]) -> dict[str, Any]:
        """The caller's identity and roles."""
        return {"name": principal.name, "roles": list(principal.roles)}

    return app
