"""JupyterLab 4 in headless Chromium (Debian's chromium and chromedriver), driven with selenium
the way a user drives it: click into a cell, Shift+Enter, read what the page shows."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Nothing but loopback: every other address goes to a proxy that is not there (Chromium
# never proxies loopback), and none of the browser's own background fetches run.
CHROMIUM_ARGS = (
    "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
    "--window-size=1400,1000", "--proxy-server=http://127.0.0.1:9",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--no-first-run", "--disable-features=Translate,MediaRouter",
)
# User settings of a first-time user who said no to the news question: no toast over the page.
NO_NEWS = ('{"fetchNews": "false", "checkForUpdates": false}',
           "@jupyterlab/apputils-extension/notification.jupyterlab-settings")


def lab_args(settings_dir: Path) -> list[str]:
    """jupyter_server options for JupyterLab: no update check against PyPI, no news feed."""
    text, name = NO_NEWS
    (settings_dir / name).parent.mkdir(parents=True, exist_ok=True)
    (settings_dir / name).write_text(text)
    return ["--LabApp.check_for_updates_class="
            "jupyterlab.handlers.announcements.NeverCheckForUpdate",
            "--LabApp.news_url=None", f"--LabApp.user_settings_dir={settings_dir}"]


def start_chromium() -> webdriver.Chrome:
    # Selenium Manager is never needed (the paths are given) and must not phone home.
    os.environ.setdefault("SE_AVOID_STATS", "true")
    os.environ.setdefault("SE_OFFLINE", "true")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in CHROMIUM_ARGS:
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


class Lab:
    """One notebook open in JupyterLab; what a user sees, sampled while the test waits."""

    def __init__(self, driver: webdriver.Chrome, shots: Path) -> None:
        self.driver = driver
        self.shots = shots
        self.dialogs: list[str] = []   # the text of every dialog that was ever up
        self.statuses: list[str] = []  # every kernel status the status bar showed

    def open(self, url: str, cells: int, timeout: float = 180) -> None:
        """Open a notebook and wait until its kernel is idle and its cells can be typed in."""
        self.driver.get(url)
        self.wait(lambda: self.kernel_text().endswith("| Idle"), timeout,
                  "the kernel idle in the status bar")
        self.wait(lambda: len(self.editors()) == cells
                  and all(e.is_displayed() for e in self.editors()), timeout,
                  "the notebook's cell editors")
        self.statuses = ["Idle"]  # what the kernel's start showed is not under test

    def kernel_text(self) -> str:
        """The status bar's kernel item, e.g. `Python 3 (ipykernel) | Idle`."""
        bar = self.driver.find_elements(By.CSS_SELECTOR, "#jp-main-statusbar")
        for line in (bar[0].text.splitlines() if bar else []):
            if " | " in line:
                return line.strip()
        return ""

    def editors(self) -> list[WebElement]:
        return self.driver.find_elements(
            By.CSS_SELECTOR, ".jp-Notebook .jp-CodeCell .jp-InputArea-editor .cm-content")

    def cells(self) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-CodeCell")

    def run(self, index: int) -> None:
        """Click into the cell's editor and press Shift+Enter."""
        self.focus(index)
        self.shift_enter()

    def focus(self, index: int) -> None:
        self.editors()[index].click()

    def shift_enter(self) -> None:
        """Run the cell whose editor has the focus."""
        self.driver.switch_to.active_element.send_keys(Keys.SHIFT, Keys.ENTER)

    # textContent, not what selenium calls visible text: JupyterLab skips rendering cells
    # scrolled out of view, and their text would read as empty.
    def prompt(self, index: int) -> str:
        found = self.cells()[index].find_element(By.CSS_SELECTOR, ".jp-InputPrompt")
        return (found.get_attribute("textContent") or "").strip()

    def output(self, index: int) -> str:
        """The text of the cell's outputs, one line per printed line."""
        found = self.cells()[index].find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output")
        return "".join(o.get_attribute("textContent") or "" for o in found)

    def done(self, index: int) -> bool:
        """The cell ran: its prompt holds an execution count, not `[*]` or `[ ]`."""
        return self.prompt(index).strip("[]: ").isdigit()

    def sample(self) -> None:
        for dialog in self.driver.find_elements(By.CSS_SELECTOR, ".jp-Dialog"):
            with contextlib.suppress(StaleElementReferenceException):
                if dialog.text not in self.dialogs:
                    self.dialogs.append(dialog.text)
        status = self.kernel_text().rpartition("| ")[2]
        if status and (not self.statuses or self.statuses[-1] != status):
            self.statuses.append(status)

    def wait(self, cond: Callable[[], Any], timeout: float, what: str,
             interval: float = 0.05) -> float:
        """Seconds until `cond()` held, sampling the page meanwhile."""
        start = time.monotonic()
        while True:
            with contextlib.suppress(StaleElementReferenceException, IndexError):
                self.sample()
                if cond():
                    return time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise TimeoutError(f"{what}: not within {timeout}s; dialogs {self.dialogs}, "
                                   f"kernel statuses {self.statuses}")
            time.sleep(interval)

    def screenshot(self, name: str) -> Path:
        self.shots.mkdir(parents=True, exist_ok=True)
        path = self.shots / f"{name}.png"
        with contextlib.suppress(WebDriverException):
            self.driver.save_screenshot(str(path))
        return path


@contextlib.contextmanager
def screenshots_on_failure(lab: Lab) -> Iterator[None]:
    try:
        yield
    except BaseException:
        path = lab.screenshot("failure")
        print(f"\n[browser] screenshot of the page at the failure: {path}")
        raise
