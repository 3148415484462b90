"""The consumer app's weight and speed: the shell's JS + CSS gzipped, and the time from opening /app/ to
the first live value on screen, unthrottled and under Chromium's emulated "Fast 3G" (DevTools protocol
`Network.emulateNetworkConditions`). Bars: ≤ 100 KB; ≤ 3 s (heading for ≤ 1.5 s).

Runs Daphne on its own database (BENCH_DATABASE_URL, default energybox_bench_app) with the demo household
signed in once through the OIDC flow; each measured open is a fresh page with no HTTP cache and no service
worker, holding what a first visit leaves in the browser (tokens, profile, the home's layout), and waits
for a value fetched from the API in that open, never a saved one.
Needs the built app (`make app`) and Debian's chromium.
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import tempfile
import time
from typing import Any

from _common import ROOT, report, setup

# Chrome DevTools' "Fast 3G" preset (front_end/core/sdk/NetworkManager.ts): 150 ms × 3.75 latency,
# 1.6 Mbit/s down and 750 kbit/s up, each × 0.9.
FAST_3G = {
    "offline": False,
    "latency": 150 * 3.75,
    "downloadThroughput": 1.6 * 1024 * 1024 / 8 * 0.9,
    "uploadThroughput": 750 * 1024 / 8 * 0.9,
}
CHROMIUM = "/usr/bin/chromium"


def shell_size() -> dict[str, float]:
    assets = ROOT / "consumer" / "static" / "app" / "assets"
    files = [p for p in assets.glob("*") if p.suffix in (".js", ".css")]
    if not files:
        raise SystemExit("bench: the app is not built; run `make app`")
    raw = sum(p.stat().st_size for p in files)
    zipped = sum(len(gzip.compress(p.read_bytes(), compresslevel=9)) for p in files)
    uplot = ROOT / "node_modules" / "uplot" / "dist" / "uPlot.iife.min.js"
    return {
        "shell_js_css_gzip_kb": round(zipped / 1024, 1),
        "shell_js_css_raw_kb": round(raw / 1024, 1),
        "baseline_uplot_alone_gzip_kb": round(len(gzip.compress(uplot.read_bytes(), compresslevel=9)) / 1024, 1),
    }


def seed() -> None:
    from devices.demo import seed_demo
    from devices.models import Facility
    from portal.tests.history import seed_history
    from readings import metadata

    seed_demo()
    metadata.clear_caches()
    home = Facility.objects.get(tenant__slug="demo-home", name="Home")
    seed_history(home, now_ms=int(time.time() * 1000) - 2_000, minutes=2, earlier_hours=0)


def first_live_s(browser, base_url: str, state: Any, network: dict[str, Any] | None) -> float:  # type: ignore[no-untyped-def]
    context = browser.new_context(storage_state=state, service_workers="block", viewport={"width": 390, "height": 844})
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
    if network:
        cdp.send("Network.emulateNetworkConditions", network)
    started = time.perf_counter()
    page.goto(f"{base_url}/app/#now", wait_until="commit")
    page.wait_for_function(
        "() => { const el = document.querySelector('[data-testid=live-kw]');"
        " return el?.dataset.fresh === '1' && el.dataset.at > 0; }",
        timeout=60_000,
        polling=20,
    )
    elapsed = time.perf_counter() - started
    context.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="opens per network profile (the median is reported)")
    args = parser.parse_args()
    figures: dict[str, float | str] = dict(shell_size())
    data_dir = tempfile.mkdtemp(prefix="eb-bench-app-")
    os.environ["ENERGYBOX_DATA_DIR"] = data_dir
    setup(default_name="energybox_bench_app")
    seed()
    from playwright.sync_api import sync_playwright

    from devices.demo import DEMO_PASSWORD
    from portal.tests.servers import daphne, server_env
    from portal.tests.test_browser import CHROMIUM_ARGS

    with daphne({**server_env(), "ENERGYBOX_DATA_DIR": data_dir}) as base_url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{base_url}/app/#now")
        page.click("[data-testid=sign-in]")
        page.fill("#id_username", "household")
        page.fill("#id_password", DEMO_PASSWORD)
        page.click("button[type=submit]")
        # A returning user: signed in, the home's layout seen once (what a first visit leaves saved).
        page.wait_for_function(
            "() => document.querySelector('[data-testid=live-kw]')?.dataset.fresh === '1'", timeout=30_000
        )
        state = context.storage_state()
        context.close()
        fast = [first_live_s(browser, base_url, state, None) for _ in range(args.runs)]
        slow = [first_live_s(browser, base_url, state, FAST_3G) for _ in range(args.runs)]
        browser.close()
    figures["first_live_value_fast_3g_s"] = round(statistics.median(slow), 3)
    figures["baseline_first_live_value_unthrottled_s"] = round(statistics.median(fast), 3)
    figures["bars"] = "gzip <= 100 KB; Fast 3G <= 3 s (heading 1.5 s)"
    report(figures)


if __name__ == "__main__":
    main()
