"""Installs Caliban 0.4.2 (the release this project replaces) into its own
virtual environment, bench/.work/caliban-0.4.2, idempotently.

0.4.2 declares `Requires-Python >=3.6` and mostly unpinned dependencies.
bench/constraints-caliban-0.4.2.txt pins a set that was found to install and
run on Python 3.11 (the interpreter this project uses), so that both tools are
measured on the same Python. If that fails on some machine (a pin missing for
another Python), the install is retried without the pins, then with other
interpreters found on the machine, newest first.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

VERSION = "0.4.2"
HERE = Path(__file__).resolve().parent
CONSTRAINTS = HERE / "constraints-caliban-0.4.2.txt"


def _interpreters() -> list[str]:
    seen, out = set(), []
    cands = [getattr(sys, "_base_executable", sys.executable), sys.executable]
    for minor in (11, 10, 12, 9, 8, 13):
        cands.append(shutil.which(f"python3.{minor}") or "")
        cands += sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/3.{minor}.*/bin/python3")),
                        reverse=True)
    for c in cands:
        if c and os.path.exists(c):
            real = os.path.realpath(c)
            if real not in seen:
                seen.add(real)
                out.append(c)
    return out


def _works(venv: Path) -> bool:
    for exe in ("caliban", "expansion"):
        try:
            p = subprocess.run([str(venv / "bin" / exe), "--help"],
                               capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired):
            return False
        if p.returncode != 0:
            return False
    return True


def _pyver(venv: Path) -> str:
    p = subprocess.run([str(venv / "bin" / "python"), "-c",
                        "import platform; print(platform.python_version())"],
                       capture_output=True, text=True, timeout=60)
    return p.stdout.strip()


def ensure(work: Path, name: str = "caliban-0.4.2",
           interpreters: list[str] | None = None) -> tuple[str, str]:
    """Installs into work/name unless already there; returns (python version
    of the 0.4.2 venv, how it was installed)."""
    venv = work / name
    marker = venv / ".bench-installed.json"
    if marker.exists() and _works(venv):
        info = json.loads(marker.read_text())
        return info["python"], info["note"] + " (reused)"

    errors = []
    for interp in (interpreters if interpreters is not None else _interpreters()):
        for pinned in (True, False):
            if pinned and not CONSTRAINTS.exists():
                continue
            shutil.rmtree(venv, ignore_errors=True)
            print(f"[bench]   installing caliban=={VERSION} with {interp}"
                  f" ({'pinned' if pinned else 'unpinned'} dependencies)", flush=True)
            p = subprocess.run([interp, "-m", "venv", str(venv)],
                               capture_output=True, text=True)
            if p.returncode != 0:
                errors.append(f"{interp}: venv: {p.stderr.strip()[-300:]}")
                break
            cmd = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                   "--disable-pip-version-check", f"caliban=={VERSION}"]
            if pinned:
                cmd += ["-c", str(CONSTRAINTS)]
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            if p.returncode == 0 and _works(venv):
                note = (f"pip install caliban=={VERSION} on Python {_pyver(venv)}, "
                        + ("dependencies pinned by bench/constraints-caliban-0.4.2.txt"
                           if pinned else "dependencies unpinned (latest that resolve)"))
                marker.write_text(json.dumps({"python": _pyver(venv), "note": note}))
                return _pyver(venv), note
            errors.append(f"{interp} ({'pinned' if pinned else 'unpinned'}): "
                          + (p.stderr.strip()[-300:] or "installed but does not run"))
    shutil.rmtree(venv, ignore_errors=True)
    raise RuntimeError("; ".join(errors) or "no Python interpreter found")
