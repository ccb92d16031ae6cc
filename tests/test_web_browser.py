"""End-to-end tests of the page in headless Chromium (Debian's `chromium` driven by Playwright's Python API).

Skipped, with the reason, when Playwright or a Chromium binary is absent (`.ci/install-web.sh` installs both).
Screenshots of every tab are saved to artifacts/ (gitignored).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the [webtest] extra")

CHROMIUM = os.environ.get("GPUPLAN_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip(f"no Chromium binary at {CHROMIUM} (apt-get install chromium, or set GPUPLAN_CHROMIUM)",
                allow_module_level=True)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
TINY_CONFIG = ('{"model_type": "llama", "hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 8, '
               '"num_key_value_heads": 2, "intermediate_size": 688, "vocab_size": 1000, "_name_or_path": "org/tiny"}')


@pytest.fixture(scope="module")
def base_url():
    from gpuplan.web.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the test server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except Exception as exc:  # a Chromium that cannot start here is an environment problem, not a page bug
            pytest.skip(f"Chromium at {CHROMIUM} does not start: {exc}")
        yield b
        b.close()


@pytest.fixture(scope="module")
def commands(base_url):
    import json
    import urllib.request

    with urllib.request.urlopen(base_url + "/api/v1") as r:
        return json.load(r)["commands"]


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" and "status of 422" not in m.text else None)
    yield pg
    context.close()
    assert not errors, f"errors on the page (JavaScript, Content-Security-Policy): {errors}"


def open_page(page, url: str):
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']", timeout=45000)  # a cold server on a busy machine
    settle(page)


def settle(page):
    # selectors, not wait_for_function: the page's Content-Security-Policy forbids the eval the latter needs
    page.wait_for_selector("body:not(.busy)", state="attached", timeout=15000)
    page.wait_for_selector("#result > *", state="attached", timeout=15000)


def after(page, action):
    """Do ``action`` and wait for the estimate request it triggers (not those behind the charts) and for the page to
    show the answer."""
    with page.expect_response(lambda r: "/api/v1/" in r.url and r.request.method == "POST"
                              and "x-gpuplan-chart" not in r.request.headers, timeout=15000):
        action()
    settle(page)


def result_text(page) -> str:
    """The result's text once the charts it loads after the answer (sweeps, format comparison) have arrived."""
    try:
        page.wait_for_function("() => !/Computing…|计算中…/.test(document.querySelector('#result').innerText)",
                               timeout=30000)
    except Exception:  # a chart still loading after 30 s: compare what is there (the assertion will say)
        pass
    return page.inner_text("#result")


def shot(page, name: str):
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"web-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000


def pick_model(page, query: str, expect_id: str):
    page.click("#model-search")
    page.fill("#model-search", query)
    page.wait_for_selector(f"#model-list li[data-id='{expect_id}']")
    after(page, lambda: page.click(f"#model-list li[data-id='{expect_id}']"))
    assert page.input_value("#model-search") == expect_id


def test_model_search_finds_by_family_date_and_modality_and_shows_them(page, base_url):
    """The preset search matches the family, the release date and the modality (also in the page's language), and
    each hit and the chosen model show the release date and the modality the API gives."""
    import json
    import urllib.request

    with urllib.request.urlopen(base_url + "/api/v1/models") as r:
        presets = {p["id"]: p for p in json.load(r)}
    vision = {i for i, p in presets.items() if p["modality"] == "vision-language"}
    assert vision >= {"llama-4-scout-17b-16e", "gemma-3-27b-pt"}

    def hits(query: str) -> list[str]:
        page.fill("#model-search", query)
        page.wait_for_selector("#model-list li", state="attached")
        return page.eval_on_selector_all("#model-list li[data-id]", "els => els.map(e => e.dataset.id)")

    open_page(page, base_url + "/?tab=train&lang=en")
    page.click("#model-search")
    assert set(hits("qwen3_moe")) == {i for i, p in presets.items() if p["family"] == "qwen3_moe"}
    assert set(hits("vision")) == vision
    in_2025 = {i for i, p in presets.items() if p["released"].startswith("2025-")}
    found = hits("2025")  # the list shows at most 30
    assert found and set(found) <= in_2025 and len(found) == min(30, len(in_2025))
    hits("llama-4-scout")
    meta = page.inner_text("#model-list li[data-id='llama-4-scout-17b-16e'] .mmeta")
    assert "2025-04-05" in meta and "vision-language" in meta and "llama4" in meta
    page.click("#model-list li[data-id='llama-4-scout-17b-16e']")
    info = page.inner_text("#model-info")
    assert "released 2025-04-05" in info and "vision-language" in info

    open_page(page, base_url + "/?tab=train&lang=zh")
    page.click("#model-search")
    assert set(hits("视觉")) == vision
    hits("gemma-3-27b")
    assert "视觉-语言" in page.inner_text("#model-list li[data-id='gemma-3-27b-pt'] .mmeta")


def test_train_pick_model_change_batch_and_gpu_updates_result_and_chart(page, base_url, commands):
    if "train" not in commands:
        pytest.skip("gpuplan train is not in this build yet")
    open_page(page, base_url + "/?tab=train&lang=en")
    pick_model(page, "qwen2.5 7b", "qwen2.5-7b")
    chart1, text1 = page.inner_html("svg.chart"), result_text(page)
    after(page, lambda: page.fill("[data-opt=batch]", "8"))
    chart2, text2 = page.inner_html("svg.chart"), result_text(page)
    assert chart2 != chart1 and text2 != text1
    after(page, lambda: page.select_option("#gpu", "a100-40gb"))
    assert "a100-40gb" in page.inner_html("svg.chart")  # the capacity line is the new GPU's
    assert page.inner_text("#result") != text2
    assert "batch=8" in page.url and "gpu=a100-40gb" in page.url and "model=qwen2.5-7b" in page.url


def test_time_pick_model_change_gpus_and_gpu_updates_result(page, base_url, commands):
    if "time" not in commands:
        pytest.skip("gpuplan time is not in this build yet")
    open_page(page, base_url + "/?tab=time&lang=en")
    pick_model(page, "llama 3.1 70", "llama-3.1-70b")
    text1 = result_text(page)
    after(page, lambda: page.fill("[data-opt=gpus]", "512"))
    days_512 = page.inner_text(".stat[data-key=days] .stat-v")
    text2 = result_text(page)
    assert text2 != text1
    after(page, lambda: page.fill("[data-opt=gpus]", "1024"))
    days_1024 = page.inner_text(".stat[data-key=days] .stat-v")
    assert float(days_1024.split()[0].replace(",", "")) < float(days_512.split()[0].replace(",", ""))
    after(page, lambda: page.select_option("#gpu", "a100-80gb"))
    assert result_text(page) != text2
    assert "gpus=1024" in page.url and "gpu=a100-80gb" in page.url
    assert "gpuplan time llama-3.1-70b" in page.inner_text("#cli") and "--gpus 1024" in page.inner_text("#cli")


def test_language_switch_and_default_from_browser(page, browser, base_url):
    open_page(page, base_url + "/?tab=time")
    assert page.inner_text("#model-card h2") == "Model"
    page.click("#lang-toggle")
    assert page.inner_text("#model-card h2") == "模型"
    assert "lang=zh" in page.url
    assert page.inner_text("#tabs [data-tab=infer]") == "推理"
    context = browser.new_context(locale="zh-CN")
    zh = context.new_page()
    try:
        open_page(zh, base_url + "/")
        assert zh.inner_text("#model-card h2") == "模型"
    finally:
        context.close()


def test_shared_link_reproduces_the_result(page, browser, base_url, commands):
    tab = "train" if "train" in commands else "time"
    open_page(page, base_url + f"/?tab={tab}&lang=en")
    pick_model(page, "mistral", "mistral-7b-v0.1")
    after(page, lambda: page.select_option("#gpu", "a100-80gb"))
    option = "batch" if tab == "train" else "gpus"
    after(page, lambda: page.fill(f"[data-opt={option}]", "4"))
    link, text = page.url, result_text(page)
    other = browser.new_context(locale="en-US").new_page()
    try:
        open_page(other, link)
        assert other.input_value("#model-search") == "mistral-7b-v0.1"
        assert other.input_value("#gpu") == "a100-80gb"
        assert other.input_value(f"[data-opt={option}]") == "4"
        assert result_text(other) == text
    finally:
        other.context.close()


def test_pasted_config_and_its_link(page, browser, base_url, commands):
    tab = "train" if "train" in commands else "time"
    open_page(page, base_url + f"/?tab={tab}&lang=en")
    page.check("input[name=mode][value=config]")
    after(page, lambda: page.fill("#config-text", TINY_CONFIG))
    assert "#cfg=" in page.url
    from playwright.sync_api import expect  # retries until the page has re-rendered (slow under load)

    expect(page.locator("#cli")).to_contain_text("./config.json", timeout=15000)
    text = result_text(page)
    assert "Error" not in text
    other = browser.new_context(locale="en-US").new_page()
    try:
        open_page(other, page.url)
        assert other.is_checked("input[name=mode][value=config]")
        got = result_text(other)
        for _ in range(30):  # its charts may still be arriving on a loaded machine
            if got == text:
                break
            other.wait_for_timeout(1000)
            got = other.inner_text("#result")
        assert got == text
    finally:
        other.context.close()


def test_bad_input_shows_the_field_and_rule(page, base_url, commands):
    tab = "train" if "train" in commands else "time"
    option = "batch" if tab == "train" else "gpus"
    open_page(page, base_url + f"/?tab={tab}&lang=en")
    after(page, lambda: page.fill(f"[data-opt={option}]", "lots"))
    assert page.is_visible(".error")
    assert option in page.inner_text(".error")
    assert "invalid" in page.get_attribute(f"[data-opt={option}]", "class")


def test_screenshots_of_each_tab(page, browser, base_url, commands):
    open_page(page, base_url + "/?tab=train&lang=en&model=llama-3.1-8b&gpu=h100-sxm")
    for tab in ("train", "infer", "time", "plan"):
        after(page, lambda: page.click(f"#tabs [data-tab={tab}]")) if tab in commands else \
            page.click(f"#tabs [data-tab={tab}]")
        if tab in commands and tab != "plan":  # plan may answer that no layout fits: also a result
            assert page.locator("#result .error").count() == 0, page.inner_text("#result")
        shot(page, f"{tab}-en")
    page.click("#lang-toggle")
    shot(page, "plan-zh")
    phone = browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN", is_mobile=True).new_page()
    try:
        open_page(phone, base_url + "/?tab=time&model=qwen2.5-72b&gpu=h800&tokens=1T&gpus=256")
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page scrolls sideways on a phone ({width} px)"
        shot(phone, "time-zh-phone")
    finally:
        phone.context.close()


def test_advice_apply_makes_it_fit(page, base_url, commands):
    if "train" not in commands:
        pytest.skip("gpuplan train is not in this build yet")
    open_page(page, base_url + "/?tab=train&lang=en&model=llama-3.1-70b&gpu=h100-sxm")
    assert page.is_visible(".badge.bad")
    after(page, lambda: page.check("[data-opt=advise]"))
    rows = page.locator("table.advice tbody tr")
    if rows.count() == 0:
        pytest.skip("the advisor offered no change for this case")
    fitting = [i for i in range(rows.count()) if rows.nth(i).locator("td").nth(2).inner_text() == "✓"]
    assert fitting, "no advised change fits"
    after(page, lambda: rows.nth(fitting[0]).locator("button.apply").click())
    assert page.is_visible(".badge.ok")
    shot(page, "train-advice-en")


def test_raw_dimensions_from_a_link(page, base_url, commands):
    tab = "train" if "train" in commands else "time"
    open_page(page, base_url + f"/?tab={tab}&lang=en&layers=16&hidden=2048&heads=16&gpu=h100-sxm")
    assert page.is_checked("input[name=mode][value=dims]")
    assert page.input_value("#mode-dims [data-opt=layers]") == "16"
    assert "--layers 16 --hidden 2048 --heads 16" in page.inner_text("#cli")
    text = result_text(page)
    after(page, lambda: page.fill("#mode-dims [data-opt=layers]", "24"))
    assert result_text(page) != text and "layers=24" in page.url


# ---- labels, the curated result, charts, downloads, comparison, phone layout, screenshots ---------------------------

FORM_SKIP = {"gpu", "explain", "layers", "hidden", "heads", "kv_heads", "head_dim", "ffn", "vocab", "experts", "top_k",
             "params"}  # the GPU select, the model's dimensions (their own box), explain (always asked for)


def api_options(base_url) -> dict:
    import json
    import urllib.request

    with urllib.request.urlopen(base_url + "/api/v1/options") as r:
        return json.load(r)


def wait_charts(page, tab: str):
    """Wait for the charts the page fetches after the answer (sweeps; the weight-format comparison)."""
    if tab in ("train", "infer"):
        page.wait_for_selector("#sweep-a svg.chart.sweep", state="attached", timeout=30000)
        page.wait_for_selector("#sweep-b svg.chart.sweep", state="attached", timeout=30000)
    if tab == "infer":
        page.wait_for_selector("#dtype-box svg.chart", state="attached", timeout=30000)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_option_of_every_tab_is_in_the_form_with_its_label(page, base_url, commands, lang):
    """Generated from the schema: an option added to a command appears here with a label, never as a flag."""
    options = api_options(base_url)
    for tab in ("train", "infer", "time", "plan"):
        if tab not in commands:
            continue
        open_page(page, base_url + f"/?tab={tab}&lang={lang}&model=llama-3.1-8b")
        for o in options[tab]["options"]:
            if o["name"] in FORM_SKIP or o["kind"] == "object":
                continue
            control = page.locator(f"#options [data-opt='{o['name']}']")
            assert control.count() == 1, f"{tab}: {o['name']} is not in the form"
            label = page.locator(f"#options [data-field='{o['name']}'] label").text_content().strip()
            assert label == (o["label_zh"] if lang == "zh" else o["label"]), (tab, o["name"], label)
            if o.get("choices") or o.get("suggest"):
                assert control.evaluate("e => e.tagName") == "SELECT", (tab, o["name"])
            if o.get("unit"):
                unit = page.locator(f"#options [data-field='{o['name']}'] .unit-tag").text_content()
                assert unit, (tab, o["name"])
        labels = page.locator("#options label").all_text_contents()
        assert labels and not [x for x in labels if x.strip().startswith("--")], labels
        assert "--" in page.inner_text("#cli") or tab in ("train", "infer")  # flags live in the command line box


def test_infer_selects_and_units(page, base_url, commands):
    open_page(page, base_url + "/?tab=infer&lang=en&model=llama-3.1-8b&gpu=h100-sxm")
    for name in ("engine", "weights", "kv_dtype"):
        assert page.locator(f"select[data-opt={name}]").count() == 1, name
    after(page, lambda: page.select_option("[data-opt=engine]", "vllm"))
    assert "--engine vllm" in page.inner_text("#cli")
    assert "GiB" in page.locator("[data-field=non_torch_gib] .unit-tag").text_content()
    open_page(page, base_url + "/?tab=train&lang=en&model=llama-3.1-8b&gpu=h100-sxm")
    assert page.locator("[data-field=cuda_context] .unit-tag").text_content() == "MiB"
    assert page.locator("[data-field=workspace] .unit-tag").text_content() == "MiB"


def test_train_result_is_curated(page, base_url, commands):
    import re

    open_page(page, base_url + "/?tab=train&lang=en&model=llama-3.1-8b&gpu=h200")
    for key in ("allocated_peak_bytes", "total_bytes", "fits", "peak_phase"):
        assert page.is_visible(f".stats.cards .stat[data-key={key}]"), key
    assert page.inner_text(".stat[data-key=peak_phase] .stat-v") == "optimizer step"
    assert "free" in page.inner_text(".stat[data-key=fits]")
    chart = page.locator("svg.chart.mem")
    assert chart.locator(".peak-mark").count() == 1 and chart.locator(".cap").count() == 1
    # components are drawn as sizes, each on its own row: none reaches past the device total
    total_w = float(chart.locator("rect[data-key=total_peak]").get_attribute("width")) + float(
        chart.locator("rect[data-key=overhead]").get_attribute("width"))
    for rect in chart.locator("rect[data-key$=_bytes]").all():
        assert float(rect.get_attribute("width")) <= total_w + 0.5
    assert "peak is a phase" in page.inner_text("[data-block=memory_title] .note")
    assert page.locator("svg.chart.phases rect.peak").count() == 1
    raw = page.locator("details.raw[data-block=raw]")
    assert raw.get_attribute("open") is None  # the raw numbers wait behind a toggle
    raw.locator("summary").click()
    for row in raw.locator("tbody tr").all():
        key, value = (c.strip() for c in row.locator("td").all_inner_texts())
        if re.search(r"(^|_)bytes($|[._])", key.split(".")[-1]) or "_bytes." in key:
            assert value == "0" or re.search(r" (GiB|MiB|KiB)$", value), (key, value)
    assert "GiB" in raw.inner_text()


def test_infer_weights_by_component_shown_as_bytes(page, base_url, commands):
    open_page(page, base_url + "/?tab=infer&lang=en&model=llama-3.1-8b&gpu=h100-sxm")
    raw = page.locator("details.raw[data-block=raw]")
    raw.locator("summary").click()
    row = raw.locator("tr", has=page.locator("code", has_text="weights.by_component_bytes.embedding"))
    assert row.locator("td").nth(1).inner_text().endswith("GiB")


def test_sweep_dtype_plan_and_rank_charts(page, base_url, commands):
    open_page(page, base_url + "/?tab=train&lang=en&model=llama-3.1-8b&gpu=h100-sxm")
    wait_charts(page, "train")
    seq = page.locator("svg.chart.sweep[data-over=seq]")
    assert seq.locator("circle").count() == 7 and seq.locator(".cap").count() == 1
    assert page.locator("svg.chart.sweep[data-over=batch] circle").count() == 6
    assert page.locator("svg.chart.sweep circle.bad").count() > 0  # long sequences do not fit one H100
    open_page(page, base_url + "/?tab=infer&lang=en&model=llama-3.1-8b&gpu=h100-sxm")
    wait_charts(page, "infer")
    assert page.locator("svg.chart.sweep[data-over=context]").count() == 1
    dtype = page.locator("#dtype-box svg.chart")
    assert dtype.locator("rect").count() == 5
    widths = [float(r.get_attribute("width")) for r in dtype.locator("rect").all()]
    assert widths[0] > widths[3]  # bf16 weights take more than int4
    open_page(page, base_url + "/?tab=plan&lang=en&model=llama-3.1-8b&gpu=h100-sxm&gpus=8")
    n = page.locator("[data-block=plans] tbody tr").count()
    assert n >= 1 and page.locator("svg.plan-time rect").count() == n
    assert page.locator("svg.plan-mem .cap").count() == 1
    open_page(page, base_url + "/?tab=train&lang=en&model=llama-3.1-70b&gpu=h100-sxm&gpus=16&tp=4&pp=4&per_rank=1")
    assert page.locator("svg.ranks rect").count() == 4
    assert "stage" in page.locator("[data-block=per_rank] thead").inner_text().lower()


def test_downloads_and_pin_to_compare(page, base_url, commands):
    import json

    open_page(page, base_url + "/?tab=train&lang=en&model=llama-3.1-8b&gpu=h100-sxm")
    with page.expect_download() as dl:
        page.click("#dl-json")
    data = json.loads(Path(dl.value.path()).read_text())
    assert data["model"] == "llama-3.1-8b" and data["memory"]["total_bytes"] > 0
    with page.expect_download() as dl:
        page.click("#dl-csv")
    csv = Path(dl.value.path()).read_text().splitlines()
    assert csv[0] == "key,value" and f"memory.total_bytes,{data['memory']['total_bytes']}" in csv
    assert dl.value.suggested_filename == "gpuplan-train-llama-3.1-8b.csv"
    page.click("#pin")
    after(page, lambda: page.fill("[data-opt=batch]", "4"))
    block = page.locator("[data-block=compare]")
    assert block.is_visible()
    row = block.locator("tbody tr").first
    cells = row.locator("td").all_inner_texts()
    assert cells[1] != cells[2] and cells[3].startswith("+")  # batch 4 takes more than the pinned batch 1
    assert "--batch 4" in block.inner_text()
    page.click("#unpin")
    assert page.locator("[data-block=compare]").count() == 0


def test_phone_result_in_the_first_screen_and_docs_full_width(browser, base_url, commands):
    phone = browser.new_context(viewport={"width": 390, "height": 844}, locale="en-US", is_mobile=True).new_page()
    try:
        for tab, extra in (("train", ""), ("infer", ""), ("time", "&tokens=1T&gpus=256"), ("plan", "&gpus=8")):
            open_page(phone, base_url + f"/?tab={tab}&lang=en&model=llama-3.1-8b&gpu=h100-sxm{extra}")
            first = phone.locator("#result .stat").first
            box = first.bounding_box()
            assert box and box["y"] + box["height"] <= 844, f"{tab}: the first number starts at {box} on a phone"
            assert phone.evaluate("document.documentElement.scrollWidth") <= 390
            assert phone.locator("#options details.more[open]").count() == 0  # advanced groups folded
    finally:
        phone.context.close()
    desk = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    try:
        desk.goto(base_url + "/docs")
        desk.wait_for_selector("#doc section.block")
        assert desk.locator("#doc").bounding_box()["width"] > 1000
    finally:
        desk.context.close()


SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
SCENARIOS = {  # name: (tab, query)
    "train": ("train", "model=llama-3.1-8b&gpu=h100-sxm&batch=2&seq=4096"),
    "lora": ("train", "model=llama-3.1-8b&gpu=a100-40gb&method=lora&seq=4096&recompute=full"),
    "70b-per-rank": ("train", "model=llama-3.1-70b&gpu=h100-sxm&gpus=16&tp=4&pp=4&per_rank=1"),
    "vllm": ("infer", "model=llama-3.1-70b&gpu=h100-sxm&engine=vllm&tp=4&weights=fp8&batch=32&context=8192"),
    "plan": ("plan", "model=llama-3.1-70b&gpu=h100-sxm&gpus=64&tokens=1T"),
    "time": ("time", "model=llama-3.1-70b&gpu=h100-sxm&tokens=2T&gpus=1024"),
}
SIZES = {"desktop": (1280, 800), "phone": (390, 844)}


def screenshot_names() -> list[str]:
    return [f"{name}-{lang}-{size}.png" for name in SCENARIOS for lang in ("en", "zh") for size in SIZES]


def test_screenshots_in_both_languages_at_desktop_and_phone_width(browser, base_url, commands):
    """Every scenario at a fixed viewport (1280x800, 390x844) in English and Chinese. Written to artifacts/; with
    GPUPLAN_WRITE_SCREENSHOTS=1 to docs/screenshots/ (rendering differs between machines: not compared by pixel)."""
    out = SCREENSHOTS if os.environ.get("GPUPLAN_WRITE_SCREENSHOTS") == "1" else ARTIFACTS / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    for size, (w, h) in SIZES.items():
        for lang in ("en", "zh"):
            context = browser.new_context(viewport={"width": w, "height": h}, locale="en-US", is_mobile=size == "phone")
            pg = context.new_page()
            try:
                for name, (tab, query) in SCENARIOS.items():
                    if tab not in commands:
                        continue
                    open_page(pg, base_url + f"/?tab={tab}&lang={lang}&{query}")
                    assert pg.locator("#result .error").count() == 0, (name, pg.inner_text("#result"))
                    wait_charts(pg, tab)
                    path = out / f"{name}-{lang}-{size}.png"
                    pg.screenshot(path=str(path))
                    assert path.stat().st_size > 10_000
            finally:
                context.close()
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for file in screenshot_names():
        assert (SCREENSHOTS / file).is_file(), f"docs/screenshots/{file} is missing"
        assert f"docs/screenshots/{file}" in readme, f"README does not link docs/screenshots/{file}"


def test_lora_and_vllm_bring_their_options_forward(page, base_url, commands):
    open_page(page, base_url + "/?tab=train&lang=en&model=llama-3.1-8b&gpu=h100-sxm")
    assert not page.is_visible("[data-opt=lora_rank]")  # folded in its group for full fine-tuning
    after(page, lambda: page.select_option("[data-opt=method]", "lora"))
    assert page.is_visible(".essentials [data-opt=lora_rank]") and page.is_visible(".essentials [data-opt=lora_targets]")
    after(page, lambda: page.fill("[data-opt=lora_rank]", "64"))
    assert "--method lora --lora-rank 64" in page.inner_text("#cli")
    open_page(page, base_url + "/?tab=infer&lang=en&model=llama-3.1-8b&gpu=h100-sxm&engine=vllm")
    assert page.is_visible(".essentials [data-opt=gpu_memory_utilization]")


def test_pasted_launch_config_is_read_as_the_command_reads_the_file(page, base_url, commands):
    """A torchtune recipe pasted into "Paste a launch config" gives the answer of `gpuplan train FILE`, with the
    file's account (model and options) under the result."""
    if "train" not in commands:
        pytest.skip("no train command")
    recipe = (Path(__file__).parent / "data" / "configs" / "torchtune_llama3_1_8B_qlora_single_device.yaml")
    open_page(page, base_url + "/?tab=train&lang=en")
    page.check("input[name=mode][value=stack]")
    after(page, lambda: page.fill("#stack-text", recipe.read_text()))
    from playwright.sync_api import expect

    expect(page.locator("#cli")).to_contain_text("./launch-config", timeout=15000)
    text = result_text(page)
    assert "Error" not in text


def test_serving_plan_shows_the_cheapest_deployment(page, base_url, commands):
    """plan --serve from a link: headline cards of the cheapest deployment, the cost chart and the table."""
    if "plan" not in commands:
        pytest.skip("no plan command")
    open_page(page, base_url + "/?tab=plan&lang=en&model=llama-3.1-8b&gpu=h100-sxm&serve=true&rps=2&prompt=1000"
                               "&output=200&ttft=2&tpot=0.1")
    from playwright.sync_api import expect

    expect(page.locator(".stat[data-key='serve_plans.0.cost_usd_per_million_output_tokens']")).to_be_visible(
        timeout=30000)
    assert page.locator("[data-block=serve_plans] table").count() == 1
    assert "--serve" in page.inner_text("#cli")


def test_disaggregated_serving_plan_shows_its_prefill_pool(page, base_url, commands):
    """plan --serve --disaggregate from a link: the prefill pool's columns beside the decode pool's."""
    if "plan" not in commands:
        pytest.skip("no plan command")
    open_page(page, base_url + "/?tab=plan&lang=en&model=llama-3.1-8b&gpu=h100-sxm&serve=true&rps=2&prompt=1000"
                               "&output=200&ttft=2&tpot=0.1&disaggregate=true")
    from playwright.sync_api import expect

    expect(page.locator(".stat[data-key='serve_plans.0.cost_usd_per_million_output_tokens']")).to_be_visible(
        timeout=30000)
    header = page.inner_text("[data-block=serve_plans] table thead")
    assert "prefill" in header.lower() and "transfer" in header.lower()
    assert "--disaggregate" in page.inner_text("#cli")
