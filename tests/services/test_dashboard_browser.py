"""The real page in headless Chromium: a private redis-server and streamlit server, both stopped at the end.

Needs Debian's chromium at /usr/bin/chromium (scripts/install.sh installs it); fails, never skips, without it.
Screenshots: test-artifacts/dashboard.png (live) and test-artifacts/dashboard-stale.png (Redis stopped); the
live one, 1440x900, is also saved as docs/img/dashboard.png, the README's "what you see" image.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from dashboard_services import ARTIFACTS, DashboardServer, PrivateRedis, launch_chromium
from dashboard_snapshots import snapshot, write

from flashsale.redis_keys import keys_for
from flashsale.settings import PROJECT_ROOT, load_settings
from flashsale.stores import redis_client

NS = "fsr:test:dash:browser"
README_IMAGE = PROJECT_ROOT / "docs" / "img" / "dashboard.png"
WAIT_MS = 30_000
TILE = """(label) => Array.from(document.querySelectorAll('[data-testid="stMetric"]'))
                       .map(e => e.innerText).find(t => t.startsWith(label)) || ''"""
NO_SCROLL = """(() => { const m = document.querySelector('[data-testid="stMain"]');
                 return document.scrollingElement.scrollHeight <= window.innerHeight + 1
                        && m.scrollHeight <= m.clientHeight + 1; })()"""


@pytest.fixture
def live_dashboard():
    rd = PrivateRedis().start()
    server = None
    try:
        s = load_settings(redis_port=rd.port, redis_password=rd.password, kpi_redis_namespace=NS)
        server = DashboardServer(
            {**rd.env(), "FLASHSALE_KPI_REDIS_NAMESPACE": NS, "FLASHSALE_DASHBOARD_REFRESH_SECONDS": "1"}
        )
        yield rd, s, server
    finally:
        if server is not None:
            server.close()
        rd.close()


def tile(page, label: str) -> str:
    return page.evaluate(TILE, label)


def test_page_shows_snapshot_updates_live_and_survives_redis_stop(live_dashboard):
    from playwright.sync_api import sync_playwright

    rd, s, server = live_dashboard
    r, keys = redis_client(s), keys_for(s)
    write(r, keys, snapshot(datetime.now(UTC) - timedelta(minutes=1), run="r0", high_risk=4))
    write(r, keys, snapshot(datetime.now(UTC), run="r1", orders_last_minute=1234, high_risk=7, empty_shelves=True))
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(server.url)
            page.wait_for_selector('[data-testid="stMetric"]', timeout=60_000)
            page.wait_for_selector('[data-testid="stTable"] tbody tr', timeout=WAIT_MS)

            # tiles and alert rows show the snapshot's values
            assert "1,234" in tile(page, "Orders / min") and "+74 vs prev. min" in tile(page, "Orders / min")
            assert "7" in tile(page, "High-risk SKUs") and "+3 vs last run" in tile(page, "High-risk SKUs")
            assert "2 / 3" in tile(page, "Overloaded warehouses") and "as of" in tile(page, "Data freshness")
            rows = page.locator('[data-testid="stTable"]').first.locator("tbody tr").all_inner_texts()
            cells = [[c.strip() for c in row.split("\t") if c.strip()] for row in rows]
            assert cells[1] == [
                "2",
                "#42 Phones",
                "Dhaka North DC",
                "Dhaka",
                "9.5 min",
                "97%",
                "5,200",
                "PAUSE ADS",
                "rule for pause_ads fired (p=0.97)",
            ]
            # the queue: actions only, by expected loss; monitor and clearing alerts are counted below it
            assert [c[7] for c in cells] == ["RESTOCK +120 u", "PAUSE ADS", "REROUTE 35 u from W3"]
            assert "Not in the queue: 2 alerts" in page.inner_text("body")
            assert page.locator(".st-key-fsr_body_live").count() == 1
            # one screen at 1440x900: nothing to scroll (with the folded "Empty shelves" expander under the lines)
            assert page.evaluate(NO_SCROLL)
            # the empty shelves, unfolded: the costliest first
            shelves = page.locator('[data-testid="stExpander"]', has_text="Empty shelves")
            shelves.locator("summary").click()
            first = shelves.locator('[data-testid="stTable"] tbody tr').first
            first.wait_for(state="visible", timeout=WAIT_MS)
            assert "#77" in first.inner_text() and "RESTOCK +80 u" in first.inner_text()
            shelves.locator("summary").click()  # folded again for the screenshot below

            # a new snapshot appears without a reload
            page.evaluate("window.__not_reloaded = true")
            write(
                r, keys, snapshot(datetime.now(UTC), run="r2", orders_last_minute=4321, high_risk=9, empty_shelves=True)
            )
            page.wait_for_function(f"({TILE})('Orders / min').includes('4,321')", timeout=WAIT_MS)
            # one refresh redraws the tiles one after the other: wait for the last one of the new snapshot too
            page.wait_for_function(f"({TILE})('High-risk SKUs').includes('9')", timeout=WAIT_MS)
            assert page.evaluate("window.__not_reloaded === true")
            page.wait_for_timeout(300)  # let the charts finish drawing before the artifact screenshot
            shot = page.screenshot(path=str(ARTIFACTS / "dashboard.png"))
            # the same live page is the README's "what you see" image: one 1440x900 screen (PNG IHDR: width, height)
            assert (int.from_bytes(shot[16:20], "big"), int.from_bytes(shot[20:24], "big")) == (1440, 900)
            README_IMAGE.parent.mkdir(parents=True, exist_ok=True)
            README_IMAGE.write_bytes(shot)

            # stopping Redis: stale banner, last good data greyed, no traceback
            rd.stop()
            page.wait_for_selector("text=Redis unreachable", timeout=WAIT_MS)
            page.wait_for_selector(".st-key-fsr_body_stale", timeout=WAIT_MS)
            assert "4,321" in tile(page, "Orders / min")
            body = page.inner_text("body")
            assert "Traceback" not in body and "greyed out" in body
            assert page.evaluate(NO_SCROLL), "the degraded page (banner + greyed data) must fit 1440x900 too"
            page.screenshot(path=str(ARTIFACTS / "dashboard-stale.png"))

            # Redis back: automatic recovery, no reload
            rd.start()
            write(redis_client(s), keys, snapshot(datetime.now(UTC), run="r3", orders_last_minute=999))
            page.wait_for_function(f"({TILE})('Orders / min').includes('999')", timeout=WAIT_MS)
            page.wait_for_selector(".st-key-fsr_body_live", timeout=WAIT_MS)
            assert page.locator("text=Redis unreachable").count() == 0
            assert page.evaluate("window.__not_reloaded === true")
        finally:
            browser.close()
    assert "Traceback" not in server.log_text()
