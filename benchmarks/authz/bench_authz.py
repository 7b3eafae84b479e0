"""Benchmark: authorisation decisions per second at fleet size, and API latency under 100 clients.

Part 1 — decisions. A seeded random fleet of ``--clusters`` clusters (10 namespaces each),
``--users`` users in ``--users/10`` teams (each user in 2), and ``--bindings`` role
bindings (70 % to users, 30 % to teams; 0.5 % at the platform, half at a cluster, the rest
at a namespace; roles weighted towards viewer and operator) is written to a SQLite store
in bulk. Random (user, permission, target) questions are then answered four ways:

- **pure check**: ``identity.policy.authorize`` on the user's resolved ``Principal`` (its
  grants from its own and its teams' bindings) — the decision every route and command makes;
- **indexed resolve + check**: the principal built per question from bindings grouped by
  subject (``policy.principal_for`` over the user's and teams' bindings), then the check;
- **naive baseline**: the principal built per question by scanning all bindings
  (``policy.grants_of`` over the whole list), then the check — what a model without a
  per-subject index costs; measured in the same run, the ratio printed;
- **the service**: ``Accounts.authenticate(session token)`` (the session, the user, their
  teams and every binding reaching them, read from the store by indexed queries) and
  ``Accounts.allowed`` — the API's whole per-request access path except HTTP.

The indexed and naive answers are compared for every baseline question (they must agree).

Part 2 — API latency. The same store is served by uvicorn (``create_app``, no background
jobs) in a child process on 127.0.0.1; wrk (Debian's package, ``scripts/setup.sh --dev``)
drives ``--connections`` concurrent connections for ``--seconds`` against ``/healthz``
(unauthenticated, no store: the baseline) and then ``GET /api/v1/clusters`` with the
session token of a user holding platform ``viewer`` plus their fleet bindings (about 70
grants), after a warm-up each. p50/p99 latency and throughput are printed, with the ratio
to the baseline. Nothing is asserted; README.md records the figures.

    .venv/bin/python benchmarks/authz/bench_authz.py [--clusters 1000] [--users 10000] [--bindings 100000]
"""

from __future__ import annotations

import argparse
import os
import platform as platform_mod
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psutil
from sqlalchemy import insert

from pilothouse.identity import policy
from pilothouse.identity.policy import Binding, Permission, Principal, Role, Scope, SubjectKind
from pilothouse.platform import Platform
from pilothouse.settings import load_settings
from pilothouse.store.models import RoleBindingRow, TeamMemberRow, TeamRow, UserRow

NAMESPACES = 10
TEAMS_PER_USER = 2
ROLE_WEIGHTS = {
    Role.VIEWER: 40,
    Role.OPERATOR: 25,
    Role.CLUSTER_ADMIN: 15,
    Role.AUDITOR: 10,
    Role.PLATFORM_ADMIN: 10,
}
BENCH_USER = "bench-viewer"


def _machine() -> str:
    memory = psutil.virtual_memory().total / 1024**3
    return (
        f"{os.cpu_count()} CPUs, {memory:.1f} GiB, Linux {platform_mod.release()}, "
        f"Python {platform_mod.python_version()}"
    )


# ----- the fleet ---------------------------------------------------------------------------------


@dataclass
class Fleet:
    clusters: list[str]
    users: list[str]
    teams: list[str]
    members: dict[str, tuple[str, ...]]  # user -> teams
    bindings: list[Binding]


def make_fleet(rng: random.Random, *, clusters: int, users: int, bindings: int) -> Fleet:
    cluster_names = [f"c{i:04d}" for i in range(clusters)]
    user_names = [f"user{i:05d}" for i in range(users)]
    team_names = [f"team{i:04d}" for i in range(max(1, users // 10))]
    members = {u: tuple(rng.sample(team_names, min(TEAMS_PER_USER, len(team_names)))) for u in user_names}
    roles, weights = list(ROLE_WEIGHTS), list(ROLE_WEIGHTS.values())
    seen: set[tuple[SubjectKind, str, Role, Scope]] = set()
    found: list[Binding] = []
    while len(found) < bindings:
        kind = SubjectKind.TEAM if rng.random() < 0.3 else SubjectKind.USER
        subject = rng.choice(team_names if kind is SubjectKind.TEAM else user_names)
        roll = rng.random()
        cluster = rng.choice(cluster_names)
        if roll < 0.005:
            scope = Scope.platform()
        elif roll < 0.5:
            scope = Scope.of_cluster(cluster)
        else:
            scope = Scope.of_namespace(cluster, f"ns{rng.randrange(NAMESPACES)}")
        role = rng.choices(roles, weights)[0]
        key = (kind, subject, role, scope)
        if key not in seen:
            seen.add(key)
            found.append(Binding(kind, subject, role, scope))
    return Fleet(cluster_names, user_names, team_names, members, found)


def seed_store(platform: Platform, fleet: Fleet) -> float:
    """Bulk-insert the fleet's users, teams, memberships and bindings; seconds taken.

    SQLAlchemy Core inserts: the per-row API (one transaction per call) would take minutes.
    """
    started = time.perf_counter()
    now = datetime.now(UTC)
    user_ids = {u: uuid.uuid4().hex for u in [*fleet.users, BENCH_USER]}
    team_ids = {t: uuid.uuid4().hex for t in fleet.teams}
    users = [
        {
            "id": i,
            "name": n,
            "display_name": "",
            "email": "",
            "source": "local",
            "created_at": now,
            "updated_at": now,
        }
        for n, i in user_ids.items()
    ]
    teams = [{"id": i, "name": n, "mfa_required": False, "created_at": now} for n, i in team_ids.items()]
    members = [
        {"team_id": team_ids[t], "user_id": user_ids[u], "source": "local", "created_at": now}
        for u, ts in [*fleet.members.items(), (BENCH_USER, fleet.members[fleet.users[0]])]
        for t in ts
    ]
    extra = [Binding(SubjectKind.USER, BENCH_USER, Role.VIEWER, Scope.platform())]
    extra += [Binding(SubjectKind.USER, BENCH_USER, b.role, b.scope) for b in fleet.bindings[:7]]
    rows = []
    for b in [*fleet.bindings, *extra]:
        user_id = user_ids[b.subject] if b.subject_kind is SubjectKind.USER else None
        team_id = team_ids[b.subject] if b.subject_kind is SubjectKind.TEAM else None
        subject = f"user:{user_id}" if user_id else f"team:{team_id}"
        rows.append(
            {
                "id": uuid.uuid4().hex,
                "key": f"{subject}|{b.role.value}|{b.scope.cluster}|{b.scope.namespace}",
                "user_id": user_id,
                "team_id": team_id,
                "role": b.role.value,
                "cluster": b.scope.cluster,
                "namespace": b.scope.namespace,
                "created_by": "benchmark",
                "created_at": now,
            }
        )
    with platform.db.engine.begin() as connection:
        for model, data in (
            (UserRow, users),
            (TeamRow, teams),
            (TeamMemberRow, members),
            (RoleBindingRow, rows),
        ):
            for start in range(0, len(data), 10_000):
                connection.execute(insert(model), data[start : start + 10_000])
    return time.perf_counter() - started


# ----- questions ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    user: str
    permission: Permission
    target: Scope


def make_questions(rng: random.Random, fleet: Fleet, count: int) -> list[Question]:
    permissions = list(Permission)
    found = []
    for _ in range(count):
        cluster = rng.choice(fleet.clusters)
        target = (
            Scope.of_namespace(cluster, f"ns{rng.randrange(NAMESPACES)}")
            if rng.random() < 0.5
            else Scope.of_cluster(cluster)
        )
        found.append(Question(rng.choice(fleet.users), rng.choice(permissions), target))
    return found


def timed(label: str, questions: Sequence[Question], answer: Callable[[Question], bool]) -> float:
    started = time.perf_counter()
    allowed = sum(answer(q) for q in questions)
    elapsed = time.perf_counter() - started
    per_second = len(questions) / elapsed
    print(
        f"  {label:<34} {per_second:>12,.0f} decisions/s  ({len(questions):,} in {elapsed:.2f} s, "
        f"{allowed / len(questions):.0%} allowed)",
        flush=True,
    )
    return per_second


def decisions(platform: Platform, fleet: Fleet, rng: random.Random, args: argparse.Namespace) -> None:
    print("\n== decisions ==", flush=True)
    started = time.perf_counter()
    by_user: dict[str, list[Binding]] = defaultdict(list)
    by_team: dict[str, list[Binding]] = defaultdict(list)
    for b in fleet.bindings:
        (by_team if b.subject_kind is SubjectKind.TEAM else by_user)[b.subject].append(b)
    index_seconds = time.perf_counter() - started

    def resolve_indexed(user: str) -> Principal:
        teams = fleet.members[user]
        mine = by_user.get(user, []) + [b for t in teams for b in by_team.get(t, [])]
        return policy.principal_for(mine, user=user, teams=teams)

    started = time.perf_counter()
    principals = {u: resolve_indexed(u) for u in fleet.users}
    resolve_seconds = time.perf_counter() - started
    grants = [len(p.grants) for p in principals.values()]
    print(
        f"  index by subject: {index_seconds * 1000:.0f} ms; all {len(principals):,} principals resolved in "
        f"{resolve_seconds:.2f} s; grants per user: mean {sum(grants) / len(grants):.1f}, max {max(grants)}",
        flush=True,
    )

    questions = make_questions(rng, fleet, args.questions)
    pure = timed(
        "pure check (resolved principal)",
        questions,
        lambda q: bool(policy.authorize(principals[q.user], q.permission, q.target)),
    )
    indexed = timed(
        "indexed resolve + check",
        questions[: args.indexed_questions],
        lambda q: bool(policy.authorize(resolve_indexed(q.user), q.permission, q.target)),
    )

    def naive(q: Question) -> bool:
        principal = policy.principal_for(fleet.bindings, user=q.user, teams=fleet.members[q.user])
        return bool(policy.authorize(principal, q.permission, q.target))

    baseline_questions = questions[: args.baseline_questions]
    baseline = timed("naive: scan all bindings + check", baseline_questions, naive)
    disagree = sum(
        naive(q) != bool(policy.authorize(principals[q.user], q.permission, q.target))
        for q in baseline_questions
    )
    print(f"  indexed and naive answers disagree on {disagree} of {len(baseline_questions)} questions")

    now = datetime.now(UTC)
    sampled = rng.sample(fleet.users, min(args.sessions, len(fleet.users)))
    tokens = {
        u: platform.identity.store.open_session(
            u, method="password", client="bench", expires_at=now + timedelta(hours=1), now=now
        )[0]
        for u in sampled
    }
    service_questions = [
        Question(u, q.permission, q.target)
        for u, q in zip(rng.choices(sampled, k=args.service_questions), questions, strict=False)
    ]
    identity = platform.identity
    service = timed(
        "service: authenticate(session) + check",
        service_questions,
        lambda q: identity.allowed(identity.authenticate(tokens[q.user]), q.permission, q.target),
    )
    print(
        f"  ratios to the naive scan: pure check {pure / baseline:,.0f}x, indexed resolve + check "
        f"{indexed / baseline:,.0f}x, service with its store {service / baseline:,.1f}x",
        flush=True,
    )


# ----- API latency --------------------------------------------------------------------------------

_SERVE = """
import sys
from pathlib import Path
import uvicorn
from pilothouse import logs
from pilothouse.api.app import create_app
from pilothouse.platform import Platform
from pilothouse.settings import load_settings
home = Path(sys.argv[1])
logs.configure("WARNING")
platform = Platform.open(load_settings(data_dir=home / "data", config_dir=home / "config"))
uvicorn.run(create_app(platform, reconcile=False), host="127.0.0.1", port=int(sys.argv[2]),
            log_level="warning", access_log=False)
"""

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


@dataclass(frozen=True)
class WrkResult:
    p50_ms: float
    p99_ms: float
    requests: int
    per_second: float
    bad: int


def wrk(url: str, *, connections: int, seconds: int, headers: Sequence[str] = ()) -> WrkResult:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    for header in headers:
        command += ["-H", header]
    out = subprocess.run(
        [*command, url], capture_output=True, text=True, check=True, timeout=seconds + 60
    ).stdout
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.MULTILINE))
    total = re.search(r"(\d+) requests in", out)
    per_second = re.search(r"Requests/sec:\s+([\d.]+)", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors_line = re.search(r"Socket errors: (.*)", out)
    if errors_line:
        print(f"    wrk socket errors: {errors_line.group(1)}")
    if not total or not per_second or len(percentiles) != 2:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    return WrkResult(
        p50_ms=_ms(percentiles["50"]),
        p99_ms=_ms(percentiles["99"]),
        requests=int(total.group(1)),
        per_second=float(per_second.group(1)),
        bad=int(bad.group(1)) if bad else 0,
    )


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def api_latency(home: Path, token: str, args: argparse.Namespace) -> None:
    print(f"\n== API latency: {args.connections} concurrent connections (wrk -t2), {args.seconds} s each ==")
    if shutil.which("wrk") is None:
        print("  wrk is not installed (scripts/setup.sh --dev installs Debian's package): skipped")
        return
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVE, str(home), str(port)], stdin=subprocess.DEVNULL, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the API server did not start")
            time.sleep(0.2)
        auth = f"Authorization: Bearer {token}"
        check = httpx.get(base + "/api/v1/clusters", headers={"Authorization": f"Bearer {token}"})
        assert check.status_code == 200, check.text
        results = {}
        for label, path, headers in (
            ("GET /healthz (no auth, no store)", "/healthz", ()),
            ("GET /api/v1/clusters (session)", "/api/v1/clusters", (auth,)),
        ):
            wrk(base + path, connections=args.connections, seconds=args.warmup, headers=headers)
            result = wrk(base + path, connections=args.connections, seconds=args.seconds, headers=headers)
            results[path] = result
            print(
                f"  {label:<34} p50 {result.p50_ms:7.1f} ms  p99 {result.p99_ms:7.1f} ms  "
                f"{result.per_second:8,.0f} req/s  ({result.requests:,} requests, {result.bad} non-2xx)",
                flush=True,
            )
        base_r, listed = results["/healthz"], results["/api/v1/clusters"]
        print(
            f"  authenticated list vs /healthz: p99 {listed.p99_ms / base_r.p99_ms:.1f}x, "
            f"throughput {listed.per_second / base_r.per_second:.2f}x"
        )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--bindings", type=int, default=100_000)
    parser.add_argument("--questions", type=int, default=200_000, help="questions for the in-memory checks")
    parser.add_argument("--indexed-questions", type=int, default=50_000)
    parser.add_argument("--baseline-questions", type=int, default=300, help="questions for the naive scan")
    parser.add_argument("--sessions", type=int, default=500, help="users signed in for the service check")
    parser.add_argument("--service-questions", type=int, default=5_000)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--seed", type=int, default=20261125)
    args = parser.parse_args(argv)

    print(f"machine: {_machine()}; {datetime.now(UTC).isoformat(timespec='seconds')}")
    print(
        f"fleet: {args.clusters:,} clusters, {args.users:,} users, {args.bindings:,} bindings (seed {args.seed})"
    )
    rng = random.Random(args.seed)
    home = Path(tempfile.mkdtemp(prefix="pilothouse-authz-"))
    try:
        started = time.perf_counter()
        fleet = make_fleet(rng, clusters=args.clusters, users=args.users, bindings=args.bindings)
        print(f"generated in {time.perf_counter() - started:.1f} s", flush=True)
        platform = Platform.open(load_settings(data_dir=home / "data", config_dir=home / "config"))
        try:
            print(f"store seeded (SQLite) in {seed_store(platform, fleet):.1f} s", flush=True)
            decisions(platform, fleet, rng, args)
            now = datetime.now(UTC)
            token, _ = platform.identity.store.open_session(
                BENCH_USER, method="password", client="bench", expires_at=now + timedelta(hours=1), now=now
            )
            grants = len(platform.identity.authenticate(token).grants)
            print(f"\nload user {BENCH_USER}: {grants} grants (platform viewer + own and team bindings)")
        finally:
            platform.close()
        api_latency(home, token, args)
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
