"""Policy bundle: schema, merge and validation.

Merge order: package defaults -> fleet directory -> profile overlay -> ship overrides.
Every leaf remembers the file it came from, so a validation error names the file and the
key path that caused it, for every error at once.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from shared.taxonomy import IncidentType, Severity

SEGMENTS = (
    "ingest",
    "detect",
    "correlate",
    "notify",
    "remediate",
    "llm",
    "retention",
    "privacy",
    "slo",
    "sync",
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ------------------------------------------------------------------ ingest


class MicroBatch(Strict):
    max_events: int = Field(ge=1, le=100_000)
    max_delay_ms: float = Field(gt=0, le=1000)


class RoleRule(Strict):
    match: str
    role: str


class DeviceInfo(Strict):
    role: str | None = None
    path: str | None = None
    location: str | None = None
    critical: bool = False


class IngestPolicy(Strict):
    max_message_bytes: int = Field(ge=256, le=16 * 1024 * 1024)
    max_http_body_bytes: int = Field(ge=1024)
    max_batch_items: int = Field(ge=1)
    micro_batch: MicroBatch
    queue_limit: int = Field(ge=100)
    nats_subject: str
    device_roles: list[RoleRule]
    inventory: dict[str, DeviceInfo]

    def role_of(self, device: str) -> str:
        info = self.inventory.get(device)
        if info is not None and info.role:
            return info.role
        for rule in self.device_roles:
            if fnmatchcase(device, rule.match):
                return rule.role
        return "unknown"


# ------------------------------------------------------------------ detect


class ThresholdRule(Strict):
    name: str
    metric: str
    op: Literal["<", "<=", ">", ">="]
    value: float
    for_s: float = Field(ge=0)
    type: IncidentType
    score: float = Field(default=0.95, ge=0, le=1)


class LogPattern(Strict):
    name: str
    pattern: str
    count: int = Field(ge=1)
    window_s: float = Field(gt=0)
    type: IncidentType
    score: float = Field(default=0.9, ge=0, le=1)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from exc
        return v


class BaselinePolicy(Strict):
    """How a statistical detector learns a series' normal: an EWMA level and mean absolute
    deviation (rate `alpha` per sample, a plain running mean for the first samples), plus
    the usual offset from that level in each of `daily_bins` slices of the UTC day, with a
    memory of `profile_days` days, used once a slice has `profile_min_days` of samples
    (0 bins: no daily profile)."""

    enabled: bool
    weight: float = Field(gt=0, le=1)
    exclude: list[str]
    alpha: float = Field(gt=0, lt=1)
    warmup_points: int = Field(ge=1)
    min_deviation: float = Field(gt=0)
    daily_bins: int = Field(ge=0, le=1440)
    profile_days: float = Field(ge=1)
    profile_min_days: float = Field(gt=0)
    holdoff_points: int = Field(ge=0)


class RobustPolicy(BaselinePolicy):
    """Point anomalies: the mean |z| over the last `short_points` samples is compared with
    its own running distribution (rate `likelihood_alpha`) and flagged when its upper tail
    probability is below `likelihood_eps`; a value beyond the series' whole observed range
    by `range_margin` of it, at least `range_min_z` deviations from normal, is flagged too."""

    short_points: int = Field(ge=1, le=1000)
    likelihood_alpha: float = Field(gt=0, lt=1)
    likelihood_eps: float = Field(gt=0, lt=0.5)
    range_margin: float = Field(ge=0)
    range_min_z: float = Field(ge=0)


class ChangepointPolicy(BaselinePolicy):
    """Level shifts: a two-sided CUSUM of the standardised residual, less `drift` per
    point, flagged when either side exceeds `threshold`, then restarted."""

    drift: float = Field(ge=0)
    threshold: float = Field(gt=0)


class HstPolicy(Strict):
    enabled: bool
    weight: float = Field(gt=0, le=1)
    n_trees: int = Field(ge=1, le=100)
    height: int = Field(ge=2, le=16)
    window_size: int = Field(ge=10)
    threshold: float = Field(gt=0, le=1)
    min_consecutive: int = Field(ge=1)
    warmup_vectors: int = Field(ge=1)
    seed: int
    # a one-KPI device is the robust and change-point detectors' job
    min_features: int = Field(default=2, ge=1)


class TemplatePolicy(Strict):
    sim_th: float = Field(gt=0, lt=1)
    depth: int = Field(ge=3)
    max_clusters: int = Field(ge=10)
    new_template_grace_s: float = Field(ge=0)
    new_template_score: float = Field(ge=0, le=1)
    rare_max_count: int = Field(ge=1)


class ErrorBurstPolicy(Strict):
    max_severity: int = Field(ge=0, le=7)
    count: int = Field(ge=1)
    window_s: float = Field(gt=0)
    type: IncidentType
    score: float = Field(ge=0, le=1)


class MetricTypeRule(Strict):
    match: str
    type: IncidentType


class DetectPolicy(Strict):
    repeat_s: float = Field(gt=0)
    thresholds: list[ThresholdRule]
    log_patterns: list[LogPattern]
    robust: RobustPolicy
    changepoint: ChangepointPolicy
    hst: HstPolicy
    templates: TemplatePolicy
    error_burst: ErrorBurstPolicy
    metric_types: list[MetricTypeRule]

    def type_of_metric(self, metric: str) -> IncidentType:
        for rule in self.metric_types:
            if fnmatchcase(metric, rule.match):
                return rule.type
        return IncidentType.RESOURCE_PRESSURE


# ------------------------------------------------------------------ correlate


class Escalation(Strict):
    after_s: float = Field(gt=0)
    anomaly_count: int = Field(ge=1)


class MaintenanceWindow(Strict):
    """Either weekly (weekday + HH:MM start/end, UTC) or absolute (start_ts/end_ts, epoch s)."""

    name: str
    devices: list[str] = ["*"]
    weekday: (
        Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"] | None
    ) = None
    start: str | None = Field(default=None, pattern=r"^\d\d:\d\d$")
    end: str | None = Field(default=None, pattern=r"^\d\d:\d\d$")
    start_ts: float | None = None
    end_ts: float | None = None


class CorrelatePolicy(Strict):
    windows_s: dict[IncidentType, float]
    dedup_ttl_s: float = Field(gt=0)
    suppression_ttl_s: float = Field(gt=0)
    max_evidence: int = Field(ge=1)
    open_min_score: float = Field(ge=0, le=1)
    severity: dict[IncidentType, Severity]
    escalation: Escalation
    type_precedence: list[IncidentType]
    paths: dict[str, list[str]]
    path_types: list[IncidentType]
    type_groups: dict[str, list[IncidentType]]
    maintenance_windows: list[MaintenanceWindow]

    @field_validator("windows_s", "severity")
    @classmethod
    def _every_type(cls, v: dict[IncidentType, Any]) -> dict[IncidentType, Any]:
        missing = [t.value for t in IncidentType if t not in v]
        if missing:
            raise ValueError(f"missing incident types: {', '.join(missing)}")
        return v


# ------------------------------------------------------------------ the rest


_HHMM = r"^([01]\d|2[0-3]):[0-5]\d$"
_ADDRESS = r"^[^@\s]+@[^@\s]+$"


class NotifyChannelBase(Strict):
    """Where notifications go: on the ship (the crew, through the ship's own network) or at
    the hub (fleet operations). A channel takes incidents at `min_severity` or above;
    `recipients` name who, per severity. Secrets are never in the policy: a channel names
    the environment variable that holds one."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    side: Literal["ship", "hub"]
    min_severity: Severity = Severity.LOW
    recipients: dict[Severity, list[Annotated[str, Field(pattern=_ADDRESS)]]] = Field(
        default_factory=dict
    )
    timeout_s: float = Field(default=10.0, gt=0, le=300)


class WebhookChannel(NotifyChannelBase):
    """An HTTP POST of the notification as JSON; signed (HMAC-SHA256 of the body) when
    `secret_env` names a variable holding the key. Recipients, if any, travel in the body
    for the receiver to route."""

    type: Literal["webhook"]
    url: str = Field(pattern=r"^https?://")
    secret_env: str | None = None


class SmtpChannel(NotifyChannelBase):
    """E-mail through an SMTP relay, to the addresses listed for the incident's severity: a
    severity with no addresses is not mailed."""

    type: Literal["smtp"]
    host: str
    port: int = Field(default=25, ge=1, le=65535)
    starttls: bool = False
    ssl: bool = False  # implicit TLS (usually port 465)
    username: str | None = None
    password_env: str | None = None
    sender: str = Field(pattern=_ADDRESS)

    @model_validator(mode="after")
    def _consistent(self) -> SmtpChannel:
        if self.ssl and self.starttls:
            raise ValueError("ssl and starttls exclude each other")
        if self.username and not self.password_env:
            raise ValueError("username needs password_env (the variable holding the password)")
        if not any(self.recipients.values()):
            raise ValueError("an smtp channel needs recipients for at least one severity")
        return self


NotifyChannel = Annotated[WebhookChannel | SmtpChannel, Field(discriminator="type")]


class QuietHours(Strict):
    """Local time in `notify.timezone`; start == end means none. Across midnight is fine."""

    start: str = Field(pattern=_HHMM)
    end: str = Field(pattern=_HHMM)
    min_severity: Severity


class StormPolicy(Strict):
    threshold: int = Field(ge=2)  # this many changes within window_s are a storm
    window_s: float = Field(gt=0)


class NotifyRetry(Strict):
    base_s: float = Field(gt=0)  # first retry after this, doubling each attempt
    max_s: float = Field(gt=0)  # up to this; attempts never stop while the spool holds it


class NotifySpool(Strict):
    max_pending: int = Field(ge=1)  # beyond: the oldest of the lowest severity are dropped
    keep_days: float = Field(gt=0)  # sent rows are kept this long (and so never sent twice)


class NotifyPolicy(Strict):
    enabled: bool
    timezone: str = "UTC"
    channels: list[NotifyChannel]
    quiet_hours: QuietHours | None
    storm: StormPolicy
    rate_limit_per_hour: int = Field(ge=0)  # per channel, digests included; 0: no limit
    retry: NotifyRetry
    spool: NotifySpool

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r}") from exc
        return v

    @field_validator("channels")
    @classmethod
    def _unique_names(cls, v: list[WebhookChannel | SmtpChannel]) -> list[Any]:
        names = [c.name for c in v]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"channel names must be unique: {', '.join(twice)}")
        return v


class RemediationAction(Strict):
    risk: Literal["low", "medium", "high"]
    cooldown_s: float = Field(ge=0)
    retries: int = Field(ge=0)
    approval: Literal["auto", "single", "two_person"]
    pre_check: bool = False
    post_check: bool = False


class ExecutorPolicy(Strict):
    """How approved actions run: `dry_run` (the default) only says what it would do;
    `shell` runs the command lines given per action and step, `{target}` filled in."""

    kind: Literal["dry_run", "shell"] = "dry_run"
    timeout_s: float = Field(default=60, gt=0)
    commands: dict[str, dict[Literal["pre_check", "run", "post_check", "rollback"], str]] = Field(
        default_factory=dict
    )


class RemediatePolicy(Strict):
    actions: dict[str, RemediationAction]
    forbidden_targets: list[str]
    maintenance_window: dict[str, str]
    rollback_within_s: float = Field(gt=0)
    zones: dict[str, str] = Field(default_factory=dict)  # device role -> zone
    never_auto: list[str] = Field(default_factory=list)  # zones a person always decides for
    crew_may_approve_offline: bool = True
    executor: ExecutorPolicy = Field(default_factory=ExecutorPolicy)

    def zone_of(self, role: str) -> str:
        return self.zones.get(role, role)


class LlmPolicy(Strict):
    model: str
    model_path: str | None
    temperature: float = Field(ge=0, le=2)
    max_new_tokens: int = Field(ge=1, le=4096)
    timeout_s: float = Field(gt=0)
    retries: int = Field(ge=0)
    n_threads: int = Field(ge=1)
    queue_size: int = Field(ge=1)
    max_concurrent_requests: int = Field(ge=1)
    drop_on_overflow: Literal["lowest_severity", "oldest", "newest"]
    circuit_breaker: dict[str, float]
    cache_ttl_s: float = Field(ge=0)
    rag: dict[str, Any]


class ShipRetention(Strict):
    events_days: float = Field(gt=0)
    incidents_days: float = Field(gt=0)
    summaries_days: float = Field(gt=0)
    dead_letters_days: float = Field(gt=0)
    max_events_rows: int = Field(ge=1000)


class RetentionPolicy(Strict):
    ship: ShipRetention
    outbox: dict[str, float]
    disk: dict[str, float]
    hub: dict[str, float]


class PrivacyPolicy(Strict):
    raw_logs_leave_ship: bool
    redact: dict[str, Any]
    replacement: str


class SyncPolicy(Strict):
    """The link budget and pacing of the store-and-forward uplink."""

    uplink_budget_bps: float = Field(gt=0)  # bits/s the agent may release onto the link
    burst_s: float = Field(gt=0)  # budget that may be spent at once after an idle spell
    in_flight_s: float = Field(gt=0)  # released but not yet receipted, in seconds of budget
    heartbeat_s: float = Field(gt=0)
    batch: int = Field(ge=1, le=10_000)  # outbox rows read per round
    receipt_timeout_s: float = Field(gt=0)  # link "degraded" when receipts lag this much


class SloPolicy(Strict):
    fast_path_p99_ms: float = Field(gt=0)
    fast_path_throughput_eps: float = Field(gt=0)
    insight_path_p99_s: float = Field(gt=0)
    outbox_oldest_unsent_s: float = Field(gt=0)
    sync_lag_s: float = Field(gt=0)
    agent_rss_mb: float = Field(gt=0)
    restart_warm_s: float = Field(gt=0)


class Policy(Strict):
    version: str
    profile: str
    ship_id: str | None = None
    features: dict[str, bool]
    ingest: IngestPolicy
    detect: DetectPolicy
    correlate: CorrelatePolicy
    notify: NotifyPolicy
    remediate: RemediatePolicy
    llm: LlmPolicy
    retention: RetentionPolicy
    privacy: PrivacyPolicy
    slo: SloPolicy
    sync: SyncPolicy


# ------------------------------------------------------------------ loading


class PolicyError(ValueError):
    """Every problem found, each as 'file: key.path: message'."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems

    def report(self) -> str:
        """What every command prints when a policy does not load."""
        return f"policy check failed: {len(self.problems)} problem(s)\n  " + "\n  ".join(
            self.problems
        )


@dataclass
class _Layer:
    data: dict[str, Any]
    origin: dict[tuple[str, ...], str]


def default_dir() -> Path:
    return Path(str(resources.files("policies")))


def _read_yaml(path: Path, problems: list[str]) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problems.append(f"{path}{where}: YAML syntax: {getattr(exc, 'problem', exc)}")
        return {}
    except OSError as exc:
        problems.append(f"{path}: cannot read: {exc.strerror}")
        return {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append(f"{path}: top level must be a mapping")
        return {}
    return data


def _merge(base: _Layer, data: dict[str, Any], source: str, prefix: tuple[str, ...] = ()) -> None:
    """Deep-merge mappings; lists and scalars replace. Records where each leaf came from."""
    target = base.data
    for key in prefix:
        target = target.setdefault(key, {})
    for key, value in data.items():
        path = (*prefix, str(key))
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(base, value, source, path)
        else:
            target[key] = copy.deepcopy(value)
            stale = [p for p in base.origin if p[: len(path)] == path]
            for p in stale:
                del base.origin[p]
            base.origin[path] = source


def _load_dir(layer: _Layer, directory: Path, problems: list[str]) -> dict[str, Any]:
    """Merge policy.yaml and its includes from one directory; returns the root file's data."""
    root_file = directory / "policy.yaml"
    root = _read_yaml(root_file, problems) if root_file.exists() else {}
    includes = root.get("includes", [f"{s}.yaml" for s in SEGMENTS])
    if not isinstance(includes, list):
        problems.append(f"{root_file}: includes: must be a list of file names")
        includes = []
    for name in includes:
        path = directory / str(name)
        if path.exists():
            _merge(layer, _read_yaml(path, problems), str(path))
        elif root_file.exists() and "includes" in root:
            problems.append(f"{root_file}: includes: {name}: no such file")
    body = {k: v for k, v in root.items() if k not in ("includes", "ships")}
    _merge(layer, body, str(root_file))
    return root


def load_policy(fleet_dir: Path | str | None = None, ship_id: str | None = None) -> Policy:
    """The effective policy for one ship (or the fleet default when ship_id is None)."""
    problems: list[str] = []
    layer = _Layer({}, {})
    ship_overrides: list[tuple[str, dict[str, Any]]] = []
    dirs = [default_dir()]
    if fleet_dir is not None and Path(fleet_dir).resolve() != default_dir().resolve():
        if not Path(fleet_dir).is_dir():
            raise PolicyError([f"{fleet_dir}: not a directory"])
        dirs.append(Path(fleet_dir))
    for directory in dirs:
        root = _load_dir(layer, directory, problems)
        ships = root.get("ships") or {}
        if ship_id and isinstance(ships, dict) and isinstance(ships.get(ship_id), dict):
            ship_overrides.append(
                (f"{directory / 'policy.yaml'} (ships.{ship_id})", ships[ship_id])
            )
        ship_file = directory / "ships" / f"{ship_id}.yaml"
        if ship_id and ship_file.exists():
            ship_overrides.append((str(ship_file), _read_yaml(ship_file, problems)))

    profile = layer.data.get("profile", "standard")
    for _, override in ship_overrides:
        profile = override.get("profile", profile)
    profiles = layer.data.pop("profiles", {}) or {}
    if not isinstance(profiles, dict):
        problems.append(
            f"{layer.origin.get(('profiles',), 'policy.yaml')}: profiles: not a mapping"
        )
        profiles = {}
    if not isinstance(profile, str):
        problems.append(f"{layer.origin.get(('profile',), 'policy.yaml')}: profile: not a name")
        profile = "standard"
    if profile not in profiles:
        problems.append(
            f"{layer.origin.get(('profile',), 'policy.yaml')}: profile: unknown '{profile}'"
        )
    else:
        overlay = profiles[profile] or {}
        if isinstance(overlay, dict):
            _merge(layer, overlay, f"profile '{profile}'")
        else:
            problems.append(f"policy: profiles.{profile}: not a mapping")
    for source, override in ship_overrides:
        _merge(layer, override, source)
    layer.data["profile"] = profile
    if ship_id:
        layer.data["ship_id"] = ship_id

    try:
        policy = Policy.model_validate(layer.data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(str(p) for p in err["loc"])
            problems.append(f"{_origin_of(layer, loc)}: {_dotted(err['loc'])}: {err['msg']}")
        raise PolicyError(problems) from None
    if problems:
        raise PolicyError(problems)
    return policy


def _origin_of(layer: _Layer, loc: tuple[str, ...]) -> str:
    for n in range(len(loc), 0, -1):
        if loc[:n] in layer.origin:
            return layer.origin[loc[:n]]
    children = [src for path, src in layer.origin.items() if path[: len(loc)] == loc]
    return children[0] if children else "policy"


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def effective_yaml(policy: Policy) -> str:
    return yaml.safe_dump(policy.model_dump(mode="json"), sort_keys=False, width=100)
