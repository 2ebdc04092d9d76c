"""The proxy's exception tree.

Every error a client can see is a :class:`ProxyError`. Each leaf knows the HTTP
status it becomes, a short public message (never a PIN, a session id or an
upstream URL) and any headers the client needs to act on it (``Retry-After``).
One middleware turns them into responses; anything else is a 500.

::

    ProxyError (500)
    ├── NextPVRError                      something went wrong talking to NextPVR
    │   ├── LoginRefused (502)            NextPVR rejected the PIN
    │   ├── SessionExpired (502)          code 8 twice in a row: the re-login did not help
    │   ├── NoTunerAvailable (503)        all tuners busy; Retry-After
    │   ├── ChannelNotFound (404)
    │   ├── RecordingNotFound (404)
    │   ├── NextPVRUnreachable (502)      connection refused, DNS, reset
    │   ├── NextPVRTimeout (504)          connect or read timed out
    │   ├── NextPVRUnparseable (502)      malformed XML/JSON, garbage playlist
    │   ├── NextPVRFailed (502)           any other non-ok answer, with its code
    │   ├── TranscodeFailed (502)         the transcoder died or refused the profile
    │   ├── TranscodeLost (502)           the transcode's playlist is gone (404) or its session is
    │   │                                 (code 8): the proxy starts a new transcode
    │   └── UpstreamTooLarge (502)        a playlist larger than the configured limit
    ├── SessionPoolExhausted (503)        every pooled NextPVR session is leased out
    ├── GuideBuildFailed (500)            the XMLTV guide could not be built yet
    ├── AuthRequired (401)                missing or wrong API key
    │   └── AdminKeyRequired (401)        an admin route without the admin key
    ├── Forbidden (403)                   forged, expired or mis-scoped token; admin action
    ├── NotFound (404)
    ├── BadRequest (400)                  names the offending field
    ├── RangeNotSatisfiable (416)
    ├── BodyTooLarge (413)                a request body over its limit
    └── ServiceUnavailable (503)          shutting down, feature off
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "AdminKeyRequired",
    "AuthRequired",
    "BadRequest",
    "BodyTooLarge",
    "ChannelNotFound",
    "Forbidden",
    "GuideBuildFailed",
    "LoginRefused",
    "NextPVRError",
    "NextPVRFailed",
    "NextPVRTimeout",
    "NextPVRUnparseable",
    "NextPVRUnreachable",
    "NoTunerAvailable",
    "NotFound",
    "ProxyError",
    "RangeNotSatisfiable",
    "RecordingNotFound",
    "ServiceUnavailable",
    "SessionExpired",
    "SessionPoolExhausted",
    "TranscodeFailed",
    "TranscodeLost",
    "UpstreamTooLarge",
]


class ProxyError(Exception):
    """Base of every error the proxy turns into an HTTP response.

    ``message`` is safe to show to a client and to log: callers must never put a
    PIN, a session id or a full upstream URL into it.
    """

    status: int = 500
    #: short machine-readable reason, used as a metric label and in JSON bodies
    reason: str = "internal_error"
    #: what the client can do about it, appended to the body
    hint: str = ""

    def __init__(self, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers: dict[str, str] = dict(headers or {})

    def body(self) -> str:
        """The plain-text body a client receives."""
        if self.hint:
            return f"{self.message}\n{self.hint}\n"
        return f"{self.message}\n"


class NextPVRError(ProxyError):
    """Talking to NextPVR failed."""

    status = 502
    reason = "nextpvr_error"


class LoginRefused(NextPVRError):
    reason = "login_refused"
    hint = "Check nextpvr.pin in the proxy's configuration."

    def __init__(self, message: str = "NextPVR rejected the PIN (login refused)") -> None:
        super().__init__(message)


class SessionExpired(NextPVRError):
    reason = "session_expired"


class NoTunerAvailable(NextPVRError):
    status = 503
    reason = "no_tuner"
    hint = "All tuners are busy. Try again later or stop another stream."

    def __init__(
        self,
        message: str = "No tuner was available for the requested channel",
        *,
        retry_after: int = 10,
    ) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after


class ChannelNotFound(NextPVRError):
    status = 404
    reason = "channel_not_found"


class RecordingNotFound(NextPVRError):
    status = 404
    reason = "recording_not_found"


class NextPVRUnreachable(NextPVRError):
    reason = "unreachable"
    hint = "Check that NextPVR is running and nextpvr.base_url is right."


class NextPVRTimeout(NextPVRError):
    status = 504
    reason = "timeout"
    hint = "NextPVR answered too slowly. Try again."


class NextPVRUnparseable(NextPVRError):
    reason = "unparseable"


class NextPVRFailed(NextPVRError):
    """A non-ok answer that is none of the specific cases above."""

    reason = "failed"

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class TranscodeFailed(NextPVRError):
    reason = "transcode_failed"

    def __init__(self, message: str, *, profile: str | None = None) -> None:
        super().__init__(message)
        self.profile = profile


class TranscodeLost(NextPVRError):
    """NextPVR no longer has the transcode: its playlist answers 404 (``session_lost`` False) or
    code 8 (``session_lost`` True: the session must log in again before a new transcode)."""

    reason = "transcode_lost"

    def __init__(self, message: str, *, session_lost: bool) -> None:
        super().__init__(message)
        self.session_lost = session_lost


class UpstreamTooLarge(NextPVRError):
    reason = "upstream_too_large"


class SessionPoolExhausted(ProxyError):
    status = 503
    reason = "session_pool_exhausted"
    hint = "Too many concurrent transcodes. Try again later."

    def __init__(self, message: str = "No NextPVR session free for a new transcode") -> None:
        super().__init__(message, headers={"Retry-After": "10"})


class AuthRequired(ProxyError):
    status = 401
    reason = "auth_required"
    hint = "Send the API key in the X-API-Key header or the api_key query parameter."


class AdminKeyRequired(AuthRequired):
    hint = "Send the admin key in the X-API-Key header or as 'Authorization: Bearer <key>'."

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="nextpvr-hls-proxy"'})


class GuideBuildFailed(ProxyError):
    reason = "guide_unavailable"


class BodyTooLarge(ProxyError):
    status = 413
    reason = "body_too_large"


class Forbidden(ProxyError):
    status = 403
    reason = "forbidden"


class NotFound(ProxyError):
    status = 404
    reason = "not_found"


class BadRequest(ProxyError):
    status = 400
    reason = "bad_request"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class RangeNotSatisfiable(ProxyError):
    status = 416
    reason = "range_not_satisfiable"

    def __init__(self, size: int) -> None:
        super().__init__("Requested range not satisfiable", headers={"Content-Range": f"bytes */{size}"})
        self.size = size


class ServiceUnavailable(ProxyError):
    status = 503
    reason = "unavailable"
