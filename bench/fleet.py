"""A fleet of 20 apps against one app: `inv ci.release` and `inv app.promote`, as ratios, plus AWS calls per app.

One moto server behind the counting proxy tests/support/aws_proxy.py (50 ms added to every AWS call,
calls counted by service:Action), a private dockerd + OCI registry (scripts/sandbox-services.sh, state
in the studio's git-ignored .sandbox) and a temporary git copy of the studio extended to 20 apps:
projects/app-01 .. app-20, each museum-adventure's Dockerfile and deploy.yml with its own
site/index.html, mapped to clusters [stage, prod] (museum-adventure itself is unmapped, so "every
app" is exactly the 20). Set-up, not timed: `inv cluster.up stage`, `inv cluster.up prod --yes`, a
first `inv ci.release` (creates the 20 stage stacks) and `inv app.promote --tag prod --yes` (the 20
prod stacks). Then each round, every command with --parallel 4 and INVOKE_MVP_POLL_INTERVAL=1:

  (1r) a commit touching projects/app-01 only, then  inv ci.release --only app-01        T1r, C1r
  (1p) inv app.promote app-01 --tag prod --yes   (one app differs between stage and prod)  T1p
  (20r) a commit touching all 20 apps, then  inv ci.release                              T20r, C20r
  (20p) inv app.promote --tag prod --yes   (all 20 differ)                                T20p

so each 1-app command meets its app in the state each of the 20 meets in the 20-app one (released
from a one-commit-old image, prod one promotion behind). Goals: T20r/T1r <= 4, T20p/T1p <= 2.5
(medians over the rounds). Build time is reported beside the release ratio (from the time each
output line arrived): the builds' share of the wall time, and the ratio with the build wall time
taken out. Finally a no-op `inv ci.release` (nothing changed) must make 0 mutating AWS calls
(proxy.mutating_calls()) and 0 builds (no build line in its output, no new image in the dockerd).

Prints a results block and AWS calls per app (the 20-app release's C20r/20 next to C1r, by
service:Action), and writes a JSON record to bench/results/fleet-<time>.json (git-ignored).
Exit 0: every goal met; 1: a goal was missed or the no-op release changed something (the figures
say which); 2: could not measure (a component is missing or a command failed). Only loopback is
contacted (the moto endpoint, dummy credentials, no ~/.aws file). Needs root (a private dockerd).
Run: `make bench` or `.venv/bin/python bench/fleet.py [--apps 20] [--rounds 3] [--parallel 4] [--keep]`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from lifecycle import (PROJECT, ROOT, BIN, BenchError, Stack, aws_env, base_env, check_prerequisites, expect,
                       git_env, make_studio, run)

sys.path.insert(0, str(ROOT))
from tests.support.aws_proxy import AwsProxy, is_mutating  # noqa: E402

LATENCY = 0.05
GOAL_RELEASE = 4.0
GOAL_PROMOTE = 2.5
RESULTS = ROOT / "bench" / "results"
TIMEOUT = 1800
# A progress line of the executor: "    [app-01@stage] text" with several targets, "    text" with one.
EVENT = re.compile(r"^ {4}(?:\[(?P<target>[^\]\s]+)\] )?(?P<text>.*)$")
RESULT = re.compile(r"^(?P<outcome>ok|changed|skipped|failed): (?P<target>\S+)")
APPLY_START = re.compile(r"^(building |pushing |new deployment |\S+:\S+ -> sha256:)")
BUILD_LINE = re.compile(r"\bbuild(ing)?\b|docker build", re.I)


def app_names(count: int) -> list[str]:
    return [f"app-{n:02d}" for n in range(1, count + 1)]


# --- the studio -----------------------------------------------------------------------------------

def extend_studio(studio: Path, apps: list[str], genv: dict) -> None:
    """projects/app-NN/ (museum-adventure's Dockerfile and template, its own page), each mapped to
    [stage, prod] in invoke.yaml in place of museum-adventure; committed."""
    import yaml

    source = studio / "projects" / PROJECT
    for name in apps:
        folder = studio / "projects" / name
        (folder / "site").mkdir(parents=True)
        shutil.copy2(source / "Dockerfile", folder / "Dockerfile")
        shutil.copy2(source / "deploy.yml", folder / "deploy.yml")
        (folder / "site" / "index.html").write_text(f"<h1>{name}</h1>\n")
    config_path = studio / "invoke.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["mvp"]["projects"] = {name: {"clusters": ["stage", "prod"]} for name in apps}
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    commit(studio, genv, f"a fleet of {len(apps)} apps")


def commit(studio: Path, genv: dict, message: str) -> str:
    env = dict(base_env(), **genv)
    for args in (["add", "-A"], ["commit", "-q", "-m", message]):
        run(["git", *args], cwd=studio, env=env, timeout=120, what=f"git {args[0]}")
    return run(["git", "rev-parse", "HEAD"], cwd=studio, env=env, timeout=60, what="git rev-parse")[1].strip()


def touch(studio: Path, apps: list[str], genv: dict, message: str) -> str:
    for name in apps:
        page = studio / "projects" / name / "site" / "index.html"
        page.write_text(page.read_text() + f"<!-- {message} -->\n")
    return commit(studio, genv, message)


# --- running and reading one command ----------------------------------------------------------------

class CpuMeter:
    """CPU seconds while a command runs: the inv process tree (itself, git, docker CLI), the daemons
    it talks to (moto, dockerd, registry: by pid), and how busy the whole machine was (other load too)."""

    TICK = os.sysconf("SC_CLK_TCK")

    def __init__(self) -> None:
        self.pids: dict[str, int] = {}

    @staticmethod
    def _pid_seconds(pid: int) -> float:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
                fields = fh.read().rsplit(") ", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / CpuMeter.TICK  # utime + stime
        except (OSError, IndexError, ValueError):
            return 0.0

    @staticmethod
    def _machine() -> tuple[float, float]:
        with open("/proc/stat", encoding="ascii") as fh:
            values = [int(v) for v in fh.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        return sum(values) / CpuMeter.TICK, idle / CpuMeter.TICK

    def snapshot(self) -> dict:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        total, idle = self._machine()
        return {"inv": usage.ru_utime + usage.ru_stime, "total": total, "idle": idle,
                **{name: self._pid_seconds(pid) for name, pid in self.pids.items()}}

    def delta(self, before: dict, wall: float) -> dict:
        after = self.snapshot()
        out = {k: round(after[k] - before[k], 2) for k in after if k not in ("total", "idle")}
        total, idle = after["total"] - before["total"], after["idle"] - before["idle"]
        out["machine_busy"] = round(1 - idle / total, 3) if total > 0 else 0.0
        out["cores"] = os.cpu_count()
        return out


METER = CpuMeter()


class Timed:
    """One command's wall time, output lines with the second each arrived, AWS calls and CPU."""

    def __init__(self, what: str, elapsed: float, lines: list[tuple[float, str]], calls: list, cpu: dict,
                 code: int = 0, started: float = 0.0):
        self.what = what
        self.code = code  # the exit status
        self.started = started  # epoch seconds at the start: line i arrived at started + lines[i][0]
        self.elapsed = elapsed
        self.lines = lines
        self.calls = calls
        self.cpu = cpu
        self.counts = Counter(call.key for call in calls)

    @property
    def output(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def events(self, single: str = "") -> list[tuple[float, str, str]]:
        """(second, target, text) of the progress lines; `single` names the target of a one-target run."""
        out = []
        for t, line in self.lines:
            match = EVENT.match(line)
            if match:
                out.append((t, match.group("target") or single, match.group("text")))
        return out

    def apply_started(self) -> float | None:
        return next((t for t, _, text in self.events() if APPLY_START.match(text)), None)

    def last_result(self) -> float | None:
        return max((t for t, line in self.lines if RESULT.match(line)), default=None)

    def builds(self, single: str = "") -> dict[str, tuple[float, float]]:
        """target -> (start, end) of its build: from its "building" line to its "pushing" line."""
        starts, ends = {}, {}
        for t, target, text in self.events(single):
            if text.startswith("building "):
                starts.setdefault(target, t)
            elif text.startswith("pushing ") and target in starts:
                ends.setdefault(target, t)
        return {k: (starts[k], ends[k]) for k in starts if k in ends}

    def pushes(self, single: str = "") -> dict[str, tuple[float, float]]:
        starts, ends = {}, {}
        for t, target, text in self.events(single):
            if text.startswith("pushing "):
                starts.setdefault(target, t)
            elif text.startswith("pushed ") and target in starts:
                ends.setdefault(target, t)
        return {k: (starts[k], ends[k]) for k in starts if k in ends}


def union(intervals) -> float:
    """Seconds covered by at least one of the intervals."""
    total, end = 0.0, None
    for a, b in sorted(intervals):
        if end is None or a > end:
            total += b - a
            end = b
        elif b > end:
            total += b - end
            end = b
    return total


def run_inv(args: list[str], *, cwd: Path, env: dict, proxy: AwsProxy, what: str,
            timeout: float = TIMEOUT, check: bool = True) -> Timed:
    """Run `inv ARGS` with its output read as it comes (one timestamp per line); AWS calls are
    counted from a reset proxy. A failure is a BenchError with the output's tail, unless `check`
    is false (a run that is meant to fail: its exit status is `Timed.code`)."""
    proxy.reset_counts()
    lines: list[tuple[float, str]] = []
    cpu = METER.snapshot()
    started = time.time()
    start = time.perf_counter()
    proc = subprocess.Popen([str(BIN / "inv"), *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.perf_counter() - start, line.rstrip("\n")))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise BenchError(f"{what}: no result after {timeout:.0f} s") from None
    elapsed = time.perf_counter() - start
    reader.join(10)
    calls = proxy.calls
    timed = Timed(what, elapsed, lines, calls, METER.delta(cpu, elapsed), code, started)
    if not check:
        return timed
    if code != 0:
        tail = "\n".join("    | " + line for _, line in lines[-15:])
        raise BenchError(f"{what} failed (exit {code}):\n{tail}")
    expect(timed.output, "failed=0", what)
    return timed


def docker_images(services_dir: Path) -> list[str]:
    client = (services_dir / "docker" / "client").read_text().strip()
    host = (services_dir / "docker" / "host").read_text().strip()
    out = subprocess.run([client, "--host", host, "image", "ls", "--all", "--no-trunc",
                          "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"], env=base_env(),
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False)
    if out.returncode != 0:
        raise BenchError(f"docker image ls failed: {out.stderr.strip()}")
    return sorted(out.stdout.splitlines())


# --- the measurement ------------------------------------------------------------------------------

class FleetStack(Stack):
    """lifecycle.py's processes and folders, plus the proxy."""

    def __init__(self, keep: bool, prefix: str = "mvp-bench-fleet-"):
        super().__init__(keep)
        os.rmdir(self.tmp)
        self.tmp = Path(tempfile.mkdtemp(prefix=prefix))
        self.proxy: AwsProxy | None = None

    def start_proxy(self, upstream: str) -> AwsProxy:
        self.proxy = AwsProxy(upstream, latency=LATENCY).start()
        return self.proxy

    def close(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        super().close()


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float]) -> str:
    return f"{median(values):7.1f} s" + (f"  (min {min(values):.1f}, max {max(values):.1f})" if len(values) > 1 else "")


def build_figures(timed: Timed, single: str = "") -> dict:
    builds = timed.builds(single)
    pushes = timed.pushes(single)
    durations = [b - a for a, b in builds.values()]
    return {
        "builds": len(builds),
        "build_wall_s": round(union(builds.values()), 2),
        "build_sum_s": round(sum(durations), 2),
        "build_median_s": round(median(durations), 2) if durations else 0.0,
        "push_wall_s": round(union(pushes.values()), 2),
        "plan_s": round(timed.apply_started(), 2) if timed.apply_started() is not None else None,
        "last_result_s": round(timed.last_result(), 2) if timed.last_result() is not None else None,
    }


def call_table(c1: Counter, c20: Counter, n: int, top: int = 14) -> list[tuple[str, int, float]]:
    keys = sorted(set(c1) | set(c20), key=lambda k: (-(c20[k] / n + c1[k]), k))
    return [(k, c1[k], c20[k] / n) for k in keys[:top]]


def measure(args: argparse.Namespace, stack: FleetStack) -> int:
    t0 = time.perf_counter()
    check_prerequisites()
    apps = app_names(args.apps)
    genv = git_env(stack.tmp / "home")
    studio = stack.tmp / "studio"
    make_studio(studio, genv)
    extend_studio(studio, apps, genv)
    endpoint = stack.start_moto()
    services_dir, registry = stack.start_services(studio / ".sandbox")
    proxy = stack.start_proxy(endpoint)
    METER.pids["moto"] = stack.moto.pid
    for name, pidfile in (("dockerd", "docker/dockerd.pid"), ("registry", "registry/registry.pid")):
        pid = (services_dir / pidfile).read_text().strip() if (services_dir / pidfile).is_file() else ""
        if pid.isdigit():
            METER.pids[name] = int(pid)
    env = dict(base_env(), **genv, **aws_env(proxy.url), INVOKE_MVP_POLL_INTERVAL="1", PYTHONUNBUFFERED="1")
    par = ["--parallel", str(args.parallel)]
    print(f"moto {endpoint} behind proxy {proxy.url} (+{LATENCY * 1000:.0f} ms a call), registry {registry}, "
          f"{len(apps)} apps, --parallel {args.parallel}, {os.cpu_count()} cores", flush=True)

    def inv(*argv: str, what: str) -> Timed:
        return run_inv(list(argv), cwd=studio, env=env, proxy=proxy, what=what)

    # Set-up, not timed: no added latency, the clusters, then every app in stage and in prod.
    proxy.latency = 0.0
    inv("cluster.up", "stage", what="inv cluster.up stage")
    inv("cluster.up", "prod", "--yes", what="inv cluster.up prod --yes")
    first = inv("ci.release", *par, what="inv ci.release (first: creates the stage stacks)")
    expect(first.output, f"changed={len(apps)}", "inv ci.release (first)")
    promoted = inv("app.promote", "--tag", "prod", "--yes", *par, what="inv app.promote (first: the prod stacks)")
    expect(promoted.output, f"changed={len(apps)}", "inv app.promote (first)")
    proxy.latency = LATENCY
    setup = time.perf_counter() - t0
    print(f"set-up (copy, moto, dockerd + registry, 2 x cluster.up, first release and promote of {len(apps)}): "
          f"{setup:.1f} s", flush=True)

    samples: dict[str, list[Timed]] = {"1r": [], "1p": [], "20r": [], "20p": []}
    one = apps[0]
    for i in range(args.rounds):
        touch(studio, [one], genv, f"round {i + 1}: {one} only")
        samples["1r"].append(inv("ci.release", "--only", one, *par, what=f"inv ci.release --only {one}"))
        expect(samples["1r"][-1].output, "changed=1", f"inv ci.release --only {one}")
        samples["1p"].append(inv("app.promote", one, "--tag", "prod", "--yes", *par,
                                 what=f"inv app.promote {one} --tag prod --yes"))
        expect(samples["1p"][-1].output, "changed=1", f"inv app.promote {one}")
        touch(studio, apps, genv, f"round {i + 1}: every app")
        samples["20r"].append(inv("ci.release", *par, what="inv ci.release (every app changed)"))
        expect(samples["20r"][-1].output, f"changed={len(apps)}", "inv ci.release (every app)")
        samples["20p"].append(inv("app.promote", "--tag", "prod", "--yes", *par,
                                  what="inv app.promote --tag prod --yes (every app)"))
        expect(samples["20p"][-1].output, f"changed={len(apps)}", "inv app.promote (every app)")
        last = "  ".join(f"({k}) {v[-1].elapsed:.1f} s / {len(v[-1].calls)} calls" for k, v in samples.items())
        ratios = (f"{samples['20r'][-1].elapsed / samples['1r'][-1].elapsed:.2f}, "
                  f"{samples['20p'][-1].elapsed / samples['1p'][-1].elapsed:.2f}")
        print(f"  round {i + 1}/{args.rounds}: {last}  ratios {ratios}", flush=True)

    # The no-op release: nothing changed since the round's release.
    images_before = docker_images(services_dir)
    noop = inv("ci.release", *par, what="inv ci.release (nothing changed)")
    expect(noop.output, f"ok={len(apps)} changed=0", "inv ci.release (nothing changed)")
    images_after = docker_images(services_dir)
    mutating = [c for c in noop.calls if is_mutating(c)]
    build_lines = [line for _, line in noop.lines if BUILD_LINE.search(line)]
    new_images = sorted(set(images_after) - set(images_before))

    t = {k: [s.elapsed for s in v] for k, v in samples.items()}
    T1r, T20r, T1p, T20p = (median(t[k]) for k in ("1r", "20r", "1p", "20p"))
    r_release, r_promote = T20r / T1r, T20p / T1p
    C1r = median([len(s.calls) for s in samples["1r"]])
    C20r = median([len(s.calls) for s in samples["20r"]])
    C1p = median([len(s.calls) for s in samples["1p"]])
    C20p = median([len(s.calls) for s in samples["20p"]])
    b1 = [build_figures(s, f"{one}@stage") for s in samples["1r"]]
    b20 = [build_figures(s) for s in samples["20r"]]
    p1 = [build_figures(s, f"{one}@prod") for s in samples["1p"]]
    p20 = [build_figures(s) for s in samples["20p"]]
    bw1 = median([b["build_wall_s"] for b in b1])
    bw20 = median([b["build_wall_s"] for b in b20])
    no_build_ratio = (T20r - bw20) / (T1r - bw1) if T1r > bw1 else float("nan")
    n = len(apps)
    # Per-app calls: the last round's counters (every round makes the same calls but for polls).
    c1, c20 = samples["1r"][-1].counts, samples["20r"][-1].counts
    cp1, cp20 = samples["1p"][-1].counts, samples["20p"][-1].counts

    ok_release = r_release <= GOAL_RELEASE
    ok_promote = r_promote <= GOAL_PROMOTE
    ok_noop = not mutating and not build_lines and not new_images

    print()
    print(f"(1r)  inv ci.release --only {one}             {spread(t['1r'])}   {C1r:5.0f} AWS calls")
    print(f"(20r) inv ci.release ({n} apps)                {spread(t['20r'])}   {C20r:5.0f} AWS calls "
          f"({C20r / n:.1f} per app)")
    print(f"(1p)  inv app.promote {one} --tag prod        {spread(t['1p'])}   {C1p:5.0f} AWS calls")
    print(f"(20p) inv app.promote --tag prod ({n} apps)    {spread(t['20p'])}   {C20p:5.0f} AWS calls "
          f"({C20p / n:.1f} per app)")
    print(f"(0r)  inv ci.release (nothing changed)        {noop.elapsed:7.1f} s    {len(noop.calls):5d} AWS calls, "
          f"{len(mutating)} mutating, {len(build_lines)} build lines, {len(new_images)} new images")
    print(f"ratio T20r/T1r {r_release:.2f} (goal <= {GOAL_RELEASE})  {'ok' if ok_release else 'MISSED'}")
    print(f"ratio T20p/T1p {r_promote:.2f} (goal <= {GOAL_PROMOTE})  {'ok' if ok_promote else 'MISSED'}")
    print(f"no-op release: {'ok' if ok_noop else 'FAILED'} (0 mutating calls, 0 builds expected)")
    print(f"builds (medians): 1 app: {bw1:.1f} s of {T1r:.1f} s ({bw1 / T1r:.0%}); {n} apps: {bw20:.1f} s wall "
          f"with a build running of {T20r:.1f} s ({bw20 / T20r:.0%}), {median([b['build_sum_s'] for b in b20]):.1f} s "
          f"summed, {median([b['build_median_s'] for b in b20]):.1f} s per build (1 alone: "
          f"{median([b['build_median_s'] for b in b1]):.1f} s)")
    print(f"release ratio with the build wall time taken out: {no_build_ratio:.2f}")
    cpu_line = []
    for key in ("1r", "20r", "1p", "20p"):
        last_cpu = samples[key][-1].cpu
        daemons = ", ".join(f"{name} {last_cpu.get(name, 0):.1f}" for name in ("moto", "dockerd", "registry"))
        cpu_line.append(f"({key}) inv {last_cpu['inv']:.1f}, {daemons}; machine {last_cpu['machine_busy']:.0%} busy")
    print("CPU seconds (last round): " + "; ".join(cpu_line))
    print(f"plan phase (start to first apply line): release 1 {median([b['plan_s'] or 0 for b in b1]):.1f} s, "
          f"{n} {median([b['plan_s'] or 0 for b in b20]):.1f} s; promote 1 {median([b['plan_s'] or 0 for b in p1]):.1f} s, "
          f"{n} {median([b['plan_s'] or 0 for b in p20]):.1f} s")
    print()
    print(f"AWS calls per app: release 1 app (C1r) | {n} apps / {n} (C20r/{n}) || promote 1 | {n} / {n}")
    print(f"  {'service:Action':<40} {'1 app':>7} {f'{n}/{n}':>7}   {'1 app':>7} {f'{n}/{n}':>7}")
    for key, a, b in call_table(c1 + cp1, c20 + cp20, n, top=18):
        print(f"  {key:<40} {c1[key]:7d} {c20[key] / n:7.2f}   {cp1[key]:7d} {cp20[key] / n:7.2f}")
    print(f"  {'total':<40} {sum(c1.values()):7d} {sum(c20.values()) / n:7.2f}   {sum(cp1.values()):7d} "
          f"{sum(cp20.values()) / n:7.2f}")
    if mutating:
        print(f"no-op release, mutating calls: {dict(Counter(c.key for c in mutating))}")
    for line in build_lines[:5]:
        print(f"no-op release, build line: {line}")
    for image in new_images[:5]:
        print(f"no-op release, new image: {image}")
    total = time.perf_counter() - t0
    print(f"set-up {setup:.1f} s, {args.rounds} round(s), total {total:.1f} s")
    print(f"summary: {n} apps take {r_release:.2f}x one app's time to release (goal <= {GOAL_RELEASE}) and "
          f"{r_promote:.2f}x to promote (goal <= {GOAL_PROMOTE}); {C20r / n:.1f} AWS calls per app released "
          f"together vs {C1r:.0f} alone; a no-op release of {n} makes {len(mutating)} mutating calls and "
          f"{len(new_images)} images ({T1r:.1f} / {T20r:.1f} / {T1p:.1f} / {T20p:.1f} s)")

    record = {
        **record_head("fleet"),
        "settings": {"apps": n, "rounds": args.rounds, "parallel": args.parallel, "latency_s": LATENCY,
                     "poll_interval_s": 1},
        "seconds": {k: [round(x, 2) for x in v] for k, v in t.items()} | {"noop_release": round(noop.elapsed, 2),
                                                                          "setup": round(setup, 1)},
        "ratios": {"release": round(r_release, 3), "promote": round(r_promote, 3),
                   "release_without_build_wall": round(no_build_ratio, 3) if no_build_ratio == no_build_ratio else None},
        "goals": {"release": GOAL_RELEASE, "promote": GOAL_PROMOTE},
        "met": {"release": ok_release, "promote": ok_promote, "noop": ok_noop},
        "aws_calls": {"1r": C1r, "20r": C20r, "1p": C1p, "20p": C20p, "noop_release": len(noop.calls)},
        "builds": {"1r": b1, "20r": b20, "1p": p1, "20p": p20},
        "cpu": {k: [s.cpu for s in v] for k, v in samples.items()} | {"noop_release": noop.cpu},
        "calls_by_action": {"1r": dict(c1), "20r": dict(c20), "1p": dict(cp1), "20p": dict(cp20),
                            "noop_release": dict(noop.counts)},
        "noop": {"mutating": [c.key for c in mutating], "build_lines": build_lines[:20], "new_images": new_images},
    }
    path = write_record(record)
    if args.keep:
        logs = stack.tmp / "outputs"
        logs.mkdir(exist_ok=True)
        for key, runs in samples.items():
            for i, s in enumerate(runs):
                write_log(logs / f"{key}-{i + 1}.log", s)
        write_log(logs / "noop.log", noop)
    print(f"record: {path.relative_to(ROOT)}")
    return verdict("bench/fleet.py", [("release ratio", ok_release), ("promote ratio", ok_promote),
                                      ("no-op release", ok_noop)])


def record_head(benchmark: str) -> dict:
    """What every JSON record starts with: which benchmark, when, on what."""
    return {"benchmark": benchmark, "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "host": {"cores": os.cpu_count(), "loadavg": os.getloadavg(), "python": platform.python_version()}}


def write_record(record: dict) -> Path:
    """bench/results/<benchmark>-<time>.json (git-ignored)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{record['benchmark']}-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def write_log(path: Path, timed: Timed) -> None:
    """A command's output as it arrived, each line after the seconds since its start (--keep)."""
    path.write_text("\n".join(f"{t:8.2f} {line}" for t, line in timed.lines) + "\n")


def verdict(script: str, goals: list[tuple[str, bool]]) -> int:
    """0 when every goal is met, else 1 with one line naming the missed ones."""
    missed = [what for what, ok in goals if not ok]
    if missed:
        print(f"{script}: goal missed: {', '.join(missed)}", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=20, help="apps in the fleet (default 20)")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds of the four commands (default 3)")
    parser.add_argument("--parallel", type=int, default=4, help="--parallel of every command (default 4)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary folder (logs, repository copy, timestamped outputs)")
    args = parser.parse_args()
    if args.apps < 2 or args.rounds < 1 or args.parallel < 1:
        parser.error("--apps must be at least 2, --rounds and --parallel at least 1")
    return run_measure("bench/fleet.py", measure, args, FleetStack(args.keep))


def run_measure(script: str, measure, args: argparse.Namespace, stack: "FleetStack") -> int:
    """`measure(args, stack)`'s exit status (0 goals met, 1 a goal missed), 2 when it could not
    measure, 130 on Ctrl-C; the stack is closed whatever happens."""
    # SIGTERM (e.g. a CI timeout) still stops the proxy, dockerd, the registry and moto.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return measure(args, stack)
    except BenchError as exc:
        print(f"{script}: could not measure: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        stack.close()


if __name__ == "__main__":
    sys.exit(main())
