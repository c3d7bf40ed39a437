"""Request hygiene before any route runs: Host and Origin allow-lists, body limits, the admin token.

* ``Host`` must name this server (loopback names, the bound address, ``--allow-host``): a page on
  another domain that re-points its DNS at 127.0.0.1 (DNS rebinding) is refused.
* A state-changing request (anything but GET/HEAD/OPTIONS) from a browser must come from the same
  origin or an ``--allow-origin``; a browser always sends ``Origin`` on such requests, even
  ``no-cors`` ones. Clients that send neither ``Origin`` nor ``Sec-Fetch-Site`` (curl, scripts) are
  not browsers and cannot be forged by a web page.
* Every body has a limit, checked on the declared length and again while it streams in (413).
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .errors import ApiError

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_name(host_header: str) -> str:
    """'Example.org:8000' -> 'example.org'; '[::1]:8000' -> '::1'."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


@dataclass(frozen=True)
class AccessPolicy:
    bind_host: str = "127.0.0.1"
    allow_origins: tuple[str, ...] = ()  # e.g. "https://kiosk.example.org"
    allow_hosts: tuple[str, ...] = ()  # extra Host names, e.g. the reverse proxy's public name
    admin_token: str | None = None
    max_body_bytes: dict[str, int] = field(default_factory=dict)  # per path; others get default_body_bytes
    default_body_bytes: int = 16 * 1024

    def __post_init__(self) -> None:
        for origin in self.allow_origins:
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
                raise ValueError(f"--allow-origin wants scheme://host[:port], got {origin!r}")
        if self.admin_token is not None and len(self.admin_token) < 16:
            raise ValueError("the admin token must be at least 16 characters")

    @property
    def loopback_only(self) -> bool:
        return is_loopback(self.bind_host)

    def host_names(self) -> set[str]:
        names = set(LOOPBACK_NAMES) | {h.lower() for h in self.allow_hosts}
        names |= {urlsplit(o).hostname or "" for o in self.allow_origins}
        if self.bind_host not in ("0.0.0.0", "::", ""):
            names.add(self.bind_host.lower())
        return names

    def check_host(self, host_header: str | None) -> None:
        if not host_header or _host_name(host_header) not in self.host_names():
            raise ApiError(400, "host_not_allowed",
                           f"this server does not answer to the host {host_header!r}; "
                           "start gvd serve with --allow-host NAME to add one")

    def check_origin(self, origin: str | None, fetch_site: str | None, host_header: str | None,
                     scheme: str) -> None:
        """Same-origin or allow-listed for browsers; scripts without browser headers pass."""
        if origin is None:
            if fetch_site in (None, "same-origin", "none"):
                return
            raise ApiError(403, "cross_origin_refused",
                           f"state-changing requests from another site are refused (Sec-Fetch-Site: {fetch_site})")
        allowed = {o.rstrip("/").lower() for o in self.allow_origins}
        if host_header:
            allowed.add(f"{scheme}://{host_header}".lower())
        if origin.rstrip("/").lower() not in allowed:
            raise ApiError(403, "cross_origin_refused",
                           f"requests from the origin {origin!r} are refused; only this server's own page "
                           "may change state (add trusted origins with --allow-origin)")

    def body_limit(self, path: str) -> int:
        return self.max_body_bytes.get(path, self.default_body_bytes)

    def check_admin(self, authorization: str | None, client_host: str | None) -> None:
        """The admin token when one is set; without one, admin answers only on a loopback-only server."""
        if self.admin_token:
            scheme, _, token = (authorization or "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.admin_token.encode()):
                raise ApiError(401, "admin_token_required",
                               "this needs the admin token: send 'Authorization: Bearer <token>'",
                               headers={"WWW-Authenticate": "Bearer"})
            return
        if not (self.loopback_only and client_host and is_loopback(client_host)):
            raise ApiError(403, "admin_disabled",
                           "admin requests need the admin token (gvd serve --admin-token or GVD_ADMIN_TOKEN); "
                           "without one they are answered only to localhost on a server bound to localhost")


class BodyTooLarge(ApiError):
    def __init__(self, limit: int):
        super().__init__(413, "body_too_large",
                         f"the request body passed the limit of {limit / 1024 / 1024:.2f} MB for this endpoint"
                         if limit >= 1024 * 1024 else
                         f"the request body passed the limit of {limit} bytes for this endpoint",
                         headers={"Connection": "close"}, limit_bytes=limit)


class GuardMiddleware:
    """ASGI middleware: Host and Origin checks, and a byte counter on every request body."""

    def __init__(self, app, policy: AccessPolicy, render):
        self.app = app
        self.policy = policy
        self.render = render  # ApiError -> ASGI response

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        limit = self.policy.body_limit(scope["path"])
        try:
            self.policy.check_host(headers.get("host"))
            if scope["method"] not in SAFE_METHODS:
                self.policy.check_origin(headers.get("origin"), headers.get("sec-fetch-site"),
                                         headers.get("host"), scope.get("scheme", "http"))
            declared = headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                raise BodyTooLarge(limit)
        except ApiError as exc:
            return await self.render(exc)(scope, receive, send)

        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited_receive, send)
