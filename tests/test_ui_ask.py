"""The web UI's Ask mode in a real browser (Debian's Chromium, headless) against the session's answer
server (the offline SmolLM2 over documents, a recording and a picture): the answer is written as it
streams, its sources are chips, and a chip opens its source: the chunk's text, the picture, or the
recording playing from the cited second. "Nothing found" is said as such.

Set PRISM_UI_SCREENSHOTS=docs to save the README's screenshot (docs/ui-ask.png) while it runs.
"""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.fixtures_answers import ANSWER_COLLECTION, FIRST_ANSWER_TIMEOUT_S, QUESTION
from tests.test_ui import all_css, browser, css, image_loaded, open_page, screenshot, use_collection, visible_text, wait  # noqa: F401 (browser: a fixture)

ANSWER_WAIT_S = 300


@pytest.fixture(scope="module")
def server(answer_server):
    body = {"query": {"text": QUESTION}, "collection": ANSWER_COLLECTION, "min_score": 0.1, "max_tokens": 1}
    assert answer_server.post("/v1/answer", json=body, timeout=FIRST_ANSWER_TIMEOUT_S).status_code == 200  # loads the model
    return answer_server


def ask(driver, question: str, threshold: str) -> None:
    css(driver, "#tab-ask").click()
    wait(driver, lambda d: css(d, "#ask-panel").is_displayed(), "the Ask panel")
    field = css(driver, "#ask-threshold")
    field.clear()
    field.send_keys(threshold)
    box = css(driver, "#question")
    box.clear()
    box.send_keys(question, Keys.ENTER)
    wait(driver, lambda d: "Answered" in visible_text(d, "#ask-status") or "Nothing relevant" in visible_text(d, "#ask-status") or visible_text(d, "#ask-error"), "the answer", ANSWER_WAIT_S)
    assert not visible_text(driver, "#ask-error"), visible_text(driver, "#ask-error")


def chip(driver, modality: str):
    return css(driver, f'#citations button.chip[data-modality="{modality}"]')


def test_an_answer_streams_in_and_its_chips_open_every_kind_of_source(server, browser):
    open_page(browser, server, "#ask")
    use_collection(browser, ANSWER_COLLECTION)
    ask(browser, QUESTION, "0.1")
    assert css(browser, "#answer-text").text.strip()
    assert {c.get_attribute("data-modality") for c in all_css(browser, "#citations button.chip")} == {"text", "audio", "image"}
    assert "Sources (" in css(browser, "#citations-heading").text and "total" in css(browser, "#answer-meta").text.lower()
    screenshot(browser, "ui-ask.png")

    chip(browser, "text").click()
    wait(browser, lambda d: css(d, "#source-dialog").is_displayed(), "the chunk")
    assert css(browser, "#source-body").text.strip() and "document chunk from" in css(browser, "#source-label").text
    css(browser, "#source-close").click()

    chip(browser, "audio").click()
    wait(browser, lambda d: css(d, "#source-dialog").is_displayed(), "the recording")
    player = css(browser, "#source-body audio")
    start = float(player.get_attribute("data-start"))
    wait(browser, lambda d: d.execute_script("return !arguments[0].paused && arguments[0].currentTime >= arguments[1]", player, start - 0.05), "the recording playing from the cited second")
    assert "transcript of the recording" in css(browser, "#source-label").text
    css(browser, "#source-close").click()
    assert browser.execute_script("return arguments[0].paused", player)

    chip(browser, "image").click()
    wait(browser, lambda d: css(d, "#viewer").is_displayed() and image_loaded(d, css(d, "#viewer-image")), "the picture")
    css(browser, "#viewer-close").click()


def test_citation_marks_in_the_answer_open_their_source(server, browser):
    open_page(browser, server, "#ask")
    use_collection(browser, ANSWER_COLLECTION)
    ask(browser, QUESTION, "0.1")
    marks = all_css(browser, "#answer-text button.cite")
    cited = [c.get_attribute("data-n") for c in all_css(browser, "#citations button.chip.cited")]
    # Every [n] mark names a source the answer cites; the model may cite none (it is tiny).
    assert sorted({mark.text.strip("[]") for mark in marks}) == sorted(set(cited)) or not marks
    for mark in marks[:1]:
        mark.click()
        wait(browser, lambda d: css(d, "#source-dialog").is_displayed() or css(d, "#viewer").is_displayed(), "the cited source")


def test_nothing_found_is_said_and_shows_no_sources(server, browser):
    open_page(browser, server, "#ask")
    use_collection(browser, ANSWER_COLLECTION)
    ask(browser, "the orbital period of Neptune's moons", "0.9")
    assert "nothing-found" in css(browser, "#answer-text").get_attribute("class")
    assert "nothing on this" in css(browser, "#answer-text").text and not all_css(browser, "#citations li")
    assert browser.find_element(By.ID, "citations-heading").is_displayed() is False
