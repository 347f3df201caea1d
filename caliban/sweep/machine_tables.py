"""What Google Cloud training offers, as plain data.

Every fact the cloud validation relies on lives here so that a new GPU, machine
family or region is a one-line change, not a code change. Nothing here imports
anything: this module loads with the CLI. When these tables lag behind Google,
`caliban cloud --force` sends the request as given.

Sources (facts, checked 2025): Compute Engine "GPU machine types" (N1 GPU
counts and vCPU limits, accelerator-optimized A2/A3/G2 shapes), Vertex AI
"locations" (training regions and accelerators per region), and the API enums
in the aiplatform v1 / ml v1 discovery documents.

Added 2026 (each block names its page): A4 (B200), A4X (GB200, Arm), G4 (RTX
PRO 6000), TPU v6e, the CPU families of Vertex's training machine list,
Dynamic Workload Scheduler (FLEX_START) eligibility, reservations and boot
disks. The AcceleratorType values are the ones google-api-python-client's
shipped aiplatform v1 discovery document accepts (revision 20261106): the
request is validated against it, so a value it does not list cannot be sent.
"""

from __future__ import annotations

# ---------------------------------------------------------------- regions

# The regions Caliban 0.4.2 documented for `--region`; users' configs name these.
# Caliban 0.4.2 pointed users at AI Platform Training's regions page for them.
# Source: https://cloud.google.com/ml-engine/docs/regions (AI Platform Training regions)
SEED_REGIONS: tuple[str, ...] = (
    "us-east4", "us-west1", "us-west2", "us-central1", "us-east1",
    "europe-west4", "europe-west1", "europe-north1",
    "asia-northeast1", "asia-east1", "asia-southeast1",
)

# Vertex AI custom-training regions.
# Source: https://cloud.google.com/vertex-ai/docs/general/locations (Vertex AI locations)
VERTEX_TRAINING_REGIONS: tuple[str, ...] = (
    "us-central1", "us-central2", "us-east1", "us-east4", "us-east5", "us-south1",
    "us-west1", "us-west2", "us-west3", "us-west4",
    "northamerica-northeast1", "northamerica-northeast2",
    "southamerica-east1", "southamerica-west1",
    "europe-central2", "europe-north1", "europe-southwest1",
    "europe-west1", "europe-west2", "europe-west3", "europe-west4",
    "europe-west6", "europe-west8", "europe-west9",
    "asia-east1", "asia-east2", "asia-northeast1", "asia-northeast2", "asia-northeast3",
    "asia-south1", "asia-southeast1", "asia-southeast2",
    "australia-southeast1", "australia-southeast2",
    "me-central1", "me-central2", "me-west1", "africa-south1",
)

# Derived: the union of the two lists above, so their pages:
# Source: https://cloud.google.com/ml-engine/docs/regions,
#   https://cloud.google.com/vertex-ai/docs/general/locations
REGIONS: tuple[str, ...] = tuple(sorted(set(SEED_REGIONS) | set(VERTEX_TRAINING_REGIONS)))

# Caliban 0.4.2's default; a Vertex training region.
# Source: https://cloud.google.com/vertex-ai/docs/general/locations (Vertex AI locations)
DEFAULT_REGION = "us-central1"

# ---------------------------------------------------------------- accelerator names

# What users type after `NUMx` (upper-cased, '-' read as '_') -> API enum.
# The short names are Caliban's; the values are AcceleratorType enum values.
# Source: https://cloud.google.com/vertex-ai/docs/reference/rest/v1/MachineSpec (AcceleratorType enum)
GPU_SHORT_NAMES: dict[str, str] = {
    "T4": "NVIDIA_TESLA_T4",
    "P4": "NVIDIA_TESLA_P4",
    "P100": "NVIDIA_TESLA_P100",
    "V100": "NVIDIA_TESLA_V100",
    "A100": "NVIDIA_TESLA_A100",
    "A100_40GB": "NVIDIA_TESLA_A100",
    "A100_80GB": "NVIDIA_A100_80GB",
    "L4": "NVIDIA_L4",
    "H100": "NVIDIA_H100_80GB",
    "H100_80GB": "NVIDIA_H100_80GB",
    "H100_MEGA": "NVIDIA_H100_MEGA_80GB",
    "H100_MEGA_80GB": "NVIDIA_H100_MEGA_80GB",
    "H200": "NVIDIA_H200_141GB",
    "H200_141GB": "NVIDIA_H200_141GB",
    # aiplatform v1 AcceleratorType (discovery revision 20261106).
    "B200": "NVIDIA_B200",
    "GB200": "NVIDIA_GB200",
    "RTX_PRO_6000": "NVIDIA_RTX_PRO_6000",
}

# TPU short names -> AcceleratorType enum values; TPU_V6E is Caliban's own
# name (see MACHINE_IMPLIED_TPU_TYPES), taken from the Cloud TPU v6e page.
# Source: https://cloud.google.com/vertex-ai/docs/reference/rest/v1/MachineSpec (AcceleratorType enum),
#   https://cloud.google.com/tpu/docs/v6e
TPU_SHORT_NAMES: dict[str, str] = {
    "V2": "TPU_V2",
    "V3": "TPU_V3",
    "V4": "TPU_V4_POD",
    "V4_POD": "TPU_V4_POD",
    "V5E": "TPU_V5_LITEPOD",
    "V5_LITEPOD": "TPU_V5_LITEPOD",
    "V6E": "TPU_V6E",
}

# TPU names Caliban knows that the AcceleratorType enum does not: Vertex reads
# the chips from the TPU VM machine type (ct6e-standard-*), so the request
# carries only machineType and tpuTopology, never these names.
# Source: https://cloud.google.com/vertex-ai/docs/reference/rest/v1/MachineSpec (enum lacks TPU_V6E),
#   https://cloud.google.com/vertex-ai/docs/training/training-with-tpu-vm (TPU v6e)
MACHINE_IMPLIED_TPU_TYPES: frozenset[str] = frozenset({"TPU_V6E"})

# Derived from the short-name tables above.
# Source: https://cloud.google.com/vertex-ai/docs/reference/rest/v1/MachineSpec (AcceleratorType enum)
GPU_TYPES: frozenset[str] = frozenset(GPU_SHORT_NAMES.values())
# Source: https://cloud.google.com/vertex-ai/docs/reference/rest/v1/MachineSpec (AcceleratorType enum),
#   https://cloud.google.com/tpu/docs/v6e
TPU_TYPES: frozenset[str] = frozenset(TPU_SHORT_NAMES.values())

# The shortest name for each enum, for messages and previews.
# Derived from GPU_SHORT_NAMES and TPU_SHORT_NAMES.
# Source: https://cloud.google.com/vertex-ai/docs/reference/rest/v1/MachineSpec (AcceleratorType enum)
SHORT_NAME: dict[str, str] = {}
for _short, _enum in (*GPU_SHORT_NAMES.items(), *TPU_SHORT_NAMES.items()):
    if _enum not in SHORT_NAME or len(_short) < len(SHORT_NAME[_enum]):
        SHORT_NAME[_enum] = _short
del _short, _enum

# Accepted by the API enum but no longer served; the value is the message.
# MachineSpec marks NVIDIA_TESLA_K80 deprecated and links the K80 end-of-life page.
# Source: https://cloud.google.com/compute/docs/eol/k80-eol,
#   https://cloud.google.com/vertex-ai/docs/reference/rest/v1/MachineSpec
END_OF_LIFE: dict[str, str] = {
    "K80": "K80 GPUs reached end of life on Google Cloud (2024-05-01) and can no longer be "
    "requested; use T4, L4 or V100 instead (e.g. --gpu_spec 1xT4)",
}
END_OF_LIFE["NVIDIA_TESLA_K80"] = END_OF_LIFE["K80"]

# Caliban 0.4.2's default GPU: kept so old command lines mean the same job, but
# P100s (2016) are scarce in the few regions that still have them.
# Source: https://cloud.google.com/compute/docs/gpus (P100 on N1; L4 on G2),
#   https://cloud.google.com/vertex-ai/docs/general/locations
DEFAULT_GPU_ADVICE = (
    "the default GPU is 1xP100 (Caliban 0.4.2's default): P100s are old and scarce; pass "
    "--gpu_spec 1xL4 --machine_type g2-standard-4, or --gpu_spec 1xT4, to get a current GPU sooner"
)

# ---------------------------------------------------------------- machine types

def _family(prefix: str, sizes: tuple[int, ...]) -> dict[str, int]:
    return {f"{prefix}-{size}": size for size in sizes}


# General-purpose N1 machines -> vCPUs (the seed's list). GPUs attach to these.
# Source: https://cloud.google.com/vertex-ai/docs/training/configure-compute (Machine types),
#   https://cloud.google.com/compute/docs/gpus (N1 GPUs)
N1_MACHINE_VCPUS: dict[str, int] = {
    **_family("n1-standard", (4, 8, 16, 32, 64, 96)),
    **_family("n1-highmem", (2, 4, 8, 16, 32, 64, 96)),
    **_family("n1-highcpu", (16, 32, 64, 96)),
}

# Other CPU families in Vertex AI's custom-training machine list ("Configure
# compute resources for custom training", Machine types). They take no GPUs.
# Source: https://cloud.google.com/vertex-ai/docs/training/configure-compute (Machine types)
OTHER_CPU_MACHINE_TYPES: tuple[str, ...] = (
    *_family("e2-standard", (4, 8, 16, 32)),
    *_family("e2-highmem", (2, 4, 8, 16)),
    *_family("e2-highcpu", (16, 32)),
    *_family("n2-standard", (4, 8, 16, 32, 48, 64, 80)),
    *_family("n2-highmem", (2, 4, 8, 16, 32, 48, 64, 80)),
    *_family("n2-highcpu", (16, 32, 48, 64, 80)),
    *_family("c2-standard", (4, 8, 16, 30, 60)),
    "m1-ultramem-40", "m1-ultramem-80", "m1-ultramem-160", "m1-megamem-96",
)

# Derived: N1_MACHINE_VCPUS and OTHER_CPU_MACHINE_TYPES.
# Source: https://cloud.google.com/vertex-ai/docs/training/configure-compute (Machine types)
CPU_MACHINE_TYPES: frozenset[str] = frozenset((*N1_MACHINE_VCPUS, *OTHER_CPU_MACHINE_TYPES))

# Accelerator-optimized machines carry a fixed GPU: machine -> (enum, count, vCPUs).
# Source: https://cloud.google.com/compute/docs/accelerator-optimized-machines (A2/A3/A4/A4X/G2/G4 shapes),
#   https://cloud.google.com/compute/docs/gpus (GPU machine types),
#   https://cloud.google.com/vertex-ai/docs/training/configure-compute (which of them Vertex training lists)
ACCELERATOR_OPTIMIZED: dict[str, tuple[str, int, int]] = {
    "a2-highgpu-1g": ("NVIDIA_TESLA_A100", 1, 12),
    "a2-highgpu-2g": ("NVIDIA_TESLA_A100", 2, 24),
    "a2-highgpu-4g": ("NVIDIA_TESLA_A100", 4, 48),
    "a2-highgpu-8g": ("NVIDIA_TESLA_A100", 8, 96),
    "a2-megagpu-16g": ("NVIDIA_TESLA_A100", 16, 96),
    "a2-ultragpu-1g": ("NVIDIA_A100_80GB", 1, 12),
    "a2-ultragpu-2g": ("NVIDIA_A100_80GB", 2, 24),
    "a2-ultragpu-4g": ("NVIDIA_A100_80GB", 4, 48),
    "a2-ultragpu-8g": ("NVIDIA_A100_80GB", 8, 96),
    "a3-highgpu-1g": ("NVIDIA_H100_80GB", 1, 26),
    "a3-highgpu-2g": ("NVIDIA_H100_80GB", 2, 52),
    "a3-highgpu-4g": ("NVIDIA_H100_80GB", 4, 104),
    "a3-highgpu-8g": ("NVIDIA_H100_80GB", 8, 208),
    "a3-megagpu-8g": ("NVIDIA_H100_MEGA_80GB", 8, 208),
    "a3-ultragpu-8g": ("NVIDIA_H200_141GB", 8, 224),
    "g2-standard-4": ("NVIDIA_L4", 1, 4),
    "g2-standard-8": ("NVIDIA_L4", 1, 8),
    "g2-standard-12": ("NVIDIA_L4", 1, 12),
    "g2-standard-16": ("NVIDIA_L4", 1, 16),
    "g2-standard-24": ("NVIDIA_L4", 2, 24),
    "g2-standard-32": ("NVIDIA_L4", 1, 32),
    "g2-standard-48": ("NVIDIA_L4", 4, 48),
    "g2-standard-96": ("NVIDIA_L4", 8, 96),
    # Compute Engine "GPU machine types": A4 (8 B200, x86), A4X (4 GB200 per
    # VM, Arm Grace CPUs), G4 (RTX PRO 6000). Vertex training lists a4 and a4x.
    "a4-highgpu-8g": ("NVIDIA_B200", 8, 224),
    "a4x-highgpu-4g": ("NVIDIA_GB200", 4, 140),
    "g4-standard-48": ("NVIDIA_RTX_PRO_6000", 1, 48),
    "g4-standard-96": ("NVIDIA_RTX_PRO_6000", 2, 96),
    "g4-standard-192": ("NVIDIA_RTX_PRO_6000", 4, 192),
    "g4-standard-384": ("NVIDIA_RTX_PRO_6000", 8, 384),
}

# Machines whose CPUs are Arm (Vertex "training clusters: compute resources",
# A4X: "CPU Architecture ARM ... must use a container image that is built for
# the ARM architecture"). Caliban builds an x86-64 image, which cannot start there.
# Source: https://cloud.google.com/vertex-ai/docs/training/training-clusters/compute-resources,
#   https://cloud.google.com/compute/docs/accelerator-optimized-machines (A4X)
ARM_MACHINE_TYPES: frozenset[str] = frozenset({"a4x-highgpu-4g"})

# Accelerators the API enum accepts but Vertex's custom-training machine list
# did not show when this table was written; --force sends them anyway.
# Source: https://cloud.google.com/vertex-ai/docs/training/configure-compute (training list),
#   https://cloud.google.com/vertex-ai/docs/predictions/configure-compute (prediction list)
NOT_LISTED_FOR_TRAINING: dict[str, str] = {
    "NVIDIA_RTX_PRO_6000": "RTX PRO 6000 (g4 machines) is not in Vertex AI's custom-training machine "
    "list Caliban knows (it is documented for prediction)",
}

# The seed's TPU pseudo machine type (ml v1 spelling) and Vertex's spelling.
# Source: https://cloud.google.com/ml-engine/reference/rest/v1/AcceleratorType (ml v1 TPUs;
#   closest page confirmed: the `cloud_tpu` machine type string itself was not seen there)
CLOUD_TPU = "cloud_tpu"
# Source: https://cloud.google.com/vertex-ai/docs/training/configure-compute (TPU v2/v3: cloud-tpu)
VERTEX_CLOUD_TPU = "cloud-tpu"

# Derived: every machine table above plus the TPU pseudo machine type.
# Source: https://cloud.google.com/vertex-ai/docs/training/configure-compute,
#   https://cloud.google.com/compute/docs/accelerator-optimized-machines
MACHINE_TYPES: tuple[str, ...] = (*N1_MACHINE_VCPUS, *OTHER_CPU_MACHINE_TYPES, *ACCELERATOR_OPTIMIZED, CLOUD_TPU)

# GPUs that attach to N1 machines: enum -> {GPU count: most vCPUs allowed}.
# Source: https://cloud.google.com/compute/docs/gpus (N1 general-purpose GPU counts and vCPU limits)
N1_GPU_VCPU_LIMITS: dict[str, dict[int, int]] = {
    "NVIDIA_TESLA_T4": {1: 48, 2: 48, 4: 96},
    "NVIDIA_TESLA_P4": {1: 24, 2: 48, 4: 96},
    "NVIDIA_TESLA_V100": {1: 12, 2: 24, 4: 48, 8: 96},
    "NVIDIA_TESLA_P100": {1: 16, 2: 32, 4: 96},
}

# ---------------------------------------------------------------- TPUs

# TPU enum -> {count: (Vertex machine type, TPU topology or None)}. On `cloud-tpu`
# the body names the accelerator; a ct5lp machine type implies its chips.
# TPU v4 pods are not offered for Vertex custom training: --force sends one anyway.
# Source: https://cloud.google.com/vertex-ai/docs/training/configure-compute (TPUs),
#   https://cloud.google.com/vertex-ai/docs/training/training-with-tpu-vm,
#   https://cloud.google.com/tpu/docs/v5e,
#   https://cloud.google.com/tpu/docs/v6e (slice shapes)
TPU_SHAPES: dict[str, dict[int, tuple[str, str | None]]] = {
    "TPU_V2": {8: (VERTEX_CLOUD_TPU, None)},
    "TPU_V3": {8: (VERTEX_CLOUD_TPU, None)},
    "TPU_V4_POD": {},
    "TPU_V5_LITEPOD": {
        1: ("ct5lp-hightpu-1t", "1x1"),
        4: ("ct5lp-hightpu-4t", "2x2"),
        8: ("ct5lp-hightpu-8t", "2x4"),
    },
    # Cloud TPU "TPU v6e" single-host slices (v6e-1/-4/-8: machine type and
    # topology). Vertex training takes them as it takes ct5lp (issue 13; the
    # Vertex page itself could not be read here). Larger slices span several
    # hosts (replicaCount > 1), which a Caliban job does not request.
    "TPU_V6E": {
        1: ("ct6e-standard-1t", "1x1"),
        4: ("ct6e-standard-4t", "2x2"),
        8: ("ct6e-standard-8t", "2x4"),
    },
}

# TPU VM machine type -> (TPU enum, chips, topology): `--machine_type ct6e-standard-8t`
# alone means 8xV6E.
# Derived from TPU_SHAPES.
# Source: https://cloud.google.com/vertex-ai/docs/training/configure-compute (TPUs),
#   https://cloud.google.com/tpu/docs/v5e,
#   https://cloud.google.com/tpu/docs/v6e
TPU_VM_MACHINES: dict[str, tuple[str, int, str | None]] = {
    machine: (tpu_type, count, topology)
    for tpu_type, shapes in TPU_SHAPES.items()
    for count, (machine, topology) in shapes.items()
    if machine != VERTEX_CLOUD_TPU
}

# ---------------------------------------------------------------- availability

# Accelerator enum -> regions where Vertex AI training offers it. B200, GB200,
# RTX PRO 6000 and TPU v6e are absent on purpose: their per-region Vertex
# training availability could not be confirmed, so the API decides, not Caliban.
# Source: https://cloud.google.com/vertex-ai/docs/general/locations (accelerators by region)
ACCELERATOR_REGIONS: dict[str, frozenset[str]] = {
    "NVIDIA_TESLA_T4": frozenset({
        "us-central1", "us-east1", "us-east4", "us-west1", "us-west2", "us-west4",
        "northamerica-northeast1", "southamerica-east1",
        "europe-west1", "europe-west2", "europe-west3", "europe-west4",
        "asia-east1", "asia-northeast1", "asia-northeast3", "asia-south1", "asia-southeast1",
        "australia-southeast1", "me-west1",
    }),
    "NVIDIA_TESLA_P4": frozenset({
        "us-central1", "us-east4", "us-west2", "northamerica-northeast1",
        "europe-west4", "asia-southeast1", "australia-southeast1",
    }),
    "NVIDIA_TESLA_P100": frozenset({
        "us-central1", "us-east1", "us-west1", "europe-west1", "europe-west4", "asia-east1",
    }),
    "NVIDIA_TESLA_V100": frozenset({
        "us-central1", "us-east1", "us-west1", "europe-west4", "asia-east1",
    }),
    "NVIDIA_TESLA_A100": frozenset({
        "us-central1", "us-east1", "us-west1", "us-west3", "us-west4",
        "europe-west4", "asia-northeast1", "asia-northeast3", "asia-southeast1", "me-west1",
    }),
    "NVIDIA_A100_80GB": frozenset({
        "us-central1", "us-east4", "us-east5", "europe-west4", "asia-southeast1",
    }),
    "NVIDIA_L4": frozenset({
        "us-central1", "us-east1", "us-east4", "us-west1", "us-west4",
        "europe-west1", "europe-west2", "europe-west3", "europe-west4",
        "asia-east1", "asia-northeast1", "asia-northeast3", "asia-south1", "asia-southeast1",
    }),
    "NVIDIA_H100_80GB": frozenset({
        "us-central1", "us-east4", "us-east5", "us-west1", "europe-west4", "asia-southeast1",
    }),
    "NVIDIA_H100_MEGA_80GB": frozenset({
        "us-central1", "us-east4", "us-east5", "europe-west4", "asia-southeast1",
    }),
    "NVIDIA_H200_141GB": frozenset({
        "us-central1", "us-east4", "us-east5", "us-south1", "europe-west1", "asia-south1",
    }),
    "TPU_V2": frozenset({"us-central1", "europe-west4", "asia-east1"}),
    "TPU_V3": frozenset({"us-central1", "europe-west4"}),
    "TPU_V4_POD": frozenset({"us-central2"}),
    "TPU_V5_LITEPOD": frozenset({"us-central1", "us-west1", "us-west4", "us-south1", "europe-west4"}),
}

# ---------------------------------------------------------------- quotas

# The documented per-region quota on job creation requests per minute.
# Source: https://cloud.google.com/vertex-ai/docs/quotas (job or LRO submission requests)
CREATE_JOBS_PER_MINUTE = 60

# Accelerator enums the legacy ml v1 API accepts (its AcceleratorConfig.type enum).
# Source: https://cloud.google.com/ml-engine/reference/rest/v1/AcceleratorType
ML_V1_ACCELERATOR_TYPES: frozenset[str] = frozenset({
    "NVIDIA_TESLA_P100", "NVIDIA_TESLA_V100", "NVIDIA_TESLA_P4", "NVIDIA_TESLA_T4",
    "NVIDIA_TESLA_A100", "TPU_V2", "TPU_V3", "TPU_V4_POD",
})

# ---------------------------------------------------------------- defaults (as in Caliban 0.4.2)

# Caliban 0.4.2's choices, not Google facts; the pages show they are valid
# (P100 attaches to N1; both N1 shapes are Vertex training machines).
# Source: https://cloud.google.com/compute/docs/gpus (N1 GPUs),
#   https://cloud.google.com/vertex-ai/docs/training/configure-compute (Machine types)
DEFAULT_GPU_MACHINE_TYPE = "n1-standard-8"
# Source: https://cloud.google.com/compute/docs/gpus (N1 GPUs)
DEFAULT_GPU_COUNT = 1
# Source: https://cloud.google.com/compute/docs/gpus (N1 GPUs),
#   https://cloud.google.com/vertex-ai/docs/reference/rest/v1/MachineSpec (AcceleratorType enum)
DEFAULT_GPU_TYPE = "NVIDIA_TESLA_P100"
# Source: https://cloud.google.com/vertex-ai/docs/training/configure-compute (Machine types)
DEFAULT_CPU_MACHINE_TYPE = "n1-highcpu-32"

# ---------------------------------------------------------------- scheduling (Vertex AI)

# "Schedule training jobs based on resource availability" (Dynamic Workload
# Scheduler): scheduling.strategy FLEX_START needs L4, A100, H100, H200 or B200
# GPUs, a timeout of 7 days or less, and the same machine in every worker pool.
# Source: https://cloud.google.com/vertex-ai/docs/training/schedule-jobs-dws
FLEX_START_GPU_TYPES: frozenset[str] = frozenset({
    "NVIDIA_L4", "NVIDIA_TESLA_A100", "NVIDIA_A100_80GB", "NVIDIA_H100_80GB",
    "NVIDIA_H100_MEGA_80GB", "NVIDIA_H200_141GB", "NVIDIA_B200",
})
# Source: https://cloud.google.com/vertex-ai/docs/training/schedule-jobs-dws (timeout of 7 days or less)
FLEX_START_MAX_TIMEOUT_SECONDS = 7 * 86400
# Scheduling.maxWaitDuration (aiplatform v1 discovery): "If set to 0, the job
# will wait indefinitely. The default is 24 hours." No maximum is documented;
# a google-duration cannot exceed protobuf Duration's 315,576,000,000 seconds.
# Source: https://cloud.google.com/vertex-ai/docs/reference/rest/v1/CustomJobSpec (Scheduling.maxWaitDuration),
#   https://cloud.google.com/vertex-ai/docs/training/schedule-jobs-dws
FLEX_START_DEFAULT_WAIT_SECONDS = 86400
# The JSON form of google.protobuf.Duration allows at most +-315,576,000,000 s.
# Source: https://protobuf.dev/reference/protobuf/google.protobuf/#duration
MAX_DURATION_SECONDS = 315_576_000_000

# ReservationAffinity (aiplatform v1 discovery): a SPECIFIC_RESERVATION is named
# by this key, and its value "must be the resource name of the reservation,
# reservation block, or reservation sub-block".
# Source: https://cloud.google.com/vertex-ai/docs/reference/rest/v1/MachineSpec (ReservationAffinity)
RESERVATION_AFFINITY_TYPE = "SPECIFIC_RESERVATION"
# Source: https://cloud.google.com/vertex-ai/docs/reference/rest/v1/MachineSpec (ReservationAffinity.key)
RESERVATION_NAME_KEY = "compute.googleapis.com/reservation-name"

# DiskSpec (aiplatform v1 discovery): bootDiskType "pd-ssd", "pd-standard" or
# "hyperdisk-balanced"; bootDiskSizeGb defaults to 100. Vertex's "Configure
# compute resources for custom training" (Boot disk options) allows 100 to 64,000 GB.
# Source: https://cloud.google.com/vertex-ai/docs/reference/rest/v1/CustomJobSpec (WorkerPoolSpec.diskSpec),
#   https://cloud.google.com/vertex-ai/docs/training/configure-compute (Boot disk options)
BOOT_DISK_TYPES: tuple[str, ...] = ("pd-ssd", "pd-standard", "hyperdisk-balanced")
# Source: https://cloud.google.com/vertex-ai/docs/training/configure-compute (Boot disk options),
#   https://cloud.google.com/vertex-ai/docs/reference/rest/v1/CustomJobSpec (DiskSpec default 100)
BOOT_DISK_MIN_GB = 100
# Source: https://cloud.google.com/vertex-ai/docs/training/configure-compute (Boot disk options)
BOOT_DISK_MAX_GB = 64_000
