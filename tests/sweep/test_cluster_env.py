"""The replica environment of multi-node jobs (caliban.sweep.cluster), and the
rendezvous shim run for real in a Python subprocess."""

import json
import os
import subprocess
import sys

import pytest

from caliban.errors import UsageError
from caliban.sweep.cluster import (
    RENDEZVOUS_SHIM,
    replica_environments,
    replica_hosts,
    with_rendezvous_shim,
)


def _spec(env):
    return json.loads(env["CLUSTER_SPEC"])


def test_single_node_has_only_the_primary_and_no_tf_config():
    (env,) = replica_environments(1)
    assert set(env) == {"CLUSTER_SPEC"}
    assert _spec(env) == {
        "cluster": {"workerpool0": ["workerpool0-0:2222"]},
        "environment": "cloud",
        "task": {"type": "workerpool0", "index": 0},
        "job": {},
    }


def test_four_nodes_primary_then_workers_same_cluster_everywhere():
    job_spec = {"workerPoolSpecs": [{"replicaCount": "1"}, {"replicaCount": "3"}]}
    envs = replica_environments(4, job_spec=job_spec)
    assert replica_hosts(4) == ["workerpool0-0", "workerpool1-0", "workerpool1-1", "workerpool1-2"]
    cluster = {
        "workerpool0": ["workerpool0-0:2222"],
        "workerpool1": ["workerpool1-0:2222", "workerpool1-1:2222", "workerpool1-2:2222"],
    }
    tasks = [(_spec(e)["task"]["type"], _spec(e)["task"]["index"]) for e in envs]
    assert tasks == [("workerpool0", 0), ("workerpool1", 0), ("workerpool1", 1), ("workerpool1", 2)]
    for env in envs:
        spec = _spec(env)
        assert spec["cluster"] == cluster and spec["environment"] == "cloud" and spec["job"] == job_spec
        tf = json.loads(env["TF_CONFIG"])
        assert tf["cluster"] == {"chief": cluster["workerpool0"], "worker": cluster["workerpool1"]}
        assert tf["environment"] == "cloud" and tf["job"] == job_spec
    tf_tasks = [json.loads(e["TF_CONFIG"])["task"] for e in envs]
    assert tf_tasks == [{"type": "chief", "index": 0}, {"type": "worker", "index": 0},
                        {"type": "worker", "index": 1}, {"type": "worker", "index": 2}]
    # Nothing Vertex does not document for custom containers is put in the environment.
    assert all(set(e) == {"CLUSTER_SPEC", "TF_CONFIG"} for e in envs)


def test_given_hosts_and_port():
    envs = replica_environments(2, ["head", "tail"], port=29500)
    assert _spec(envs[1])["cluster"] == {"workerpool0": ["head:29500"], "workerpool1": ["tail:29500"]}


@pytest.mark.parametrize("nodes", [0, -1, 65, "3", 2.0, True])
def test_bad_node_counts(nodes):
    with pytest.raises(UsageError, match=r"--nodes .*: must be a whole number from 1 to 64"):
        replica_environments(nodes)


@pytest.mark.parametrize("hosts, needle", [
    (["a", "a"], "must be distinct"),
    (["a", "b;rm -rf /"], "is not a DNS label"),
    (["a", "B"], "is not a DNS label"),
    (["a", "-b"], "is not a DNS label"),
])
def test_bad_hosts(hosts, needle):
    with pytest.raises(UsageError, match=needle):
        replica_environments(2, hosts)


def test_bad_port_and_host_count():
    with pytest.raises(UsageError, match="not a TCP port"):
        replica_environments(1, port=70000)
    with pytest.raises(ValueError, match="2 nodes need 2 host names"):
        replica_environments(2, ["a"])


def _through_shim(env_extra, *command):
    """Run `command` behind the shim, as a container entrypoint would."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("CLUSTER_SPEC", "MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK")}
    env.update(env_extra)
    argv = with_rendezvous_shim(list(command), python=sys.executable)
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)


PRINT_ENV = ("import os, sys; print(os.environ.get('MASTER_ADDR'), os.environ.get('MASTER_PORT'), "
             "os.environ.get('WORLD_SIZE'), os.environ.get('RANK'), sys.argv[1:])")


def test_shim_derives_torch_variables_for_every_rank():
    for rank, env in enumerate(replica_environments(4)):
        done = _through_shim(env, sys.executable, "-c", PRINT_ENV, "--lr", "0.1 x")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"workerpool0-0 2222 4 {rank} ['--lr', '0.1 x']"


def test_shim_keeps_values_already_set_and_passes_exit_codes():
    env = dict(replica_environments(2)[1], RANK="7", MASTER_PORT="1234")
    done = _through_shim(env, sys.executable, "-c", PRINT_ENV)
    assert done.stdout.strip() == "workerpool0-0 1234 2 7 []"
    done = _through_shim({}, sys.executable, "-c", "import sys; sys.exit(3)")
    assert done.returncode == 3


@pytest.mark.parametrize("cluster_spec", [
    None,  # not a Caliban/Vertex job: nothing derived, the command still runs
    "not json",
    json.dumps({"cluster": {}, "task": {"type": "workerpool0", "index": 0}}),
    json.dumps({"cluster": {"workerpool0": ["h:1"], "workerpool3": ["e:1"]},
                "task": {"type": "workerpool3", "index": 0}}),  # evaluators are outside torch's world
])
def test_shim_without_a_usable_cluster_spec_derives_nothing(cluster_spec):
    env = {} if cluster_spec is None else {"CLUSTER_SPEC": cluster_spec}
    done = _through_shim(env, sys.executable, "-c", PRINT_ENV, "a")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None None None None ['a']"


def test_shim_is_the_entrypoint_prefix():
    assert with_rendezvous_shim(["python", "-m", "trainer.train"]) == [
        "python", "-c", RENDEZVOUS_SHIM, "python", "-m", "trainer.train"]
