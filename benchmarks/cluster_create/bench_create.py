"""Benchmark: create a local cluster with N simulated nodes, Pilothouse against ``kwokctl``.

Both tools run as commands (the ``pilothouse`` CLI and ``kwokctl``) with the same
Kubernetes binaries from the Pilothouse binary cache, alternating run by run.
One poller, the same for both, measures the end point: the time from the first
command's start until the cluster's API lists ``--nodes`` Ready nodes. A sampler
thread sums the RSS of every cluster process (found by the cluster directory in
its command line) every 0.2 s from the start until 5 s after Ready, and tracks
the RSS of the creating command itself.

kwokctl side: ``kwokctl create cluster --runtime binary --wait`` followed by
``kwokctl scale node --replicas N`` (kwokctl does not create nodes on its own).
kwokctl v0.8.0 runs one etcd and one kube-apiserver only, so its single-control-
plane create is the baseline for the 3-control-plane configuration too.

Figures are printed, not asserted; ``README.md`` next to this file records them.

    .venv/bin/python benchmarks/cluster_create/bench_create.py [--nodes 100] [--runs 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from pilothouse import settings as settings_mod
from pilothouse.kube import client as kube_client
from pilothouse.kube import credentials
from pilothouse.kube import nodes as kube_nodes
from pilothouse.providers.local import config_files

PILOTHOUSE = Path(sys.executable).parent / "pilothouse"  # the CLI of the venv running this script
MIB = 1024 * 1024
SAMPLE_INTERVAL = 0.2
POLL_INTERVAL = 0.25
AFTER_READY = 5.0
#: Executable names of cluster processes (kwokctl links the kwok binary as ``kwok-controller``).
CLUSTER_COMMANDS = {
    "etcd": "etcd",
    "kube-apiserver": "kube-apiserver",
    "kube-controller-manager": "kube-controller-manager",
    "kube-scheduler": "kube-scheduler",
    "kwok": "kwok",
    "kwok-controller": "kwok",
    "haproxy": "haproxy",
}
CONFIGS = {"single": 1, "ha": 3}


# ----- process sampling ------------------------------------------------------------------------


def _system_busy() -> float:
    """CPU seconds the whole machine has spent not idle."""
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + t.irq + t.softirq + t.steal  # guest time is inside user


def _own_cpu() -> float:
    """CPU seconds of this process and of its reaped children (the commands)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def _component(cmdline: list[str]) -> str | None:
    return CLUSTER_COMMANDS.get(os.path.basename(cmdline[0])) if cmdline else None


class Sampler(threading.Thread):
    """Every 0.2 s: RSS of the cluster's processes and of the creating commands.

    A cluster process is one whose command line mentions ``marker`` (its cluster
    directory). Young processes are re-read, so a fork caught before its exec is
    classified again once it runs the real binary.
    """

    def __init__(self, marker: str, t0: float) -> None:
        super().__init__(daemon=True)
        self.marker = marker
        self.t0 = t0
        self.commands: set[int] = set()
        self.peak_cluster = 0
        self.peak_command = 0
        self.peak_by_component: dict[str, int] = {}
        self.first_seen: dict[str, float] = {}
        self.cluster_pids: dict[int, str] = {}
        self.foreign: set[int] = set()
        self._known: dict[int, tuple[float, bool]] = {}
        self._cluster_cpu: dict[int, float] = {}
        self._halt = threading.Event()
        self._system_busy = _system_busy()
        self._own_cpu = _own_cpu()
        self.other_cpu_s = 0.0
        self.cluster_cpu_s = 0.0
        self.window_s = 0.0

    @property
    def seen_cluster_processes(self) -> int:
        return sum(1 for _created, ours in self._known.values() if ours)

    def stop(self) -> None:
        """Stop sampling; work out how much CPU time the cluster and everything else took."""
        if self._halt.is_set():
            return
        self._halt.set()
        self.join()
        self.window_s = time.monotonic() - self.t0
        self.cluster_cpu_s = sum(self._cluster_cpu.values())
        busy = _system_busy() - self._system_busy
        own = _own_cpu() - self._own_cpu
        self.other_cpu_s = max(0.0, busy - own - self.cluster_cpu_s)

    def _classify(self, pid: int) -> None:
        try:
            proc = psutil.Process(pid)
            created = proc.create_time()
            cached = self._known.get(pid)
            if cached is not None and cached[0] == created and (cached[1] or time.time() - created > 2):
                return
            cmdline = proc.cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return
        component = _component(cmdline)
        ours = component is not None and any(self.marker in arg for arg in cmdline)
        self._known[pid] = (created, ours)
        if ours and component is not None:
            self.cluster_pids[pid] = component
            self.first_seen.setdefault(component, time.monotonic() - self.t0)
        elif component is not None:
            self.foreign.add(pid)

    def sample(self) -> None:
        for pid in psutil.pids():
            self._classify(pid)
        total = 0
        by_component: dict[str, int] = {}
        for pid, component in list(self.cluster_pids.items()):
            try:
                proc = psutil.Process(pid)
                rss = proc.memory_info().rss
                cpu = proc.cpu_times()
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                del self.cluster_pids[pid]
                continue
            self._cluster_cpu[pid] = cpu.user + cpu.system
            total += rss
            by_component[component] = by_component.get(component, 0) + rss
        self.peak_cluster = max(self.peak_cluster, total)
        for component, rss in by_component.items():
            self.peak_by_component[component] = max(self.peak_by_component.get(component, 0), rss)
        command_rss = 0
        for pid in list(self.commands):
            try:
                proc = psutil.Process(pid)
                tree = [proc, *proc.children(recursive=True)]
                command_rss = max(
                    command_rss,
                    sum(p.memory_info().rss for p in tree if p.pid not in self.cluster_pids),
                )
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                self.commands.discard(pid)
        self.peak_command = max(self.peak_command, command_rss)

    def run(self) -> None:
        while not self._halt.is_set():
            started = time.monotonic()
            with contextlib.suppress(psutil.Error):  # a process vanished mid-sample: next tick
                self.sample()
            self._halt.wait(max(0.0, SAMPLE_INTERVAL - (time.monotonic() - started)))

    def leftovers(self) -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = proc.info["cmdline"] or []
            if _component(cmdline) and any(self.marker in arg for arg in cmdline):
                found.append(proc)
        return found


# ----- readiness -------------------------------------------------------------------------------


async def wait_nodes_ready(
    kubeconfig: Path, expected: int, t0: float, timeout: float, marks: dict[str, float]
) -> float | None:
    """Seconds from ``t0`` until the API lists ``expected`` Ready nodes (None: timed out).

    Also marks when the API first answered and when all nodes were registered.
    """
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        try:
            creds = credentials.load_kubeconfig_file(kubeconfig)
        except Exception:  # not written yet (or half-written)
            await asyncio.sleep(POLL_INTERVAL)
            continue
        async with kube_client.open_client(creds, timeout=5.0) as client:
            while time.monotonic() < deadline:
                try:
                    ready, total = await kube_nodes.count_ready(client)
                except Exception:  # API not up yet, RBAC bootstrapping, load balancer warming up
                    ready = total = -1
                now = round(time.monotonic() - t0, 2)
                if total >= 0:
                    marks.setdefault("API answered", now)
                if total >= expected:
                    marks.setdefault("nodes registered", now)
                if ready >= expected:
                    marks["nodes Ready"] = now
                    return now
                await asyncio.sleep(POLL_INTERVAL)
    return None


# ----- one run ---------------------------------------------------------------------------------


@dataclass
class RunResult:
    config: str
    tool: str
    run: int
    control_planes: int
    nodes: int
    ready_s: float | None = None  # command start -> all nodes Ready (same poller for both tools)
    command_s: float | None = None  # command start -> the (last) command returned
    peak_cluster_mib: float = 0.0
    peak_command_mib: float = 0.0
    processes: int = 0
    peak_by_component_mib: dict[str, float] = field(default_factory=dict)
    marks: dict[str, float] = field(default_factory=dict)
    cluster_cpu_s: float = 0.0  # CPU seconds the cluster's processes used in the window
    other_cpu_s: float = 0.0  # CPU seconds used by anything else on the machine (noise)
    window_s: float = 0.0  # how long the sampler ran (start to Ready + 5 s)
    foreign_processes: int = 0
    load_before: float = 0.0
    error: str = ""


async def _run_command(
    argv: list[str], env: dict[str, str], sampler: Sampler, timeout: float
) -> tuple[int, str]:
    """Run one creating command, its RSS watched by ``sampler``; killed after ``timeout`` s."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    sampler.commands.add(proc.pid)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except (TimeoutError, asyncio.CancelledError):
        proc.kill()  # the command this run started; its cluster is deleted by the caller
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode(errors="replace")


async def _quiet_command(argv: list[str], env: dict[str, str], timeout: float = 120) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode(errors="replace")


class Tool:
    """How one tool creates and deletes a cluster; ``measure`` is shared."""

    name = ""

    def __init__(self, binaries: Path, nodes: int, timeout: float) -> None:
        self.binaries = binaries
        self.nodes = nodes
        self.timeout = timeout

    def env(self, home: Path) -> dict[str, str]:
        raise NotImplementedError

    def root(self, home: Path, cluster: str) -> Path:
        """The cluster's directory: every cluster process names it on its command line."""
        raise NotImplementedError

    def kubeconfig(self, root: Path) -> Path:
        raise NotImplementedError

    def create_steps(self, home: Path, cluster: str, control_planes: int) -> list[tuple[str, list[str]]]:
        """(mark, argv) of the commands that create the cluster and its nodes, in order."""
        raise NotImplementedError

    def delete_argv(self, home: Path, cluster: str) -> list[str]:
        raise NotImplementedError

    async def measure(self, result: RunResult, home: Path) -> None:
        cluster = f"bench-{result.config}-{result.run}"
        env = self.env(home)
        root = self.root(home, cluster)
        steps = self.create_steps(home, cluster, result.control_planes)
        t0 = time.monotonic()
        sampler = Sampler(f"{root}/", t0)
        sampler.start()
        poller = asyncio.create_task(
            wait_nodes_ready(self.kubeconfig(root), self.nodes, t0, self.timeout, result.marks)
        )
        try:
            for mark, argv in steps:
                left = t0 + self.timeout - time.monotonic()
                rc, out = await _run_command(argv, env, sampler, left)
                result.marks[mark] = round(time.monotonic() - t0, 2)
                if rc != 0:
                    result.error = f"{mark}: exit status {rc}: {_last_line(out)}"
                    return
            result.command_s = time.monotonic() - t0
            result.ready_s = await poller
            if result.ready_s is None:
                result.error = f"not all {self.nodes} nodes were Ready within {self.timeout:.0f}s"
                return
            await asyncio.sleep(max(0.0, t0 + result.ready_s + AFTER_READY - time.monotonic()))
        finally:
            poller.cancel()
            try:
                sampler.stop()
                _record(sampler, result)
            finally:
                try:
                    rc, out = await _quiet_command(self.delete_argv(home, cluster), env)
                    if rc != 0:
                        result.error += f" [delete failed: {_last_line(out)}]"
                finally:
                    await asyncio.to_thread(_clean_up, sampler, result)


class PilothouseTool(Tool):
    """``pilothouse cluster create`` (waits for the nodes itself) with a private data directory."""

    name = "pilothouse"

    def env(self, home: Path) -> dict[str, str]:
        return {
            **os.environ,
            "PILOTHOUSE_DATA_DIR": str(home / "data"),
            "PILOTHOUSE_CONFIG_DIR": str(home / "config"),
            "PILOTHOUSE_CONFIG": str(home / "config" / "config.yaml"),
            "PILOTHOUSE_CACHE_DIR": str(self.binaries.parent.parent),
        }

    def root(self, home: Path, cluster: str) -> Path:
        return home / "data" / "clusters" / cluster

    def kubeconfig(self, root: Path) -> Path:
        return root / "config" / "admin.kubeconfig"

    def create_steps(self, home: Path, cluster: str, control_planes: int) -> list[tuple[str, list[str]]]:
        argv = [str(PILOTHOUSE), "cluster", "create", cluster, f"--nodes={self.nodes}"]
        return [("create returned", [*argv, f"--control-planes={control_planes}"])]

    def delete_argv(self, home: Path, cluster: str) -> list[str]:
        return [str(PILOTHOUSE), "cluster", "delete", cluster, "--yes"]


class KwokctlTool(Tool):
    """``kwokctl create cluster --runtime binary --wait`` then ``kwokctl scale node``, same binaries."""

    name = "kwokctl"

    def env(self, home: Path) -> dict[str, str]:
        # HOME too: client-go would put its discovery cache in ~/.kube/cache
        return {**os.environ, "KWOK_WORKDIR": str(home / "work"), "HOME": str(home)}

    def root(self, home: Path, cluster: str) -> Path:
        return home / "work" / "clusters" / cluster

    def kubeconfig(self, root: Path) -> Path:
        return root / "kubeconfig.yaml"

    def _global(self, home: Path, cluster: str) -> list[str]:
        return [str(self.binaries / "kwokctl"), f"--name={cluster}"]  # config: $KWOK_WORKDIR/kwok.yaml

    def create_steps(self, home: Path, cluster: str, control_planes: int) -> list[tuple[str, list[str]]]:
        audit = home / "audit-policy.yaml"  # the policy Pilothouse gives its API servers
        audit.write_text(config_files.render_audit_policy())
        b = self.binaries
        create = [
            *self._global(home, cluster),
            "create",
            "cluster",
            "--runtime=binary",
            f"--kubeconfig={home / 'kubeconfig'}",
            f"--etcd-binary={b / 'etcd'}",
            f"--kube-apiserver-binary={b / 'kube-apiserver'}",
            f"--kube-controller-manager-binary={b / 'kube-controller-manager'}",
            f"--kube-scheduler-binary={b / 'kube-scheduler'}",
            f"--kwok-controller-binary={b / 'kwok'}",
            "--kube-authorization=true",
            f"--kube-audit-policy={audit}",
            "--wait=2m",
        ]
        scale = [*self._global(home, cluster), "scale", "node", f"--replicas={self.nodes}"]
        return [("create returned", create), ("scale returned", scale)]

    def delete_argv(self, home: Path, cluster: str) -> list[str]:
        return [*self._global(home, cluster), "delete", "cluster", f"--kubeconfig={home / 'kubeconfig'}"]


def _last_line(output: str) -> str:
    lines = output.strip().splitlines()
    return lines[-1][-300:] if lines else "(no output)"


def _record(sampler: Sampler, result: RunResult) -> None:
    result.peak_cluster_mib = round(sampler.peak_cluster / MIB, 1)
    result.peak_command_mib = round(sampler.peak_command / MIB, 1)
    result.peak_by_component_mib = {
        k: round(v / MIB, 1) for k, v in sorted(sampler.peak_by_component.items())
    }
    result.processes = sampler.seen_cluster_processes
    result.marks.update({f"{k} started": round(v, 2) for k, v in sampler.first_seen.items()})
    result.cluster_cpu_s = round(sampler.cluster_cpu_s, 1)
    result.other_cpu_s = round(sampler.other_cpu_s, 1)
    result.window_s = round(sampler.window_s, 1)
    result.foreign_processes = len(sampler.foreign)


def _clean_up(sampler: Sampler, result: RunResult) -> None:
    """Make sure the tool's delete left no process of this run's cluster behind."""
    deadline = time.monotonic() + 15
    left = sampler.leftovers()
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = sampler.leftovers()
    for proc in left:  # started by this run's command; the tool's delete missed it
        with contextlib.suppress(psutil.NoSuchProcess):
            result.error += f" [killed leftover {proc.pid} {proc.name()}]"
            proc.send_signal(signal.SIGKILL)


# ----- orchestration ---------------------------------------------------------------------------


def wait_for_quiet(max_wait: float, threshold: float = 20.0) -> float:
    """Wait until the CPUs are mostly idle (``threshold`` % busy over 2 s, twice in a row), at most
    ``max_wait`` seconds; return the 1-minute load average. Other processes are not touched."""
    deadline = time.monotonic() + max_wait
    announced = False
    calm = 0
    while True:
        busy = psutil.cpu_percent(interval=2.0)
        calm = calm + 1 if busy < threshold else 0
        if calm >= 2:
            return os.getloadavg()[0]
        if time.monotonic() > deadline:
            print(f"  (machine still busy: {busy:.0f}% CPU; measuring anyway)", flush=True)
            return os.getloadavg()[0]
        if not announced and busy >= threshold:
            print(f"  waiting for a quiet machine ({busy:.0f}% CPU busy)", flush=True)
            announced = True


async def run_one(tool: Tool, config: str, run: int, quiet_wait: float, cooldown: float) -> RunResult:
    result = RunResult(
        config=config, tool=tool.name, run=run, control_planes=CONFIGS[config], nodes=tool.nodes
    )
    result.load_before = round(await asyncio.to_thread(wait_for_quiet, quiet_wait), 2)
    home = Path(tempfile.mkdtemp(prefix=f"bench-{tool.name}-"))
    try:
        await tool.measure(result, home)
    except Exception as exc:
        result.error = f"{type(exc).__name__} {exc}".strip()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    await asyncio.sleep(cooldown)
    return result


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def noise(r: RunResult) -> float:
    """Share (%) of the machine's CPU capacity that other processes used during the run."""
    capacity = r.window_s * (os.cpu_count() or 1)
    return 100 * r.other_cpu_s / capacity if capacity else 0.0


def report(results: list[RunResult], noise_limit: float) -> str:
    lines = [
        "| config | tool | run | s to all nodes Ready | s to command(s) returned | peak cluster RSS MiB "
        "| peak command RSS MiB | processes | cluster CPU s | other load % | notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        notes = r.error or ("noisy: left out of the medians" if noise(r) > noise_limit else "")
        lines.append(
            f"| {r.config} ({r.control_planes} CP) | {r.tool} | {r.run} | {_fmt(r.ready_s)} | {_fmt(r.command_s)} "
            f"| {_fmt(r.peak_cluster_mib, 0)} | {_fmt(r.peak_command_mib, 0)} | {r.processes} "
            f"| {_fmt(r.cluster_cpu_s)} | {noise(r):.0f} | {notes} |"
        )
    lines += [
        "",
        "| config | runs used (P/K) | pilothouse s | kwokctl s | time ratio | pilothouse MiB | kwokctl MiB "
        "| memory ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    goals: list[str] = []
    for config in dict.fromkeys(r.config for r in results):

        def used(tool: str, config: str = config) -> list[RunResult]:
            done = [r for r in results if r.config == config and r.tool == tool and r.ready_s is not None]
            quiet = [r for r in done if noise(r) <= noise_limit]
            return quiet or done  # all noisy: use them all rather than nothing

        ph, kw = used("pilothouse"), used("kwokctl")
        ph_s, kw_s = _median([r.ready_s for r in ph]), _median([r.ready_s for r in kw])
        ph_m, kw_m = _median([r.peak_cluster_mib for r in ph]), _median([r.peak_cluster_mib for r in kw])
        t_ratio = ph_s / kw_s if ph_s and kw_s else None
        m_ratio = ph_m / kw_m if ph_m and kw_m else None
        lines.append(
            f"| {config} | {len(ph)}/{len(kw)} | {_fmt(ph_s)} | {_fmt(kw_s)} | {_fmt(t_ratio, 2)} "
            f"| {_fmt(ph_m, 0)} | {_fmt(kw_m, 0)} | {_fmt(m_ratio, 2)} |"
        )
        if config == "single" and t_ratio is not None:
            verdict = "met" if t_ratio <= 1.5 else "MISSED"
            goals.append(f"goal single <= 1.5x kwokctl: {t_ratio:.2f}x, {verdict}")
        if config == "ha" and ph_s is not None:
            verdict = "met" if ph_s < 60 else "MISSED"
            goals.append(f"goal HA Ready in < 60 s: {ph_s:.1f} s, {verdict}")
    lines += ["", "(medians; times from the first command's start; ratio = pilothouse / kwokctl)", *goals, ""]
    for r in results:
        marks = ", ".join(f"{k} {v:.1f}" for k, v in sorted(r.marks.items(), key=lambda kv: kv[1]))
        by = ", ".join(f"{k} {v:.0f}" for k, v in r.peak_by_component_mib.items())
        lines.append(f"- {r.config} {r.tool} run {r.run}: marks (s) [{marks}]; peak MiB by component [{by}]")
    return "\n".join(lines)


def machine() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "memory": f"{psutil.virtual_memory().total / MIB / 1024:.1f} GiB",
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


async def main_async(args: argparse.Namespace) -> list[RunResult]:
    version = settings_mod.DEFAULT_KUBERNETES_VERSION
    binaries = args.binaries or settings_mod.load_settings().binaries_dir / f"v{version}"
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "kwokctl"):
        if not os.access(binaries / name, os.X_OK):
            sys.exit(
                f"missing {binaries / name}: run `pilothouse binaries install --version {version}` first"
            )
    _rc, kwok_version = await _quiet_command([str(binaries / "kwokctl"), "--version"], dict(os.environ))
    info = machine()
    print(f"machine: {info}")
    print(f"binaries: {binaries} (Kubernetes v{version}); {kwok_version.strip()}")
    print(f"nodes={args.nodes} runs={args.runs} configs={','.join(args.configs)}\n", flush=True)
    tools: list[Tool] = [
        PilothouseTool(binaries, args.nodes, args.timeout),
        KwokctlTool(binaries, args.nodes, args.timeout),
    ]
    results: list[RunResult] = []
    for config in args.configs:
        for run in range(1, args.runs + 1):
            for tool in tools:
                print(f"{config} run {run}: {tool.name} …", flush=True)
                result = await run_one(tool, config, run, args.quiet_wait, args.cooldown)
                results.append(result)
                print(
                    f"  ready {_fmt(result.ready_s)} s, command {_fmt(result.command_s)} s, "
                    f"peak cluster RSS {result.peak_cluster_mib:.0f} MiB, command RSS "
                    f"{result.peak_command_mib:.0f} MiB {result.error}",
                    flush=True,
                )
    print()
    print(report(results, args.noise_limit))
    if args.json:
        payload = {"machine": info, "kwokctl": kwok_version.strip(), "results": [asdict(r) for r in results]}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--configs", type=lambda s: s.split(","), default=list(CONFIGS), help="single,ha")
    parser.add_argument("--binaries", type=Path, default=None, help="default: the cache's v1.36.3 directory")
    parser.add_argument("--timeout", type=float, default=300.0, help="per run, seconds")
    parser.add_argument(
        "--quiet-wait", type=float, default=600.0, help="max seconds to wait for a quiet machine"
    )
    parser.add_argument(
        "--noise-limit",
        type=float,
        default=25.0,
        help="runs where other processes used more than this %% of the CPUs are left out of the medians",
    )
    parser.add_argument("--cooldown", type=float, default=5.0, help="seconds between runs")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    unknown = set(args.configs) - set(CONFIGS)
    if unknown:
        parser.error(f"unknown configs {sorted(unknown)}; choose from {sorted(CONFIGS)}")
    results = asyncio.run(main_async(args))
    sys.exit(1 if any(r.error and r.ready_s is None for r in results) else 0)


if __name__ == "__main__":
    main()
