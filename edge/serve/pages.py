"""The web pages of ``gvd serve``: the operator view (``/``), the kiosk (``/kiosk``), their assets and
the security headers of every response.

Both pages are HTML templates filled on the server with one string table per language
(``static/i18n/<lang>.json``), so the page arrives already in the visitor's language; the same table
is fetched by the page's script for the strings it shows later (results, errors). The language is
``?lang=``, else the browser's ``Accept-Language``, else the configured default.

Options read from the server options (``getattr`` with these defaults)::

    kiosk_idle_seconds          60    back to the start after this long without input (0: never)
    kiosk_max_record_seconds    15    a recording stops by itself at this length
    default_language            "en"  when neither ?lang= nor the browser asks for a known language
    frame_ancestors             "'none'"  the CSP frame-ancestors source list (who may frame the pages)
"""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass
from importlib import resources
from string import Template
from typing import Any

LANGUAGES = ("en", "id")
STATIC = resources.files("edge.serve").joinpath("static")
_PAGES = {"operator": "operator.html", "kiosk": "kiosk.html"}


@dataclass(frozen=True)
class PageOptions:
    idle_seconds: float = 60.0
    max_record_seconds: float = 15.0
    default_language: str = "en"
    frame_ancestors: str = "'none'"

    def __post_init__(self) -> None:
        if self.default_language not in LANGUAGES:
            raise ValueError(f"default_language must be one of {', '.join(LANGUAGES)}, not {self.default_language!r}")
        if not (math.isfinite(self.idle_seconds) and self.idle_seconds >= 0):
            raise ValueError("kiosk_idle_seconds must be 0 (never) or positive")
        if not (math.isfinite(self.max_record_seconds) and self.max_record_seconds > 0):
            raise ValueError("kiosk_max_record_seconds must be positive")
        # Sources only: a ';' or a line break would let the setting rewrite the policy or the headers.
        if not re.fullmatch(r"[A-Za-z0-9'*.:/_ -]+", self.frame_ancestors):
            raise ValueError(f"frame_ancestors must be a CSP source list such as 'none' or https://host, "
                             f"not {self.frame_ancestors!r}")

    @classmethod
    def from_options(cls, options: Any) -> PageOptions:
        return cls(idle_seconds=float(options.kiosk_idle_seconds),
                   max_record_seconds=float(options.kiosk_max_record_seconds),
                   default_language=str(options.default_language), frame_ancestors=str(options.frame_ancestors))


def load_strings(language: str) -> dict[str, str]:
    return json.loads(STATIC.joinpath(f"i18n/{language}.json").read_text(encoding="utf-8"))


def choose_language(query: str | None, accept_language: str | None, default: str) -> str:
    """``?lang=`` if it is a known language, else the browser's preferred known one, else ``default``."""
    if query in LANGUAGES:
        return query
    best, best_weight = default, 0.0
    for item in (accept_language or "").split(","):
        tag, _, params = item.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        weight = 1.0
        if params.strip().startswith("q="):
            try:
                weight = float(params.strip()[2:])
            except ValueError:
                continue
        # Malay ("ms") is read easily by Indonesian speakers; "in" is Indonesian's old code.
        primary = {"in": "id", "ms": "id"}.get(primary, primary)
        if primary in LANGUAGES and weight > best_weight:
            best, best_weight = primary, weight
    return best


def _asset(name: str) -> str:
    return STATIC.joinpath(name).read_text(encoding="utf-8")


def render_page(page: str, strings: dict[str, str], language: str, page_options: PageOptions) -> str:
    """The page's template with the parts both pages share (``${head}``, ``${languages}``, ``${core}``),
    ``${t_key}`` (the escaped string ``key``) and ``${lang}`` / ``${idle_seconds}`` /
    ``${max_record_seconds}`` filled in."""
    values = {f"t_{key}": html.escape(text) for key, text in strings.items()}
    values.update(lang=language, idle_seconds=f"{page_options.idle_seconds:g}",
                  max_record_seconds=f"{page_options.max_record_seconds:g}")
    # substitute(), not safe_substitute(): a missing string fails at start-up instead of showing "${t_x}".
    for part in ("head", "languages", "core"):
        values[part] = Template(_asset(f"{part}.html")).substitute(values)
    return Template(_asset(_PAGES[page])).substitute(values)


def security_headers(frame_ancestors: str) -> list[tuple[bytes, bytes]]:
    policy = "; ".join((
        "default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data: blob:",
        "media-src 'self' blob:", "connect-src 'self'", "object-src 'none'", "base-uri 'none'",
        "form-action 'self'", f"frame-ancestors {frame_ancestors}",
    ))
    headers = {
        "content-security-policy": policy,
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "permissions-policy": "microphone=(self), camera=(), geolocation=(), payment=(), usb=()",
        "cross-origin-opener-policy": "same-origin",
    }
    if frame_ancestors.strip() == "'none'":
        headers["x-frame-options"] = "DENY"  # for browsers that predate frame-ancestors
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]


class SecurityHeaders:
    """ASGI middleware adding the security headers to every HTTP response (API answers and errors too).

    Plain ASGI rather than ``BaseHTTPMiddleware``: streamed uploads pass through untouched.
    """

    def __init__(self, app, frame_ancestors: str = "'none'") -> None:
        self.app = app
        self.headers = security_headers(frame_ancestors)
        self.names = {name for name, _ in self.headers}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in self.names]
                message = {**message, "headers": kept + self.headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_pages(app, options: Any) -> None:
    """Add ``/``, ``/kiosk``, ``/static/*``, ``/favicon.ico`` and the security headers to ``app``."""
    from starlette.responses import FileResponse, HTMLResponse
    from starlette.staticfiles import StaticFiles

    page_options = PageOptions.from_options(options)
    tables = {language: load_strings(language) for language in LANGUAGES}
    rendered = {(page, language): render_page(page, tables[language], language, page_options)
                for page in _PAGES for language in LANGUAGES}

    def page_response(page: str, request) -> HTMLResponse:
        language = choose_language(request.query_params.get("lang"), request.headers.get("accept-language"),
                                   page_options.default_language)
        # The answer depends on Accept-Language: caches must keep one copy per language.
        return HTMLResponse(rendered[page, language], headers={"Vary": "Accept-Language", "Cache-Control": "no-store"})

    # Plain Starlette routes: they take the request and need none of FastAPI's parameter parsing.
    async def operator_page(request):
        return page_response("operator", request)

    async def kiosk_page(request):
        return page_response("kiosk", request)

    async def favicon(request):
        return FileResponse(str(STATIC.joinpath("favicon.ico")), media_type="image/x-icon")

    app.add_route("/", operator_page, methods=["GET"], include_in_schema=False)
    app.add_route("/kiosk", kiosk_page, methods=["GET"], include_in_schema=False)
    app.add_route("/favicon.ico", favicon, methods=["GET"], include_in_schema=False)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    app.add_middleware(SecurityHeaders, frame_ancestors=page_options.frame_ancestors)
