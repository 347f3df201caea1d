"""Shared pieces for the cloud tests: request bodies, a fake clock, clients and CLI runs on the emulator."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from tests import REPO

PROJECT = "caliban-test"
REGION = "us-central1"
IMAGE = "us-central1-docker.pkg.dev/caliban-test/caliban/img:abc"


def vertex_body(key: str, i: int, gpus: int = 0) -> dict:
    machine = {"machineType": "n1-standard-8"}
    if gpus:
        machine.update(acceleratorType="NVIDIA_TESLA_P100", acceleratorCount=gpus)
    return {
        "displayName": f"caliban_test_{i}",
        "labels": {"caliban_key": key},
        "jobSpec": {
            "workerPoolSpecs": [
                {"machineSpec": machine, "replicaCount": "1",
                 "containerSpec": {"imageUri": IMAGE, "args": ["--i", str(i)]}}
            ]
        },
    }


def ml_body(key: str, i: int, gpus: int = 0) -> dict:
    body = {
        "jobId": f"caliban_test_{key.replace('-', '_')}",
        "labels": {"caliban_key": key},
        "trainingInput": {
            "scaleTier": "CUSTOM",
            "masterType": "n1-standard-8",
            "masterConfig": {"imageUri": IMAGE},
            "region": REGION,
            "args": ["--i", str(i)],
        },
    }
    if gpus:
        body["trainingInput"]["masterConfig"]["acceleratorConfig"] = {"type": "NVIDIA_TESLA_P100", "count": str(gpus)}
    return body


BODIES = {"vertex": vertex_body, "ml_v1": ml_body}


def sweep(backend: str, n: int, prefix: str = "k", gpus: int = 0):
    from caliban.cloud.submit import SubmitJob

    make = BODIES[backend]
    return [SubmitJob(key=f"{prefix}-{i}", body=make(f"{prefix}-{i}", i, gpus), display_name=f"job-{i}", index=i)
            for i in range(1, n + 1)]


def client_for(emu, key_path, backend: str = "vertex", timeout: float = 10.0):
    from caliban.cloud import auth as cloud_auth
    from caliban.cloud import client as cloud_client

    credentials, _ = cloud_auth.load_credentials(str(key_path))
    return cloud_client.CloudClient(backend, PROJECT, REGION, credentials, api_endpoint=emu.url, timeout=timeout)


def history_env(db, emu) -> dict:
    """The environment of a `python -m caliban` that records to `db` and reaches `emu` with its key."""
    env = dict(os.environ, CALIBAN_DB_URL=str(db), PYTHONPATH=str(REPO),
               GOOGLE_APPLICATION_CREDENTIALS=emu.key_path)
    env.pop("CALIBAN_API_ENDPOINT", None)
    return env


def caliban(db, emu, *argv, timeout: float = 120):
    """`python -m caliban ARGV` from the repository, in `history_env`, with no terminal."""
    return subprocess.run([sys.executable, "-m", "caliban", *argv], cwd=REPO, env=history_env(db, emu),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


class FakeClock:
    """Time that moves only when someone sleeps: retry and rate tests run instantly."""

    def __init__(self, start: float = 1000.0):
        self.now = start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += max(0.0, seconds)
