"""The review pages in a real browser: OUT/index.html of a batch (the example's photos, a 2x2 sweep and an
item that fails) and NEW/compare/index.html of a comparison with a changed run.

Every page opens from file:// with its images loaded, no console errors and no request outside its folder.
Driven by Debian's Chromium through Playwright, as tests/test_web_viewer.py; skipped where either is
missing or the browser cannot start, unless CI is set. A failing check keeps a screenshot in tmp_path.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import png_with_corrupt_pixels, run_cli, unavailable
from review_browser import (
    IMAGES,
    broken_images,
    chromium,
    open_page,
    sample_image,
    write_manifest,
)

from rr_controlnet.outputs import BatchSummary
from rr_controlnet.review.pages import write_review_page

SWEEP = {"seed": {"count": 2}, "controlnet_conditioning_scale": [0.5, 1.0]}
PAGE_ITEMS = [
    {"image": "astronaut.png"},
    {"image": "chelsea.png", "prompt": "a cat made of glowing circuitry in a café ☕", "seed": 7},
    {"image": "horse.png", "resize": "fit"},
    {"image": "coffee.png"},
    {"id": "swept", "image": "horse.png", "sweep": SWEEP},
    {"image": "broken.png"},
]
VARIANTS = ["swept_seed0_ccs0.5", "swept_seed0_ccs1", "swept_seed1_ccs0.5", "swept_seed1_ccs1"]
COMPARED_ITEMS = [{"image": "astronaut.png"}, {"image": "chelsea.png", "seed": 7}, {"image": "horse.png"}]
# The new run's chelsea: another seed and a long prompt with no space to break it at.
LONG_PROMPT = "masterpiece,best_quality,ultra_detailed,aerial_view,a_futuristic_research_complex," * 4


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`page`: the batch the page tests read; `baseline` and `new`: a run and the same with one item's seed and
    prompt changed, compared (new/compare)."""
    folder = tmp_path_factory.mktemp("review-page")
    manifest = write_manifest(folder, PAGE_ITEMS)
    (folder / "broken.png").write_bytes(png_with_corrupt_pixels(folder / sample_image("astronaut.png", folder)))
    run_cli("batch", manifest, "--out", folder / "page", exit_code=1)  # one item fails
    for name, seed in (("baseline", 7), ("new", 8)):
        (folder / name).mkdir()
        changed = {"seed": seed} | ({"prompt": LONG_PROMPT} if name == "new" else {})
        items = [dict(item, **changed) if item["image"] == "chelsea.png" else item for item in COMPARED_ITEMS]
        run_cli("batch", write_manifest(folder / name, items), "--out", folder / name / "out")
    run_cli("compare", folder / "baseline" / "out", folder / "new" / "out", exit_code=1)  # chelsea changed
    return {"page": folder / "page", "baseline": folder / "baseline" / "out", "new": folder / "new" / "out"}


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    try:
        import playwright  # noqa: F401
    except ImportError:
        unavailable("playwright is not installed (pip install -e '.[test]')")
    try:
        with chromium() as launched:
            yield launched
    except RuntimeError as exc:
        unavailable(str(exc))
    except Exception as exc:
        if type(exc).__module__.startswith("playwright"):
            unavailable(f"Chromium does not start here: {exc}")
        raise


@contextlib.contextmanager
def review(browser, page_path: Path, tmp_path: Path, folder: Path | None = None) -> Iterator[object]:
    """The page opened; after the test's own checks: no console errors, no request outside `folder` (the
    page's own by default). A failure keeps a screenshot."""
    folder = folder or page_path.parent
    with open_page(browser, page_path) as watched:
        try:
            yield watched.page
            assert watched.errors == []
            outside = [url for url in watched.requests if not url.startswith(folder.resolve().as_uri() + "/")]
            assert outside == []
        except Exception:
            screenshot = tmp_path / f"{page_path.parent.name}-{page_path.stem}.png"
            watched.page.screenshot(path=str(screenshot), full_page=True)
            print(f"screenshot of the page: {screenshot}")
            raise


def row_ids(page) -> list[str]:
    return page.locator("#items tbody tr[data-item-id]").evaluate_all("(rows) => rows.map((row) => row.dataset.itemId)")


# --- the batch page ----------------------------------------------------------------------------------


def test_the_batch_page_shows_every_item_failed_first_with_its_images(runs, browser, tmp_path: Path) -> None:
    summary = json.loads((runs["page"] / "summary.json").read_text())
    with review(browser, runs["page"] / "index.html", tmp_path) as page:
        ids = row_ids(page)
        assert sorted(ids) == sorted(item["id"] for item in summary["items"])  # every item, once
        assert ids[0] == "broken"
        first = page.locator("#items tbody tr").first
        assert first.get_attribute("data-status") == "failed"
        assert "cannot decode image" in first.locator(".error").inner_text()
        assert broken_images(page) == []
        shown = page.locator("#items tbody img").evaluate_all("(images) => images.map((image) => image.alt)")
        assert len(shown) == 4 * 8  # input, edge map, output and overlay of every done item; none for the failed one
        header = page.locator("header").inner_text()
        assert "8 done" in header and "1 failed" in header
        assert "cpu" in header and "tiny-sd15" in header and "rerun-sdk" in header
        assert "Wall time" in header and "not recorded" not in header


def test_search_and_the_status_filter_narrow_the_rows(runs, browser, tmp_path: Path) -> None:
    with review(browser, runs["page"] / "index.html", tmp_path) as page:
        search = page.locator("input[type=search]")
        search.fill("chelsea")
        assert row_ids(page) == ["chelsea"]
        search.fill("CIRCUITRY")  # prompt text, any case
        assert row_ids(page) == ["chelsea"]
        search.fill("ccs0.5")
        assert row_ids(page) == ["swept_seed0_ccs0.5", "swept_seed1_ccs0.5"]
        search.fill("")
        page.select_option("#status-filter", "failed")
        assert row_ids(page) == ["broken"]
        page.select_option("#status-filter", "done")
        statuses = page.locator("#items tbody tr").evaluate_all("(rows) => rows.map((row) => row.dataset.status)")
        assert statuses == ["done"] * 8
        page.locator("th button", has_text="Seed").click()  # sort by seed, ascending
        seeds = [int(text) for text in page.locator("#items tbody tr td:nth-child(4)").all_inner_texts()]
        assert seeds == sorted(seeds) and seeds[-1] == 7


def test_an_items_detail_shows_its_images_side_by_side_and_its_denoising(runs, browser, tmp_path: Path) -> None:
    with review(browser, runs["page"] / "index.html", tmp_path) as page:
        link = page.locator("#items a", has_text="chelsea")
        link.focus()
        page.keyboard.press("Enter")  # by keyboard
        dialog = page.locator("[role=dialog]")
        dialog.wait_for(state="visible")
        assert dialog.locator("#detail-title").inner_text().startswith("chelsea")
        alts = dialog.locator(".large-images img").evaluate_all("(images) => images.map((image) => image.alt)")
        assert alts == ["input of chelsea", "edge map of chelsea", "output of chelsea", "edges followed of chelsea"]
        assert dialog.locator(".large-output").get_attribute("src") == "chelsea.png"
        assert dialog.locator("img.filmstrip").count() == 1
        label = dialog.locator(".step-label")
        assert label.inner_text() == "step 2 of 2"
        dialog.locator("input[type=range]").fill("0")
        assert label.inner_text() == "step 1 of 2"
        dialog.locator("button.play").click()
        page.wait_for_function("() => document.querySelector('.step-label').textContent === 'step 2 of 2'")
        assert "Steps: 2" in dialog.locator(".infotext").inner_text(timeout=10_000)
        page.wait_for_function("() => !document.querySelector('.infotext').textContent.startsWith('loading')")
        assert "Seed: 7" in dialog.locator(".infotext").inner_text()
        assert dialog.locator("code.command").inner_text().endswith(" chelsea")
        assert "a cat made of glowing circuitry in a café ☕" in dialog.locator("table.kv").first.inner_text()
        assert broken_images(page) == []
        page.keyboard.press("Escape")
        dialog.wait_for(state="hidden")
        assert page.evaluate("() => document.activeElement.textContent") == "chelsea"  # focus back on its row


def test_a_sweep_grid_lays_out_again_when_its_axes_are_swapped(runs, browser, tmp_path: Path) -> None:
    with review(browser, runs["page"] / "index.html", tmp_path) as page:
        grid = page.locator("[data-sweep='swept']")
        section = page.locator("section.sweep", has=grid)

        def cells() -> list[list[str]]:
            return grid.locator("tbody tr").evaluate_all(
                "(rows) => rows.map((row) => [...row.querySelectorAll('[data-variant]')].map((a) => a.dataset.variant))"
            )

        # Rows along the first swept field, columns along the second, as the manifest writes them.
        assert cells() == [["swept_seed0_ccs0.5", "swept_seed0_ccs1"], ["swept_seed1_ccs0.5", "swept_seed1_ccs1"]]
        assert grid.locator("thead th").all_inner_texts()[1:] == ["ccs 0.5", "ccs 1"]
        assert sorted(variant for row in cells() for variant in row) == VARIANTS
        section.locator("select[data-axis-role=rows]").select_option(label="controlnet_conditioning_scale (ccs)")
        assert cells() == [["swept_seed0_ccs0.5", "swept_seed1_ccs0.5"], ["swept_seed0_ccs1", "swept_seed1_ccs1"]]
        assert grid.locator("thead th").all_inner_texts()[1:] == ["seed 0", "seed 1"]
        section.locator("select[data-axis-role=columns]").select_option(label="(none)")
        assert cells() == [["swept_seed0_ccs0.5"], ["swept_seed0_ccs1"]]
        section.locator("select[data-axis]").select_option(label="seed 1")  # the field left over, as a selector
        assert cells() == [["swept_seed1_ccs0.5"], ["swept_seed1_ccs1"]]
        captions = grid.locator(".cell-caption").all_inner_texts()
        assert all(caption.startswith("F1 ") and caption.endswith("%") for caption in captions)
        assert broken_images(page) == []
        grid.locator("[data-variant='swept_seed1_ccs1']").click()
        assert page.locator("#detail-title").inner_text().startswith("swept_seed1_ccs1")


# --- the comparison ----------------------------------------------------------------------------------


def test_the_compare_page_lists_the_changed_item_first_with_its_heatmap(runs, browser, tmp_path: Path) -> None:
    page_path = runs["new"] / "compare" / "index.html"
    with review(browser, page_path, tmp_path, folder=runs["new"]) as page:
        cards = page.locator("article[data-item-id]")
        assert cards.evaluate_all("(cards) => cards.map((card) => [card.dataset.itemId, card.dataset.status])") == [
            ["chelsea", "changed"],
            ["astronaut", "same"],
            ["horse", "same"],
        ]
        changed = cards.first
        assert changed.locator("img.heatmap").get_attribute("alt") == "difference heatmap of chelsea"
        assert "output differs" in changed.locator(".notes").inner_text()
        assert changed.locator(".params-changed").inner_text().split("\n")[-1].split("\t") == ["seed", "7", "8"]
        assert changed.locator("svg polyline").count() == 1  # the divergence by step
        assert "parts at step 0" in changed.locator("svg").text_content()
        assert "agree at all 2 steps" in cards.nth(1).inner_text()
        top, slider = changed.locator("img.flick-new"), changed.locator(".flick input[type=range]")
        clip = "(image) => image.style.clipPath"
        assert slider.input_value() == "50" and "50%" in top.evaluate(clip)  # half of each, wiped
        changed.locator("button.flick-toggle").click()  # flick to the baseline...
        assert changed.locator(".flick figcaption").inner_text() == "baseline" and "100%" in top.evaluate(clip)
        changed.locator("button.flick-toggle").click()  # ...and back to the new output
        assert changed.locator(".flick figcaption").inner_text() == "new" and slider.input_value() == "0"
        page.select_option("#status-filter", "same")
        assert page.locator("article[data-item-id]").count() == 2
        assert broken_images(page) == []
    with review(browser, runs["new"] / "index.html", tmp_path) as batch_page:  # the run's own page links to it
        link = batch_page.locator(".comparison-link a")
        assert link.get_attribute("href") == "compare/index.html"
        assert "1 changed" in batch_page.locator(".comparison-link").inner_text()


def test_the_compare_page_works_from_a_copy_of_the_folder(runs, browser, tmp_path: Path) -> None:
    copy = tmp_path / "downloaded"
    shutil.copytree(runs["new"], copy)
    with review(browser, copy / "compare" / "index.html", tmp_path, folder=copy) as page:
        assert page.locator("article[data-item-id]").count() == 3
        assert broken_images(page) == []


def test_parameters_that_differ_are_listed_once_and_wrap_within_their_card(runs, browser, tmp_path: Path) -> None:
    page_path = runs["new"] / "compare" / "index.html"
    with review(browser, page_path, tmp_path, folder=runs["new"]) as page:
        card = page.locator("article[data-item-id='chelsea']")
        rows = card.locator(".params-changed tbody th").all_inner_texts()
        assert rows == ["prompt", "seed"]
        assert card.inner_text().count("masterpiece") == 4  # the prompt in its table only (four times in it)
        assert "made another way: prompt, seed" in card.locator(".notes").inner_text()
        fits = """(card) => {
            const table = card.querySelector('.params-changed').getBoundingClientRect();
            const box = card.getBoundingClientRect();
            return card.scrollWidth <= card.clientWidth && table.right <= box.right
                && document.documentElement.scrollWidth <= window.innerWidth;
        }"""
        assert page.viewport_size["width"] == 1400 and card.evaluate(fits)


def test_a_failed_item_shows_the_baselines_output_beside_the_reason(runs, browser, tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    manifest = write_manifest(tmp_path / "m", COMPARED_ITEMS)
    (tmp_path / "m" / "horse.png").write_bytes(png_with_corrupt_pixels(IMAGES / "horse.png"))
    run_cli("batch", manifest, "--out", tmp_path / "new", exit_code=1)
    run_cli("compare", runs["baseline"], tmp_path / "new", exit_code=1)
    with review(browser, tmp_path / "new" / "compare" / "index.html", tmp_path, tmp_path / "new") as page:
        card = page.locator("article[data-item-id='horse']")
        assert card.get_attribute("data-status") == "failed"
        assert "cannot decode image" in card.locator(".notes").inner_text()
        assert card.locator("img").evaluate_all("(images) => images.map((image) => image.alt)") == [
            "baseline output of horse"
        ]
        assert "the new run has none" in card.locator("figure").inner_text()
        assert broken_images(page) == []


def read_links(out: Path) -> dict:
    return json.loads((out / "review" / "links.js").read_text().removeprefix("window.RR_REVIEW_LINKS = ").rstrip(";\n"))


def test_a_comparison_is_marked_out_of_date_once_a_rerun_changes_the_outputs(runs, browser, tmp_path: Path) -> None:
    baseline, new = tmp_path / "baseline", tmp_path / "new"
    shutil.copytree(runs["baseline"], baseline)
    shutil.copytree(runs["new"], new)
    run_cli("review", new)  # a copy (a downloaded artifact) holds the outputs compared: still current
    assert read_links(new)["compare"]["counts"]["changed"] == 1 and "stale" not in read_links(new)["compare"]
    run_cli("batch", runs["baseline"].parent / "manifest.yaml", "--out", new)  # chelsea as the baseline made it
    for rebuilt in (False, True):
        if rebuilt:
            run_cli("review", new)
        with review(browser, new / "index.html", tmp_path) as page:
            text = page.locator(".comparison-link").inner_text()
            assert "out of date" in text and "1 changed" not in text
        link = read_links(new)["compare"]
        made = json.loads((new / "compare" / "compare.json").read_text())["made"]
        assert link["stale"] and link["made"] == made and link["outputs_changed"] >= made and "counts" not in link
        for time in (made, link["outputs_changed"]):  # both, as the page words them
            assert time.replace("T", " ").replace("+00:00", " UTC") in text
    run_cli("compare", baseline, new)  # every item the same again
    with review(browser, new / "index.html", tmp_path) as page:
        text = page.locator(".comparison-link").inner_text()
        assert "3 same" in text and "out of date" not in text


def test_a_run_accepted_as_the_baseline_keeps_no_link_to_a_comparison_it_lacks(runs, tmp_path: Path) -> None:
    baseline, new = tmp_path / "baseline", tmp_path / "new"
    shutil.copytree(runs["baseline"], baseline)
    shutil.copytree(runs["new"], new)
    result = run_cli("compare", baseline, new, "--update-baseline")
    assert "open " + str(new / "compare" / "index.html") in result.output
    links = "window.RR_REVIEW_LINKS = "
    assert json.loads((new / "review" / "links.js").read_text().removeprefix(links).rstrip(";\n"))["compare"]["href"]
    assert not (baseline / "compare").exists()  # the accepted copy leaves the comparison behind...
    assert (baseline / "review" / "links.js").read_text() == links + "{};\n"  # ...and its page says so


# --- a larger page -----------------------------------------------------------------------------------


def page_of(runs, out: Path, ids: list[str], entry=lambda index, entry: entry) -> Path:
    """A page of the items `ids`, each the page batch's astronaut under another id and seed (its review
    images reused), as `entry(index, summary entry)` makes it; returns the page's path."""
    source = json.loads((runs["page"] / "summary.json").read_text())
    done = next(entry for entry in source["items"] if entry["id"] == "astronaut")
    images = runs["page"] / "review" / "items" / "astronaut"
    entries = []
    for index, item_id in enumerate(ids):
        entries.append(entry(index, dict(done, id=item_id, seed=index, files=[], checksums={})))
        shutil.copytree(images, out / "review" / "items" / item_id)
        info = (out / "review" / "items" / item_id / "info.js").read_text().replace('"astronaut"', f'"{item_id}"')
        (out / "review" / "items" / item_id / "info.js").write_text(info)
    return write_review_page(out, BatchSummary.from_document(dict(source, items=entries)))


def test_a_page_of_a_few_hundred_items_opens_and_pages(runs, browser, tmp_path: Path) -> None:
    """300 items that reuse one item's review images: the page draws 100 rows at a time."""
    page_path = page_of(runs, tmp_path / "many", [f"item{index:03d}" for index in range(300)])
    with review(browser, page_path, tmp_path) as page:
        assert row_ids(page) == [f"item{index:03d}" for index in range(100)]
        page.locator(".pager button", has_text="Next").first.click()
        assert row_ids(page)[0] == "item100" and len(row_ids(page)) == 100
        page.locator("input[type=search]").fill("item299")
        assert row_ids(page) == ["item299"]
        assert broken_images(page) == []


def test_sorting_by_item_reads_the_numbers_in_ids_as_numbers(runs, browser, tmp_path: Path) -> None:
    ids = ["horse_seed109", "horse_seed99", "horse_seed9", "Horse_seed10", "horse_seed1000", "horse_seed99b"]
    with review(browser, page_of(runs, tmp_path / "ids", ids), tmp_path) as page:
        page.locator("th button", has_text="Item").click()
        natural = ["horse_seed9", "Horse_seed10", "horse_seed99", "horse_seed99b", "horse_seed109", "horse_seed1000"]
        assert row_ids(page) == natural
        page.locator("th button", has_text="Item").click()  # descending
        assert row_ids(page) == natural[::-1]


def test_a_large_sweep_comes_folded_and_leaves_the_items_table_in_view(runs, browser, tmp_path: Path) -> None:
    """A sweep of 110 variants (10 seeds x 11 scales): its grid is in the page, folded, with its hooks."""
    scales = [round(0.1 * step, 1) for step in range(11)]
    shape = [10, len(scales)]

    def variant(index: int, entry: dict) -> dict:
        row, column = divmod(index, len(scales))
        values = {"seed": row, "controlnet_conditioning_scale": scales[column]}
        sweep = {"source": "big", "values": values, "axes": [["seed"], ["controlnet_conditioning_scale"]]}
        sweep |= {"coordinates": [row, column], "shape": shape}
        return dict(entry, seed=row, params=dict(entry["params"], **values), sweep=sweep)

    ids = [f"big_seed{row}_ccs{scale:g}" for row in range(10) for scale in scales]
    with review(browser, page_of(runs, tmp_path / "sweep", ids, variant), tmp_path) as page:
        assert page.locator("#items-title").bounding_box()["y"] < 900  # within the first screen
        grid = page.locator("[data-sweep='big']")
        assert grid.locator("[data-variant]").count() == 110 and not grid.is_visible()
        page.locator("section.sweep summary", has_text="big: 110 variants").click()
        assert grid.is_visible()
        grid.locator("[data-variant='big_seed3_ccs0.7']").click()
        assert page.locator("#detail-title").inner_text().startswith("big_seed3_ccs0.7")


def test_the_scale_benchmark_measures_the_page(runs, browser, tmp_path: Path, monkeypatch) -> None:
    """bench/scale.py's page figures, on a small scale: they keep working between its long runs."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("scale", Path(__file__).parent.parent / "bench" / "scale.py")
    scale = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "scale", scale)  # its dataclasses look their module up
    spec.loader.exec_module(scale)
    out = tmp_path / "page"
    shutil.copytree(runs["page"], out)
    real = scale.page_figures(out, seconds_per_item=0.5)
    assert real.items == 9 and 0 < real.share_of_item_time < 1 and real.item_files_ms > 0
    assert 0 < real.bytes_per_item < 30 * 1024 and real.image_bytes_per_item > 0
    synthetic = scale.synthetic_page(runs["page"], tmp_path, 200, browser)
    assert synthetic.synthetic and synthetic.items == 200 and synthetic.bytes_per_item < 2048
    assert synthetic.first_rows_ms is not None and synthetic.first_rows_ms > 0


def test_decisions_on_the_compare_page_are_kept_filtered_and_applied(runs, browser, tmp_path: Path) -> None:
    page_path = runs["new"] / "compare" / "index.html"
    with open_page(browser, page_path) as watched:
        page = watched.page
        controls = page.locator("[data-accept]")
        assert controls.evaluate_all("(found) => found.map((control) => control.dataset.accept)") == ["chelsea"]
        page.locator("[data-accept='chelsea'] button.decision-accept").click()
        page.reload()  # kept in the page's local storage
        page.wait_for_selector("body[data-ready='true']")
        accept = page.locator("[data-accept='chelsea'] button.decision-accept")
        assert accept.get_attribute("aria-pressed") == "true"
        assert "1 accepted, 0 rejected, 0 undecided" in page.locator(".decision-counts").inner_text()
        page.select_option("#decision-filter", "accept")
        assert page.locator("article[data-item-id]").evaluate_all("(c) => c.map((card) => card.dataset.itemId)") == [
            "chelsea"
        ]
        page.select_option("#decision-filter", "undecided")
        assert page.locator("article[data-item-id]").count() == 0
        page.locator("button.apply-decisions").click()
        command = page.locator("pre.accept-command").inner_text()
        baseline, new = runs["baseline"].resolve(), runs["new"].resolve()
        assert command.startswith("rr-controlnet compare ") and command.endswith(" --accept chelsea")
        named = command.split(" ")[2:4]
        assert [Path(word).resolve() for word in named] == [baseline, new]
        decisions = page.locator("a.download-decisions").evaluate("(a) => fetch(a.href).then((r) => r.text())")
        page.select_option("#decision-filter", "all")
        opener = page.locator("[data-open-viewer='chelsea']").inner_text()
        assert f"rr-controlnet review {new} --serve" in opener  # on file://: how to serve it
        assert watched.errors == []
    # The downloaded decisions applied to a copy of the baseline: chelsea alone is accepted.
    copy = tmp_path / "baseline"
    shutil.copytree(baseline, copy)
    (tmp_path / "decisions.json").write_text(decisions)
    assert json.loads(decisions) == {"accept": ["chelsea"], "reject": []}
    run_cli("compare", copy, new, "--accept-from", tmp_path / "decisions.json", "--out", tmp_path / "report")
    rows = {item["id"]: item for item in json.loads((copy / "summary.json").read_text())["items"]}
    assert (
        rows["chelsea"]["seed"] == 8
        and rows["horse"]
        == {item["id"]: item for item in json.loads((baseline / "summary.json").read_text())["items"]}["horse"]
    )


def test_a_comment_link_opens_the_compare_page_at_its_item(runs, browser, tmp_path: Path) -> None:
    page_path = runs["new"] / "compare" / "index.html"
    with open_page(browser, page_path) as watched:
        page = watched.page
        page.goto("about:blank")
        page.goto(page_path.resolve().as_uri() + "#item=horse")
        page.wait_for_selector("body[data-ready='true']")
        top = page.evaluate(
            "() => document.querySelector(\"article[data-item-id='horse']\").getBoundingClientRect().top"
        )
        assert 0 <= top < 900 and page.evaluate("() => window.scrollY") > 0  # scrolled to it (the last of three)
        assert watched.errors == []
