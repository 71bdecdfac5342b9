"""Debian's Chromium, headless, driven by playwright (no browser download), for page tests."""

import shutil

import pytest

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_context(tmp_path_factory):
    """Yields a persistent browser context with a fresh, empty profile; closed after."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail(
            "Chromium is not installed: run 'apt-get install chromium' (.ci/run does)",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            tmp_path_factory.mktemp("chromium-profile"),
            executable_path=path,
            args=CHROMIUM_ARGS,
            headless=True,
        )
        yield context
        context.close()
