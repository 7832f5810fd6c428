"""A real browser (Debian's Chromium driven by Playwright) through an officer's and a
party's work: sign in, queue, a drone case with boxes, a fume case with its chart, a
decision with a reason, the party's photo, closing, the evidence package. Screenshots at
a desktop and a phone viewport go to CITYWATCH_SCREENSHOTS (default: the test's tmp dir).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import uvicorn

from storage import audit
from storage import cases as case_store
from storage import credit as credit_store
from tests.review.conftest import PASSWORD, scene_jpeg

CHROMIUM = os.environ.get("CITYWATCH_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def server(app):
    """The app served by uvicorn on a free loopback port, in this process."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def _shots(tmp_path: Path) -> Path:
    out = Path(os.environ.get("CITYWATCH_SCREENSHOTS") or tmp_path / "screenshots")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _wait_images(page, selector: str, count: int) -> None:
    """Wait until `count` images have loaded and decoded at 640 px wide (the page's CSP
    forbids the eval that wait_for_function would need)."""
    deadline = time.monotonic() + 15
    while True:
        widths = page.locator(selector).evaluate_all("imgs => imgs.map(i => i.naturalWidth)")
        if widths == [640] * count:
            return
        assert time.monotonic() < deadline, f"{selector}: images {widths}"
        time.sleep(0.1)


def _decide(page, action: str, reason: str) -> None:
    page.check(f'input[name="action"][value="{action}"]')
    page.fill("#reason", reason)
    page.click("#decide-button")
    page.wait_for_load_state()


@pytest.mark.slow
def test_officer_and_party_in_a_real_browser(env, server, browser, tmp_path):
    shots = _shots(tmp_path)
    desk = browser.new_context(viewport=DESKTOP)
    page = desk.new_page()
    page.set_default_timeout(15000)

    page.goto(f"{server}/cases")
    assert "/login" in page.url
    page.screenshot(path=shots / "login-desktop.png")
    page.fill('input[name="username"]', "officer")
    page.fill('input[name="password"]', PASSWORD)
    page.click('button[type="submit"]')
    page.wait_for_url(f"{server}/cases")
    rows = page.locator("#queue tbody tr[data-href]")
    assert rows.count() == 2
    page.screenshot(path=shots / "queue-desktop.png", full_page=True)

    # keyboard review: j selects the first case, Enter opens it (the drone case is older)
    page.keyboard.press("j")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{server}/cases/{env.drone_case}")
    boxes = page.locator(".frame img")
    assert boxes.count() == 2
    _wait_images(page, ".frame img", 2)
    assert "street_stall" in page.inner_text(".frames")
    page.screenshot(path=shots / "case-drone-desktop.png", full_page=True)

    page.goto(f"{server}/cases/{env.fume_case}")
    chart = page.locator("svg.chart")
    assert chart.count() == 1 and page.locator("svg.chart rect.violating").count() == 3
    assert page.locator("svg.chart line.limit").count() == 1
    page.screenshot(path=shots / "case-fume-desktop.png", full_page=True)

    page.keyboard.press("c")  # picks "confirm" and puts the cursor in the reason
    assert page.is_checked('input[name="action"][value="confirm"]')
    page.keyboard.type("three consecutive 10-minute means above 2.0 mg/m³")
    page.click("#decide-button")
    page.wait_for_url(f"{server}/cases/{env.fume_case}")
    assert page.inner_text("#case-status") == "confirmed"
    assert page.inner_text("#credit-code") == "yellow"
    assert "three consecutive 10-minute means" in page.inner_text("#audit")

    _decide(page, "notify", "notice served at the shop")
    link = page.input_value("#party-link")
    assert "/party/" in link

    phone = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    party = phone.new_page()
    party.set_default_timeout(15000)
    party.goto(link)
    assert party.locator(".party-frame").count() == 0  # a fume case has no frames
    party.screenshot(path=shots / "party-phone.png", full_page=True)
    photo = tmp_path / "purifier.jpg"
    photo.write_bytes(scene_jpeg(42, []))
    renamed = tmp_path / "notice.jpg"
    renamed.write_bytes(b"%PDF-1.4 not a photo" + b"\0" * 500)
    party.fill('textarea[name="statement"]', "净化器已清洗并修复 (purifier cleaned and repaired)")
    party.set_input_files('input[name="photos"]', str(renamed))
    party.click('button[type="submit"]')
    assert "not a JPEG or PNG photo" in party.inner_text("#error")
    party.fill('textarea[name="statement"]', "净化器已清洗并修复 (purifier cleaned and repaired)")
    party.set_input_files('input[name="photos"]', str(photo))
    party.click('button[type="submit"]')
    assert "received" in party.inner_text("#done")
    party.screenshot(path=shots / "party-done-phone.png", full_page=True)

    page.goto(f"{server}/cases/{env.fume_case}")
    assert "净化器已清洗并修复" in page.inner_text(".submission")
    _wait_images(page, ".submission img", 1)
    _decide(page, "rectified", "photo shows the repaired purifier")
    _decide(page, "close", "rectified, nothing left open")
    assert page.inner_text("#case-status") == "closed"
    page.screenshot(path=shots / "case-closed-desktop.png", full_page=True)

    with page.expect_download() as download:
        page.click("#export")
    package = tmp_path / "case.zip"
    download.value.save_as(package)
    ok = subprocess.run([sys.executable, "-m", "citywatch.cli", "evidence", "verify",
                         str(package)], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    data = bytearray(package.read_bytes())
    middle = data.index(b"manifest.json") // 2  # inside the stored files, before the directory
    data[middle] ^= 0x01
    package.write_bytes(bytes(data))
    bad = subprocess.run([sys.executable, "-m", "citywatch.cli", "evidence", "verify",
                          str(package)], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "problems" in bad.stdout, bad.stdout + bad.stderr

    # the cockpit and the phone views of the officer's pages
    page.goto(f"{server}/")
    assert page.locator("#district-map circle.merchant").count() > 1000
    page.screenshot(path=shots / "cockpit-desktop.png")
    mobile = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True,
                                 storage_state=desk.storage_state())
    m = mobile.new_page()
    for name, path in (("cockpit", "/"), ("queue", "/cases"),
                       ("case-drone", f"/cases/{env.drone_case}")):
        m.goto(f"{server}{path}")
        m.screenshot(path=shots / f"{name}-phone.png", full_page=True)
        assert m.evaluate("document.documentElement.scrollWidth") <= PHONE["width"] + 1, name

    with env.db.connection() as conn:
        detail = case_store.get_case(conn, env.fume_case)
        assert [(t.to_status, t.actor) for t in detail.transitions] == [
            ("under_review", "officer"), ("confirmed", "officer"), ("notified", "officer"),
            ("rectified", "officer"), ("closed", "officer")]
        # yellow on confirmation; rectified, it goes back to green only after a clean
        # period (rules.credit), so closing leaves it yellow for now
        assert [h.code for h in credit_store.history(conn, "M-00001")] == ["yellow"]
        assert audit.verify_chain(conn) == []
    desk.close()
    phone.close()
    mobile.close()
