"""Headless Chromium for the report tests: load a local page with networking disabled, dump its DOM
after the charts render, take a screenshot. No driver, no CDP: the command line does it all.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TIME_BUDGET_MS = 60_000  # virtual time: the page's timers run as fast as the CPU allows


def find_chromium() -> str | None:
    explicit = os.environ.get("CHROMIUM")
    if explicit and Path(explicit).exists():
        return explicit
    return next((found for name in CANDIDATES if (found := shutil.which(name))), None)


def _command(binary: str, profile: str, extra: list[str], url: str) -> list[str]:
    flags = [
        "--headless",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--disable-extensions",
        "--disable-features=MediaRouter,OptimizationHints",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        # networking off: every host resolves to nothing and every proxied request goes to a closed port
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--proxy-server=http://127.0.0.1:9",
        "--proxy-bypass-list=<-loopback>",
        f"--virtual-time-budget={TIME_BUDGET_MS}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        flags.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
    return [binary, *flags, *extra, url]


def _run(binary: str, page: Path, extra: list[str], timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        return subprocess.run(
            _command(binary, profile, extra, page.resolve().as_uri()),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def dump_dom(binary: str, page: Path, timeout: float = 180) -> str:
    """The page's DOM once its scripts (and virtual time) have run."""
    done = _run(binary, page, ["--dump-dom"], timeout)
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"chromium --dump-dom failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def screenshot(
    binary: str, page: Path, png: Path, width: int = 1400, height: int = 2000, timeout: float = 180
) -> Path:
    """A PNG of the top `height` pixels of the page at `width`."""
    png.parent.mkdir(parents=True, exist_ok=True)
    done = _run(
        binary,
        page,
        [
            f"--screenshot={png.resolve()}",
            f"--window-size={width},{height}",
            "--run-all-compositor-stages-before-draw",
        ],
        timeout,
    )
    if not png.exists():
        raise RuntimeError(f"chromium --screenshot wrote nothing ({done.returncode}): {done.stderr[-2000:]}")
    return png
