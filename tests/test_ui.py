"""The web UI at `/` in a real browser: Debian's Chromium, headless, driven by Selenium through the
system chromedriver (no browser download; Selenium Manager never runs because the driver's path is
given), against a real server on loopback with the tiny models: MiniLM, Whisper tiny.en and the tiny
CLIP trained in the session.

Set PRISM_UI_SCREENSHOTS=docs to save the README's screenshots (docs/ui-*.png) while the tests run.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import httpx
import pytest
from PIL import Image
from selenium import webdriver
from selenium.common.exceptions import (
    ElementClickInterceptedException,
    ElementNotInteractableException,
    NoAlertPresentException,
    StaleElementReferenceException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from tests.audio_files import speak, spoken_recording
from tests.conftest import minilm_settings
from tests.image_files import encode
from tests.servers import poll, prism_server
from tests.tiny_clip import make_shape_image
from tests.tiny_rerankers import build_tiny_cross_encoder

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
BROWSER_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--mute-audio",
    "--lang=en-US",
]
DESKTOP = (1280, 800)
PHONE = (390, 844)
SCREENSHOTS = os.environ.get("PRISM_UI_SCREENSHOTS")  # a folder, e.g. docs: where to save screenshots
WAIT_S = 60  # generous for a loaded 2-core CI machine; waits end as soon as their condition holds

DOCUMENTS = [
    {"id": "owls", "title": "Owls", "text": "Owls hunt small animals at night in the forest."},
    {"id": "bread", "title": "Baking", "text": "Bake the bread in a hot oven for forty minutes."},
    {"id": "trains", "title": "Timetable", "text": "The train to the city leaves from platform nine every morning."},
]
# Spoken into one recording with a pause, so the question is a later window, not at 0:00.
RECORDING = ["Welcome to the weekly news about our garden.", "When does the morning train to the city leave?"]
PAUSE_S = 2.0


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_clip_dir):
    """One server for the module: MiniLM, Whisper tiny.en, the tiny CLIP and a tiny cross-encoder
    reranker. Short transcript windows so the spoken question gets a window of its own, and
    recordings over 6 s become background jobs."""
    settings = minilm_settings(
        tmp_path_factory.mktemp("ui"),
        image_model=f"local-dir:{tiny_clip_dir}",
        image_thumbnail_px=96,
        rerank_backend="cross-encoder",
        rerank_model=str(build_tiny_cross_encoder(tmp_path_factory.mktemp("reranker"))),
        audio_window_s=3,
        audio_window_overlap_s=0.5,
        audio_job_threshold_s=6,
    )
    with prism_server(settings) as url, httpx.Client(base_url=url, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def browser():
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            pytest.fail(f"{path} is missing: the browser tests need Debian's chromium and chromium-driver (make system-packages installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in BROWSER_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={DESKTOP[0]},{DESKTOP[1]}")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        desktop(driver)
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> bytes:
    return spoken_recording(RECORDING, PAUSE_S, tmp_path_factory.mktemp("speech"))[0]


# ---------------------------------------------------------------- helpers


def viewport(driver, width: int, height: int, mobile: bool) -> None:
    """Exact CSS viewport sizes (a headless window's size is not its viewport's)."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}
    )


def desktop(driver) -> None:
    viewport(driver, *DESKTOP, mobile=False)


def wait(driver, condition, what: str, timeout: float = WAIT_S):
    """Wait until condition(driver) holds; elements that a re-render replaced are looked up again."""
    waiter = WebDriverWait(driver, timeout, poll_frequency=0.1, ignored_exceptions=[StaleElementReferenceException, NoAlertPresentException])
    return waiter.until(lambda d: condition(d), message=f"waiting for {what}")


def click(driver, xpath: str, what: str) -> None:
    """Click an element once it is there, looking it up again if a re-render replaced it meanwhile."""
    ignored = [StaleElementReferenceException, ElementClickInterceptedException, ElementNotInteractableException]
    waiter = WebDriverWait(driver, WAIT_S, poll_frequency=0.1, ignored_exceptions=ignored)
    waiter.until(lambda d: d.find_element(By.XPATH, xpath).click() or True, message=f"waiting for {what}")


def css(driver, selector: str):
    return driver.find_element(By.CSS_SELECTOR, selector)


def all_css(driver, selector: str):
    return driver.find_elements(By.CSS_SELECTOR, selector)


def visible_text(driver, selector: str) -> str:
    found = all_css(driver, selector)
    return found[0].text if found and found[0].is_displayed() else ""


def open_page(driver, server, fragment: str = "") -> None:
    """Load the page afresh, without what an earlier test left in its storage (preferences, the key)."""
    driver.get(f"{server.base_url}/healthz")  # same origin, another document: the page is not running
    driver.execute_script("localStorage.clear(); sessionStorage.clear();")
    driver.get(f"{server.base_url}/{fragment}")
    wait(driver, lambda d: d.execute_script("return document.readyState") == "complete", "the page")


def use_collection(driver, name: str) -> None:
    field = css(driver, "#collection")
    field.clear()
    field.send_keys(name, Keys.TAB)  # the change event picks it
    wait(driver, lambda d: d.execute_script("return JSON.parse(localStorage.getItem('prism.prefs') || '{}').collection") == name, "the collection")


def search_for(driver, text: str) -> None:
    """Search, and return once the results of an earlier search are gone (replaced, or an error shown),
    so that what the caller reads next belongs to this search."""
    earlier = all_css(driver, "#results > li")
    query = css(driver, "#query")
    query.clear()
    query.send_keys(text, Keys.ENTER)
    if earlier:
        wait(driver, lambda d: is_stale(earlier[0]) or visible_text(d, "#search-error"), "the earlier results to be replaced")


def is_stale(element) -> bool:
    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    return False


def results(driver, minimum: int = 1):
    wait(driver, lambda d: len(all_css(d, "#results > li")) >= minimum or visible_text(d, "#search-error"), "results")
    assert not visible_text(driver, "#search-error"), visible_text(driver, "#search-error")
    return all_css(driver, "#results > li")


def image_loaded(driver, image) -> bool:
    return driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", image)


def show_library(driver) -> None:
    css(driver, "#tab-library").click()
    wait(driver, lambda d: css(d, "#library-panel").is_displayed(), "the library")


def show_search(driver) -> None:
    css(driver, "#tab-search").click()
    wait(driver, lambda d: css(d, "#search-panel").is_displayed(), "the search panel")


def upload_files(driver, tmp_path: Path, files: dict[str, bytes], captions: dict[str, str] | None = None) -> None:
    """Pick files in the library's upload form, fill the captions, press Upload."""
    paths = []
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))
    css(driver, "#upload-files").send_keys("\n".join(paths))
    wait(driver, lambda d: len(all_css(d, "#pending > li")) == len(files), "the pending files")
    for name, caption in (captions or {}).items():
        field = driver.find_element(By.XPATH, f'//li[contains(@class,"pending-file")][.//span[text()="{name}"]]//input')
        field.send_keys(caption)
    css(driver, "#upload-button").click()


def uploads_finished(driver, count: int):
    """The upload rows once `count` of them are done or failed."""
    wait(driver, lambda d: len(all_css(d, "#uploads > li.done, #uploads > li.failed")) >= count, "the uploads")
    return all_css(driver, "#uploads > li")


def png(color: str, shape: str) -> bytes:
    return encode(make_shape_image(color, shape), "PNG")


def seed(server, collection: str, documents=DOCUMENTS) -> None:
    response = server.post("/v1/documents", json={"collection": collection, "documents": documents})
    assert response.status_code == 200, response.text


def screenshot(driver, name: str) -> None:
    if SCREENSHOTS:
        folder = Path(SCREENSHOTS)
        folder.mkdir(parents=True, exist_ok=True)
        driver.execute_script("window.scrollTo(0, 0); document.activeElement && document.activeElement.blur();")
        shot = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
        # 128 colours without dithering: a third of the size, and text stays crisp.
        shot.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(folder / name, optimize=True)


def assert_fits(driver, width: int) -> None:
    """Nothing wider than the screen: no sideways scrolling, and no zooming out to fit (phones)."""
    layout = driver.execute_script(
        """return {scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth, scale: visualViewport.scale,
                   wider: Array.from(document.querySelectorAll("body *")).filter(e => e.getBoundingClientRect().right > arguments[0] + 0.5)
                               .map(e => `${e.tagName.toLowerCase()}#${e.id}.${e.className}`).slice(0, 10)}""",
        width,
    )
    assert layout["scrollWidth"] <= width and layout["innerWidth"] == width and layout["scale"] == 1 and not layout["wider"], layout


# ---------------------------------------------------------------- tests


def test_the_page_is_served_at_the_root_without_a_key(server):
    page = server.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset, kind in (("ui/app.js", "text/javascript"), ("ui/style.css", "text/css")):
        response = server.get(f"/{asset}")
        assert response.status_code == 200 and response.headers["content-type"].startswith(kind), asset
        assert f'"{asset}"' in page.text
    assert server.get("/ui/index.html").status_code == 404  # on disk, but not in the fixed list of assets
    assert server.get("/ui/missing.js").status_code == 404
    assert "http://" not in page.text and "https://" not in page.text  # nothing from the network


def test_typing_a_query_shows_ranked_text_results_with_scores_and_timings(server, browser, collection):
    seed(server, collection)
    open_page(browser, server)
    use_collection(browser, collection)
    search_for(browser, "when does the train leave for the city")
    found = results(browser, minimum=3)
    top = found[0]
    assert top.get_attribute("data-doc-id") == "trains"
    assert "platform nine" in top.find_element(By.CSS_SELECTOR, ".passage").text
    assert top.find_element(By.CSS_SELECTOR, ".result-title").text == "Timetable"
    assert top.find_elements(By.CSS_SELECTOR, ".passage mark")  # the query's words are marked
    # One figure, the relevance (here the best cosine); the tooltip says what it is and the fused rank.
    shown = top.find_element(By.CSS_SELECTOR, ".relevance")
    assert shown.text == f"relevance {float(top.get_attribute('data-relevance')):.4f}" == top.find_element(By.CSS_SELECTOR, ".scores").text
    assert "best cosine similarity" in shown.get_attribute("title") and "fused rank 1" in shown.get_attribute("title")
    assert "Total" in css(browser, "#timings").text and "encode.text" in css(browser, "#timings").text

    # Scores at or above the threshold are highlighted, the rest greyed; the threshold is remembered.
    scores = sorted(float(item.get_attribute("data-relevance")) for item in found)
    middle = round((scores[-1] + scores[-2]) / 2, 4)
    field = css(browser, "#threshold")
    field.clear()
    field.send_keys(str(middle))
    wait(browser, lambda d: len(all_css(d, "#results > li.relevant")) == 1, "one highlighted result")
    assert "relevant" in found[0].get_attribute("class")
    assert all("faint" in item.get_attribute("class") for item in found[1:])
    browser.refresh()
    wait(browser, lambda d: css(d, "#threshold").get_attribute("value") == str(middle), "the remembered threshold")

    # Enter searches, Escape clears the query and the results.
    search_for(browser, "owls at night")
    assert results(browser)[0].get_attribute("data-doc-id") == "owls"
    css(browser, "#query").send_keys(Keys.ESCAPE)
    wait(browser, lambda d: not all_css(d, "#results > li") and css(d, "#query").get_attribute("value") == "", "cleared results")

    # The rerank switch: the reranker's score is shown, and it is what the threshold is compared with.
    css(browser, "#rerank").click()
    search_for(browser, "owls at night")
    wait(browser, lambda d: "Reranked by" in css(d, "#skipped").text, "reranked results")
    reranked = results(browser, minimum=3)
    for item in reranked:
        shown = item.find_element(By.CSS_SELECTOR, ".relevance")
        assert shown.text == f"relevance {float(item.get_attribute('data-relevance')):.4f}" and "reranked" in shown.get_attribute("title")
    css(browser, "#rerank").click()

    # Only the modalities asked for come back.
    css(browser, 'input[name="modality"][value="text"]').click()
    search_for(browser, "owls at night")
    wait(browser, lambda d: css(d, "#search-status").text.startswith("Nothing found"), "no text results")


def test_chunks_of_a_document_are_one_result_in_document_order_with_its_source(server, browser, collection):
    """A long document's chunks found together are one result, its passages in the document's order,
    with the file it came from; highlighted results are listed before greyed ones at any threshold."""
    winter = " ".join(["Hedgehogs sleep through the winter in piles of dry leaves."] * 20)
    filler = " ".join(["The bakery on the corner sells rye bread and buns."] * 20)
    notes = {"id": "hedgehog-notes", "title": "Hedgehogs", "source": "notes/hedgehogs.md", "text": f"{winter}\n\n{filler}\n\n{winter}"}
    seed(server, collection, [*DOCUMENTS, notes])
    chunks = server.get(f"/v1/collections/{collection}/items", params={"limit": 100}).json()["items"]
    assert len([item for item in chunks if item["doc_id"] == "hedgehog-notes"]) >= 3
    open_page(browser, server)
    use_collection(browser, collection)
    search_for(browser, "where do hedgehogs sleep in winter")
    found = results(browser, minimum=2)
    grouped = [item for item in found if item.get_attribute("data-doc-id") == "hedgehog-notes"]
    assert len(grouped) == 1
    passages = grouped[0].find_elements(By.CSS_SELECTOR, ".passage")
    positions = [int(passage.get_attribute("data-position")) for passage in passages]
    assert len(passages) == int(grouped[0].get_attribute("data-chunks")) >= 2 and positions == sorted(positions)
    assert grouped[0].find_element(By.CSS_SELECTOR, ".result-title").text == "Hedgehogs"
    assert grouped[0].find_element(By.CSS_SELECTOR, ".result-source").text == "notes/hedgehogs.md"

    field = css(browser, "#threshold")
    for value in sorted({float(item.get_attribute("data-relevance")) for item in found}):
        field.clear()
        field.send_keys(str(round(value, 4)))
        kinds = ["relevant" in item.get_attribute("class") for item in all_css(browser, "#results > li")]
        assert kinds == sorted(kinds, reverse=True), kinds  # no greyed result above a highlighted one
        ranks = [int(item.get_attribute("data-rank")) for item in all_css(browser, "#results > li")]
        split = kinds.count(True)
        assert ranks[:split] == sorted(ranks[:split]) and ranks[split:] == sorted(ranks[split:])  # each group in the fused order


def test_lines_added_in_the_library_are_found_and_can_be_deleted(server, browser, collection):
    open_page(browser, server, "#library")
    use_collection(browser, collection)
    wait(browser, lambda d: "no collection" in css(d, "#items-status").text, "the empty collection")
    lines = css(browser, "#lines")
    lines.send_keys("Kites fly high on windy autumn days.\n\n   \nSourdough needs a lively starter.\nTea is best with fresh water.\n")
    css(browser, "#add-lines").click()
    wait(browser, lambda d: "Added 3 documents" in css(d, "#lines-status").text, "the lines to be added")
    assert css(browser, "#lines").get_attribute("value") == ""
    wait(browser, lambda d: len(all_css(d, "#items > li")) == 3, "three items listed")
    assert "3 items" in css(browser, "#items-status").text
    listed = {item.find_element(By.CSS_SELECTOR, ".item-text").text for item in all_css(browser, "#items > li")}
    assert listed == {"Kites fly high on windy autumn days.", "Sourdough needs a lively starter.", "Tea is best with fresh water."}
    assert collection in css(browser, "#collection-names").get_attribute("innerHTML")

    show_search(browser)
    search_for(browser, "bread starter")
    assert "Sourdough" in results(browser)[0].text

    show_library(browser)
    wait(browser, lambda d: len(all_css(d, "#items > li")) == 3, "the list")
    click(browser, "//ul[@id='items']/li[contains(., 'Kites')]//button[text()='Delete']", "the delete button")
    wait(browser, lambda d: len(all_css(d, "#items > li")) == 2, "the item to go")
    assert "Deleted" in css(browser, "#items-status").text
    assert server.get(f"/v1/collections/{collection}/items").json()["total"] == 2


def test_uploaded_document_files_are_listed_and_found(server, browser, collection, tmp_path):
    open_page(browser, server, "#library")
    use_collection(browser, collection)
    notes = b"# Hedgehogs\n\nHedgehogs sleep through the winter in piles of leaves."
    upload_files(browser, tmp_path, {"hedgehogs.md": notes, "kettle.txt": b"Descale the kettle with vinegar once a month."})
    row = uploads_finished(browser, 1)[0]
    assert "done" in row.get_attribute("class") and "2 documents stored" in row.text, row.text
    wait(browser, lambda d: len(all_css(d, "#items > li.text")) == 2, "the documents listed")
    show_search(browser)
    search_for(browser, "where do hedgehogs spend the winter")
    assert results(browser)[0].get_attribute("data-doc-id") == "hedgehogs.md"


def test_an_uploaded_picture_shows_its_thumbnail_in_results_and_opens_in_full(server, browser, collection, tmp_path):
    open_page(browser, server, "#library")
    use_collection(browser, collection)
    pictures = {"red-circle.png": png("red", "circle"), "blue-square.png": png("blue", "square")}
    upload_files(browser, tmp_path, pictures, {"red-circle.png": "a red circle"})
    row = uploads_finished(browser, 1)[0]
    assert "done" in row.get_attribute("class"), row.text
    assert "2 pictures stored" in row.text
    wait(browser, lambda d: len(all_css(d, "#items > li.image")) == 2, "the pictures listed")
    assert all(wait(browser, lambda d, image=image: image_loaded(d, image), "a thumbnail") for image in all_css(browser, "#items img"))

    show_search(browser)
    search_for(browser, "a red circle")
    top = results(browser)[0]
    assert top.get_attribute("data-modality") == "image"
    thumbnail = top.find_element(By.CSS_SELECTOR, "img.thumbnail")
    assert thumbnail.get_attribute("alt") == "a red circle"
    assert thumbnail.get_attribute("src").endswith(f"/v1/items/{top.get_attribute('data-id')}/thumbnail")
    wait(browser, lambda d: image_loaded(d, thumbnail), "the thumbnail to load")
    assert browser.execute_script("return arguments[0].naturalWidth", thumbnail) <= 96

    thumbnail.click()  # the full picture, in a viewer
    full = css(browser, "#viewer-image")
    wait(browser, lambda d: css(d, "#viewer").is_displayed() and image_loaded(d, full), "the full picture")
    assert browser.execute_script("return arguments[0].naturalWidth", full) == 64
    assert css(browser, "#viewer-link").get_attribute("href").endswith(f"/v1/items/{top.get_attribute('data-id')}/content")
    css(browser, "#viewer-close").click()
    wait(browser, lambda d: not css(d, "#viewer").is_displayed(), "the viewer to close")

    # Search by example: pick a picture; the same picture is the best match.
    (tmp_path / "query.png").write_bytes(png("blue", "square"))
    css(browser, "#query-file").send_keys(str(tmp_path / "query.png"))
    wait(browser, lambda d: "query.png" in css(d, "#example-name").text, "the example")
    wait(browser, lambda d: any("image->image" in r.text for r in all_css(d, "#results .routes")), "results by example")
    assert results(browser)[0].find_element(By.CSS_SELECTOR, ".result-title").text == "blue-square"


def test_a_recording_is_transcribed_as_a_job_and_its_result_plays_from_the_start_time(server, browser, collection, tmp_path, recording):
    open_page(browser, server, "#library")
    use_collection(browser, collection)
    upload_files(browser, tmp_path, {"garden-news.wav": recording})
    row = uploads_finished(browser, 1)[0]
    assert "done" in row.get_attribute("class"), row.text
    assert "1 recording stored" in row.text
    job = row.get_attribute("data-job")  # longer than the job threshold: a job, polled until done
    assert job and server.get(f"/v1/jobs/{job}").json()["state"] == "succeeded"

    show_search(browser)
    for kind in ("text", "image"):
        css(browser, f'input[name="modality"][value="{kind}"]').click()
    search_for(browser, "When does the morning train to the city leave?")
    top = results(browser)[0]
    assert top.get_attribute("data-modality") == "audio"
    assert "train" in top.find_element(By.CSS_SELECTOR, ".segment").text.lower()

    expected = server.post(
        "/v1/search", json={"query": {"text": "When does the morning train to the city leave?"}, "collection": collection, "modalities": ["audio"]}
    ).json()["results"][0]
    start = expected["start"]
    assert start > 1.0  # the question comes after the greeting and the pause
    player = top.find_element(By.TAG_NAME, "audio")
    assert player.get_attribute("src").endswith(f"/v1/items/{expected['id']}/content#t={start:.2f}")
    assert float(player.get_attribute("data-start")) == pytest.approx(start)
    play = top.find_element(By.CSS_SELECTOR, "button.play")
    minutes, seconds = divmod(int(start), 60)
    assert play.text.endswith(f"Play from {minutes}:{seconds:02d}")
    play.click()
    at_start = "return arguments[0].readyState >= 1 && arguments[0].currentTime >= arguments[1] - 0.05"
    wait(browser, lambda d: d.execute_script(at_start, player, start), "the player at the start")
    assert browser.execute_script("return arguments[0].currentTime", player) < start + 3
    assert not top.find_element(By.CSS_SELECTOR, ".error").is_displayed()

    # The library lists the recording's windows; deleting the recording removes them all.
    show_library(browser)
    total = server.get(f"/v1/collections/{collection}/items").json()["total"]
    assert total >= 2
    wait(browser, lambda d: len(all_css(d, "#items > li.audio")) == total, "the transcript windows")
    click(browser, "//ul[@id='items']/li[1]//button[text()='Delete recording']", "the delete button")
    wait(browser, lambda d: d.switch_to.alert, "the confirmation").accept()
    wait(browser, lambda d: not all_css(d, "#items > li") and "This collection is empty" in css(d, "#items-status").text, "the recording to go")


def test_a_rejected_upload_shows_the_servers_reason(server, browser, collection, tmp_path):
    open_page(browser, server, "#library")
    use_collection(browser, collection)
    upload_files(browser, tmp_path, {"holiday.png": b"this is a text file, not a picture"})
    row = uploads_finished(browser, 1)[0]
    assert "failed" in row.get_attribute("class")
    error = row.find_element(By.CSS_SELECTOR, ".error")
    assert error.is_displayed() and error.get_attribute("role") == "alert"
    assert error.text.startswith("Rejected: holiday.png: not an image")

    show_search(browser)
    (tmp_path / "noise.bin").write_bytes(b"neither a picture nor a sound")
    css(browser, "#query-file").send_keys(str(tmp_path / "noise.bin"))
    wait(browser, lambda d: visible_text(d, "#search-error").startswith("Rejected:"), "the search error")


def test_one_bad_file_among_good_ones_is_named_and_the_good_ones_are_stored(server, browser, collection, tmp_path):
    """The server refuses the batch for the bad file; the page sends the files again one by one and says
    per file what was stored and what was refused, with the server's reason."""
    open_page(browser, server, "#library")
    use_collection(browser, collection)
    upload_files(browser, tmp_path, {"a-circle.png": png("red", "circle"), "b-holiday.png": b"a text file, not a picture", "c-square.png": png("blue", "square")})
    row = uploads_finished(browser, 1)[0]
    files = {item.get_attribute("data-name"): item for item in row.find_elements(By.CSS_SELECTOR, ".upload-files > li")}
    assert {name: item.get_attribute("class") for name, item in files.items()} == {"a-circle.png": "stored", "b-holiday.png": "refused", "c-square.png": "stored"}
    assert files["b-holiday.png"].text.startswith("b-holiday.png: Rejected: b-holiday.png: not an image")
    assert "partial" in row.get_attribute("class") and "Stored 2 of 3 files" in row.text, row.text
    assert sorted(item["source"] for item in server.get(f"/v1/collections/{collection}/items").json()["items"]) == ["a-circle.png", "c-square.png"]


def test_options_that_cannot_run_are_disabled_with_the_reason(browser, tmp_path):
    """A server without CLIP and without a reranker: the pictures and rerank options are off and disabled,
    their tooltip says why, and a text search runs with the rest."""
    settings = minilm_settings(tmp_path, image_model="", whisper_model="", whisper_fallback_model="", rerank_backend="none")
    with prism_server(settings) as url, httpx.Client(base_url=url, timeout=60) as client:
        seed(client, "default")
        open_page(browser, client)
        pictures = css(browser, 'input[name="modality"][value="image"]')
        wait(browser, lambda d: not pictures.is_enabled(), "the pictures option to be disabled")
        label = pictures.find_element(By.XPATH, "./ancestor::label")
        assert not pictures.is_selected() and label.get_attribute("title").startswith("Pictures cannot be searched: no CLIP model is loaded")
        for switch in ("#rerank", "#ask-rerank"):
            box = css(browser, switch)
            assert not box.is_enabled() and box.find_element(By.XPATH, "./ancestor::label").get_attribute("title").startswith("No reranker is loaded")
        search_for(browser, "baking bread")
        assert results(browser)[0].get_attribute("data-doc-id") == "bread"
        assert "text->image" not in css(browser, "#skipped").text  # not asked for a route that cannot run


def test_with_api_keys_the_page_asks_for_a_key_keeps_it_for_the_session_and_works(browser, tmp_path, tiny_clip_dir):
    """A second server, with PRISM_API_KEYS and without a Whisper model."""
    settings = minilm_settings(tmp_path, api_keys="right-key", image_model=f"local-dir:{tiny_clip_dir}", whisper_model="", whisper_fallback_model="")
    with prism_server(settings) as url, httpx.Client(base_url=url, timeout=60, headers={"Authorization": "Bearer right-key"}) as client:
        seed(client, "default")
        files = {"files": ("red-circle.png", png("red", "circle"))}
        assert client.post("/v1/images", data={"caption": "a red circle"}, files=files).status_code == 200
        assert httpx.get(f"{url}/").status_code == 200  # the page itself needs no key

        open_page(browser, client)
        dialog = css(browser, "#key-dialog")
        wait(browser, lambda d: dialog.is_displayed(), "the key prompt")
        assert "needs an API key" in css(browser, "#key-reason").text
        css(browser, "#api-key").send_keys("wrong-key", Keys.ENTER)
        wait(browser, lambda d: "refused" in css(d, "#key-reason").text and dialog.is_displayed(), "the key to be refused")
        css(browser, "#api-key").send_keys("right-key", Keys.ENTER)
        wait(browser, lambda d: not dialog.is_displayed(), "the prompt to close")
        wait(browser, lambda d: "default" in css(d, "#collection-names").get_attribute("innerHTML"), "the collections")
        # A missing model, in plain words: from /v1/info at once, and from the API when it is used.
        wait(browser, lambda d: "Recordings cannot be added" in css(d, "#notices").text, "the missing Whisper model")

        search_for(browser, "baking bread")
        texts = [item for item in results(browser) if item.get_attribute("data-modality") == "text"]
        assert texts[0].get_attribute("data-doc-id") == "bread"
        assert browser.execute_script("return sessionStorage.getItem('prism.apiKey')") == "right-key"
        stored = browser.execute_script("return Object.keys(localStorage).map(k => localStorage.getItem(k)).join(' ')")
        assert "right-key" not in stored  # never kept beyond the tab

        # <img> cannot send the key: the page fetches pictures with it.
        search_for(browser, "a red circle")
        thumbnail = wait(browser, lambda d: all_css(d, "#results > li.image img.thumbnail"), "a picture")[0]
        wait(browser, lambda d: image_loaded(d, thumbnail), "the thumbnail, fetched with the key")
        assert thumbnail.get_attribute("src").startswith("blob:")

        show_library(browser)
        upload_files(browser, tmp_path, {"memo.wav": speak("A short memo.", tmp_path / "spoken.wav").read_bytes()})
        row = uploads_finished(browser, 1)[0]
        assert "failed" in row.get_attribute("class")
        assert row.find_element(By.CSS_SELECTOR, ".error").text.startswith("Model unavailable:")

        show_search(browser)
        css(browser, "#forget-key").click()
        search_for(browser, "baking bread")
        wait(browser, lambda d: dialog.is_displayed(), "the prompt after forgetting the key")
        css(browser, "#key-cancel").click()
        wait(browser, lambda d: visible_text(d, "#search-error").startswith("Not authorised"), "the 401 in plain words")


def test_desktop_and_phone_layouts_show_every_modality(server, browser, collection, tmp_path, recording):
    """One list with text, a picture and a recording, at desktop and at phone width (and the
    README's screenshots, when PRISM_UI_SCREENSHOTS is set)."""
    notebook = "notebook"
    seed(server, notebook)
    response = server.post("/v1/audio", data={"collection": notebook}, files={"files": ("garden-news.wav", recording)})
    assert response.status_code in (200, 202), response.text
    if response.status_code == 202:
        job_url = response.json()["status_url"]
        poll(lambda: server.get(job_url).json()["state"] in ("succeeded", "failed"), WAIT_S, "the recording's job", interval=0.2)
        assert server.get(job_url).json()["state"] == "succeeded"

    open_page(browser, server, "#library")
    use_collection(browser, notebook)
    pictures = {"signal.png": png("red", "circle"), "warning-sign.png": png("yellow", "triangle")}
    captions = {"signal.png": "A red signal light at the train station", "warning-sign.png": "A yellow warning sign by the tracks"}
    upload_files(browser, tmp_path, pictures, captions)
    assert "done" in uploads_finished(browser, 1)[0].get_attribute("class")
    wait(browser, lambda d: len(all_css(d, "#items > li")) >= 6, "the items")
    for thumbnail in all_css(browser, "#items img"):
        wait(browser, lambda d, t=thumbnail: image_loaded(d, t), "thumbnails")
    assert_fits(browser, DESKTOP[0])
    screenshot(browser, "ui-library.png")

    show_search(browser)
    threshold = css(browser, "#threshold")
    threshold.clear()
    threshold.send_keys("0.5")
    search_for(browser, "When does the morning train leave?")
    wait(browser, lambda d: {li.get_attribute("data-modality") for li in all_css(d, "#results > li")} >= {"text", "image", "audio"}, "all modalities")
    for thumbnail in all_css(browser, "#results img.thumbnail"):
        wait(browser, lambda d, t=thumbnail: image_loaded(d, t), "thumbnails")
    assert all_css(browser, "#results > li.relevant") and all_css(browser, "#results > li.faint")
    assert_fits(browser, DESKTOP[0])
    screenshot(browser, "ui-search.png")

    try:
        viewport(browser, *PHONE, mobile=True)
        browser.refresh()  # laid out at phone width from the start, as a phone would
        search_for(browser, "When does the morning train leave?")
        results(browser, minimum=3)
        assert_fits(browser, PHONE[0])
        rights = browser.execute_script(
            "return ['#query', '#search-button', '#results > li', '#collection'].map(s => document.querySelector(s).getBoundingClientRect().right)"
        )
        assert all(right <= PHONE[0] for right in rights), rights
        screenshot(browser, "ui-phone.png")
        use_collection(browser, collection)  # a long name must wrap, not widen the page
        search_for(browser, "When does the morning train leave?")
        wait(browser, lambda d: visible_text(d, "#search-error").startswith("Not found"), "the unknown collection")
        assert_fits(browser, PHONE[0])
        show_library(browser)
        wait(browser, lambda d: "no collection" in css(d, "#items-status").text, "the empty library")
        assert_fits(browser, PHONE[0])
    finally:
        desktop(browser)


def test_api_docs_render_without_internet(server, browser):
    """/docs and /redoc load Swagger UI and ReDoc from the server itself (the fastapi-offline package),
    so they render operations on a machine with no internet: every resource comes from the server."""
    base = str(server.base_url).rstrip("/")
    browser.get(f"{base}/docs")
    wait(browser, lambda d: len(all_css(d, ".opblock")) >= 20, "Swagger UI to list the operations")
    paths = {element.get_attribute("data-path") for element in all_css(browser, ".opblock-summary-path")}
    assert {"/v1/search", "/v1/documents/upload", "/v1/images", "/v1/info"} <= paths
    loaded = browser.execute_script("return performance.getEntriesByType('resource').map(entry => entry.name)")
    assert any(url.endswith("swagger-ui-bundle.js") for url in loaded) and all(url.startswith(base) for url in loaded), loaded

    browser.get(f"{base}/redoc")
    wait(browser, lambda d: "Search a collection by text, picture or audio clip" in d.find_element(By.TAG_NAME, "body").text, "ReDoc to render")
    # Scripts, styles and the schema come from the server. ReDoc's "API docs by Redocly" badge alone asks its CDN
    # for a decorative logo (a CSS background image, missing offline, the page renders all the same).
    entries = browser.execute_script("return performance.getEntriesByType('resource').map(entry => [entry.name, entry.initiatorType])")
    code = [url for url, kind in entries if kind in ("script", "link", "fetch", "xmlhttprequest")]
    assert any(url.endswith("redoc.standalone.js") for url in code) and all(url.startswith(base) for url in code), entries
