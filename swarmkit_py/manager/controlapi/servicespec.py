"""Service spec rules without I/O: validation, Docker's defaults, and spec comparison.

Validation follows swarmkit's `validateServiceSpec` (same checks, same messages, so operators'
searches find them), plus a few refusals where Swarm would accept a service it can never run:
- constraint keys other than the ones the scheduler knows (Swarm accepts `node.hostnmae==x`
  and leaves the service pending forever); the scheduler's parser is the judge;
- more than MAX_REPLICAS replicas or job completions (Swarm would try to create 2**63 tasks
  and take its leader down with it);
- a replicated job that may run no task at once (MaxConcurrent 0) yet has work to do.
Keys Docker 1.41 does not define are dropped with a warning, and known fields a Linux worker
cannot honour refused: taskfields.py has that rule and the per-field checks.

Comparison (`canonical_*`) decides "did the client change the TaskTemplate?" on update. It
fills Docker's defaults and drops Go's zero values first, because clients echo specs back in
different shapes: the SDK's `service.scale()` sends the spec it read with
`insertDefaults=true`, and that must not count as a new template (it would restart every task
for a scale). When the templates compare equal the API stores the old one byte for byte, so
the orchestrators' stricter rule (orchestrator/uptodate.py) agrees that no task is out of date.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from ...store import ServiceSpec, TaskSpec, UpdateConfig
from ...store.objects.taskspec import DEFAULT_STOP_GRACE_PERIOD, SECOND
from ..scheduler import constraints as scheduler_constraints
from .errors import InvalidArgument, describe_validation, json_type
from .taskfields import spec_warnings, validate_task_fields

MAX_REPLICAS = 100_000
"""Far above any cluster this runs; low enough that a typo cannot make the orchestrator try
to materialise billions of tasks."""

DEFAULT_RESTART_POLICY = {"Condition": "any", "Delay": 5 * SECOND, "MaxAttempts": 0}
DEFAULT_UPDATE_CONFIG = {
    "Parallelism": 1,
    "FailureAction": "pause",
    "Monitor": 5 * SECOND,
    "MaxFailureRatio": 0,
    "Order": "stop-first",
}
"""swarmkit's api/defaults, as dockerd shows them with `insertDefaults=true` (transcript)."""

# swarmkit's isValidDNSName `^[a-zA-Z0-9](?:[-_]*[A-Za-z0-9]+)*$`, rewritten without nested
# quantifiers: Python's backtracking engine takes exponential time on the original.
_DNS_NAME = re.compile(r"^[A-Za-z0-9](?:[-_A-Za-z0-9]*[A-Za-z0-9])?$")
_REPO_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_DOMAIN = re.compile(
    r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"(?::[0-9]+)?$"
)
_TAG = re.compile(r"^\w[\w.-]{0,127}$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[A-Za-z0-9=_-]{32,}$")
_PROTOCOLS = ("tcp", "udp", "sctp")
_PUBLISH_MODES = ("ingress", "host")


def _invalid(message: str) -> InvalidArgument:
    return InvalidArgument(message)


def parse_service_spec(raw: Any, warnings: list[str] | None = None) -> ServiceSpec:
    """A client's ServiceSpec (any key case), validated. An empty name is allowed here: create
    generates one and update keeps the current one. Keys Docker 1.41 does not define are
    dropped; what was dropped is appended to `warnings` (the response's `Warnings`)."""
    if isinstance(raw, ServiceSpec):
        spec = raw
    else:
        if not isinstance(raw, Mapping):
            raise InvalidArgument(
                f"invalid service spec: expected a JSON object, got {json_type(raw)}",
                plain=True,
            )
        try:
            spec = ServiceSpec.model_validate(dict(raw))
        except ValidationError as exc:
            raise InvalidArgument(
                f"invalid service spec: {describe_validation(exc)}", plain=True
            ) from None
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(f"invalid service spec: {exc}", plain=True) from None
    _check_mode_keys(spec)
    dropped = spec_warnings(spec)
    if warnings is not None:
        warnings.extend(dropped)
    validate_service_spec(spec)
    fill_job_defaults(spec)
    return spec


def validate_service_spec(spec: ServiceSpec) -> None:
    if spec.name:
        validate_name(spec.name)
    if spec.networks:
        # Deprecated since API 1.25 but still taken by dockerd up to 1.43 (the SDK's
        # `APIClient.create_service(networks=...)` sends it): kept as written, for the client
        # to read back, and in effect as the template's networks, which every loop reads.
        if spec.task_template.networks:
            raise _invalid("networks are given both in ServiceSpec.Networks (deprecated) and "
                           "in TaskTemplate.Networks: give them in TaskTemplate.Networks only")
        spec.task_template.networks = copy.deepcopy(spec.networks)
    spec.networks = spec.networks or None
    _validate_task_spec(spec.task_template)
    _validate_mode(spec)
    for config in (spec.update_config, spec.rollback_config):
        if config is not None:
            _validate_update_config(config)
    _validate_endpoint(spec)


def validate_name(name: str) -> None:
    if len(name) > 63:
        raise _invalid("name must be 63 characters or fewer")
    if not _DNS_NAME.match(name):
        raise _invalid("name must be valid as a DNS name component")


def _check_mode_keys(spec: ServiceSpec) -> None:
    """The one place an unknown key is refused rather than dropped: without its mode the
    service would silently become one replica of something else."""
    mode = spec.mode
    if mode.model_extra:
        other = ", ".join(sorted(mode.model_extra))
        raise _invalid(f"service mode {other} is not supported: use Replicated, Global, "
                       "ReplicatedJob or GlobalJob")


def _validate_mode(spec: ServiceSpec) -> None:
    mode = spec.mode
    modes = mode.modes()
    if len(modes) > 1:
        raise _invalid(f"must specify only one service mode (got {' and '.join(modes)})")
    if mode.replicated is not None and mode.replicated.replicas > MAX_REPLICAS:
        raise _invalid(f"replicas cannot exceed {MAX_REPLICAS}")
    job = mode.replicated_job
    if job is not None:
        if (job.max_concurrent or 0) < 0:
            raise _invalid("Maximum concurrent jobs must not be negative")
        if (job.total_completions or 0) < 0:
            raise _invalid("Total completed jobs must not be negative")
        if (job.total_completions or 0) > MAX_REPLICAS:
            raise _invalid(f"total completions cannot exceed {MAX_REPLICAS}")
        if job.max_concurrent == 0 and job.total_completions:
            raise _invalid("MaxConcurrent 0 would never start a task of this job: give at "
                           "least 1 (--max-concurrent)")
    if mode.is_job and spec.update_config is not None:
        raise _invalid("Jobs may not have an update config")


def fill_job_defaults(spec: ServiceSpec) -> None:
    """dockerd's defaults for a replicated job (MaxConcurrent 1, TotalCompletions =
    MaxConcurrent), stored: the CLI's job progress reads both back and needs them set."""
    job = spec.mode.replicated_job
    if job is not None:
        if job.max_concurrent is None:
            job.max_concurrent = 1
        if job.total_completions is None:
            job.total_completions = job.max_concurrent


def _validate_task_spec(ts: TaskSpec) -> None:
    validate_task_fields(ts)
    cs = ts.container_spec
    if cs is None:
        raise _invalid("TaskSpec: missing runtime")
    if not cs.image:
        raise _invalid("ContainerSpec: image reference must be provided")
    if not valid_image_reference(cs.image):
        raise _invalid(f'ContainerSpec: "{cs.image}" is not a valid repository/tag')
    if cs.stop_grace_period is not None and cs.stop_grace_period < 0:
        raise _invalid("ContainerSpec: StopGracePeriod cannot be negative")
    hc = cs.healthcheck
    if hc is not None:
        for field, value in (("Interval", hc.interval), ("Timeout", hc.timeout),
                             ("StartPeriod", hc.start_period)):
            if value and value < 1_000_000:
                raise _invalid(f"ContainerSpec: {field} in HealthConfig cannot be less than 1ms")
        if hc.retries is not None and hc.retries < 0:
            raise _invalid("ContainerSpec: Retries in HealthConfig cannot be negative")
    if ts.resources is not None:
        for res in (ts.resources.limits, ts.resources.reservations):
            if res is None:
                continue
            if res.nano_cpus and res.nano_cpus < 1_000_000:
                raise _invalid(
                    f"invalid cpu value {res.nano_cpus / 1e9:g}: Must be at least 0.001"
                )
            if res.memory_bytes and res.memory_bytes < 4 * 1024 * 1024:
                raise _invalid(
                    f"invalid memory value {res.memory_bytes}: Must be at least 4MiB"
                )
            if getattr(res, "pids", None) is not None and res.pids < 0:
                raise _invalid(f"invalid pids value {res.pids}: cannot be negative")
    rp = ts.restart_policy
    if rp is not None:
        for name, value in (("delay", rp.delay), ("window", rp.window),
                            ("max-attempts", rp.max_attempts)):
            if value is not None and value < 0:
                raise _invalid(f"TaskSpec: restart-{name} cannot be negative")
    if ts.placement is not None:
        validate_constraints(ts.placement.constraints or [])
        if ts.placement.max_replicas is not None and ts.placement.max_replicas < 0:
            raise _invalid("TaskSpec: max replicas per node cannot be negative")
        for pref in ts.placement.preferences or []:
            if pref.spread is not None and not pref.spread.spread_descriptor:
                raise _invalid("TaskSpec: spread descriptor cannot be empty")
    for entry in ts.networks or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("Target"), str):
            raise _invalid("TaskSpec: each network attachment needs a Target (name or ID)")
        aliases = entry.get("Aliases") or []
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise _invalid("TaskSpec: network aliases must be a list of names")


def validate_constraints(constraints: list[str]) -> None:
    """The scheduler's own parser decides (one grammar for "accepted" and "matched"); it
    follows swarmkit's constraint.Parse and its messages, and also refuses unknown keys."""
    try:
        scheduler_constraints.validate_constraints(constraints)
    except scheduler_constraints.ConstraintError as exc:
        raise _invalid(str(exc)) from None


def _validate_update_config(config: UpdateConfig) -> None:
    for name, value in (("parallelism", config.parallelism), ("delay", config.delay),
                        ("monitor", config.monitor)):
        if value is not None and value < 0:
            raise _invalid(f"TaskSpec: update-{name} cannot be negative")
    ratio = config.max_failure_ratio
    if ratio is not None and not 0 <= ratio <= 1:
        raise _invalid("TaskSpec: update-maxfailureratio cannot be less than 0 or bigger than 1")


def _validate_endpoint(spec: ServiceSpec) -> None:
    ep = spec.endpoint_spec
    if ep is None:
        return
    if ep.mode not in (None, "", "vip", "dnsrr"):
        raise _invalid(f"EndpointSpec: invalid endpoint mode '{ep.mode}'")
    seen: set[tuple[int, str]] = set()
    for port in ep.ports or []:
        protocol = (port.protocol or "tcp").lower()
        mode = (port.publish_mode or "ingress").lower()
        if protocol not in _PROTOCOLS:
            raise _invalid(f"EndpointSpec: invalid protocol '{port.protocol}'")
        if mode not in _PUBLISH_MODES:
            raise _invalid(f"EndpointSpec: invalid publish mode '{port.publish_mode}'")
        if port.target_port is None or not 1 <= port.target_port <= 65535:
            raise _invalid("EndpointSpec: target port must be between 1 and 65535")
        published = port.published_port or 0
        if not 0 <= published <= 65535:
            raise _invalid("EndpointSpec: published port must be between 0 and 65535")
        if published:
            if ep.mode == "dnsrr" and mode == "ingress":
                raise _invalid(
                    "EndpointSpec: port published with ingress mode can't be used with "
                    "dnsrr mode"
                )
            if (published, protocol) in seen:
                raise _invalid("EndpointSpec: duplicate published ports provided")
            seen.add((published, protocol))


def valid_image_reference(ref: str) -> bool:
    """Docker's reference grammar ([domain/]path[:tag][@digest]), checked piecewise so that
    no regular expression can backtrack exponentially on a hostile string."""
    if len(ref) > 512 or ref != ref.strip():
        return False
    name, _, digest = ref.partition("@")
    if digest and not _DIGEST.match(digest):
        return False
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
        if not _TAG.match(tag):
            return False
    parts = name.split("/")
    if len(parts) > 1 and (
        "." in parts[0] or ":" in parts[0] or parts[0] == "localhost" or parts[0] != parts[0].lower()
    ):
        if not _DOMAIN.match(parts[0]):
            return False
        parts = parts[1:]
    return bool(parts) and all(_REPO_COMPONENT.match(p) for p in parts)


# -- defaults and comparison --------------------------------------------------------------


def spec_with_defaults(spec: dict[str, Any]) -> dict[str, Any]:
    """A ServiceSpec's API JSON with Docker's defaults filled where the client left a field
    out (what `insertDefaults=true` returns). Fields the client set are never overwritten."""
    out = copy.deepcopy(spec)
    out["TaskTemplate"] = template_with_defaults(out.get("TaskTemplate") or {})
    mode = out.get("Mode") or {}
    # A job takes no UpdateConfig (swarmkit refuses one): a client that echoes this back
    # must not be refused for a default it never chose.
    keys = ("RollbackConfig",) if "ReplicatedJob" in mode or "GlobalJob" in mode else \
        ("UpdateConfig", "RollbackConfig")
    for key in keys:
        out[key] = {**DEFAULT_UPDATE_CONFIG, **(out.get(key) or {})}
    return out


def template_with_defaults(template: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(template)
    cs = out.get("ContainerSpec")
    if isinstance(cs, dict):
        cs.setdefault("StopGracePeriod", DEFAULT_STOP_GRACE_PERIOD)
    out["RestartPolicy"] = {**DEFAULT_RESTART_POLICY, **(out.get("RestartPolicy") or {})}
    return out


def _prune(value: Any, keep_strings: bool = False) -> Any:
    """Drop what Go's omitempty would (None, {}, [], "", 0, false) so that absent and zero
    compare equal. Label maps keep empty-string values: `a=""` is a label."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            v = _prune(v, keep_strings=keep_strings or k == "Labels")
            if not _is_empty(v, keep_strings or k == "Labels"):
                out[k] = v
        return out
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def _is_empty(value: Any, keep_strings: bool) -> bool:
    if value is None or value == {} or value == []:
        return True
    if isinstance(value, bool):
        return value is False
    if isinstance(value, (int, float)):
        return value == 0
    return value == "" and not keep_strings


def canonical_template(template: TaskSpec) -> dict[str, Any]:
    """The form two TaskTemplates are compared in: defaults filled, then zero values dropped
    (a default of 0, like MaxAttempts, then matches an explicit 0)."""
    return _prune(template_with_defaults(template.to_wire()))


def canonical_spec(spec: ServiceSpec, *, ignore_replicas: bool = False) -> dict[str, Any]:
    data = spec_with_defaults(spec.to_wire())
    if ignore_replicas:
        data.get("Mode", {}).get("Replicated", {}).pop("Replicas", None)
    return _prune(data)


def same_template(a: TaskSpec, b: TaskSpec) -> bool:
    return canonical_template(a) == canonical_template(b)
