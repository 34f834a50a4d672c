"""The review page in a real headless browser (Debian's chromium driven by Selenium).

A person opens the queue, accepts one image, rejects one with a note, reloads and finds both;
then the server is stopped mid-session: the decision made meanwhile is kept in the browser,
the saved ones are intact in review.csv, and the pending one is saved once the server is back.
"""

from __future__ import annotations

import csv
import shutil
import threading
import time
from pathlib import Path

import pytest
from tests.test_review_queue import make_prediction_folder

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

if not (CHROMIUM and CHROMEDRIVER):
    pytest.fail(
        "the review page test needs Debian's chromium and chromium-driver "
        "(apt-get install chromium chromium-driver; .ci/run installs them)",
        pytrace=False,
    )


class Server:
    """``mtcp review``'s app under uvicorn in a thread, on a fixed port."""

    def __init__(self, pred_dir: Path, port: int) -> None:
        import uvicorn

        from mtcp.inference.review_server import bind, create_app

        self.sock = bind(port)
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(create_app(pred_dir), log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_window_size(1400, 1000)
    yield driver
    driver.quit()


def decisions(pred_dir: Path) -> dict[str, tuple[str, str]]:
    path = pred_dir / "review.csv"
    if not path.is_file():
        return {}
    with open(path) as f:
        return {r["input"]: (r["decision"], r["note"]) for r in csv.DictReader(f)}


def wait_for(condition, timeout: float = 10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_review_session_in_a_browser(tmp_path: Path, browser) -> None:
    from selenium.webdriver.common.by import By

    pred_dir = make_prediction_folder(tmp_path / "pred")
    server = Server(pred_dir, 0)
    url = f"http://127.0.0.1:{server.port}/"
    try:
        browser.get(url)
        name = lambda: browser.find_element(By.ID, "current-name").text  # noqa: E731
        wait_for(lambda: name() == "in/img1.png")  # flagged, worst score first
        maps = browser.find_elements(By.CSS_SELECTOR, "#maps figure img")
        assert {m.get_attribute("alt") for m in maps} >= {"input", "semseg", "depth", "normals"}
        assert wait_for(lambda: all(m.get_property("naturalWidth") > 0 for m in maps))
        assert " m (far)" in browser.find_element(By.CSS_SELECTOR, ".depth-legend").text
        assert "class " in browser.find_element(By.CSS_SELECTOR, ".classes").text

        browser.find_element(By.ID, "accept").click()
        wait_for(lambda: decisions(pred_dir).get("in/img1.png") == ("accept", ""))
        wait_for(lambda: name() == "in/img3.png")
        browser.find_element(By.ID, "note").send_keys("the floor is labelled wall")
        browser.find_element(By.ID, "reject").click()
        wait_for(lambda: "in/img3.png" in decisions(pred_dir))
        assert decisions(pred_dir)["in/img3.png"] == ("reject", "the floor is labelled wall")

        browser.refresh()  # reopening continues where the person stopped
        wait_for(lambda: name() == "in/img2.png")
        badges = {
            row.get_attribute("data-input"): row.text
            for row in browser.find_elements(By.CSS_SELECTOR, "#list .item")
        }
        assert "accept" in badges["in/img1.png"] and "reject" in badges["in/img3.png"]

        # keyboard shortcut, then the server goes away mid-session
        server.stop()
        browser.find_element(By.TAG_NAME, "body").send_keys("a")
        status = browser.find_element(By.ID, "status")
        wait_for(lambda: "NOT saved" in status.text)
        assert set(decisions(pred_dir)) == {"in/img1.png", "in/img3.png"}  # intact on disk

        server = Server(pred_dir, server.port)  # same address: the page's storage is per origin
        browser.refresh()
        wait_for(lambda: decisions(pred_dir).get("in/img2.png") == ("accept", ""))
        assert decisions(pred_dir)["in/img3.png"] == ("reject", "the floor is labelled wall")
    finally:
        server.stop()
