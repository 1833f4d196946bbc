"""Why the browser tests skip: the reason names what is missing (no browser needed)."""
import sys

from tests.browser import conftest


def test_missing_chromium_is_named(monkeypatch):
    monkeypatch.delenv("GRAPHMASK_CHROMIUM", raising=False)
    monkeypatch.setattr(conftest.shutil, "which", lambda name: None)
    why = conftest._missing()
    if "Playwright" in (why or ""):  # this machine has no playwright: that comes first
        assert why.startswith("Playwright for Python is not installed")
    else:
        assert why == ("no Chromium found (apt-get install chromium, or set "
                       "GRAPHMASK_CHROMIUM; .ci/install_browser installs it)")


def test_missing_playwright_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "playwright.sync_api", None)
    assert conftest._missing() == (
        "Playwright for Python is not installed (pip install playwright; "
        ".ci/install_browser installs it with Debian's chromium)")


def test_chromium_from_the_environment(monkeypatch, tmp_path):
    exe = tmp_path / "chromium"
    exe.write_text("")
    monkeypatch.setenv("GRAPHMASK_CHROMIUM", str(exe))
    assert conftest.chromium_path() == str(exe)
    monkeypatch.setenv("GRAPHMASK_CHROMIUM", str(tmp_path / "absent"))
    assert conftest.chromium_path() is None
