"""The built book in a real browser: ``jupyter-book build`` (from the committed chapters, no
execution), served on loopback, opened in headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by Selenium). Every page of the table of contents loads, every image
on it loads (decoded, non-zero width), and no internal link is broken. Screenshots of the
findings page and of a figure chapter are written to ``_build/screenshots/``.

CI installs Chromium (``.ci/run``); where it is absent the test is skipped with that reason.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-quic", "--window-size=1280,2000")
SCREENSHOTS = {"book/intro.html": "intro.png", "book/findings.html": "findings.png",
               "book/chapters/02_alignment.html": "02_alignment.png",
               "book/chapters/03_routing.html": "03_routing.png",
               "book/chapters/06_calibration.html": "06_calibration.png",
               "book/chapters/08_paper_scale.html": "08_paper_scale.png"}

pytestmark = [pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                 reason="Debian's chromium and chromium-driver are not installed "
                                        "(.ci/run installs them)")]


def toc_pages() -> list[str]:
    yaml = pytest.importorskip("yaml")
    toc = yaml.safe_load((ROOT / "book" / "_toc.yml").read_text(encoding="utf-8"))
    files = [toc["root"]]

    def walk(entries):
        for e in entries or []:
            if "file" in e:
                files.append(e["file"])
            walk(e.get("sections"))
            for part in e.get("parts", []) or []:
                walk(part.get("chapters"))
    walk(toc.get("chapters"))
    for part in toc.get("parts", []) or []:
        walk(part.get("chapters"))
    return [f"{f}.html" for f in files]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("jupyter_book")
    jb = Path(sys.executable).with_name("jupyter-book")
    p = subprocess.run([str(jb), "build", ".", "--config", "_config.yml", "--toc",
                        "book/_toc.yml"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    handler = partial(_Quiet, directory=str(HTML))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser(site, tmp_path_factory):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for f in FLAGS:
        opts.add_argument(f)
    opts.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


IMAGES_JS = """
const imgs = Array.from(document.images);
return imgs.map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0]);
"""
LINKS_JS = "return Array.from(document.querySelectorAll('a[href]')).map(a => a.href);"


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def _wait_complete(browser, page: str, timeout: float = 60.0) -> None:
    import time
    deadline = time.monotonic() + timeout
    while browser.execute_script("return document.readyState") != "complete":
        assert time.monotonic() < deadline, f"{page} did not finish loading in {timeout} s"
        time.sleep(0.1)


def test_every_page_loads_with_its_images_and_internal_links(site, browser):
    pages = toc_pages()
    assert "book/findings.html" in pages and len(pages) >= 9
    SHOTS.mkdir(parents=True, exist_ok=True)
    figures, links, broken = 0, set(), []
    for page in pages:
        url = urllib.parse.urljoin(site, page)
        assert _status(url) == 200, f"{page} is missing from the built book"
        browser.get(url)
        _wait_complete(browser, page)
        main = browser.find_elements("css selector", "main h1, article h1")
        assert main, f"{page}: no title rendered"
        imgs = browser.execute_script(IMAGES_JS)
        bad = [src for src, ok in imgs if not ok]
        assert not bad, f"{page}: images that did not load: {bad[:5]}"
        figures += len(imgs)
        for href in browser.execute_script(LINKS_JS):
            if href.startswith(site):
                links.add(href.split("#")[0])
        if page in SCREENSHOTS:
            browser.save_screenshot(str(SHOTS / SCREENSHOTS[page]))
    for href in sorted(links):
        if _status(href) != 200:
            broken.append(href)
    assert not broken, f"broken internal links: {broken[:10]}"
    assert figures >= 10, f"only {figures} images across the book"
    for name in SCREENSHOTS.values():
        assert (SHOTS / name).stat().st_size > 10_000


# every table cell's words (split where a line may break: spaces, hyphens, the <wbr> after
# underscores) measured in the cell's font against the cell's inner width
CELLS_JS = """
const probe = document.createElement('span');
probe.style.cssText = 'white-space:nowrap;position:absolute;visibility:hidden';
document.body.appendChild(probe);
const MIN_SCALE = arguments[0], wide = [], broken = [];
for (const t of document.querySelectorAll('article table')) {
  if (t.scrollWidth > t.clientWidth + 1) wide.push([t.scrollWidth, t.clientWidth,
                                                    t.rows[0].innerText.slice(0, 60)]);
  for (const c of t.querySelectorAll('th, td')) {
    const cs = getComputedStyle(c);
    probe.style.font = cs.font;
    const inner = c.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
    for (const w of c.innerText.split(/[\\s]+|(?<=[-_])/)) {
      probe.textContent = w;
      if (w && probe.getBoundingClientRect().width > inner + 1) broken.push(w);
    }
  }
}
probe.remove();
const shrunk = Array.from(document.querySelectorAll('article img')).filter(
  i => i.naturalWidth > 0 && i.clientWidth / i.naturalWidth < MIN_SCALE).map(
  i => [i.getAttribute('src').split('/').pop().slice(0, 12), i.naturalWidth, i.clientWidth]);
return [wide, broken, shrunk];
"""
# a figure shown at less than this share of its drawn width has labels too small to read
# (matplotlib's 10 pt at the book's dpi; the 14-panel grids of chapter 08 were at 0.38)
MIN_SCALE = 0.65


def test_tables_and_figures_fit_the_page(site, browser):
    """At 1280 px, every table of the book's own pages (intro, findings, chapters) fits its
    column (no sideways scroll box), and on every page, the reference pages under docs/
    included (whose widest tables may scroll inside their own box), every word of a cell fits
    its cell (no header or cell broken inside a word) and no figure is shrunk below
    MIN_SCALE of its drawn width."""
    problems = []
    for page in toc_pages():
        browser.get(urllib.parse.urljoin(site, page))
        _wait_complete(browser, page)
        wide, broken, shrunk = browser.execute_script(CELLS_JS, MIN_SCALE)
        wide = wide if page.startswith("book/") else []
        if wide or broken or shrunk:
            problems.append(f"{page}: too wide {wide[:3]}, words broken {sorted(set(broken))[:5]}"
                            f", figures shrunk {shrunk[:3]}")
    assert not problems, "\n".join(problems)
