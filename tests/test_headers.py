"""Security headers on every answer, the pages' Content-Security-Policy, and CORS (issue 12)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
import shutil
import time
from typing import Any

import pytest

from .helpers import register

SECURITY = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def policy(response: Any) -> dict[str, list[str]]:
    """The response's security headers checked, and its CSP as {directive: [sources]}."""
    for name, value in SECURITY.items():
        assert response.headers.get(name) == value, (response.url, name)
    csp = response.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    directives = {}
    for part in csp.split(";"):
        name, *sources = part.split()
        directives[name] = sources
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["default-src"] == ["'none'"]
    return directives


async def test_every_answer_carries_the_security_headers(make_client: Any) -> None:
    client = await make_client(max_body_bytes=2048)
    ada = await register(client)
    big = ('{"value": "' + "x" * 4096 + '"}').encode()
    as_json = {"Content-Type": "application/json"}
    answers = {
        "json": await client.get("/values"),
        "health": await client.get("/health"),
        "metrics": await client.get("/metrics"),
        "openapi": await client.get("/openapi.json"),
        "invalid (422)": await client.post("/events", json={}, headers=ada["headers"]),
        "no route (404)": await client.get("/nowhere"),
        "wrong method (405)": await client.delete("/values"),
        "too large (413)": await client.post("/add-value/", data=big, headers=as_json),
        "bad json (400)": await client.post("/add-value/", data=b"{", headers=as_json),
        "no token (401)": await client.get(f"/users/{ada['id']}"),
        "wrong type (415)": await client.post("/add-value/", data="x", headers={
            "Content-Type": "text/plain"}),
        "static file": await client.get("/docs/static/swagger-ui.css"),
        "docs set-up": await client.get("/docs/init.js"),
    }  # fmt: skip
    expected = {"no route (404)": 404, "wrong method (405)": 405, "too large (413)": 413,
                "bad json (400)": 400, "no token (401)": 401, "wrong type (415)": 415,
                "invalid (422)": 422}  # fmt: skip
    for label, response in answers.items():
        assert response.status == expected.get(label, 200), label
        directives = policy(response)
        if label != "docs set-up" and label != "static file":
            assert set(directives) >= {"default-src", "frame-ancestors"}, label
            assert "script-src" not in directives, label  # nothing may run in an API answer


@pytest.mark.parametrize("stream", ["feed", "user"])
async def test_streams_carry_the_security_headers(client: Any, stream: str) -> None:
    ada = await register(client)
    path = "/events/" if stream == "feed" else f"/sse/{ada['id']}?access_token={ada['token']}"
    response = await client.get(path)
    assert response.status == 200
    assert response.content_type == "text/event-stream"
    assert "script-src" not in policy(response)
    response.close()


def digest(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


async def test_the_index_page_allows_its_own_inline_script_and_style_only(client: Any) -> None:
    response = await client.get("/")
    html = await response.text()
    directives = policy(response)
    scripts = re.findall(r"<script>(.*?)</script>", html, re.DOTALL)
    styles = re.findall(r"<style>(.*?)</style>", html, re.DOTALL)
    assert scripts and styles
    assert directives["script-src"] == [digest(s) for s in scripts]
    assert directives["style-src"] == [digest(s) for s in styles]
    assert directives["connect-src"] == ["'self'"]  # GET /values, the EventSource, the form
    assert directives["form-action"] == ["'self'"]
    assert "<script src" not in html  # no script of another origin either


async def test_the_docs_page_runs_scripts_of_the_service_only(client: Any) -> None:
    response = await client.get("/docs/")
    html = await response.text()
    directives = policy(response)
    assert directives["script-src"] == ["'self'"]
    assert directives["style-src"] == ["'self'"]
    assert re.findall(r"<script(?: [^>]*)?>", html) == [
        '<script src="/docs/static/swagger-ui-bundle.js">',
        '<script src="/docs/init.js">',
    ]


# CORS: the API authenticates with Bearer tokens, never cookies, so no answer ever allows
# credentials, and an origin that is not allowed is never echoed.
ORIGIN = "https://app.example"
EVIL = "https://evil.example"


async def cors(client: Any, origin: str) -> tuple[Any, Any]:
    """A preflight for a POST with a token, and a simple GET, both from ``origin``."""
    preflight = await client.options(
        "/events",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Authorization, Content-Type",
        },
    )
    simple = await client.get("/values", headers={"Origin": origin})
    return preflight, simple


async def test_cors_allows_a_configured_origin_without_credentials(make_client: Any) -> None:
    client = await make_client(cors_origins=(ORIGIN,))
    preflight, simple = await cors(client, ORIGIN)
    assert preflight.status == 200
    for response in (preflight, simple):
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert "Access-Control-Allow-Credentials" not in response.headers
        assert "Origin" in response.headers["Vary"]
    assert "authorization" in preflight.headers["Access-Control-Allow-Headers"].lower()
    # A real cross-site call, token included, works.
    ada = await register(client)
    body = {"title": "T", "start_date": "2024-01-15T10:00:00Z", "end_date": "2024-01-15T11:00:00Z"}
    created = await client.post("/events", json=body, headers={**ada["headers"], "Origin": ORIGIN})
    assert created.status == 201
    assert created.headers["Access-Control-Allow-Origin"] == ORIGIN


async def test_cors_preflights_pass_for_every_route_and_method(make_client: Any) -> None:
    """Every documented route, with and without its trailing slash, answers a preflight from
    a configured origin for its own method (several methods share a path, and a path is
    another's twin: "/events" is POST /events and the feed's GET /events/ without a slash)."""
    client = await make_client(cors_origins=(ORIGIN,))
    spec = await (await client.get("/openapi.json")).json()
    checked = 0
    for path, operations in spec["paths"].items():
        concrete = re.sub(r"\{\w+\}", "00000000-0000-0000-0000-000000000000", path)
        for twin in {concrete, concrete.rstrip("/") or "/", concrete.rstrip("/") + "/"}:
            if twin == "//":
                continue
            for method in operations:
                response = await client.options(
                    twin,
                    headers={"Origin": ORIGIN, "Access-Control-Request-Method": method.upper()},
                )
                assert response.status == 200, (method, twin, await response.text())
                assert response.headers["Access-Control-Allow-Methods"] == method.upper()
                checked += 1
    assert checked > 80


@pytest.mark.parametrize("origins", [(ORIGIN,), (ORIGIN, "https://other.example")])
async def test_cors_never_reflects_an_arbitrary_origin(make_client: Any, origins: Any) -> None:
    client = await make_client(cors_origins=origins)
    preflight, simple = await cors(client, EVIL)
    assert preflight.status == 403
    for response in (preflight, simple):
        assert "Access-Control-Allow-Origin" not in response.headers
        assert "Access-Control-Allow-Credentials" not in response.headers
    assert simple.status == 200  # the answer itself is as ever; the browser hides it
    null = await client.get("/values", headers={"Origin": "null"})
    assert "Access-Control-Allow-Origin" not in null.headers


async def test_cors_star_answers_star_and_never_credentials(make_client: Any) -> None:
    client = await make_client(cors_origins=("*", ORIGIN))
    for origin in (EVIL, "null", ORIGIN):
        preflight, simple = await cors(client, origin)
        assert preflight.status == 200
        for response in (preflight, simple):
            allowed = response.headers["Access-Control-Allow-Origin"]
            assert allowed == (ORIGIN if origin == ORIGIN else "*"), origin
            assert "Access-Control-Allow-Credentials" not in response.headers
            assert "Origin" in response.headers["Vary"]


async def test_without_cors_origins_no_cors_header_is_sent(client: Any) -> None:
    response = await client.get("/values", headers={"Origin": ORIGIN})
    assert not [h for h in response.headers if h.lower().startswith("access-control-")]
    preflight, _ = await cors(client, ORIGIN)
    assert preflight.status == 405


# The pages under their policies in a real browser: nothing refused, everything works.
BROWSERS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
BROWSER = next((b for b in BROWSERS if os.access(b, os.X_OK)), None) or shutil.which("chromium")
DRIVER = shutil.which("chromedriver") or (
    "/usr/bin/chromedriver" if os.access("/usr/bin/chromedriver", os.X_OK) else None
)


class Browser:
    """Headless Chromium through its chromedriver (both from the system; nothing downloaded).
    Every call runs in a thread, so the app under test keeps serving on this loop."""

    def __init__(self) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = BROWSER or ""
        for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--disable-gpu"):  # fmt: skip
            options.add_argument(argument)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(options=options, service=Service(DRIVER))

    async def run(self, method: str, *args: Any) -> Any:
        return await asyncio.to_thread(getattr(self.driver, method), *args)

    async def wait_for(self, script: str, timeout: float = 20.0) -> Any:
        """The value of ``script`` once it is truthy (polled, bounded in time)."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.run("execute_script", script)
            if value or time.monotonic() > deadline:
                return value
            await asyncio.sleep(0.2)

    async def refusals(self) -> list[str]:
        """What the console says the page's policy refused."""
        log = await self.run("get_log", "browser")
        return [e["message"] for e in log if "Content Security Policy" in e["message"]]


@pytest.mark.slow
@pytest.mark.skipif(
    BROWSER is None or DRIVER is None,
    reason="no Chromium and chromedriver (apt-get install chromium chromium-driver)",
)
async def test_both_pages_work_in_a_browser_under_their_policies(client: Any) -> None:
    base = str(client.make_url("")).rstrip("/")
    browser = await asyncio.to_thread(Browser)
    try:
        # The feed page: live, shows a value posted from outside, adds one through its form.
        await browser.run("get", base + "/")
        status = "return document.getElementById('status').textContent"
        assert await browser.wait_for(status + " === 'live'"), await browser.run(
            "execute_script", status
        )
        assert (await client.post("/add-value/", json={"value": "from outside"})).status == 200
        values = "return [...document.querySelectorAll('#values .value')].map(e => e.textContent)"
        assert "from outside" in await browser.wait_for(
            values + ".filter(v => v === 'from outside')"
        )
        await browser.run(
            "execute_script",
            "document.getElementById('value').value = 'from the form';"
            "document.querySelector('#add button').click();",
        )
        assert await browser.wait_for(values + ".filter(v => v === 'from the form')")
        assert await browser.refusals() == []
        # Swagger UI: every operation rendered from /openapi.json, and one of them run.
        await browser.run("get", base + "/docs")
        count = "return document.querySelectorAll('.opblock').length"
        assert await browser.wait_for(count + " > 40"), await browser.run("execute_script", count)
        # "Try it out" on GET /health: Swagger UI calls the API from the page.
        health = "document.querySelector('[id$=\"-get_health\"]')"
        for button in (".opblock-summary-control", ".try-out__btn", ".execute"):
            clicked = f"const b = {health}.querySelector('{button}'); if (b) b.click(); return !!b"
            assert await browser.wait_for(clicked), button
        row = ".live-responses-table tr.response .response-col_status"
        live = f"return {health}.querySelector('{row}')"
        assert await browser.wait_for(live + "?.textContent.trim() === '200'")
        assert await browser.refusals() == []
    finally:
        await asyncio.to_thread(browser.driver.quit)
