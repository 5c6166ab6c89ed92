"""The `/` page in a real headless Chromium: live values, the form, a restart of the service.

Chromium and its driver come from the system (Debian: `apt-get install chromium chromium-driver`);
nothing here downloads a browser. Without a Chromium binary the tests are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from server.embedded import free_port

ROOT = Path(__file__).resolve().parent.parent

BROWSERS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
BROWSER = next((b for b in BROWSERS if os.access(b, os.X_OK)), None) or shutil.which("chromium")
DRIVER = "/usr/bin/chromedriver" if os.access("/usr/bin/chromedriver", os.X_OK) else None
DRIVER = DRIVER or shutil.which("chromedriver")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        BROWSER is None,
        reason="no Chromium binary found (/usr/bin/chromium); "
        "install it with: apt-get install chromium chromium-driver",
    ),
]


class Service:
    """`python run.py` as a real process on a given port, its log in a file."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.env = env
        self.port = port
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None
        self.base = f"http://127.0.0.1:{port}"

    async def start(self) -> Service:
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, str(ROOT / "run.py"), "--port", str(self.port),
                env={**os.environ, **self.env},
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        async with aiohttp.ClientSession() as session:
            for _ in range(300):
                if self.proc.returncode is not None:
                    break
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(self.base + "/health") as response:
                        if response.status == 200:
                            return self
                await asyncio.sleep(0.1)
        await self.stop()
        raise AssertionError(f"service did not become healthy:\n{self.log.read_text()[-3000:]}")

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            log = self.log.read_text()
            raise AssertionError(f"still running 20 s after SIGTERM:\n{log}") from None

    async def post(self, value: str) -> None:
        async with aiohttp.ClientSession() as session:
            async with session.post(self.base + "/add-value/", json={"value": value}) as response:
                assert response.status == 200, await response.text()

    async def values(self) -> list[tuple[int, str]]:
        """Every value, oldest first, as GET /values pages them."""
        found: list[tuple[int, str]] = []
        url = self.base + "/values?limit=200"
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                async with session.get(url) as response:
                    page = await response.json()
                found += [(item["id"], item["value"]) for item in page["items"]]
                if not page["next"]:
                    break
                url = self.base + "/values?limit=200&cursor=" + page["next"]
        return found[::-1]


class MaintenancePage:
    """What a balancer may answer on the port while the service restarts: 503 to everything."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.runner: web.AppRunner | None = None

    async def start(self) -> MaintenancePage:
        async def unavailable(request: web.Request) -> web.Response:
            return web.json_response(
                {"type": "about:blank", "title": "Service Unavailable", "status": 503,
                 "detail": "down for maintenance"},
                status=503,
                content_type="application/problem+json",
                headers={"Retry-After": "1"},
            )  # fmt: skip

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", unavailable)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


class Page:
    """The `/` page in headless Chromium; every call runs in a thread, so that servers in the
    test's own event loop (the maintenance page) keep answering while the browser waits."""

    # Each item as a person reads it: the "#id" label, then the value's text.
    VALUES_JS = """
        return [...document.querySelectorAll('#values li')].map(li => {
          const label = li.querySelector('.id');
          const rest = [...li.childNodes].filter(node => node !== label);
          return [Number(label.textContent.replace('#', '')),
                  rest.map(node => node.textContent).join('')];
        });
    """

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    async def run(self, function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(function, *args)

    async def js(self, script: str, *args: Any) -> Any:
        return await self.run(self.driver.execute_script, script, *args)

    async def open(self, url: str) -> None:
        await self.run(self.driver.get, url)

    async def values(self) -> list[tuple[int, str]]:
        """The values the page shows, oldest first."""
        return [(int(i), str(v)) for i, v in await self.js(self.VALUES_JS)][::-1]

    async def text(self, element_id: str) -> str:
        return str(await self.js(f"return document.getElementById('{element_id}').textContent;"))

    async def field(self) -> str:
        return str(await self.js("return document.getElementById('value').value;"))

    async def submit(self, text: str | None = None) -> None:
        """Type `text` into the form (when given) and press Add, as a person would."""
        from selenium.webdriver.common.by import By

        def act() -> None:
            if text is not None:
                field = self.driver.find_element(By.ID, "value")
                field.clear()
                field.send_keys(text)
            self.driver.find_element(By.CSS_SELECTOR, "#add button").click()

        await self.run(act)

    async def wait_for(self, what: str, check: Callable[[], Any], timeout: float = 30.0) -> None:
        """Poll `check` (an async callable) until it is truthy; fail after `timeout` seconds."""
        last: Any = None
        for _ in range(int(timeout / 0.1)):
            last = await check()
            if last:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"the page never showed {what} in {timeout:.0f} s (last: {last!r})")


@pytest.fixture
def browser() -> Iterator[Any]:
    assert DRIVER, "Chromium is installed but chromedriver is not: apt-get install chromium-driver"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = str(BROWSER)
    profile = tempfile.mkdtemp(prefix="collab-chromium-")
    for flag in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-proxy-server",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=DriverService(executable_path=DRIVER))
    driver.set_script_timeout(10)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
async def service_env(database_url: str, redis_url: str) -> AsyncIterator[dict[str, str]]:
    yield {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": f"browser-{os.getpid()}-{free_port()}:",
        "SSE_RETRY_MS": "500",  # the browser's own reconnects come quickly
        "LOG_LEVEL": "INFO",
    }


def in_order(values: list[tuple[int, str]]) -> bool:
    ids = [i for i, _ in values]
    return ids == sorted(set(ids))


async def test_page_is_live_keeps_failed_input_and_resumes_after_a_restart(
    browser: Any, service_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    service = await Service(service_env, port, tmp_path / "service.log").start()
    other = Service(service_env, free_port(), tmp_path / "other.log")
    maintenance = MaintenancePage(port)
    page = Page(browser)
    try:
        await page.open(service.base + "/")
        await page.wait_for("status live", lambda: _equals(page.text("status"), "live"))
        await page.js("window.sameDocument = true;")  # gone if the page ever reloads

        # A value posted from outside appears live; the form adds one and clears its input.
        await service.post("from outside")
        await page.wait_for("the posted value", lambda: _texts(page, ["from outside"]))
        await page.submit("from the form")
        await page.wait_for(
            "the submitted value", lambda: _texts(page, ["from outside", "from the form"])
        )
        assert await page.field() == ""
        assert await page.text("error") == ""

        # The service stops: a submit fails, says so, and keeps the text.
        await service.stop()
        await page.submit("typed while down")
        await page.wait_for("an error", lambda: page.text("error"))
        assert "cannot be reached" in await page.text("error")
        assert await page.field() == "typed while down"

        # A 503 on the port (the browser's EventSource gives up on it for good): the page
        # reconnects by itself, and a submit shows the problem's detail and keeps the text.
        await maintenance.start()
        await page.wait_for(
            "that it lost its stream",
            lambda: _contains(page.text("status"), "disconnected; reconnecting"),
        )
        await page.js("document.getElementById('error').textContent = '';")
        await page.submit()
        await page.wait_for("the 503 error", lambda: page.text("error"))
        error = await page.text("error")
        assert "503" in error and "down for maintenance" in error, error
        assert await page.field() == "typed while down"

        # Values committed (through another instance) while the page cannot reach its own.
        await other.start()
        for i in range(1, 4):
            await other.post(f"while away {i}")
        await other.stop()
        await maintenance.stop()
        await service.start()

        expected = ["from outside", "from the form"] + [f"while away {i}" for i in range(1, 4)]
        await page.wait_for("the values posted while away", lambda: _texts(page, expected))
        await page.wait_for("status live", lambda: _equals(page.text("status"), "live"))
        # The kept text goes in now; a value posted from outside still arrives live.
        await page.submit()
        expected.append("typed while down")
        await page.wait_for("the kept text, added", lambda: _texts(page, expected))
        assert await page.field() == ""
        assert await page.text("error") == ""
        await service.post("after the restart")
        expected.append("after the restart")
        await page.wait_for("the value after the restart", lambda: _texts(page, expected))

        shown = await page.values()
        assert shown == await service.values(), "the page differs from GET /values"
        assert [v for _, v in shown] == expected and in_order(shown)
        assert await page.js("return window.sameDocument === true;"), "the page reloaded"
    finally:
        await maintenance.stop()
        await other.stop()
        await service.stop()


async def test_page_resumes_on_its_own_after_the_service_restarts(
    browser: Any, service_env: dict[str, str], tmp_path: Path
) -> None:
    """The connection is cut by a plain restart (no answer on the port for a while, no 503):
    the browser's EventSource reconnects by itself with its Last-Event-ID, and the values
    committed meanwhile (through another instance) arrive once each, in order."""
    port = free_port()
    service = await Service(service_env, port, tmp_path / "service.log").start()
    other = Service(service_env, free_port(), tmp_path / "other.log")
    page = Page(browser)
    try:
        await page.open(service.base + "/")
        await page.wait_for("status live", lambda: _equals(page.text("status"), "live"))
        # Every status the page shows from now on; gone, like sameDocument, if it reloads.
        await page.js("""
            window.sameDocument = true;
            window.statuses = [];
            const status = document.getElementById('status');
            new MutationObserver(() => window.statuses.push(status.textContent))
                .observe(status, {childList: true, characterData: true, subtree: true});
        """)
        expected = [f"before {i}" for i in range(3)]
        for value in expected:
            await service.post(value)
        await page.wait_for("the values before the restart", lambda: _texts(page, expected))

        await service.stop()
        lost = "reconnecting…"  # the EventSource retries by itself (readyState CONNECTING)
        await page.wait_for("that it lost its stream", lambda: _equals(page.text("status"), lost))
        await other.start()
        for i in range(3):
            await other.post(f"while down {i}")
            expected.append(f"while down {i}")
        await other.stop()
        await service.start()

        await page.wait_for("the values posted while down", lambda: _texts(page, expected))
        await page.wait_for("status live", lambda: _equals(page.text("status"), "live"))
        await service.post("after the restart")
        expected.append("after the restart")
        await page.wait_for("the value after the restart", lambda: _texts(page, expected))

        shown = await page.values()
        assert shown == await service.values(), "the page differs from GET /values"
        assert [v for _, v in shown] == expected and in_order(shown)
        assert await page.js("return window.sameDocument === true;"), "the page reloaded"
        # The EventSource's own reconnects did it: the page never gave up on it and made its own.
        statuses = await page.js("return window.statuses;")
        assert lost in statuses and not [s for s in statuses if "disconnected" in s], statuses
    finally:
        await other.stop()
        await service.stop()


async def test_page_continues_when_every_value_was_pruned(
    browser: Any, service_env: dict[str, str], tmp_path: Path
) -> None:
    service = await Service(service_env, free_port(), tmp_path / "service.log").start()
    page = Page(browser)
    try:
        for i in range(3):
            await service.post(f"old {i}")
        conn = await asyncpg.connect(service_env["DATABASE_URL"])
        try:
            await conn.execute("DELETE FROM feed_values")  # what retention does to old values
        finally:
            await conn.close()
        # The page finds no values, asks for everything after 0 and gets `reset`.
        await page.open(service.base + "/")
        await page.wait_for("status live", lambda: _equals(page.text("status"), "live"))
        await page.js("window.sameDocument = true;")
        await service.post("after pruning")
        await page.wait_for("the new value", lambda: _texts(page, ["after pruning"]))
        assert await page.values() == await service.values()
        assert await page.js("return window.sameDocument === true;"), "the page reloaded"
    finally:
        await service.stop()


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def _contains(value: Any, part: str) -> bool:
    return part in await value


async def _texts(page: Page, expected: list[str]) -> bool:
    values = await page.values()
    return [v for _, v in values] == expected and in_order(values)
