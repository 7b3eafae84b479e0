"""The Pilothouse error hierarchy: every failure a user can cause or meet.

Each error carries a stable ``code`` (used by the REST API and tests), a
``message`` saying what was wrong and where, and a ``hint`` saying what to do.
The CLI prints ``message`` and ``hint`` and exits non-zero; the API maps each
class to an HTTP status at the edge (``api/errors.py``). Messages never carry
secrets: callers pass names and paths, never kubeconfig contents or tokens.

    PilothouseError
    ├── InvalidInput            (400) bad argument, malformed file
    │   └── KubeconfigInvalid
    ├── NotFound                (404)
    ├── AlreadyExists           (409)
    ├── Conflict                (409) operation not allowed in the current state
    ├── Unauthenticated         (401)
    │   └── MfaRequired         the password was right; a TOTP or recovery code is needed too
    ├── Forbidden               (403)
    ├── TooManyAttempts         (429) login throttled or locked out after failed attempts
    ├── PayloadTooLarge         (413) a request body over the server's limit
    ├── ClusterUnreachable      (502) the cluster's API server did not answer properly
    ├── BinaryError             (422) a Kubernetes binary is missing, unbuildable or corrupt
    │   └── ChecksumMismatch
    ├── PortUnavailable         (409)
    ├── ProcessFailed           (500) a control-plane process exited or never became ready
    └── SecretKeyError          (500) the encryption key is missing or does not match
"""

from __future__ import annotations

from typing import Any


class PilothouseError(Exception):
    """Base of all expected Pilothouse failures."""

    code = "pilothouse_error"
    http_status = 500

    def __init__(self, message: str, *, hint: str = "", **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.context = context

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.hint:
            body["hint"] = self.hint
        if self.context:
            body["context"] = {k: str(v) for k, v in self.context.items()}
        return body


class InvalidInput(PilothouseError):
    code = "invalid_input"
    http_status = 400


class KubeconfigInvalid(InvalidInput):
    code = "kubeconfig_invalid"


class NotFound(PilothouseError):
    code = "not_found"
    http_status = 404


class AlreadyExists(PilothouseError):
    code = "already_exists"
    http_status = 409


class Conflict(PilothouseError):
    code = "conflict"
    http_status = 409


class Unauthenticated(PilothouseError):
    code = "unauthenticated"
    http_status = 401


class MfaRequired(Unauthenticated):
    code = "mfa_required"


class Forbidden(PilothouseError):
    code = "forbidden"
    http_status = 403


class TooManyAttempts(PilothouseError):
    """Refused for now; ``retry_after`` is the whole seconds to wait (the API's ``Retry-After``)."""

    code = "too_many_attempts"
    http_status = 429

    def __init__(self, message: str, *, retry_after: int, hint: str = "", **context: Any) -> None:
        super().__init__(message, hint=hint, retry_after=retry_after, **context)
        self.retry_after = retry_after


class PayloadTooLarge(PilothouseError):
    code = "payload_too_large"
    http_status = 413


class ClusterUnreachable(PilothouseError):
    code = "cluster_unreachable"
    http_status = 502


class BinaryError(PilothouseError):
    code = "binary_error"
    http_status = 422


class ChecksumMismatch(BinaryError):
    code = "checksum_mismatch"


class PortUnavailable(PilothouseError):
    code = "port_unavailable"
    http_status = 409


class ProcessFailed(PilothouseError):
    code = "process_failed"
    http_status = 500


class SecretKeyError(PilothouseError):
    code = "secret_key_error"
    http_status = 500
