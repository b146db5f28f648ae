"""The page at / and the API docs in a real headless Chromium (Debian's chromium and
chromium-driver, driven by selenium: nothing is downloaded at test time), against the real
service on loopback with the bundled model.

CXR_UPDATE_SCREENSHOT=1 also writes the README's screenshot (docs/page.png).
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from service.config import Settings
from service.http.app import create_app
from tests.conftest import REPO_ROOT, dicom_sample
from tests.servers import running_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
WAIT_S = 30


@pytest.fixture(scope="module")
def url(bundled_model):
    with running_app(create_app(Settings(model_path=bundled_model))) as address:
        yield address


@pytest.fixture()
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # the closed network here refuses Chromium's own background connections: keep it from trying
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1280,800"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver, condition):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S).until(condition)


def _other_hosts(driver, origin: str) -> list[str]:
    """Every resource the page loaded that is neither this origin nor a data: URL."""
    loaded = driver.execute_script(
        "return [location.href, ...performance.getEntriesByType('resource').map(e => e.name)]")
    return [name for name in loaded if not (name.startswith(origin) or name.startswith("data:"))]


def _console_errors(driver) -> list[dict]:
    """Console errors, except the browser's own note of the refusal's 4xx that the test provoked
    (Chromium logs every 4xx answer to fetch as a network error)."""
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"
            and not (entry.get("source") == "network" and "/predict" in entry["message"]
                     and "422" in entry["message"])]


def _photograph(tmp_path: Path) -> Path:
    from skimage import data

    path = tmp_path / "astronaut.jpg"
    Image.fromarray(data.astronaut()).save(path, "JPEG", quality=90)
    return path


OVERLAY_COLOURED_SHARE = """
const img = arguments[0];
const canvas = document.createElement('canvas');
canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
const context = canvas.getContext('2d');
context.drawImage(img, 0, 0);
const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
let coloured = 0;
for (let i = 0; i < pixels.length; i += 4) {
  if (Math.abs(pixels[i] - pixels[i + 2]) > 40) coloured++;
}
return coloured / (pixels.length / 4);
"""


def test_the_page_scores_an_xray_and_refuses_a_photograph(browser, url, pneumonia_jpeg, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(url + "/")
    _wait(browser, lambda d: "2.0.0" in d.find_element(By.ID, "model-line").text or
          "Model " in d.find_element(By.ID, "model-line").text)
    assert "An aid, not a diagnosis" in browser.find_element(By.CSS_SELECTOR, ".notice").text

    # keyboard: the file chooser is reached with Tab (the API-key field is hidden: no keys set)
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    assert browser.switch_to.active_element.get_attribute("id") == "files"

    upload = browser.find_element(By.ID, "files")
    upload.send_keys(f"{pneumonia_jpeg}\n{dicom_sample('RG1_UNCR.dcm')}")  # two files at once, one a DICOM
    _wait(browser, lambda d: [e.text for e in d.find_elements(By.CSS_SELECTOR, ".result .label") if e.text][1:])
    cards = browser.find_elements(By.CSS_SELECTOR, ".result")  # newest first
    assert [c.find_element(By.CSS_SELECTOR, ".file-name").text for c in cards] == ["RG1_UNCR.dcm", pneumonia_jpeg.name]
    assert "DICOM 1841 × 1955" in cards[0].find_element(By.CSS_SELECTOR, ".numbers").text
    card = cards[1]
    assert card.find_element(By.CSS_SELECTOR, ".label").text in ("Pneumonia", "Normal")
    numbers = card.find_element(By.CSS_SELECTOR, ".numbers").text
    assert "pneumonia" in numbers and "%" in numbers and "threshold" in numbers and "bacterial" in numbers
    overlay = card.find_element(By.CSS_SELECTOR, ".overlay")
    _wait(browser, lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", overlay))
    assert overlay.is_displayed() and overlay.size["width"] > 300  # drawn over the X-ray, readable
    assert browser.execute_script(OVERLAY_COLOURED_SHARE, overlay) > 0.05  # a colour map, not grey
    toggle = card.find_element(By.CSS_SELECTOR, ".toggle")
    toggle.send_keys(Keys.SPACE)  # by keyboard: hide the map
    assert not overlay.is_displayed()
    toggle.send_keys(Keys.SPACE)
    assert overlay.is_displayed()

    upload.send_keys(str(_photograph(tmp_path)))
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".result .refusal:not([hidden])"))
    refused = browser.find_element(By.CSS_SELECTOR, ".result")  # the newest card comes first
    assert refused.find_element(By.CSS_SELECTOR, ".file-name").text == "astronaut.jpg"
    assert "not_chest_xray" in refused.find_element(By.CSS_SELECTOR, ".refusal").text
    assert "does not look like a frontal chest X-ray" in refused.find_element(By.CSS_SELECTOR, ".status").text

    assert _other_hosts(browser, url) == []
    assert _console_errors(browser) == []
    for width, height in ((1280, 800), (820, 1180)):  # a laptop, a tablet held upright
        browser.set_window_size(width, height)
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    if os.environ.get("CXR_UPDATE_SCREENSHOT") == "1":
        browser.set_window_size(1280, 1500)
        browser.execute_script("window.scrollTo(0, 0)")
        (REPO_ROOT / "docs").mkdir(exist_ok=True)
        Image.open(io.BytesIO(browser.get_screenshot_as_png())).save(REPO_ROOT / "docs" / "page.png", optimize=True)


@pytest.mark.parametrize(("path", "rendered"), [("/docs", ".swagger-ui .info .title"), ("/redoc", "h1")])
def test_the_api_docs_render_from_this_host_only(browser, url, path, rendered):
    from selenium.webdriver.common.by import By

    browser.get(url + path)
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, rendered)
          and "Chest X-ray" in d.find_element(By.CSS_SELECTOR, rendered).text)
    assert _other_hosts(browser, url) == []
    assert _console_errors(browser) == []


def test_with_keys_configured_the_page_asks_for_one(browser, bundled_model, normal_jpeg):
    from selenium.webdriver.common.by import By

    with running_app(create_app(Settings(model_path=bundled_model, api_keys="page-key"))) as keyed_url:
        browser.get(keyed_url + "/")
        key_field = _wait(browser, lambda d: d.find_element(By.ID, "api-key").is_displayed()
                          and d.find_element(By.ID, "api-key"))
        upload = browser.find_element(By.ID, "files")
        upload.send_keys(str(normal_jpeg))  # no key yet: refused, and said why
        _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".result .refusal:not([hidden])"))
        assert "unauthorized" in browser.find_element(By.CSS_SELECTOR, ".result .refusal").text
        key_field.send_keys("page-key")
        upload.send_keys(str(normal_jpeg))
        _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, ".result .label").text)
        assert browser.find_element(By.CSS_SELECTOR, ".result .label").text in ("Normal", "Pneumonia")
        # kept in the page's memory only
        assert browser.execute_script("return localStorage.length + sessionStorage.length") == 0
        assert "page-key" not in browser.execute_script("return document.cookie")
        errors = [e for e in _console_errors(browser)
                  if not (e.get("source") == "network" and "401" in e["message"])]  # the refusal provoked
        assert errors == []
