"""Provider errors.

Every error says whether it is transient: circuit breakers count only transient errors, and the
router retries or fails over only on them.

    ProviderError
    ├── TransientError            (breakers count these; retried, failed over)
    │   ├── UpstreamUnavailable   5xx, 529, connection refused/reset
    │   ├── RateLimited           429, carries retry_after_s
    │   ├── UpstreamTimeout       first-token or stall deadline passed
    │   ├── StreamInterrupted     the stream ended before its finish marker
    │   └── MalformedResponse     a chunk that does not parse
    └── PermanentError            (not retried; not counted)
        ├── AuthenticationFailed  401/403: the target is unusable until configuration changes
        ├── BadRequest            400/404/422: the request itself is wrong
        └── NoRouteAvailable      every target of a route is open, unusable or over budget
"""

from __future__ import annotations

__all__ = [
    "AuthenticationFailed",
    "BadRequest",
    "MalformedResponse",
    "NoRouteAvailable",
    "PermanentError",
    "ProviderError",
    "RateLimited",
    "StreamInterrupted",
    "TransientError",
    "UpstreamTimeout",
    "UpstreamUnavailable",
]


class ProviderError(Exception):
    """Base of every error raised by a provider adapter or the router."""

    transient: bool = False
    code: str = "provider_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
        provider: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after_s = retry_after_s
        self.provider = provider


class TransientError(ProviderError):
    transient = True
    code = "upstream_unavailable"


class UpstreamUnavailable(TransientError):
    code = "upstream_unavailable"


class RateLimited(TransientError):
    code = "upstream_rate_limited"


class UpstreamTimeout(TransientError):
    code = "upstream_timeout"


class StreamInterrupted(TransientError):
    code = "stream_interrupted"


class MalformedResponse(TransientError):
    code = "malformed_response"


class PermanentError(ProviderError):
    transient = False
    code = "provider_error"


class AuthenticationFailed(PermanentError):
    code = "upstream_auth_failed"


class BadRequest(PermanentError):
    code = "upstream_bad_request"


class NoRouteAvailable(PermanentError):
    code = "no_route_available"
