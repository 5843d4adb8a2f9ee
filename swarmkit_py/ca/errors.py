"""Exceptions of the certificate authority package.

They are separate classes, not one generic error, because callers react differently: a join
handler turns `InvalidJoinTokenError` into "rejected, cluster unchanged", the RPC layer turns
`PermissionDeniedError` into a refusal for that one call, and `InvalidCAError` means the operator
has to fix their input before `init` can go on.
"""

from __future__ import annotations


class CAError(Exception):
    """Base class, so a caller can catch "anything certificate related" in one place."""


class InvalidCAError(CAError, ValueError):
    """The root CA material (operator supplied or on disk) cannot be used to run a cluster."""


class InvalidCSRError(CAError, ValueError):
    """A certificate signing request is malformed, badly signed or uses a key we refuse."""


class InvalidCertificateError(CAError, ValueError):
    """A certificate cannot be parsed or does not carry the identity a swarm node cert must."""


class InvalidJoinTokenError(CAError, ValueError):
    """A join token is malformed. The message always starts with "invalid join token: "."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid join token: {reason}")
        self.reason = reason


class CADigestMismatchError(CAError):
    """The CA a manager presented is not the one the join token names: maybe a wrong address,
    maybe an impostor. Nothing secret may be sent to that peer."""


class PermissionDeniedError(CAError, PermissionError):
    """An authenticated peer asked for something its certificate's role does not allow."""
