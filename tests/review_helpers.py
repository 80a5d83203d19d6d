"""A `curator review` server as a real subprocess on loopback, and a Selenium-driven headless Chromium."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1280,1000")


class ReviewServer:
    """`python -m curator.cli review ARGS` with the data root `data`; `url` is what it printed."""

    def __init__(self, data: Path, *args: str):
        env = {**os.environ, "INSTRUCT_CURATOR_DATA": str(data), "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen([sys.executable, "-m", "curator.cli", "review", *args], cwd=ROOT, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"review server exited ({self.proc.wait()}): {self.proc.stderr.read()[-3000:]}")
            self.lines.append(line.rstrip("\n"))
            if line.startswith("http://"):
                self.url = line.strip()
                break
        self.base = self.url.split("?")[0].rstrip("/")

    def csrf(self) -> str:
        page = httpx.get(self.base + "/").text
        return page.split('name="csrf-token" content="')[1].split('"')[0]

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def interrupt(self) -> tuple[int, str]:
        """Ctrl-C: SIGINT, then (exit status, stderr)."""
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=20)
        return code, self.proc.stderr.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        self.proc.stdout.close()
        self.proc.stderr.close()


def chrome(user_data: Path):
    """A headless Chromium driven by Debian's chromium-driver, with the browser console log kept."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={user_data}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
