"""The review page in a real browser (Debian's Chromium driven by Playwright, no browser download):
one card per photo in the section of its decision, thumbnails upright, no network request, a card
sent elsewhere and the plan saved from the page, then carried out by ``sort --plan`` and undone
(issue 27)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from conftest import COLOUR_MODEL, make_colour_photos, run_cli, save_photo
from PIL import Image, ImageStat

MODEL = ["--model", f"local-dir:{COLOUR_MODEL}"]


def chromium() -> str | None:
    return os.environ.get("CLIPSORT_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    path = chromium()
    if path is None:
        pytest.skip("needs Chromium (Debian package chromium); .ci/run installs it")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=path, args=["--no-sandbox"])
        yield browser
        browser.close()


def embedded_plan(page: Path) -> dict:
    found = re.search(r'<script type="application/json" id="plan">(.*?)</script>', page.read_text("utf-8"), re.S)
    assert found, "the page holds no plan"
    return json.loads(found.group(1))


def open_page(browser, page: Path):
    tab = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    requests: list[str] = []
    errors: list[str] = []
    tab.on("request", lambda request: requests.append(request.url))
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.goto(page.as_uri())
    tab.wait_for_selector("body[data-ready]")
    return tab, requests, errors


def cards_by_section(tab) -> dict[str, list[str]]:
    return tab.evaluate(
        """() => Object.fromEntries(Array.from(document.querySelectorAll('section.decision')).map(s =>
            [s.dataset.decision, Array.from(s.querySelectorAll('.card')).map(c => c.dataset.photo)]))"""
    )


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_review_correct_and_apply_200_photos(tmp_path, capsys, browser):
    inbox, dest = tmp_path / "inbox", tmp_path / "sorted"
    photos = make_colour_photos(inbox, ["red", "green", "blue", "yellow"], 200, seed=27, min_px=200, max_px=700)
    labels = tmp_path / "labels.txt"
    labels.write_text("red\ngreen\nblue\n", encoding="utf-8")
    before = tree(inbox)
    page = tmp_path / "review.html"
    common = [str(inbox), "-l", str(labels), "-d", str(dest), "--dry-run", *MODEL]
    code, out, err = run_cli(capsys, "sort", *common, "--review", str(page))
    assert code == 0, err
    assert f"review page: {page}" in err
    code, out, err = run_cli(capsys, "sort", *common, "--json")
    assert code == 0, err
    decided = {}
    for line in out.splitlines():
        record = json.loads(line)
        decided[str(Path(record["path"]).resolve())] = record["labels"][0] if record["labels"] else "_unsorted"
    assert len(decided) == len(photos) == 200

    plan = embedded_plan(page)
    assert {p["photo"]: p["decision"] for p in plan["photos"]} == decided
    tab, requests, errors = open_page(browser, page)
    sections = cards_by_section(tab)
    assert sorted(sum(sections.values(), [])) == sorted(decided)  # one card per photo
    for decision, cards in sections.items():
        assert sorted(cards) == sorted(p for p, d in decided.items() if d == decision), decision
    assert set(sections) == {"red", "green", "blue", "_unsorted", "_leave"}

    # Every thumbnail loads (scrolled into view), upright: as wide or tall as the upright photo.
    tab.evaluate("() => document.querySelectorAll('img').forEach(i => i.loading = 'eager')")
    tab.wait_for_function("() => Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    shapes = tab.evaluate(
        """() => Array.from(document.querySelectorAll('.card')).map(c => {
            const i = c.querySelector('img'); return [c.dataset.photo, i.naturalWidth, i.naturalHeight]; })"""
    )
    for path, width, height in shapes:
        from clipsort.photos.decode import dimensions

        upright = dimensions(path)
        assert upright is not None
        assert (width >= height) == (upright[0] >= upright[1]) or abs(upright[0] - upright[1]) < 8, path
    assert not [url for url in requests if not url.startswith("file:")], "the page asked a server for something"
    assert not errors

    # A person sends one red card to blue with the keyboard, and saves the plan from the page.
    moved = sections["red"][0]
    blue_key = tab.get_attribute('section[data-decision="blue"]', "data-key")
    tab.click(f'.card[data-photo="{moved}"]')
    tab.keyboard.press(blue_key)
    assert cards_by_section(tab)["blue"].count(moved) == 1
    with tab.expect_download() as download:
        tab.click("#save")
    saved = tmp_path / "corrected.plan.json"
    download.value.save_as(saved)
    tab.close()

    code, out, err = run_cli(capsys, "sort", "--plan", str(saved))
    assert code == 0, err
    for entry in embedded_plan(page)["photos"]:
        path = Path(entry["photo"])
        name = path.name
        if entry["photo"] == moved:
            assert (dest / "blue" / name).is_file()
        elif entry["decision"] == "_unsorted":
            assert (dest / "_unsorted" / name).is_file() or Path(entry["destination"]).is_file()
        else:
            assert Path(entry["destination"]).is_file(), entry
        assert not path.exists()
    code, out, err = run_cli(capsys, "undo")
    assert code == 0, err
    assert tree(inbox) == before


def test_the_page_is_not_blank_and_thumbnails_are_upright(tmp_path, capsys, browser):
    """A photo stored sideways (EXIF orientation 6) shows upright: its red corner top left."""
    inbox = tmp_path / "inbox"
    upright = Image.new("RGB", (400, 300), "white")
    upright.paste(Image.new("RGB", (100, 100), (220, 20, 20)), (0, 0))
    save_photo(upright, inbox / "sideways.jpg", orientation=6)
    save_photo(upright, inbox / "plain.jpg", orientation=1)
    labels = tmp_path / "labels.txt"
    labels.write_text("red\nblue\n", encoding="utf-8")
    page = tmp_path / "page.html"
    code, out, err = run_cli(
        capsys, "sort", str(inbox), "-l", str(labels), "-d", str(tmp_path / "s"), "-n", "--review", str(page), *MODEL
    )
    assert code == 0, err
    tab, requests, errors = open_page(browser, page)
    shot = tmp_path / "shot.png"
    tab.screenshot(path=str(shot))
    picture = Image.open(shot).convert("L")
    assert ImageStat.Stat(picture).stddev[0] > 10, "a blank page"
    for name in ("sideways.jpg", "plain.jpg"):
        src = tab.get_attribute(f'.card[data-photo$="/{name}"] img', "src")
        thumb = Image.open(page.parent / src).convert("RGB")
        assert thumb.width > thumb.height
        r, g, b = thumb.getpixel((5, 5))
        assert r > 150 and g < 100 and b < 100, (name, (r, g, b))
    assert not errors and not [u for u in requests if not u.startswith("file:")]


def test_a_page_name_that_is_not_ours_is_refused(tmp_path, capsys):
    inbox = tmp_path / "inbox"
    save_photo(Image.new("RGB", (64, 64), "red"), inbox / "a.jpg")
    labels = tmp_path / "labels.txt"
    labels.write_text("red\n", encoding="utf-8")
    theirs = tmp_path / "notes.html"
    theirs.write_text("<p>my notes</p>")
    args = ["sort", str(inbox), "-l", str(labels), "-d", str(tmp_path / "s"), "-n", *MODEL]
    code, _, err = run_cli(capsys, *args, "--review", str(theirs))
    assert code == 2 and "not a clipsort review page" in err
    assert theirs.read_text() == "<p>my notes</p>"
    code, _, err = run_cli(capsys, *args, "--review", str(inbox / "a.jpg"))
    assert code == 2 and "must end in .html" in err
    (tmp_path / "page_files").mkdir()
    (tmp_path / "page_files" / "mine.jpg").write_bytes(b"x")
    code, _, err = run_cli(capsys, *args, "--review", str(tmp_path / "page.html"))
    assert code == 2 and "not a review page's thumbnail folder" in err
    assert (tmp_path / "page_files" / "mine.jpg").read_bytes() == b"x"


@pytest.mark.slow
def test_tag_search_dupes_and_eval_pages_show_what_their_runs_found(tmp_path, capsys, browser):
    inbox = tmp_path / "inbox"
    photos = make_colour_photos(inbox, ["red", "green", "blue"], 12, seed=5, min_px=200, max_px=500)
    copy = next(p for p in photos if p.suffix == ".jpg")
    shutil.copy2(copy, inbox / "a copy.jpg")
    labels = tmp_path / "labels.txt"
    labels.write_text("red\ngreen\nblue\n", encoding="utf-8")

    # tag: per label, exactly the photos that get it
    page = tmp_path / "tag.html"
    tag = ["tag", str(inbox), "-l", str(labels), "-n", "--json"]
    code, out, err = run_cli(capsys, *tag, "--review", str(page), *MODEL)
    assert code == 0, err
    kept: dict[str, set[str]] = {}
    for line in out.splitlines():
        record = json.loads(line)
        for name in record["labels"] or ["_untagged"]:
            kept.setdefault(name, set()).add(str(Path(record["path"]).resolve()))
    tab, requests, errors = open_page(browser, page)
    shown = tab.evaluate(
        """() => Object.fromEntries(Array.from(document.querySelectorAll('section')).map(s =>
            [s.dataset.decision, Array.from(s.querySelectorAll('.card')).map(c => c.dataset.photo)]))"""
    )
    assert {name: set(cards) for name, cards in shown.items() if cards} == kept
    tab.close()

    # search: the hits in their order
    page = tmp_path / "search.html"
    code, out, err = run_cli(capsys, "search", "red", str(inbox), "--top", "5", "--json", "--review", str(page), *MODEL)
    assert code == 0, err
    ranked = [str(Path(json.loads(line)["path"]).resolve()) for line in out.splitlines()]
    tab, requests, errors = open_page(browser, page)
    assert tab.evaluate("() => Array.from(document.querySelectorAll('.card')).map(c => c.dataset.photo)") == ranked
    tab.close()

    # dupes: each group side by side, its keeper marked
    page = tmp_path / "dupes.html"
    code, out, err = run_cli(capsys, "dupes", str(inbox), "--json", "--review", str(page), *MODEL)
    assert code == 0, err
    groups = [json.loads(line) for line in out.splitlines()]
    assert groups
    tab, requests, errors = open_page(browser, page)
    for number, group in enumerate(groups, 1):
        section = f'section[data-decision="group-{number}"]'
        members = tab.evaluate(
            f"() => Array.from(document.querySelectorAll('{section} .card')).map(c => c.dataset.photo)"
        )
        assert members == [str(Path(p["path"]).resolve()) for p in group["photos"]]
        keeper = tab.get_attribute(f"{section} .card.keeper", "data-photo")
        assert keeper == str(Path(group["keep"]).resolve())
    tab.close()

    # eval: each cell of the confusion matrix opens its photos
    checked = tmp_path / "checked"
    for path, colour in photos.items():
        (checked / colour).mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, checked / colour / path.name)
    page = tmp_path / "eval.html"
    code, out, err = run_cli(capsys, "eval", str(checked), "-l", str(labels), "--review", str(page), *MODEL)
    assert code == 0, err
    tab, requests, errors = open_page(browser, page)
    links = tab.evaluate(
        "() => Array.from(document.querySelectorAll('table.matrix a'))"
        ".map(a => [a.getAttribute('href'), a.textContent])"
    )
    assert sum(int(count) for _, count in links) == len(photos)
    for href, count in links:
        assert tab.locator(f"{href} .card").count() == int(count)
        assert not tab.locator(href).is_visible()
        tab.click(f'table.matrix a[href="{href}"]')
        assert tab.locator(href).is_visible()
    assert not errors and not [u for u in requests if not u.startswith("file:")]
    tab.close()


def test_thumbnails_come_from_the_runs_own_decode_when_it_is_large_enough(tmp_path, colour_embedder):
    """The embedder hands each picture it decodes to the page; a picture large enough becomes the
    thumbnail, so that photo is not decoded again; one too small (a model with a tiny input) is."""
    from clipsort.photos.discover import ImageRef
    from clipsort.review.thumbs import Thumbnails

    photo = save_photo(Image.new("RGB", (1200, 900), "red"), tmp_path / "big.jpg")
    thumbs = Thumbnails(tmp_path / "page.html")
    thumbs.prepare()
    handed: list[tuple[Path, tuple[int, int]]] = []

    def hand(path: Path, picture: Image.Image) -> None:
        handed.append((path, picture.size))
        thumbs.offer(path, picture)

    colour_embedder.on_picture = hand
    st = photo.stat()
    colour_embedder.resolve(ImageRef(photo, st.st_size, st.st_mtime_ns))
    assert [p for p, _ in handed] == [photo]  # the run's own decode, handed over once
    small = min(handed[0][1]) < 128  # the tiny test model decodes at its small input size
    thumbs.offer(tmp_path / "other.jpg", Image.new("RGB", (400, 300), "blue"))  # as a ViT's decode would be
    assert thumbs.src(tmp_path / "other.jpg") is not None
    thumbs.ensure([photo, tmp_path / "other.jpg"])
    assert thumbs.decoded == (1 if small else 0)  # other.jpg (no such file) was never decoded again
    assert max(thumbs.size(photo)) == 256 and thumbs.size(photo)[0] > thumbs.size(photo)[1]


def test_a_real_sorts_page_is_a_record_that_is_not_carried_out_again(tmp_path, capsys):
    inbox, dest = tmp_path / "inbox", tmp_path / "sorted"
    make_colour_photos(inbox, ["red", "blue"], 6, seed=3, min_px=200, max_px=400)
    labels = tmp_path / "labels.txt"
    labels.write_text("red\nblue\n", encoding="utf-8")
    page = tmp_path / "done.html"
    code, out, err = run_cli(
        capsys, "sort", str(inbox), "-l", str(labels), "-d", str(dest), "--review", str(page), *MODEL
    )
    assert code == 0, err
    text = page.read_text("utf-8")
    assert 'data-editable="0"' in text and 'id="save"' not in text
    plan = embedded_plan(page)
    assert plan["applied"] is True and len(plan["photos"]) == 6
    thumbs = re.findall(r'<img src="([^"]+)"', text)
    assert len(thumbs) == 6 and all((tmp_path / src).is_file() for src in thumbs)  # read where they went
    saved = tmp_path / "again.json"
    saved.write_text(json.dumps(plan), encoding="utf-8")
    code, out, err = run_cli(capsys, "sort", "--plan", str(saved))
    assert code == 2 and "carried out already" in err


def test_hostile_names_stay_text_and_open_opens_the_page(tmp_path, capsys, browser, monkeypatch):
    """A photo or label named like HTML is shown as text (no script runs, nothing is fetched);
    ``--open`` hands the page to the default browser ($BROWSER here)."""
    import webbrowser

    inbox = tmp_path / "inbox"
    hostile = "<img src=x onerror=alert(1)>.jpg"
    save_photo(Image.new("RGB", (300, 200), "red"), inbox / hostile)
    # a folder named "<" puts "</script><script>" in the photo's path, inside the page's plan
    save_photo(Image.new("RGB", (300, 200), "blue"), inbox / "<" / "script><script>alert(2)<!--.jpg")
    labels = tmp_path / "labels.txt"
    labels.write_text("red\nblue: <b onmouseover=alert(3)>blue</b>\n", encoding="utf-8")
    opened = tmp_path / "opened.txt"
    monkeypatch.setenv("BROWSER", f"sh -c 'echo \"$1\" > {opened}' browser %s")
    monkeypatch.setattr(webbrowser, "_tryorder", None)
    page = tmp_path / "page.html"
    args = ["sort", str(inbox), "-l", str(labels), "-d", str(tmp_path / "s"), "-n", "--review", str(page), "--open"]
    code, out, err = run_cli(capsys, *args, *MODEL)
    assert code == 0, err
    assert opened.read_text().strip() == page.resolve().as_uri()
    tab, requests, errors = open_page(browser, page)
    dialogs: list[str] = []
    tab.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    tab.mouse.move(10, 10)
    names = tab.evaluate("() => Array.from(document.querySelectorAll('.card .name')).map(n => n.textContent)")
    assert sorted(names) == sorted([hostile, "script><script>alert(2)<!--.jpg"])
    assert not dialogs and not errors and not [u for u in requests if not u.startswith("file:")]
    assert len(embedded_plan(page)["photos"]) == 2  # the plan's script was not cut short
