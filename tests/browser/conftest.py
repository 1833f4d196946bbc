"""A real browser for the explorer's tests: Debian's Chromium driven by Playwright.

``.ci/install_browser`` installs both (``apt-get install chromium``, ``pip install
playwright``; Playwright's own browser download is not used). The browser is found at
``$GRAPHMASK_CHROMIUM`` or as ``chromium`` / ``chromium-browser`` on PATH. Without it the
tests skip, naming what is missing; with ``GRAPHMASK_REQUIRE_BROWSER=1`` (CI's browser
stage) a missing browser fails them instead. Pages are opened from disk with every
non-``file:`` request refused and recorded. Screenshots are kept in
``$GRAPHMASK_ARTIFACTS`` (default ``build/browser`` in the repository).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VIEWPORT = {"width": 1400, "height": 900}


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: runs the HTML explorer in headless Chromium")


def chromium_path() -> str | None:
    env = os.environ.get("GRAPHMASK_CHROMIUM")
    if env:
        return env if os.path.exists(env) else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return ("Playwright for Python is not installed (pip install playwright; "
                ".ci/install_browser installs it with Debian's chromium)")
    if chromium_path() is None:
        return ("no Chromium found (apt-get install chromium, or set GRAPHMASK_CHROMIUM; "
                ".ci/install_browser installs it)")
    return None


@pytest.fixture(scope="session")
def browser():
    why = _missing()
    if why is not None:
        if os.environ.get("GRAPHMASK_REQUIRE_BROWSER") == "1":
            pytest.fail(f"GRAPHMASK_REQUIRE_BROWSER=1 but {why}")
        pytest.skip(why)
    from playwright.sync_api import sync_playwright
    args = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=args)
        yield b
        b.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    path = Path(os.environ.get("GRAPHMASK_ARTIFACTS") or ROOT / "build" / "browser")
    path.mkdir(parents=True, exist_ok=True)
    return path


class Opened:
    """A page of the explorer, opened from a file with the network blocked."""

    def __init__(self, browser, path: Path):
        self.context = browser.new_context(viewport=VIEWPORT, offline=True)
        self.refused: list[str] = []
        self.errors: list[str] = []

        def route(r):
            if r.request.url.startswith("file:"):
                r.continue_()
            else:
                self.refused.append(r.request.url)
                r.abort()

        self.context.route("**/*", route)
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error"
                     else None)
        self.page.goto(path.resolve().as_uri())
        self.page.wait_for_selector("#gm-root[data-ready='1']", timeout=30000)

    def close(self):
        self.context.close()


@pytest.fixture
def open_page(browser):
    opened = []

    def _open(path: Path) -> Opened:
        o = Opened(browser, path)
        opened.append(o)
        return o

    yield _open
    for o in opened:
        assert o.refused == [], f"the page asked the network for {o.refused}"
        assert o.errors == [], f"script errors: {o.errors}"
        o.close()
