"""Cluster (swarm) rules without I/O: spec validation, TLS info and join-token rotation.

Validation follows swarmkit's `validateClusterSpec`: certificates may not expire sooner than an
hour (shorter would have nodes renewing faster than a slow cluster can sign), a heartbeat period
cannot be negative, and the cluster's name is fixed.

Keys Docker 1.41's SwarmSpec does not define are dropped and logged (the swarm update answer
has no Warnings for the CLI to print); known fields this swarm cannot honour are refused with
a 400 that names them: an external or new signing CA and ForceRotate (`docker swarm ca
--rotate`: the root CA does not rotate here), and a cluster-wide default log driver.

Raft settings: the API shows the ones the answering manager really runs with (its agent.yml
`raft:` section). SnapshotInterval and LogEntriesForSlowFollowers can be changed for the whole
swarm, as in Swarm (`docker swarm update --snapshot-interval`, the SDK's `update_swarm`): they
are stored in the spec and every manager applies them at once (Manager._apply_raft_spec). The
tick settings are per-manager process settings here (and in milliseconds, not Swarm's
seconds) and KeepOldSnapshots is fixed, so a change to those is refused rather than stored
and not applied. The round trip the CLI makes (read the spec, send it back) passes unchanged;
a zero or missing value keeps the current one (dockerd's MergeSwarmSpecToGRPC).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from pydantic import ValidationError

from ...ca import generate_join_token
from ...ca.certs import load_certificate
from ...store import Cluster, ClusterSpec
from ...store.objects.cluster import RaftConfig
from .errors import Internal, InvalidArgument, describe_validation, json_type
from .taskfields import drop_unknown

log = logging.getLogger(__name__)

MIN_NODE_CERT_EXPIRY_NS = 3600 * 10**9
"""swarmkit's ca.MinNodeCertExpiration (1 hour), in nanoseconds like every Docker duration."""


def parse_cluster_spec(spec: Any, current: Cluster) -> ClusterSpec:
    """Validate a client's full SwarmSpec against the stored cluster.

    An empty name means "unchanged" (clients that build a spec from scratch leave it out);
    any other name than the stored one is refused as in swarmkit."""
    if isinstance(spec, ClusterSpec):
        parsed = spec
    else:
        if not isinstance(spec, Mapping):
            raise InvalidArgument(
                f"invalid swarm spec: expected a JSON object, got {json_type(spec)}", plain=True
            )
        try:
            parsed = ClusterSpec.model_validate(dict(spec))
        except ValidationError as exc:
            raise InvalidArgument(
                f"invalid swarm spec: {describe_validation(exc)}", plain=True
            ) from None
    dropped = drop_unknown(parsed)
    if dropped:
        log.warning("swarm update: unknown fields ignored (not in Docker API 1.41's "
                    "SwarmSpec): %s", ", ".join(dropped))
    _refuse_unsupported(parsed)
    if not parsed.name:
        parsed = parsed.model_copy(update={"name": current.spec.name})
    elif parsed.name != current.spec.name:
        raise InvalidArgument("modification of cluster name is not allowed")
    ca = parsed.ca_config
    if ca is not None and ca.node_cert_expiry is not None:
        if ca.node_cert_expiry < MIN_NODE_CERT_EXPIRY_NS:
            raise InvalidArgument("minimum certificate expiry time is: 1h0m0s")
    disp = parsed.dispatcher
    if disp is not None and disp.heartbeat_period is not None and disp.heartbeat_period < 0:
        raise InvalidArgument("heartbeat time period cannot be a negative duration")
    orch = parsed.orchestration
    if orch is not None and (orch.task_history_retention_limit or 0) < 0:
        raise InvalidArgument("task history retention limit cannot be negative")
    return parsed


def _refuse_unsupported(spec: ClusterSpec) -> None:
    ca = spec.ca_config
    if ca is not None:
        if ca.external_cas:
            raise InvalidArgument("CAConfig.ExternalCAs: external CAs are not supported: the "
                                  "managers sign node certificates with the swarm's own CA")
        if ca.signing_ca_cert or ca.signing_ca_key:
            raise InvalidArgument("CAConfig.SigningCACert/SigningCAKey: replacing the root CA "
                                  "is not supported")
        if ca.force_rotate:
            raise InvalidArgument("CAConfig.ForceRotate: root CA rotation (docker swarm ca "
                                  "--rotate) is not supported")
    defaults = spec.task_defaults
    if defaults is not None and defaults.log_driver is not None and defaults.log_driver.name:
        raise InvalidArgument("TaskDefaults.LogDriver: a cluster-wide default log driver is "
                              "not supported: give each service its own (--log-driver)")


RAFT_FIELDS = {
    "snapshot_interval": ("SnapshotInterval", "snapshot_interval"),
    "keep_old_snapshots": ("KeepOldSnapshots", None),
    "log_entries_for_slow_followers": ("LogEntriesForSlowFollowers", "keep_entries"),
    "election_tick": ("ElectionTick", "election_ticks"),
    "heartbeat_tick": ("HeartbeatTick", "heartbeat_ticks"),
}
"""Docker's Raft spec field -> (its JSON name, the agent.yml `raft:` key that sets it)."""
SWARM_WIDE_RAFT = ("snapshot_interval", "log_entries_for_slow_followers")
"""The ones an update may change for every manager."""
SWARM_WIDE_RAFT_JSON = frozenset(RAFT_FIELDS[f][0] for f in SWARM_WIDE_RAFT)


def check_raft_settings(spec: ClusterSpec, live: Mapping[str, int] | None,
                        stored: RaftConfig | None = None) -> ClusterSpec:
    """The Raft section to store: the swarm-wide settings the update changes (or `stored`,
    the current ones, where it leaves them out or at zero); a change to any other setting than
    what this manager runs (`live`, Docker's JSON names) is refused."""
    if live is None:
        return spec
    if spec.raft is None:
        return spec.model_copy(update={"raft": stored})
    wrong, keep = [], {}
    for field, (name, key) in RAFT_FIELDS.items():
        sent = getattr(spec.raft, field)
        current = getattr(stored, field, None) if stored is not None else None
        if field in SWARM_WIDE_RAFT:
            if sent is not None and sent < (1 if field == "snapshot_interval" else 0):
                raise InvalidArgument(f"Raft.{name} must not be {sent}")
            if sent and sent != live.get(name) or current is not None:
                keep[field] = sent or current
            continue
        if sent not in (None, 0) and name in live and sent != live[name]:
            where = f"agent.yml raft.{key}" if key else "fixed"
            wrong.append(f"{name} {sent} (runs with {live[name]}; {where})")
    if wrong:
        raise InvalidArgument(
            "these Raft settings cannot be changed through the swarm spec: they are set per "
            "manager in its agent configuration and applied at restart: " + ", ".join(wrong)
        )
    keep = {k: v for k, v in keep.items() if v is not None}
    return spec.model_copy(update={"raft": RaftConfig(**keep) if keep else None})


def rotated_token(cluster: Cluster) -> str:
    """A fresh join token for the cluster's current root CA (same digest, new secret)."""
    cert = cluster.root_ca.ca_cert if cluster.root_ca is not None else None
    if not cert:
        raise Internal("error loading cluster rootCA for update")
    try:
        return generate_join_token(cert)
    except Exception as exc:  # a corrupt PEM in the store is an internal fault, not input
        raise Internal(f"error loading cluster rootCA for update: {exc}") from None


@lru_cache(maxsize=8)
def tls_info(ca_cert_pem: str) -> dict[str, str]:
    """Docker's `TLSInfo` for a root CA: the PEM plus the issuer's subject and public key as
    base64 DER (what `docker swarm ca` and `docker node inspect` show). Cached: the CA changes
    only on rotation, and the CLI reads /swarm and /info often."""
    from cryptography.hazmat.primitives import serialization

    cert = load_certificate(ca_cert_pem)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "TrustRoot": ca_cert_pem,
        "CertIssuerSubject": base64.b64encode(cert.subject.public_bytes()).decode(),
        "CertIssuerPublicKey": base64.b64encode(spki).decode(),
    }


def cluster_tls_info(cluster: Cluster) -> dict[str, str] | None:
    cert = cluster.root_ca.ca_cert if cluster.root_ca is not None else None
    if not cert:
        return None
    try:
        return tls_info(cert)
    except Exception:  # an unreadable CA should not take /swarm down with it
        return None
