"""Timing, peak-RSS and machine-description helpers for bench/run.py.

Each measured run is a fresh child process, waited for with os.wait4 so that
its own resource usage (peak RSS) comes back with its exit status; the wall
time is taken around the whole child, start-up included, as a user sees it.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".work"

# Output that means "this command does not exist (yet)" rather than "it broke".
_NOT_AVAILABLE = re.compile(
    r"invalid choice|unrecognized arguments|"
    r"not available yet|not implemented|NotImplementedError|No module named 'caliban\.",
    re.I)


@dataclass
class Tools:
    new_python: Path
    new_caliban: Path
    new_expansion: Path
    old_venv: Path
    old_ok: bool = False
    old_error: str = ""
    old_python_version: str = ""
    old_install_note: str = ""

    @property
    def old_caliban(self) -> Path:
        return self.old_venv / "bin" / "caliban"

    @property
    def old_expansion(self) -> Path:
        return self.old_venv / "bin" / "expansion"

    @property
    def old_python(self) -> Path:
        return self.old_venv / "bin" / "python"

    @classmethod
    def discover(cls) -> "Tools":
        venv_bin = ROOT / ".venv" / "bin"
        if not (venv_bin / "caliban").exists():
            # Whatever interpreter runs us, if the project is installed into it.
            import sys
            venv_bin = Path(sys.executable).parent
        return cls(new_python=venv_bin / "python",
                   new_caliban=venv_bin / "caliban",
                   new_expansion=venv_bin / "expansion",
                   old_venv=WORK / "caliban-0.4.2")


def clean_env(extra: Optional[dict] = None) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "VIRTUAL_ENV", "CALIBAN_"))}
    env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    env["LC_ALL"] = env.get("LC_ALL", "C.UTF-8")
    if extra:
        env.update(extra)
    return env


def offline_env(home: Path, extra: Optional[dict] = None) -> dict:
    """An environment with no cloud credentials and a private HOME, so that
    neither tool can reach a real account or touch the user's own history."""
    home.mkdir(parents=True, exist_ok=True)
    gcloud = home / "gcloud-config"
    gcloud.mkdir(exist_ok=True)
    env = clean_env({"HOME": str(home), "CLOUDSDK_CONFIG": str(gcloud),
                     "NO_GCE_CHECK": "True", "GCE_METADATA_HOST": "127.0.0.1:9",
                     "GCE_METADATA_IP": "127.0.0.1:9"})
    if extra:
        env.update(extra)
    return env


# GNU time forks the measured command from its own tiny process and reports
# that child's rusage. Waiting on our own child is not enough: a child started
# by vfork/fork + exec inherits this (much bigger) Python process's peak RSS
# as its own starting ru_maxrss, which would put a floor of tens of MB under
# every measurement.
GNU_TIME = "/usr/bin/time" if os.path.exists("/usr/bin/time") else None
RSS_METHOD_GNU = "GNU time (%M: peak RSS of the command, forked from time's own small process)"
RSS_METHOD = (RSS_METHOD_GNU if GNU_TIME else
              "wait4 ru_maxrss (includes the harness's RSS inherited at fork: an upper bound)")


def run_once(cmd: list[str], cwd: Optional[Path] = None, env: Optional[dict] = None,
             timeout: float = 120, stdout_path: Optional[Path] = None,
             user_wrap: Optional[list[str]] = None) -> dict:
    """Runs one fresh child; returns wall seconds, CPU seconds, peak RSS (MB),
    rc and output."""
    rss_file = None
    inner = list(cmd)
    if GNU_TIME:
        fd, rss_file = tempfile.mkstemp(prefix="bench-rss-")
        os.close(fd)
        os.chmod(rss_file, 0o666)  # the command may run as another user
        inner = [GNU_TIME, "-q", "-o", rss_file, "-f", "BENCHRSS %M %U %S"] + inner
    full = (user_wrap or []) + inner
    out_f = open(stdout_path, "w+b") if stdout_path else tempfile.TemporaryFile()
    err_f = tempfile.TemporaryFile()
    try:
        t0 = time.perf_counter()
        p = subprocess.Popen(full, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                             stdout=out_f, stderr=err_f)
        timed_out = []

        def kill():
            timed_out.append(True)
            try:
                p.kill()
            except OSError:
                pass

        timer = threading.Timer(timeout, kill)
        timer.start()
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        timer.cancel()
        p.returncode = os.waitstatus_to_exitcode(status)
        out_f.seek(0)
        err_f.seek(0)
        out = out_f.read().decode("utf-8", "replace")
        err = err_f.read().decode("utf-8", "replace")
    finally:
        out_f.close()
        err_f.close()
    rss_mb = ru.ru_maxrss / 1024.0
    cpu_s = ru.ru_utime + ru.ru_stime
    if rss_file:
        try:
            for line in Path(rss_file).read_text().splitlines():
                if line.startswith("BENCHRSS "):
                    kb, u, s_ = line.split()[1:4]
                    rss_mb, cpu_s = int(kb) / 1024.0, float(u) + float(s_)
        except (OSError, ValueError):
            pass
        finally:
            os.unlink(rss_file)
    return {"wall_s": wall, "cpu_s": cpu_s, "rss_mb": rss_mb, "rc": p.returncode,
            "timed_out": bool(timed_out), "out": out, "err": err}


def key_lines(text: str, n: int = 6) -> str:
    """The lines that say what went wrong (errors first, then the tail)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    hits = [ln for ln in lines if re.search(r"error|denied|failed|cannot|not found", ln, re.I)
            and not ln.lstrip().startswith(("File \"", "Traceback"))]
    picked = hits[:n]
    rest = [ln for ln in lines[-3:] if ln not in picked]
    return "\n".join(picked + (["..."] if picked and rest else []) + rest)


def tail(text: str, n: int = 8) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return "\n".join(lines[-n:])


def measure(cmd: list[str], reps: int, cwd: Optional[Path] = None,
            env: Optional[dict] = None, label: str = "", warmup: int = 1,
            expect: Optional[Callable[[str], bool]] = None, timeout: float = 120,
            keep_output: Optional[Path] = None,
            user_wrap: Optional[list[str]] = None) -> dict:
    """Warm-up run(s), then `reps` timed runs. Stops at the first failure and
    reports it (status "not_available" or "failed") instead of raising."""
    res = {"label": label, "cmd": " ".join(cmd), "reps": reps}
    samples, rss, cpu = [], [], []
    for i in range(warmup + reps):
        if not Path(cmd[0]).exists() and "/" in cmd[0]:
            return unavailable(f"{cmd[0]} does not exist", res)
        try:
            r = run_once(cmd, cwd=cwd, env=env, timeout=timeout,
                         stdout_path=keep_output if i == 0 else None,
                         user_wrap=user_wrap)
        except OSError as e:
            return unavailable(f"cannot start {cmd[0]}: {e}", res)
        out = r["out"] + r["err"]
        if r["timed_out"]:
            res.update(status="failed", error=f"timed out after {timeout} s")
            return res
        if r["rc"] != 0:
            status = "not_available" if _NOT_AVAILABLE.search(out) else "failed"
            res.update(status=status, rc=r["rc"],
                       error=f"exit code {r['rc']}: {tail(out)}")
            return res
        if expect is not None and i == 0 and not expect(r["out"] + "\n" + r["err"]):
            res.update(status="failed",
                       error=f"output did not look right: {tail(out, 4)}")
            return res
        if i >= warmup:
            samples.append(r["wall_s"])
            rss.append(r["rss_mb"])
            cpu.append(r["cpu_s"])
    res.update(status="ok",
               samples_s=[round(s, 4) for s in samples],
               median_s=round(statistics.median(samples), 4),
               min_s=round(min(samples), 4),
               rss_mb=[round(x, 1) for x in rss],
               median_rss_mb=round(statistics.median(rss), 1),
               cpu_s=[round(x, 3) for x in cpu],
               median_cpu_s=round(statistics.median(cpu), 3))
    return res


def unavailable(reason: str, base: Optional[dict] = None) -> dict:
    d = dict(base or {})
    d.update(status="not_available", error=reason)
    return d


def add_ratio(res: dict) -> None:
    """ratio = 0.4.2 median / this median (how many times faster this is)."""
    new, old = res.get("new", {}), res.get("old", {})
    if new.get("status") == "ok" and old.get("status") == "ok" and new["median_s"] > 0:
        res["ratio"] = round(old["median_s"] / new["median_s"], 2)
        if new.get("median_cpu_s") and old.get("median_cpu_s"):
            res["cpu_ratio"] = round(old["median_cpu_s"] / new["median_cpu_s"], 2)
    floor = res.get("floor", {})
    if new.get("status") == "ok" and floor.get("status") == "ok" and floor["median_s"] > 0:
        res["vs_floor"] = round(new["median_s"] / floor["median_s"], 2)


def python_version(python: Path) -> str:
    try:
        out = subprocess.run([str(python), "-c",
                              "import sys, platform; print(platform.python_version())"],
                             capture_output=True, text=True, timeout=30)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine_info() -> dict:
    cpu = "unknown"
    for line in _read("/proc/cpuinfo").splitlines():
        if line.lower().startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    if cpu == "unknown":
        cpu = platform.processor() or platform.machine()
    mem_gib = None
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    os_name = platform.platform()
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            os_name = line.split("=", 1)[1].strip().strip('"')
    docker_server = docker_client = "not reachable"
    if shutil.which("docker"):
        try:
            p = subprocess.run(["docker", "version", "--format",
                                "{{.Client.Version}} {{.Server.Version}}"],
                               capture_output=True, text=True, timeout=20)
            parts = p.stdout.split()
            if parts:
                docker_client = parts[0]
            if len(parts) > 1:
                docker_server = parts[1]
        except (OSError, subprocess.TimeoutExpired):
            pass
    commit = ""
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        pass
    return {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "os": os_name,
        "kernel": platform.release(),
        "arch": platform.machine(),
        "docker_engine": docker_server,
        "docker_client": docker_client,
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "git_commit": commit,
    }
