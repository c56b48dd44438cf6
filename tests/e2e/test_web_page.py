"""The upload page, driven in real headless Chromium (Debian's chromium + chromedriver): upload
a generated image, wait for the result, check the table and that the annotated image loaded.
A screenshot is kept in var/artifacts/ (and the test's temp folder)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.wait import WebDriverWait

from tests import images
from tests.conftest import ROOT, GatewayProcess, require_tool

ARTIFACTS = ROOT / "var" / "artifacts"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    chromium, chromedriver = require_tool("chromium"), require_tool("chromedriver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--no-first-run",
        "--disable-sync", "--disable-quic", "--window-size=1280,900",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    try:
        yield driver
    finally:
        driver.quit()


def _upload(
    browser: webdriver.Chrome, gateway: GatewayProcess, model: str, image: Path
) -> list[list[str]]:
    browser.get(gateway.http + "/")
    wait = WebDriverWait(browser, 20)
    wait.until(lambda d: len(Select(d.find_element(By.ID, "model")).options) == 3)
    Select(browser.find_element(By.ID, "model")).select_by_value(model)
    file_input = browser.find_element(By.ID, "file")
    browser.execute_script("arguments[0].hidden = false", file_input)  # a real user clicks the zone
    file_input.send_keys(str(image))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results tbody tr"))
    wait.until(lambda d: d.execute_script(
        "const i = document.getElementById('result-image'); return i.complete && i.naturalWidth > 0"
    ))  # fmt: skip
    rows = browser.find_elements(By.CSS_SELECTOR, "#results tbody tr")
    return [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")] for row in rows]


def test_page_detects_boxes_and_shows_the_annotated_image(
    browser: webdriver.Chrome, gateway: GatewayProcess, tmp_path: Path
) -> None:
    scene = tmp_path / "scene.png"
    scene.write_bytes(images.encode(images.scene(), "PNG"))
    rows = _upload(browser, gateway, "shapes", scene)
    assert [(r[0], r[1], r[2]) for r in rows] == [("red", "1", "1.0000"), ("blue", "3", "1.0000")]
    natural = browser.execute_script(
        "const i = document.getElementById('result-image');return [i.naturalWidth, i.naturalHeight]"
    )
    assert natural == [400, 300]  # the original image, annotated
    summary = browser.find_element(By.ID, "summary").text
    assert summary == "shapes v1, image 400x300"
    assert "TF Serving" in browser.find_element(By.ID, "timings").text
    shot = tmp_path / "web-page.png"
    assert browser.save_screenshot(str(shot))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "web-page.png")


def test_page_classifies_and_reports_errors(
    browser: webdriver.Chrome, gateway: GatewayProcess, tmp_path: Path
) -> None:
    red = tmp_path / "red.jpg"
    red.write_bytes(images.solid("red"))
    rows = _upload(browser, gateway, "colors", red)
    assert [r[0] for r in rows] == ["red", "black", "yellow"]
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"not really a png")
    file_input = browser.find_element(By.ID, "file")
    file_input.send_keys(str(bad))
    WebDriverWait(browser, 20).until(lambda d: d.find_element(By.ID, "error").text)
    assert browser.find_element(By.ID, "error").text.startswith(
        "INVALID_ARGUMENT: the data is not an image in a supported format"
    )
