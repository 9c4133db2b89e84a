"""Pydantic models shared by the stages: the contracts one stage hands to the next.

Each stage owns the behaviour; the data it exchanges with other stages is described here, in one place.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

# Time compression (`--time-scale`): every run's length, the monitor's interval and the one-machine
# cluster's autoscaler time constants are multiplied by it. One range for every command: 1 is the reference's
# timing; 0.001 turns the 30-minute reference profile into about 2 seconds, already shorter than is useful.
TIME_SCALE_MIN = 0.001
TIME_SCALE_MAX = 1.0

# The 11 Food-11 categories, in the order of their class ids.
FOOD11_CLASSES: list[str] = [
    "Bread",
    "Dairy product",
    "Dessert",
    "Egg",
    "Fried food",
    "Meat",
    "Noodles/Pasta",
    "Rice",
    "Seafood",
    "Soup",
    "Vegetable/Fruit",
]


class ModelSpec(BaseModel):
    """Everything serving needs to know about a model, stored in the artifact's ONNX metadata_props."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="short human name, e.g. food11-lite0-int8")
    class_names: list[str] = Field(min_length=2)
    input_size: int = Field(gt=0, description="square side of the network input in pixels")
    resize: int = Field(gt=0, description="the shorter image side is resized to this before the centre crop")
    crop: Literal["center", "none"] = "center"
    interpolation: Literal["bilinear", "bicubic"] = Field(default="bilinear", description="PIL resize filter")
    # "full" decodes every pixel (what PIL's Image.open(...).convert("RGB") gives, as most training code
    # does); "reduced" lets JPEG decoding scale down in the DCT domain to about the resize side: faster,
    # slightly different pixels, so only for a model whose accuracy was measured through it.
    decode: Literal["full", "reduced"] = "full"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    # Pixels are scaled to 0..1 (scale=1/255) before mean/std; a Keras model trained on x/255 uses
    # mean=(0,0,0), std=(1,1,1).
    scale: float = 1.0 / 255.0
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    output: Literal["logits", "probabilities"] = "logits"
    backbone: str = "unknown"
    precision: Literal["fp32", "fp16", "int8"] = "fp32"
    data: str = Field(default="", description="what the model was trained on")
    accuracy: dict[str, float] = Field(default_factory=dict, description="split name -> top-1 accuracy 0..1")
    profile: dict[str, float | str] = Field(
        default_factory=dict,
        description="latency (ms), peak RSS and size (MB) as `servetune model profile --record` measured them, "
                    "with the machine and date (latency belongs to a machine)",
    )
    version: str = "0"


class ReplicaStates(BaseModel):
    """What one resource sample's columns cannot say: the counted replicas by state, and how many of them had
    no usage measured yet (the usage columns count those as 0). One row of replica_states.csv."""

    time: str  # the resource_usage.csv row's own `time`
    ready: int
    starting: int  # placed, not ready yet (starting, probing, or waiting out a restart back-off)
    pending: int  # waiting for capacity: no node (no room on this machine) can take it
    terminating: int
    usage_unmeasured: int = 0  # never measured yet: a new pod before metrics-server's first sample of it


class ResourceSample(BaseModel):
    """One row of resource_usage.csv (the reference monitor's columns, every 5 s)."""

    time: str  # seconds since the monitor's first sample, round(t, 2), like the reference monitor
    n_replica: int
    cpu_req_core: float
    mem_req_KB: float
    cpu_lim_core: float
    mem_lim_KB: float
    cpu_use_core: float
    mem_use_KB: float
    states: ReplicaStates | None = Field(default=None, exclude=True)  # a live monitor's; not a CSV column


RESOURCE_COLUMNS: list[str] = [name for name in ResourceSample.model_fields if name != "states"]


class LoadRunRow(BaseModel):
    """One row of load_output.csv: siege's --log line for one (usually 60 s) run."""

    date_time: str  # siege's "%Y-%m-%d %H:%M:%S"
    trans: int
    elap_time: float  # seconds
    data_trans: float  # MB
    resp_time: float  # seconds, mean over the run
    trans_rate: float  # per second
    throughput: float  # MB per second
    concurrent: float
    okay: int
    failed: int


class RequestRecord(BaseModel):
    """One row of the per-request log (ours; siege has none)."""

    start: float  # unix time the request was (intended to be) sent
    latency_s: float
    status: int  # HTTP status, 0 for a connection error
    bytes: int
    phase: int
    replica: str = ""


class LocalReplica(BaseModel):
    """One replica (gunicorn worker) of the one-machine cluster."""

    pid: int | None  # None while Pending (does not fit the node)
    phase: Literal["Pending", "Running", "Terminating"]
    ready: bool
    started_at: float  # unix time
    reason: str = ""  # "CrashLoopBackOff" while it waits out its restart back-off


class LocalClusterState(BaseModel):
    """Written by the one-machine cluster (deploy/local.py) and read by its monitor (monitor/local.py)."""

    master_pid: int
    port: int
    cpu_request_cores: float
    mem_request_bytes: int
    cpu_limit_cores: float
    mem_limit_bytes: int
    limits_enforced: bool
    limits_note: str = ""
    restarts: int = 0
    restart_reasons: dict[str, int] = Field(default_factory=dict)  # "OOMKilled", "Error (SIGKILL)", ...
    desired_replicas: int
    replicas: list[LocalReplica]
    updated_at: float


# --- serve --------------------------------------------------------------------------------------------


class ClassProbability(BaseModel):
    label: str
    probability: float


class PredictionResponse(BaseModel):
    """The JSON answer of POST /predict and GET /test (compatible with the reference app's fields)."""

    prediction: str
    probability: float
    top_k: list[ClassProbability]
    inference_ms: float = Field(description="decode + preprocess + model time in the server")
    decode_ms: float
    preprocess_ms: float
    infer_ms: float
    model: str
    feedback_id: str | None = Field(
        default=None, description="with --feedback: the id to send to POST /feedback if the answer is wrong"
    )


# --- deployment ---------------------------------------------------------------------------------------

CONTAINER_NAME = "ml-app"  # the serving container: the reference resource monitor counts only containers so named


class ResourceAmounts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cpu: float = Field(ge=0.001, le=256, description="CPU cores, e.g. 0.5 (rendered as 500m)")
    memory_mb: int = Field(gt=0, le=1_048_576, description="memory in MiB (rendered as 512Mi)")


class ScalingPolicy(BaseModel):
    """autoscaling/v2 HPAScalingPolicy."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["Pods", "Percent"]
    value: int = Field(gt=0)
    period_seconds: int = Field(gt=0, le=1800)


class ScalingRules(BaseModel):
    """autoscaling/v2 HPAScalingRules (one direction of `behavior`)."""

    model_config = ConfigDict(extra="forbid")

    stabilization_window_seconds: int | None = Field(default=None, ge=0, le=3600)
    select_policy: Literal["Max", "Min", "Disabled"] = "Max"
    policies: list[ScalingPolicy] = Field(default_factory=list)


class ScalingBehavior(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scale_up: ScalingRules | None = None
    scale_down: ScalingRules | None = None


class AutoscalingSpec(BaseModel):
    """A HorizontalPodAutoscaler on CPU utilisation (percent of the CPU request)."""

    model_config = ConfigDict(extra="forbid")

    min_replicas: int = Field(default=1, ge=1, le=100)
    max_replicas: int = Field(default=3, ge=1, le=100)
    target_cpu_utilization: int = Field(default=70, ge=1, le=1000)
    behavior: ScalingBehavior | None = None

    @field_validator("max_replicas")
    @classmethod
    def _max_at_least_min(cls, value: int, info: ValidationInfo) -> int:
        low = info.data.get("min_replicas")
        if low is not None and value < low:
            raise ValueError(f"must be >= min_replicas ({low})")
        return value


class ProbeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    initial_delay_seconds: int = Field(default=0, ge=0, le=3600)
    period_seconds: int = Field(default=5, ge=1, le=3600)
    timeout_seconds: int = Field(default=2, ge=1, le=3600)
    success_threshold: int = Field(default=1, ge=1, le=100, description="readiness only; 1 for the others")
    failure_threshold: int = Field(default=3, ge=1, le=100)


class PostgresSpec(BaseModel):
    """A PostgreSQL server for the label store that `deploy` renders (StatefulSet + Service + Secret)."""

    model_config = ConfigDict(extra="forbid")

    image: str = "postgres:15"
    storage_gb: int = Field(default=1, ge=1, le=10_000, description="the data volume's size")
    storage_class: str | None = Field(default=None, description="None: the cluster's default")


class LabelsSpec(BaseModel):
    """Labels from users (serve --holdout-fraction and friends) and where the replicas store them."""

    model_config = ConfigDict(extra="forbid")

    holdout_fraction: float = Field(default=0.0, ge=0, le=1, description="share of uploads held out")
    review_below: float = Field(default=0.0, ge=0, le=1, description="queue shown uploads under this probability")
    feedback: bool = False
    label_ttl_s: int = Field(default=900, ge=10, le=7 * 86_400)
    label_rate_per_min: int = Field(default=120, ge=0, description="labels per client per minute; 0: no limit")
    database: Literal["sqlite", "postgresql"] = Field(
        default="sqlite", description="sqlite: one file (one machine only); postgresql: one server for every "
        "replica (Kubernetes: a StatefulSet rendered with the Deployment, unless database_secret is given)",
    )
    database_secret: str | None = Field(
        default=None, pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$",
        description="Kubernetes: an existing Secret whose key `url` is the postgresql:// URL (nothing rendered)",
    )
    postgres: PostgresSpec = PostgresSpec()


class DeploymentSpec(BaseModel):
    """One candidate deployment: what runs, how much it may hold, and how it scales. Read from YAML."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="ml-app", pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    model: str = Field(default="default", description="artifact path, or 'default' for the packaged model")
    image: str = "servetune:0.1.0"
    image_pull_policy: Literal["IfNotPresent", "Always", "Never"] = "IfNotPresent"
    namespace: str = Field(default="default", pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    node_port: int = Field(default=32000, ge=30000, le=32767)
    service_type: Literal["NodePort", "LoadBalancer"] = "NodePort"
    service_name: str | None = Field(default=None, pattern=r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$",
                                     description="the Service's name; None: the spec's name")
    service_port: int | None = Field(default=None, ge=1, le=65535, description="None: the container port")
    container_port: int = Field(default=5000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64, description="server worker processes per pod")
    threads: int | None = Field(default=None, ge=1, le=256, description="inference threads; None: CPU quota")
    requests: ResourceAmounts = ResourceAmounts(cpu=0.5, memory_mb=256)
    limits: ResourceAmounts | None = ResourceAmounts(cpu=1.0, memory_mb=512)
    replicas: int = Field(default=1, ge=0, le=100, description="initial replicas")
    autoscaling: AutoscalingSpec | None = None
    readiness_probe: ProbeSpec = ProbeSpec(period_seconds=2, failure_threshold=2)
    liveness_probe: ProbeSpec | None = ProbeSpec(period_seconds=10, timeout_seconds=5, failure_threshold=3)
    startup_probe: ProbeSpec | None = ProbeSpec(period_seconds=1, failure_threshold=60)  # None: no such probe
    termination_grace_period_seconds: int = Field(default=30, ge=1, le=3600)
    pre_stop_seconds: int = Field(default=5, ge=0, le=600, description="sleep before SIGTERM so endpoints drain")
    labels: LabelsSpec | None = Field(default=None, description="labels from users; None: off")

    @field_validator("pre_stop_seconds")
    @classmethod
    def _pre_stop_within_grace(cls, value: int, info: ValidationInfo) -> int:
        # The preStop sleep counts against the grace period; in-flight requests need the rest of it.
        grace = info.data.get("termination_grace_period_seconds")
        if grace is not None and value >= grace:
            raise ValueError(f"must be < termination_grace_period_seconds ({grace})")
        return value

    @field_validator("liveness_probe", "startup_probe")
    @classmethod
    def _one_success_is_enough(cls, value: ProbeSpec | None) -> ProbeSpec | None:
        if value is not None and value.success_threshold != 1:
            raise ValueError("success_threshold must be 1 (Kubernetes allows more for readiness only)")
        return value

    @property
    def service_object_name(self) -> str:
        return self.service_name or self.name

    @model_validator(mode="after")
    def _limits_cover_requests(self) -> DeploymentSpec:
        # Checked on the whole model: the default limits must cover requests given in a file too.
        limits, requests = self.limits, self.requests
        if limits is not None and limits.cpu < requests.cpu:
            raise ValueError(f"limits.cpu ({limits.cpu:g}) must be >= requests.cpu ({requests.cpu:g})")
        if limits is not None and limits.memory_mb < requests.memory_mb:
            raise ValueError(
                f"limits.memory_mb ({limits.memory_mb}) must be >= requests.memory_mb ({requests.memory_mb})"
            )
        return self

    @model_validator(mode="after")
    def _replicas_within_autoscaling_bounds(self) -> DeploymentSpec:
        hpa = self.autoscaling
        if hpa is None:
            return self
        if "replicas" not in self.model_fields_set:
            self.replicas = hpa.min_replicas  # an autoscaled deployment starts at its minimum
        elif not hpa.min_replicas <= self.replicas <= hpa.max_replicas:
            raise ValueError(
                f"replicas ({self.replicas}) must be within autoscaling.min_replicas..max_replicas "
                f"({hpa.min_replicas}..{hpa.max_replicas})"
            )
        return self


# --- load ---------------------------------------------------------------------------------------------


class LoadPhase(BaseModel):
    """A block of identical load runs: `repeats` runs of `duration_s` each, like `siege -c users -d delay -t`.

    Each run is one row of load_output.csv. In closed-loop mode every user sends a request, waits for the
    answer, then thinks a whole number of seconds drawn like siege does (0..delay). In open-loop mode requests
    arrive as a Poisson process at `rate` per second (default: the rate the users would offer if answers were
    instant, users / (delay / 2)).
    """

    model_config = ConfigDict(extra="forbid")

    users: int = Field(ge=1, le=10_000, description="concurrent virtual users (siege -c)")
    delay: float = Field(default=1.0, ge=0, le=3600, description="think time bound in seconds (siege -d)")
    duration_s: float = Field(default=60.0, gt=0, le=86_400, description="length of one run (siege -t)")
    repeats: int = Field(default=1, ge=1, le=10_000, description="runs in a row; each writes one log row")
    target: Literal["GET /test", "POST /predict"] = "GET /test"
    rate: float | None = Field(default=None, gt=0, le=1_000_000, description="open loop: arrivals per second")

    def open_loop_rate(self) -> float:
        """Arrivals per second for open-loop mode; ValueError when it has none (`LoadProfile.open_loop_problem`)."""
        if self.rate is not None:
            return self.rate
        if self.delay <= 0:
            raise ValueError("open-loop mode needs `rate` when delay is 0")
        return self.users / (self.delay / 2)


class LoadProfile(BaseModel):
    """A load test: phases run one after the other. Stored as YAML in src/servetune/load/profiles/."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    description: str = ""
    images: str | None = Field(default=None, description="image folder for POST /predict phases")
    time_scale: float = Field(
        default=1.0, gt=0, le=TIME_SCALE_MAX, description="run durations were multiplied by this"
    )
    phases: list[LoadPhase] = Field(min_length=1)

    def runs(self) -> list[tuple[int, LoadPhase]]:
        """(phase index, phase) for every run in order: a phase with repeats=5 appears 5 times."""
        return [(index, phase) for index, phase in enumerate(self.phases) for _ in range(phase.repeats)]

    def total_seconds(self) -> float:
        return sum(phase.duration_s * phase.repeats for phase in self.phases)

    def open_loop_problem(self) -> str | None:
        """Why the profile cannot run open-loop (`phase N: ...`, its first phase without an arrival rate), or
        None: the one check the load driver, the simulator and the command line make."""
        for index, phase in enumerate(self.phases):
            try:
                phase.open_loop_rate()
            except ValueError as error:
                return f"phase {index + 1}: {error}"
        return None


# --- analysis -----------------------------------------------------------------------------------------


class PhaseSummary(BaseModel):
    """The statistics of one load phase (its runs together), next to the load it offered."""

    phase: int = Field(description="phase index in the profile (or the run index when no profile is known)")
    label: str
    users: int | None = None
    delay: float | None = None
    offered_rate: float | None = Field(default=None, description="req/s the users offer if answers were instant")
    runs: int
    seconds: float
    okay: int
    failed: int
    transaction_rate: float = Field(description="sum(OKAY) / seconds")
    response_time_s: float | None = Field(description="sum(OKAY x Resp Time) / sum(OKAY)")
    latency_p50_s: float | None = None
    latency_p95_s: float | None = None
    latency_p99_s: float | None = None
    failure_rate: float | None = None
    mean_replicas: float | None = None
    cpu_used_core: float | None = None


class RunSummary(BaseModel):
    """What one evaluation measured: the four reference statistics first, then the rest."""

    run_dir: str
    name: str
    memory_requested_KB: float = Field(description="mean of mem_req_KB")
    memory_used_KB: float | None = Field(description="mean of mem_use_KB over the samples whose usage was "
                                         "measured; None when none was")
    transaction_rate: float = Field(description="sum(OKAY) / evaluation seconds (sum of Elap Time)")
    response_time_s: float | None = Field(description="sum(OKAY x Resp Time) / sum(OKAY); None without OKAY")
    cpu_requested_core: float
    cpu_used_core: float | None = Field(description="mean of cpu_use_core, over the same samples as memory used")
    cpu_limit_core: float
    memory_limit_KB: float
    replica_seconds: float = Field(description="n_replica integrated over the monitored time")
    pending_replica_seconds: float | None = Field(default=None, description="replicas waiting for capacity "
                                                  "(Pending), integrated over time (replica_states.csv)")
    max_pending: int | None = Field(default=None, description="the most replicas Pending at once")
    mean_replicas: float
    max_replicas: int
    samples: int = Field(default=0, description="resource samples")
    usage_samples: int = Field(default=0, description="resource samples whose usage was measured for every "
                               "replica (replica_states.csv; all of them without it)")
    evaluation_s: float = Field(description="sum of Elap Time over the load runs")
    runs: int
    transactions: int
    okay: int
    failed: int
    failure_rate: float = Field(description="failed / all requests (requests.csv if present, else the siege log)")
    requests: int | None = None
    latency_p50_s: float | None = None
    latency_p95_s: float | None = None
    latency_p99_s: float | None = None
    accuracy: float | None = None
    accuracy_source: str | None = None
    live_accuracy: float | None = Field(default=None, description="held-out user labels in this run (run.json)")
    live_accuracy_n: int | None = None
    live_accuracy_interval: tuple[float, float] | None = Field(default=None, description="95 % Wilson interval")
    live_accuracy_source: str | None = None
    model: str | None = None
    replica_restarts: int | None = Field(default=None, description="replicas that exited unasked (run.json)")
    restart_reasons: dict[str, int] = Field(default_factory=dict, description="OOMKilled, Error (SIGKILL), ...")
    others_cores: float | None = Field(default=None, description="cores other processes on the load's machine "
                                       "took during the load (run.json host_cpu)")
    machine_cores: int | None = Field(default=None, description="that machine's cores (run.json host_cpu)")
    others_counts: str | None = Field(default=None, description="what others_cores counts (run.json node_cpu on "
                                      "Kubernetes: the replicas' nodes; else host_cpu: this machine)")
    time_scale: float = Field(default=1.0, description="the run's --time-scale (run.json)")
    not_compressed: list[str] = Field(default_factory=list, description="what --time-scale could not compress "
                                      "on a real cluster (run.json time_scale_on_cluster)")
    phases: list[PhaseSummary] = Field(default_factory=list)
