"""Accelerator spec parsing and every family of machine cross-checks."""

import pytest

from caliban.sweep import machine_tables as tables
from caliban.sweep.accelerators import (
    FORCE_WARNING,
    AcceleratorSpec,
    BootDisk,
    Scheduling,
    parse_accelerator_spec,
    validate_cloud_machine,
    validate_disk,
    validate_scheduling,
)
from caliban.errors import UsageError


def gpu(text):
    return parse_accelerator_spec(text, "gpu")


def tpu(text):
    return parse_accelerator_spec(text, "tpu")


def check(region="us-central1", machine_type=None, gpu_spec=None, tpu_spec=None, nogpu=False, force=False,
          backend="vertex"):
    return validate_cloud_machine(region, machine_type, gpu_spec, tpu_spec, nogpu, force, backend)


def rejected(**kwargs) -> str:
    with pytest.raises(UsageError) as info:
        check(**kwargs)
    assert info.value.exit_code == 2
    return info.value.message


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1xP100", AcceleratorSpec(1, "NVIDIA_TESLA_P100")),
        ("2xt4", AcceleratorSpec(2, "NVIDIA_TESLA_T4")),
        ("8XV100", AcceleratorSpec(8, "NVIDIA_TESLA_V100")),
        ("4xa100", AcceleratorSpec(4, "NVIDIA_TESLA_A100")),
        ("1xA100_80GB", AcceleratorSpec(1, "NVIDIA_A100_80GB")),
        ("1xa100-80gb", AcceleratorSpec(1, "NVIDIA_A100_80GB")),
        ("2xL4", AcceleratorSpec(2, "NVIDIA_L4")),
        ("8xH100", AcceleratorSpec(8, "NVIDIA_H100_80GB")),
        ("8xH100_MEGA", AcceleratorSpec(8, "NVIDIA_H100_MEGA_80GB")),
        ("8xh200", AcceleratorSpec(8, "NVIDIA_H200_141GB")),
        ("1xNVIDIA_TESLA_T4", AcceleratorSpec(1, "NVIDIA_TESLA_T4")),
        ("8xB200", AcceleratorSpec(8, "NVIDIA_B200")),
        ("4xgb200", AcceleratorSpec(4, "NVIDIA_GB200")),
        ("1xRTX-PRO-6000", AcceleratorSpec(1, "NVIDIA_RTX_PRO_6000")),
    ],
)
def test_gpu_specs_parse_to_api_enums(text, expected):
    assert gpu(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("8xV2", AcceleratorSpec(8, "TPU_V2")),
        ("8xv3", AcceleratorSpec(8, "TPU_V3")),
        ("8xTPU_V3", AcceleratorSpec(8, "TPU_V3")),
        ("4xV4", AcceleratorSpec(4, "TPU_V4_POD")),
        ("4xV5E", AcceleratorSpec(4, "TPU_V5_LITEPOD")),
        ("8xv6e", AcceleratorSpec(8, "TPU_V6E")),
    ],
)
def test_tpu_specs_parse_to_api_enums(text, expected):
    assert tpu(text) == expected


def _vertex_schemas():
    import json
    import os

    import googleapiclient

    path = os.path.join(os.path.dirname(googleapiclient.__file__), "discovery_cache", "documents", "aiplatform.v1.json")
    with open(path) as fh:
        return json.load(fh)["schemas"]


def _enum(schemas, schema, field):
    return set(schemas[f"GoogleCloudAiplatformV1{schema}"]["properties"][field]["enum"])


def test_every_enum_is_in_the_vertex_discovery_document():
    schemas = _vertex_schemas()
    accelerator_types = _enum(schemas, "MachineSpec", "acceleratorType")
    sent = (tables.GPU_TYPES | tables.TPU_TYPES) - tables.MACHINE_IMPLIED_TPU_TYPES
    assert sent <= accelerator_types
    assert {gpu_type for gpu_type, _, _ in tables.ACCELERATOR_OPTIMIZED.values()} <= accelerator_types
    assert {"NVIDIA_B200", "NVIDIA_GB200", "NVIDIA_RTX_PRO_6000"} <= sent
    assert tables.FLEX_START_GPU_TYPES <= sent
    # When Google adds an enum for a machine-implied TPU, the table must start sending it.
    assert not tables.MACHINE_IMPLIED_TPU_TYPES & accelerator_types
    assert set(tables.ACCELERATOR_REGIONS) <= tables.GPU_TYPES | tables.TPU_TYPES
    assert all(regions <= set(tables.REGIONS) for regions in tables.ACCELERATOR_REGIONS.values())
    assert {"SPOT", "FLEX_START"} <= _enum(schemas, "Scheduling", "strategy")
    assert tables.RESERVATION_AFFINITY_TYPE in _enum(schemas, "ReservationAffinity", "reservationAffinityType")
    disk_doc = schemas["GoogleCloudAiplatformV1DiskSpec"]["properties"]["bootDiskType"]["description"]
    assert all(f'"{kind}"' in disk_doc for kind in tables.BOOT_DISK_TYPES)


@pytest.mark.parametrize("text", ["", "P100", "x", "1x", "xP100", "1.5xT4", "-1xT4", "1xT4x", "one x T4", "1xFOO"])
def test_malformed_gpu_specs_are_usage_errors(text):
    with pytest.raises(UsageError) as info:
        gpu(text)
    assert "--gpu_spec" in info.value.message


def test_unknown_type_message_lists_valid_types():
    with pytest.raises(UsageError, match=r"GPU types: .*T4.*V100"):
        gpu("1xFOO")


def test_zero_count_is_rejected():
    with pytest.raises(UsageError, match="at least 1"):
        gpu("0xT4")


@pytest.mark.parametrize("text", ["1xK80", "2xk80", "1xNVIDIA_TESLA_K80"])
def test_k80_is_rejected_as_end_of_life(text):
    with pytest.raises(UsageError, match="end of life"):
        gpu(text)


def test_tpu_type_in_gpu_spec_points_to_tpu_spec():
    with pytest.raises(UsageError, match="--tpu_spec"):
        gpu("8xV3")
    with pytest.raises(UsageError, match="--gpu_spec"):
        tpu("1xT4")


def test_spec_str_uses_short_names():
    assert str(gpu("2xNVIDIA_TESLA_V100")) == "2xV100"
    assert str(tpu("8xTPU_V3")) == "8xV3"


# ---------------------------------------------------------------- defaults


def test_gpu_mode_defaults_to_n1_standard_8_with_one_p100_and_says_it_is_old():
    machine = check()
    assert (machine.machine_type, machine.gpu, machine.tpu) == ("n1-standard-8", AcceleratorSpec(1, "NVIDIA_TESLA_P100"), None)
    (warning,) = machine.warnings
    assert "1xP100" in warning and "old and scarce" in warning
    assert "--gpu_spec 1xL4 --machine_type g2-standard-4" in warning and "--gpu_spec 1xT4" in warning
    # The advice it gives validates.
    assert check(gpu_spec=gpu("1xL4"), machine_type="g2-standard-4").warnings == ()
    assert check(gpu_spec=gpu("1xT4")).warnings == ()


def test_an_explicit_p100_is_not_second_guessed():
    assert check(gpu_spec=gpu("1xP100")).warnings == ()
    assert check(machine_type="n1-standard-16", gpu_spec=gpu("1xP100")).warnings == ()


def test_force_keeps_the_default_gpu_advice():
    assert check(force=True).warnings == (FORCE_WARNING, tables.DEFAULT_GPU_ADVICE)


def test_nogpu_defaults_to_n1_highcpu_32_without_accelerators():
    machine = check(nogpu=True)
    assert (machine.machine_type, machine.gpu, machine.tpu) == ("n1-highcpu-32", None, None)


def test_accelerator_optimized_machine_implies_its_gpus():
    assert check(machine_type="a2-highgpu-4g").gpu == AcceleratorSpec(4, "NVIDIA_TESLA_A100")
    assert check(machine_type="g2-standard-24").gpu == AcceleratorSpec(2, "NVIDIA_L4")


@pytest.mark.parametrize(
    "spec, machine_type",
    [("2xL4", "g2-standard-24"), ("1xL4", "g2-standard-8"), ("8xH100", "a3-highgpu-8g"),
     ("4xA100", "a2-highgpu-4g"), ("16xA100", "a2-megagpu-16g"), ("8xH200", "a3-ultragpu-8g"),
     ("2xT4", "n1-standard-8"), ("8xV100", "n1-standard-8")],
)
def test_gpu_spec_alone_picks_a_machine_that_takes_it(spec, machine_type):
    assert check(gpu_spec=gpu(spec)).machine_type == machine_type


def test_default_p100_unavailable_in_region_says_what_to_pass():
    message = rejected(region="asia-northeast1")
    assert "default 1xP100" in message
    assert "--gpu_spec" in message and "T4" in message and "--nogpu" in message
    assert "us-central1" in message


# ---------------------------------------------------------------- valid combinations


@pytest.mark.parametrize(
    "machine_type, spec",
    [("n1-standard-8", "1xV100"), ("n1-highmem-8", "1xV100"), ("n1-standard-16", "2xV100"),
     ("n1-standard-96", "8xV100"), ("n1-standard-32", "1xT4"), ("n1-standard-96", "4xT4"),
     ("n1-standard-16", "1xP100"), ("n1-standard-96", "4xP100"), ("n1-standard-16", "1xP4"),
     ("a2-highgpu-1g", "1xA100"), ("a2-ultragpu-8g", "8xA100_80GB"), ("a3-megagpu-8g", "8xH100_MEGA"),
     ("g2-standard-48", "4xL4"), ("g2-standard-96", "8xL4")],
)
def test_valid_machine_gpu_combinations(machine_type, spec):
    machine = check(machine_type=machine_type, gpu_spec=gpu(spec))
    assert machine.machine_type == machine_type and machine.gpu == gpu(spec)


@pytest.mark.parametrize("machine_type", list(tables.N1_MACHINE_VCPUS))
def test_every_n1_machine_runs_cpu_only(machine_type):
    assert check(machine_type=machine_type, nogpu=True).machine_type == machine_type


@pytest.mark.parametrize("region", tables.SEED_REGIONS)
def test_every_seed_region_is_valid_for_cpu_jobs(region):
    assert check(region=region, nogpu=True).region == region


def test_tpu_on_vertex_runs_on_cloud_tpu():
    machine = check(tpu_spec=tpu("8xV3"))
    assert (machine.machine_type, machine.gpu, machine.tpu) == ("cloud-tpu", None, AcceleratorSpec(8, "TPU_V3"))
    assert check(tpu_spec=tpu("8xV2"), machine_type="cloud_tpu").machine_type == "cloud-tpu"


def test_tpu_v5e_uses_its_machine_type_and_topology():
    machine = check(tpu_spec=tpu("4xV5E"))
    assert (machine.machine_type, machine.tpu_topology) == ("ct5lp-hightpu-4t", "2x2")


def test_tpu_on_ml_v1_has_a_host_and_may_have_a_gpu():
    machine = check(tpu_spec=tpu("8xV3"), gpu_spec=gpu("1xV100"), backend="ml_v1")
    assert (machine.machine_type, machine.gpu, machine.tpu) == (
        "n1-standard-8", AcceleratorSpec(1, "NVIDIA_TESLA_V100"), AcceleratorSpec(8, "TPU_V3"))


# ---------------------------------------------------------------- invalid combinations


def test_one_v100_allows_at_most_12_vcpus():
    message = rejected(machine_type="n1-standard-32", gpu_spec=gpu("1xV100"))
    assert "12 vCPUs" in message and "n1-standard-32" in message
    assert "n1-standard-8" in message and "n1-standard-16" not in message


def test_fixed_count_machine_rejects_other_counts_and_names_machines_that_fit():
    message = rejected(machine_type="a2-highgpu-4g", gpu_spec=gpu("2xL4"))
    assert "exactly 4xA100" in message and "g2-standard-24" in message
    message = rejected(machine_type="a2-highgpu-4g", gpu_spec=gpu("2xA100"))
    assert "a2-highgpu-2g" in message


def test_g2_standard_24_takes_exactly_two_l4():
    message = rejected(machine_type="g2-standard-24", gpu_spec=gpu("1xL4"))
    assert "exactly 2xL4" in message


def test_gpus_of_accelerator_optimized_machines_dont_attach_to_n1():
    message = rejected(machine_type="n1-standard-8", gpu_spec=gpu("1xA100"))
    assert "a2-highgpu-1g" in message
    message = rejected(machine_type="n1-standard-8", gpu_spec=gpu("8xH100"))
    assert "a3-highgpu-8g" in message


def test_n1_gpu_counts_are_checked():
    message = rejected(gpu_spec=gpu("3xT4"))
    assert "1xT4, 2xT4, 4xT4" in message
    assert "8xT4" not in message


def test_no_machine_carries_an_impossible_count():
    message = rejected(gpu_spec=gpu("3xL4"))
    assert "1xL4" in message and "2xL4" in message


def test_region_without_accelerator_lists_regions_that_have_it():
    message = rejected(region="europe-west1", gpu_spec=gpu("8xH100"))
    assert "regions with H100" in message and "us-central1" in message and "europe-west4" in message


def test_unknown_region_and_machine_list_the_choices():
    assert "us-central1" in rejected(region="mars-north1", nogpu=True)
    message = rejected(machine_type="n1-standard-7", nogpu=True)
    assert "n1-standard-{4,8,16,32,64,96}" in message and "g2-standard-{4,8,12,16,24,32,48,96}" in message
    assert "a4-highgpu-8g" in message and "ct6e-standard-{1t,4t,8t}" in message
    assert len(message) < 1000


def test_region_and_machine_syntax_are_checked_even_with_force():
    for kwargs in ({"region": "US Central"}, {"machine_type": "N1 STANDARD"}):
        with pytest.raises(UsageError):
            check(force=True, **kwargs)


def test_nogpu_with_gpu_spec_is_an_error_even_with_force():
    for force in (False, True):
        with pytest.raises(UsageError, match="--nogpu"):
            check(nogpu=True, gpu_spec=gpu("1xT4"), force=force)


def test_nogpu_rejects_machines_that_always_carry_gpus():
    assert "drop --nogpu" in rejected(nogpu=True, machine_type="a2-highgpu-1g")


def test_cloud_tpu_machine_needs_a_tpu_spec():
    assert "--tpu_spec" in rejected(machine_type="cloud_tpu")


def test_tpu_counts_regions_and_vertex_limits():
    assert "8xV3" in rejected(tpu_spec=tpu("4xV3"))
    assert "regions with V3" in rejected(region="us-east1", tpu_spec=tpu("8xV3"))
    assert "--gpu_spec" in rejected(tpu_spec=tpu("8xV3"), gpu_spec=gpu("1xV100"))
    assert "cloud-tpu" in rejected(tpu_spec=tpu("8xV3"), machine_type="n1-standard-8")


def test_ml_v1_rejects_accelerators_it_never_knew():
    message = rejected(gpu_spec=gpu("2xL4"), backend="ml_v1")
    assert "--backend vertex" in message


# ---------------------------------------------------------------- --force


def test_force_skips_cross_checks_and_says_so():
    machine = check(machine_type="n1-standard-32", gpu_spec=gpu("1xV100"), region="mars-north1", force=True)
    assert (machine.machine_type, machine.region) == ("n1-standard-32", "mars-north1")
    assert machine.warnings == (FORCE_WARNING,)
    assert "--force" in FORCE_WARNING


def test_force_sends_an_unknown_tpu_count_on_cloud_tpu():
    assert check(tpu_spec=tpu("32xV3"), force=True).machine_type == "cloud-tpu"


def test_tpu_on_ml_v1_without_gpu_uses_the_cpu_host():
    machine = check(tpu_spec=tpu("8xV2"), backend="ml_v1")
    assert (machine.machine_type, machine.gpu) == ("n1-highcpu-32", None)


def test_tpu_v4_pods_need_force():
    message = rejected(region="us-central2", tpu_spec=tpu("4xV4"))
    assert "--force" in message and "8xV3" in message
    assert check(region="us-central2", tpu_spec=tpu("4xV4"), force=True).machine_type == "cloud-tpu"


# ---------------------------------------------------------------- current hardware


@pytest.mark.parametrize(
    "spec, machine_type",
    [("8xB200", "a4-highgpu-8g"), ("8xH200", "a3-ultragpu-8g"), ("1xH100", "a3-highgpu-1g"),
     ("2xH100", "a3-highgpu-2g"), ("4xH100", "a3-highgpu-4g"), ("8xH100", "a3-highgpu-8g"),
     ("8xH100_MEGA", "a3-megagpu-8g")],
)
def test_current_nvidia_machines_validate_with_and_without_machine_type(spec, machine_type):
    named = check(machine_type=machine_type, gpu_spec=gpu(spec))
    implied = check(machine_type=machine_type)
    picked = check(gpu_spec=gpu(spec))
    assert named == implied == picked
    assert (named.machine_type, named.gpu, named.warnings) == (machine_type, gpu(spec), ())


def test_b200_comes_eight_to_a_machine():
    message = rejected(gpu_spec=gpu("1xB200"))
    assert "8xB200" in message
    message = rejected(machine_type="a4-highgpu-8g", gpu_spec=gpu("8xH200"))
    assert "exactly 8xB200" in message and "a3-ultragpu-8g" in message


def test_h200_is_checked_by_region():
    message = rejected(region="europe-west4", gpu_spec=gpu("8xH200"))
    assert "regions with H200" in message and "us-central1" in message


@pytest.mark.parametrize("kwargs", [{"gpu_spec": "4xGB200"}, {"machine_type": "a4x-highgpu-4g"},
                                    {"machine_type": "a4x-highgpu-4g", "gpu_spec": "4xGB200"}])
@pytest.mark.parametrize("force", [False, True])
def test_gb200_arm_machines_are_refused_even_with_force(kwargs, force):
    kwargs = {k: gpu(v) if k == "gpu_spec" else v for k, v in kwargs.items()}
    with pytest.raises(UsageError) as info:
        check(force=force, **kwargs)
    message = info.value.message
    assert "a4x-highgpu-4g" in message and "Arm" in message and "x86-64" in message
    assert "8xB200" in message


def test_rtx_pro_6000_is_sent_only_with_force():
    message = rejected(gpu_spec=gpu("1xRTX_PRO_6000"))
    assert "--force" in message and "RTX PRO 6000" in message
    machine = check(gpu_spec=gpu("2xRTX_PRO_6000"), force=True)
    assert (machine.machine_type, machine.gpu) == ("g4-standard-96", gpu("2xRTX_PRO_6000"))


@pytest.mark.parametrize("spec, machine_type, topology",
                         [("1xV6E", "ct6e-standard-1t", "1x1"), ("4xV6E", "ct6e-standard-4t", "2x2"),
                          ("8xV6E", "ct6e-standard-8t", "2x4")])
def test_tpu_v6e_slices_use_their_machine_type_and_topology(spec, machine_type, topology):
    machine = check(tpu_spec=tpu(spec))
    assert (machine.machine_type, machine.tpu, machine.gpu, machine.tpu_topology) == (
        machine_type, tpu(spec), None, topology)
    assert check(tpu_spec=tpu(spec), machine_type=machine_type) == machine
    # The machine type alone names the slice.
    assert check(machine_type=machine_type) == machine


def test_tpu_v6e_on_a_gpu_machine_is_refused():
    message = rejected(tpu_spec=tpu("8xV6E"), machine_type="a3-highgpu-8g")
    assert "ct6e-standard-8t" in message and "a3-highgpu-8g" in message
    assert "--gpu_spec" in rejected(tpu_spec=tpu("8xV6E"), gpu_spec=gpu("1xL4"))


@pytest.mark.parametrize("force", [False, True])
def test_tpu_v6e_counts_and_backend_are_checked_even_with_force(force):
    with pytest.raises(UsageError, match="1xV6E, 4xV6E, 8xV6E"):
        check(tpu_spec=tpu("16xV6E"), force=force)
    with pytest.raises(UsageError, match="--backend vertex"):
        check(tpu_spec=tpu("8xV6E"), backend="ml_v1", force=force)


def _job(machine, **options):
    from caliban.sweep import jobs as jr

    return jr.CloudJob(name="caliban_test_20260101_000000_1", region=machine.region,
                       image="us-docker.pkg.dev/p/r/i:t", args=[], labels={}, machine=machine,
                       options=jr.JobOptions(**options))


def vertex_request(job):
    from caliban import backends

    return backends.get("vertex").request_body(job)


@pytest.mark.parametrize("spec", ["8xB200", "8xH200", "8xH100_MEGA"])
def test_new_gpu_requests_pass_the_discovery_schema(spec):
    from caliban.cloud.schema import job_body_errors

    body = vertex_request(_job(check(gpu_spec=gpu(spec))))
    assert job_body_errors("vertex", body) == []
    assert body["jobSpec"]["workerPoolSpecs"][0]["machineSpec"]["acceleratorType"] == gpu(spec).type


def test_tpu_v6e_request_names_no_accelerator_and_passes_the_discovery_schema():
    from caliban.cloud.schema import job_body_errors

    body = vertex_request(_job(check(tpu_spec=tpu("4xV6E"))))
    assert job_body_errors("vertex", body) == []
    assert body["jobSpec"]["workerPoolSpecs"][0]["machineSpec"] == {
        "machineType": "ct6e-standard-4t", "tpuTopology": "2x2"}


@pytest.mark.parametrize("machine_type", ["e2-standard-4", "n2-highmem-80", "c2-standard-60", "m1-ultramem-160"])
def test_cpu_families_of_the_training_machine_list_run_cpu_only(machine_type):
    machine = check(machine_type=machine_type, nogpu=True)
    assert (machine.machine_type, machine.gpu, machine.tpu) == (machine_type, None, None)


def test_gpus_attach_only_to_n1_among_cpu_machines():
    message = rejected(machine_type="n2-standard-8", gpu_spec=gpu("1xT4"))
    assert "n2-standard-8 takes no GPUs" in message and "n1-standard-8" in message
    # Without --nogpu the default P100 would be attached, which n2 can't take either.
    assert "--nogpu" in rejected(machine_type="e2-standard-8")


def test_nogpu_on_a_gpu_machine_lists_every_cpu_family():
    message = rejected(nogpu=True, machine_type="a4-highgpu-8g")
    assert "always carries 8xB200" in message
    assert "e2-standard-{4,8,16,32}" in message and "m1-megamem-96" in message


# ---------------------------------------------------------------- scheduling


def schedule(machine=None, **kwargs):
    return validate_scheduling(machine or check(gpu_spec=gpu("8xH100")), **kwargs)


def refused_schedule(machine=None, **kwargs) -> str:
    with pytest.raises(UsageError) as info:
        schedule(machine, **kwargs)
    assert info.value.exit_code == 2
    return info.value.message


def test_no_scheduling_flags_is_standard():
    assert schedule() == Scheduling(None, None, None)
    assert schedule(spot=True) == Scheduling("SPOT")


@pytest.mark.parametrize("spec", ["8xH100", "1xL4", "8xB200", "8xH200", "1xA100", "8xA100_80GB", "8xH100_MEGA"])
def test_flex_start_takes_the_documented_gpus(spec):
    assert schedule(check(gpu_spec=gpu(spec)), flex_start=True) == Scheduling("FLEX_START")


def test_flex_start_with_a_t4_is_refused_naming_the_gpus_that_work():
    message = refused_schedule(check(gpu_spec=gpu("1xT4")), flex_start=True)
    assert "--flex_start" in message and "1xT4" in message
    assert "L4" in message and "H100" in message and "B200" in message


def test_flex_start_refuses_the_default_p100_cpu_jobs_and_tpus():
    assert "1xP100" in refused_schedule(check(), flex_start=True)
    assert "CPU-only n1-highcpu-32" in refused_schedule(check(nogpu=True), flex_start=True)
    assert "8xV6E" in refused_schedule(check(tpu_spec=tpu("8xV6E")), flex_start=True)


def test_force_skips_the_flex_start_gpu_list_but_not_contradictions():
    t4 = check(gpu_spec=gpu("1xT4"))
    assert schedule(t4, flex_start=True, force=True) == Scheduling("FLEX_START")
    with pytest.raises(UsageError, match="--spot and --flex_start"):
        schedule(t4, flex_start=True, spot=True, force=True)


def test_spot_and_flex_start_are_mutually_exclusive():
    message = refused_schedule(spot=True, flex_start=True)
    assert "--spot and --flex_start" in message and "pass one" in message


def test_flex_start_jobs_run_at_most_seven_days():
    assert schedule(flex_start=True, timeout_seconds=7 * 86400) == Scheduling("FLEX_START")
    message = refused_schedule(flex_start=True, timeout_seconds=7 * 86400 + 1)
    assert "7 days" in message and "--timeout" in message


@pytest.mark.parametrize("text, seconds", [("0", 0), ("30m", 1800), ("2h", 7200), ("1d", 86400), ("1h30m", 5400)])
def test_max_wait_is_parsed_as_a_duration(text, seconds):
    assert schedule(flex_start=True, max_wait=text) == Scheduling("FLEX_START", seconds)


@pytest.mark.parametrize("text", ["soon", "-1h", "2 weeks", "1.5h", ""])
def test_bad_max_wait_names_the_flag_and_examples(text):
    message = refused_schedule(flex_start=True, max_wait=text)
    assert message.startswith("--max_wait") and "6h" in message and "0 waits" in message


def test_max_wait_is_bounded_and_needs_flex_start():
    assert "longer than a request can say" in refused_schedule(flex_start=True, max_wait="9999999999999d")
    assert "--flex_start" in refused_schedule(max_wait="2h")


def test_flex_start_and_reservation_need_vertex():
    from caliban import backends

    a100 = check(gpu_spec=gpu("1xA100"), backend="ml_v1")
    ml_v1 = backends.get("ml_v1")
    assert "--flex_start needs --backend vertex" in ml_v1.unsupported_options(_job(a100, flex_start=True))[0]
    assert "--reservation needs --backend vertex" in ml_v1.unsupported_options(
        _job(a100, reservation=RESERVATION))[0]


RESERVATION = "projects/my-project/zones/us-central1-a/reservations/h100-pool"


@pytest.mark.parametrize("name", [
    RESERVATION,
    "projects/123456789/zones/us-central1-b/reservations/r1",
    "projects/example.com:my-project/zones/us-central1-c/reservations/r1",
    RESERVATION + "/reservationBlocks/block-1",
    RESERVATION + "/reservationBlocks/block-1/reservationSubBlocks/sub-1",
])
def test_reservation_resource_names_are_accepted(name):
    assert schedule(reservation=name) == Scheduling(reservation=name)


def test_a_bare_reservation_name_is_refused_with_the_full_form():
    message = refused_schedule(reservation="h100-pool")
    assert "projects/PROJECT/zones/ZONE/reservations/NAME" in message
    assert "projects/my-project/zones/us-central1-a/reservations/h100-pool" in message


@pytest.mark.parametrize("name", ["", "projects/p/zones/us-central1-a/reservations/r",
                                  "projects/my-project/zones/../reservations/r", RESERVATION + "/../x",
                                  RESERVATION + "\n", "Projects/my-project/zones/us-central1-a/reservations/r",
                                  "x" * 5000])
def test_malformed_reservations_are_refused(name):
    message = refused_schedule(reservation=name)
    assert "projects/PROJECT/zones/ZONE/reservations/NAME" in message and len(message) < 400


def test_a_reservation_outside_the_region_is_refused():
    message = refused_schedule(reservation="projects/my-project/zones/europe-west4-b/reservations/r")
    assert "europe-west4-b" in message and "--region europe-west4" in message


def test_a_reservation_is_one_way_to_get_capacity():
    assert "--spot and --reservation" in refused_schedule(spot=True, reservation=RESERVATION)
    assert "--flex_start and --reservation" in refused_schedule(flex_start=True, reservation=RESERVATION)


@pytest.mark.parametrize("nodes", [0, -1, True, 1.5])
def test_node_count_must_be_positive(nodes):
    assert "at least 1" in refused_schedule(nodes=nodes)


def test_scheduling_values_fit_the_vertex_request_where_the_docstring_puts_them():
    from caliban.cloud.schema import job_body_errors

    h100 = check(gpu_spec=gpu("8xH100"))
    flex = schedule(flex_start=True, max_wait="3h")
    reserved = schedule(reservation=RESERVATION)
    disk = validate_disk(500, "hyperdisk-balanced")
    flex_body = vertex_request(_job(h100, flex_start=True, max_wait_seconds=flex.max_wait_seconds,
                                    boot_disk_size_gb=disk.size_gb, boot_disk_type=disk.disk_type))
    assert flex_body["jobSpec"]["scheduling"] == {"strategy": "FLEX_START", "maxWaitDuration": "10800s"}
    reserved_body = vertex_request(_job(h100, reservation=reserved.reservation))
    assert reserved_body["jobSpec"]["workerPoolSpecs"][0]["machineSpec"]["reservationAffinity"]["values"] == [
        RESERVATION]
    assert job_body_errors("vertex", flex_body) == [] and job_body_errors("vertex", reserved_body) == []


# ---------------------------------------------------------------- boot disks


@pytest.mark.parametrize("size, kind, expected", [
    (None, None, BootDisk(None, None)), (100, None, BootDisk(100, None)),
    ("64000", "pd-standard", BootDisk(64000, "pd-standard")), (None, "PD-SSD", BootDisk(None, "pd-ssd")),
    (250, "hyperdisk-balanced", BootDisk(250, "hyperdisk-balanced")),
])
def test_valid_boot_disks(size, kind, expected):
    assert validate_disk(size, kind) == expected


@pytest.mark.parametrize("size", [99, 64001, 0, "-5", "1e3", "big", True, "9" * 40])
def test_boot_disk_size_out_of_range_names_the_range(size):
    with pytest.raises(UsageError) as info:
        validate_disk(size, None)
    assert "--boot_disk_size" in info.value.message and "100 to 64000" in info.value.message


def test_boot_disk_type_lists_the_types():
    with pytest.raises(UsageError) as info:
        validate_disk(None, "pd-balanced")
    assert "pd-ssd, pd-standard, hyperdisk-balanced" in info.value.message
