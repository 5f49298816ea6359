"""A real Chromium (Debian's package) driven by Playwright against the demo board.

Playwright's own browser download is not used: we launch the system Chromium by path.
Where it is missing and this is a root shell with apt-get, the suite installs it (that
is how the README's test command gets it); otherwise these tests skip, saying why.
A failing test leaves a screenshot of each of its pages in .statesync-test/screenshots/.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, BrowserContext, Page, Route, async_playwright

from statesync.config import Settings
from statesync.demo.seed import seed_catalog
from statesync.models import ModelSpec
from tests.conftest import TEST_DATA, RunningServer, serve

SCREENSHOTS = TEST_DATA / "screenshots"
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]


def _find_chromium() -> str | None:
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _install_chromium() -> str:
    """Why it could not be installed, or '' once it is."""
    if shutil.which("apt-get") is None:
        return "apt-get is not available to install Debian's chromium"
    if os.geteuid() != 0:
        return "installing Debian's chromium needs root (run: sudo apt-get install -y chromium)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "install", "-y", "-q", "chromium"],
                    ["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode == 0 and command[1] == "install":
            return ""
    return f"apt-get could not install chromium: {done.stderr.strip()[-300:]}"


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = _find_chromium()
    if path is None:
        reason = _install_chromium()
        path = _find_chromium()
        if path is None:
            pytest.skip(f"no Chromium for browser tests: {reason or 'not found after install'}")
    return path


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Iterator[pytest.TestReport]:
    report: pytest.TestReport = yield
    if report.when == "call":
        item.stash[FAILED] = report.failed
    return report


FAILED = pytest.StashKey[bool]()


@pytest.fixture
async def browser(chromium_path: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


OpenPage = Callable[[str], Awaitable[tuple[BrowserContext, Page]]]


async def offline_but_for(context: BrowserContext, base_url: str) -> list[str]:
    """Let ``context`` reach the API's host only, as on a machine without the internet;
    returns the list (filled as pages ask) of every other URL refused."""
    api_host = urlsplit(base_url).netloc
    elsewhere: list[str] = []

    async def offline(route: Route) -> None:
        if urlsplit(route.request.url).netloc == api_host:
            await route.continue_()
        else:
            elsewhere.append(route.request.url)
            await route.abort()

    await context.route("**/*", offline)
    return elsewhere


@pytest.fixture
async def open_page(request: pytest.FixtureRequest, browser: Browser) -> AsyncIterator[OpenPage]:
    """Open a URL in a page of its own context (cookies, storage, network), like a window
    of another user; wait until its client is online. Failing tests get screenshots."""
    pages: list[Page] = []

    async def open_url(url: str) -> tuple[BrowserContext, Page]:
        context = await browser.new_context(viewport={"width": 1200, "height": 900})
        page = await context.new_page()
        pages.append(page)
        await page.goto(url)
        await page.locator("#status[data-status=online]").wait_for()
        return context, page

    try:
        yield open_url
    finally:
        if request.node.stash.get(FAILED, False):
            await _screenshots(request.node.name, pages)


@dataclass
class Board:
    server: RunningServer
    open_url: OpenPage

    @property
    def url(self) -> str:
        return self.server.base_url + "/"

    async def open_page(self, user: str = "ada") -> tuple[BrowserContext, Page]:
        """A window of its own, signed in as the customer ``user``."""
        return await self.open_url(f"{self.url}?as={user}")


ADMIN_SECRET = "browser-admin-secret"


def board_settings(settings: Settings) -> Settings:
    """The board as `statesync dev` serves it, but closed: pages sign in with dev tokens,
    backend code with the admin secret, and nothing else gets in."""
    return settings.model_copy(update={
        "demo": True, "dev_tokens": True, "open_access": False, "admin_secret": ADMIN_SECRET,
        "jwt_secret": "browser-tests-jwt-secret-long-enough-for-hs256"})


@pytest.fixture
async def board(settings: Settings, demo_models: list[ModelSpec], open_page: OpenPage,
                start_worker) -> AsyncIterator[Board]:  # type: ignore[no-untyped-def]
    """The demo board as `statesync dev` serves it: API with relay, a Celery worker running
    workers/pricing.py, and the seeded catalog."""
    demo_settings = board_settings(settings)
    async with serve(demo_settings, demo_models, with_relay=True) as server:
        await start_worker(demo_settings)
        await seed_catalog(server.base_url, ADMIN_SECRET)
        yield Board(server, open_page)


async def _screenshots(test_name: str, pages: list[Page]) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for number, page in enumerate(pages, 1):
        path: Path = SCREENSHOTS / f"{test_name}-page{number}.png"
        try:
            await page.screenshot(path=str(path), full_page=True)
            print(f"screenshot: {path}")
        except Exception as error:  # a crashed page cannot be shot; say so, keep the failure
            print(f"no screenshot of page {number}: {error}")
