"""One multi-node job on the local Docker engine: N containers, one network.

The replicas of a job share a private bridge network, on which each is
reachable under the host name its CLUSTER_SPEC gives it (see
caliban.sweep.cluster), so training code finds its peers locally exactly as
it does on Vertex AI. Every replica runs the same image and arguments behind
the rendezvous shim, streams its output prefixed with its rank, and the job
succeeds only if all of them exit 0. The first replica to fail stops the
others at once (a distributed job whose peer died would otherwise hang in a
collective until some timeout), and whatever happens, Ctrl-C and SIGTERM
included, the containers and the network are removed.

Containers are run with caliban.docker.run.run_container, so output, exit
codes and removal behave as for single-container jobs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import re
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Sequence

from caliban.docker.job_logs import JobLogWriter
from caliban.docker.run import JOB_LABEL, ContainerSpec, _api_error, _sigterm_as_interrupt, run_container
from caliban.errors import CalibanError, UsageError
from caliban.sweep.cluster import replica_environments, replica_hosts, with_rendezvous_shim
from caliban.sweep.gpus import GpuPool, split_devices

REPLICA_LABEL = "caliban.replica"  # the rank, on each replica's container
STOP_TIMEOUT = 5  # seconds between SIGTERM and SIGKILL when a job is stopped
NETWORK_REMOVE_ATTEMPTS = 15  # about 10 s in all
_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


@dataclass
class ClusterResult:
    """How a multi-node job ended. `codes[rank]` is None for a replica the
    job stopped before it ran. (A replica that cannot start raises instead.)"""

    codes: list[int | None]
    failed_rank: int | None = None

    @property
    def exit_code(self) -> int:
        """0 only if every replica exited 0; otherwise the failing replica's code."""
        return 0 if self.failed_rank is None else self.codes[self.failed_rank]


def network_name(job_id: str) -> str:
    return f"caliban-{job_id}"


def replica_specs(
    spec: ContainerSpec,
    nodes: int,
    job_id: str,
    entrypoint: Sequence[str],
    *,
    job_spec: dict | None = None,
    gpu_sets: Sequence[Sequence[str]] | None = None,
) -> list[ContainerSpec]:
    """The container of each replica, by rank: `spec` with the replica's
    CLUSTER_SPEC/TF_CONFIG, its host name as network alias and hostname, the
    job's labels, an init process, and `entrypoint` (the image's) behind the
    rendezvous shim. Also what a dry run prints, one `docker run` per replica."""
    if spec.extra.network:
        raise UsageError(f"--docker_run_args --network {spec.extra.network}: a multi-node job runs on its own "
                         "private network; drop --network")
    if nodes > 1 and (spec.ports or spec.extra.ports):
        raise UsageError(f"--docker_run_args -p cannot be used with {nodes} nodes: every replica would "
                         "publish the same host port")
    if not _JOB_ID.fullmatch(job_id):
        raise ValueError(f"job id {job_id!r} cannot name a Docker network")
    hosts = replica_hosts(nodes)
    environments = replica_environments(nodes, hosts, job_spec=job_spec)
    specs = []
    for rank, (host, env) in enumerate(zip(hosts, environments)):
        specs.append(dataclasses.replace(
            spec,
            entrypoint=with_rendezvous_shim(entrypoint),
            env={**spec.env, **env},
            labels={**spec.labels, JOB_LABEL: job_id, REPLICA_LABEL: str(rank)},
            mounts=list(spec.mounts),
            network=network_name(job_id),
            network_aliases=[host],
            hostname=host,
            init=True,
            gpu_devices=list(gpu_sets[rank]) if gpu_sets else spec.gpu_devices,
        ))
    return specs


def run_cluster_job(
    client,
    spec: ContainerSpec,
    nodes: int,
    *,
    job_id: str | None = None,
    label: str | None = None,
    job_spec: dict | None = None,
    gpu_pool: GpuPool | None = None,
    gpus_per_node: int = 0,
    stdout=None,
    stderr=None,
    on_started: Callable[[int, str], None] | None = None,
    log_key: str | None = None,
) -> ClusterResult:
    """Run `spec` as a job of `nodes` replicas and wait for all of them.

    With `log_key` (the job's caliban_key) the replicas' output is also kept
    for `caliban logs`, each line marked with its rank.

    `label` ("2/4") goes into the output prefix `[job 2/4 rank 1] `. With
    `gpu_pool` and `gpus_per_node`, the job waits until it can take
    nodes x gpus_per_node GPUs at once and gives each replica its own share;
    `on_started(rank, container_id)` is called as each replica starts.
    KeyboardInterrupt (and SIGTERM, turned into one) is re-raised after the
    cleanup."""
    import docker

    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    job_id = job_id or uuid.uuid4().hex[:12]
    api = client.api
    entrypoint = spec.entrypoint
    if entrypoint is None:
        try:
            entrypoint = (api.inspect_image(spec.image).get("Config") or {}).get("Entrypoint") or []
        except docker.errors.ImageNotFound:
            raise CalibanError(f"image {spec.image} not found on the Docker engine") from None
        except docker.errors.APIError as exc:
            raise _api_error(exc) from None
    specs = replica_specs(spec, nodes, job_id, entrypoint, job_spec=job_spec)  # refuses bad input first
    if gpu_pool is not None:
        gpu_pool.check(nodes * gpus_per_node, f"{nodes} nodes x {gpus_per_node} GPUs per node")

    gpus = (gpu_pool.lease(nodes * gpus_per_node, f"{nodes} nodes x {gpus_per_node} GPUs per node")
            if gpu_pool is not None and gpus_per_node else contextlib.nullcontext(()))
    with _sigterm_as_interrupt(), gpus as devices:
        if devices:
            for rank, share in enumerate(split_devices(devices, nodes)):
                specs[rank].gpu = True
                specs[rank].gpu_devices = list(share)
        try:
            try:
                api.create_network(network_name(job_id), driver="bridge",
                                   labels={**spec.labels, JOB_LABEL: job_id})
            except docker.errors.APIError as exc:
                raise _api_error(exc) from None
            return _run_replicas(client, specs, job_id, label, stdout, stderr, on_started, log_key)
        finally:
            _remove_job(api, job_id)


def _run_replicas(client, specs, job_id, label, stdout, stderr, on_started, log_key=None) -> ClusterResult:
    api = client.api
    nodes = len(specs)
    results: queue.Queue = queue.Queue()
    stopping = threading.Event()

    def replica(rank: int, replica_spec: ContainerSpec) -> None:
        if stopping.is_set():
            results.put((rank, None, None))
            return
        prefix = f"[job {label} rank {rank}] " if label else f"[rank {rank}] "

        def started(container_id: str) -> None:
            if on_started:
                on_started(rank, container_id)
            if stopping.is_set():  # created after the stop listed the job's containers
                _stop(api, [container_id])

        try:
            code, _ = run_container(client, replica_spec, stdout=stdout, stderr=stderr, prefix=prefix,
                                    on_started=started,
                                    log=log_key and JobLogWriter.for_job(log_key, line_prefix=f"[rank {rank}] "))
            results.put((rank, code, None))
        except CalibanError as exc:
            results.put((rank, None, exc))
        except Exception as exc:  # the engine went away mid-job: report it as this replica's failure
            results.put((rank, None, _api_error(exc)))

    threads = [threading.Thread(target=replica, args=(rank, s), name=f"replica-{rank}", daemon=True)
               for rank, s in enumerate(specs)]
    codes: list[int | None] = [None] * nodes
    failed_rank = None
    error = None
    try:
        for thread in threads:
            thread.start()
        for _ in range(nodes):
            rank, code, exc = results.get()
            codes[rank] = code
            if failed_rank is None and (exc is not None or code != 0) and not stopping.is_set():
                failed_rank, error = rank, exc
                what = f"could not start ({exc.message})" if exc else f"exited {code}"
                others = ", ".join(str(r) for r in range(nodes) if r != rank and codes[r] is None)
                note = f"; stopping rank {others}" if others else ""
                print(f"==> {_job_text(label)}rank {rank} {what}{note}", file=stderr, flush=True)
                stopping.set()
                _stop_job(api, job_id)
    except KeyboardInterrupt:
        stopping.set()
        _stop_job(api, job_id)
        for thread in threads:
            thread.join()
        raise
    for thread in threads:
        thread.join()
    result = ClusterResult(codes, failed_rank)
    if error is not None:
        raise CalibanError(f"{_job_text(label)}rank {failed_rank} could not start: {error.message}")
    return result


def _job_text(label: str | None) -> str:
    return f"job {label} " if label else ""


def _job_containers(api, job_id: str) -> list[str]:
    try:
        return [c["Id"] for c in api.containers(all=True, filters={"label": f"{JOB_LABEL}={job_id}"})]
    except Exception:  # engine unreachable: nothing more can be done from here
        return []


def _stop_job(api, job_id: str) -> None:
    """SIGTERM every replica at once (the init process passes it on), then
    make sure they are down; the replica threads see their streams end."""
    _stop(api, _job_containers(api, job_id))


def _stop(api, ids: list[str]) -> None:
    for container_id in ids:
        try:
            api.kill(container_id, signal="SIGTERM")
        except Exception:  # already exited
            pass
    for container_id in ids:
        try:
            api.stop(container_id, timeout=STOP_TIMEOUT)
        except Exception:
            pass


def _remove_job(api, job_id: str) -> None:
    """Remove what is left of the job: replicas created after the stop began,
    then the network."""
    for container_id in _job_containers(api, job_id):
        try:
            api.remove_container(container_id, force=True)
        except Exception:
            pass
    try:
        networks = [n["Id"] for n in api.networks(names=[network_name(job_id)])
                    if (n.get("Labels") or {}).get(JOB_LABEL) == job_id]
    except Exception:
        return
    for network_id in networks:
        _remove_network(api, network_id)


def _remove_network(api, network_id: str) -> None:
    """The engine releases a removed container's endpoint a little after
    the removal returns, and refuses to remove a network with endpoints: cut
    what is still attached and try again, for a bounded time."""
    delay = 0.05
    for _ in range(NETWORK_REMOVE_ATTEMPTS):
        try:
            api.remove_network(network_id)
            return
        except Exception as exc:
            if "not found" in str(exc).lower() or "no such network" in str(exc).lower():
                return
        try:
            for container_id in (api.inspect_network(network_id).get("Containers") or {}):
                api.disconnect_container_from_network(container_id, network_id, force=True)
        except Exception:
            pass
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
