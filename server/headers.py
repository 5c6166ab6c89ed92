"""Security headers on every response, and the Content-Security-Policy of the two HTML pages.

Every answer (JSON, problem documents, SSE streams, static files) says ``nosniff``, sends no
referrer and may not be framed. Answers that are not a page get the strictest policy
(``default-src 'none'``): a JSON body opened in a browser runs and loads nothing. The two pages
get one that lets them work and nothing more, without ``'unsafe-inline'``:

- ``/``: the page is one file (``static/index.html``) whose inline ``<script>`` and ``<style>``
  are allowed by their SHA-256 digests, computed from the very file served, so an edit of the
  page keeps its policy exact; it reads ``/values`` and ``/events/`` (``connect-src 'self'``)
  and its form posts by script.
- ``/docs``: Swagger UI from the service itself; its one line of set-up is a file
  (``static/docs.js``, ``/docs/init.js``), not an inline script. Swagger UI shows data: images
  (its icons) and styles elements from script, which CSP allows.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import hdrs, web

from .settings import Settings

CSP = "Content-Security-Policy"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
# Anything that is not one of the pages.
NOTHING_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
DOCS_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)

_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL | re.IGNORECASE)


def _digest(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@functools.lru_cache(maxsize=4)
def page_policy(path: Path) -> str:
    """The policy of a page whose scripts and styles are inline ``<script>`` and ``<style>``
    elements without attributes: each allowed by its digest, nothing else."""
    html = path.read_text(encoding="utf-8")
    scripts = [_digest(body) for kind, body in _INLINE.findall(html) if kind.lower() == "script"]
    styles = [_digest(body) for kind, body in _INLINE.findall(html) if kind.lower() == "style"]
    none = "'none'"
    return (
        f"default-src 'none'; script-src {' '.join(scripts) or none}; "
        f"style-src {' '.join(styles) or none}; img-src 'self'; connect-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: the headers every answer carries (a page sets its own CSP)."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers.setdefault(CSP, NOTHING_POLICY)


Hook = Callable[[web.Request, web.StreamResponse], Awaitable[None]]


def cors_fixup(settings: Settings) -> Hook:
    """on_response_prepare, after aiohttp_cors's own: with ``*`` allowed, an origin that is not
    listed by name is answered ``*`` rather than echoed, and every answer varies by Origin
    (an echoed origin must never be served from a cache to another one). Credentials are
    never allowed (app.py), so neither form lets a page use a visitor's cookies."""
    listed = set(settings.cors_origins) - {"*"}
    wildcard = "*" in settings.cors_origins

    async def fix(request: web.Request, response: web.StreamResponse) -> None:
        allowed = response.headers.get(hdrs.ACCESS_CONTROL_ALLOW_ORIGIN)
        if wildcard and allowed is not None and allowed not in listed:
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = "*"
        vary = response.headers.get(hdrs.VARY, "")
        if "origin" not in vary.lower():
            response.headers[hdrs.VARY] = f"{vary}, Origin" if vary else "Origin"

    return fix
