"""The course in a real browser: headless Chromium, driven by Playwright.

- JupyterLab: lessons 02 and 05 (copies, in a temporary folder) run top to bottom in the smoke
  profile. Lesson 02's augmentation sliders render as widgets, redraw only on release, and
  moving one draws images; lesson 05's progress bars render as widgets; no cell shows an error.
- The website (``make site``): built from the committed outputs, its front page and a lesson
  load their figures, and every internal link resolves.

Screenshots go to ``build/browser/``. The browser is Debian's ``chromium`` (``$COURSE_CHROMIUM``
overrides the path): Playwright's own browser download cannot work offline. Without it these
tests skip with the reason, except under ``CI=true``, where they fail (``.ci/run`` installs it).
"""

from __future__ import annotations

import http.server
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from functools import partial
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = REPO_ROOT / "build" / "browser"
CHROMIUM = os.environ.get("COURSE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
LESSON_SECONDS = 600  # a stuck lesson fails; each takes about a minute in the smoke profile on an idle 2-core CPU

pytestmark = pytest.mark.slow


def _missing(reason: str):
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the browser tests must run; .ci/run installs Chromium with apt-get)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright is not installed: pip install -e '.[dev]'")
    if not Path(CHROMIUM).is_file():
        _missing(f"no Chromium at {CHROMIUM}: apt-get install chromium (or set COURSE_CHROMIUM)")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield chromium
        chromium.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _new_page(browser, origin: str):
    """A page that may load only from ``origin`` (no internet here, and the test must not depend on it)."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(origin) else route.abort())
    return page


# --------------------------------------------------------------------------- JupyterLab


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory):
    """JupyterLab on 127.0.0.1 (free port, token), serving copies of lessons 02 and 05; yields its URL and token."""
    root = tmp_path_factory.mktemp("jupyterlab")
    (root / "notebooks").mkdir()
    for name in ("02_augmentation.ipynb", "05_training.ipynb"):
        # Unfolded: JupyterLab does not update the prompt of a folded cell (source_hidden), and the test
        # reads every prompt to know that every cell ran. Folding is only how the cell is displayed.
        notebook = json.loads((REPO_ROOT / "notebooks" / name).read_text())
        for cell in notebook["cells"]:
            cell["metadata"].pop("jupyter", None)
        (root / "notebooks" / name).write_text(json.dumps(notebook, indent=1, ensure_ascii=False))
    settings = root / "settings"
    for plugin, values in {
        # Every cell stays in the DOM (no virtual scrolling), so the test sees every output; the
        # notebook's kernel starts without a "Select Kernel" dialog.
        "@jupyterlab/notebook-extension/tracker": '{"windowingMode": "none", "autoStartDefaultKernel": true}',
        # Offline: no news or update checks, no toast asking about them.
        "@jupyterlab/apputils-extension/notification": '{"fetchNews": "false", "checkForUpdates": false}',
    }.items():
        package, plugin_name = plugin.rsplit("/", 1)
        (settings / package).mkdir(parents=True, exist_ok=True)
        (settings / package / f"{plugin_name}.jupyterlab-settings").write_text(values)
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)  # the kernel's own inline backend draws the figures
    env.update({
        "COURSE_PROFILE": "smoke",  # profile = "auto" resolves to smoke
        "COURSE_DATA_DIR": os.environ["COURSE_DATA_DIR"],  # the offline copy (conftest.py)
        "COURSE_EXPERIMENTS_DIR": str(root / "experiments"),  # fresh: lesson 05 trains, with its bars
        "COURSE_FIGURES_DIR": str(root / "figures"),
        "JUPYTER_CONFIG_DIR": str(root / "config"),
        "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(root / "workspaces"),
    })
    port, token = _free_port(), secrets.token_hex(16)
    log = open(root / "jupyterlab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--port-retries=0",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         "--allow-root",  # CI runs as root
         "--LabApp.extension_manager=readonly"],  # offline: no PyPI queries from the extension manager
        env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail(f"JupyterLab did not start on {url}:\n{(root / 'jupyterlab.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield url, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _open_notebook(browser, jupyterlab, name: str):
    url, token = jupyterlab
    page = _new_page(browser, url)
    # A workspace of its own: JupyterLab would otherwise reopen the previous test's notebook beside it.
    page.goto(f"{url}/lab/workspaces/{Path(name).stem}/tree/notebooks/{name}?token={token}")
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)
    # The kernel is up when the status bar says so ("Python 3 (ipykernel) | Idle"), not "No Kernel".
    page.wait_for_function("() => [...document.querySelectorAll('.jp-StatusBar-TextItem')]"
                           ".some(e => /\\| Idle$/.test(e.innerText) && !e.innerText.startsWith('No Kernel'))",
                           timeout=90_000)
    return page


def _menu(page, menu: str, item: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=menu).first.click()
    page.locator(".lm-Menu-itemLabel", has_text=item).first.click()


def _run_all_cells(page) -> None:
    """Clear the committed outputs, then run every cell, from the menus as a learner would."""
    _menu(page, "Edit", "Clear Outputs of All Cells")
    page.wait_for_function("() => [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]"
                           ".every(p => !/\\d/.test(p.innerText))", timeout=10_000)
    _menu(page, "Run", "Run All Cells")


def _prompts(page) -> list[str]:
    return page.locator(".jp-NotebookPanel .jp-CodeCell .jp-InputPrompt").all_inner_texts()


def _wait_until_run(page, name: str, while_running=lambda: None) -> None:
    """Wait for every code cell to show an execution count (``[n]:``), calling ``while_running`` meanwhile."""
    deadline = time.monotonic() + LESSON_SECONDS
    while time.monotonic() < deadline:
        while_running()
        prompts = [p.strip() for p in _prompts(page)]
        busy = any("*" in p for p in prompts)
        done = prompts and all(p[1:-2].strip().isdigit() for p in prompts)
        if not busy and (done or _errors(page)):
            return
        time.sleep(0.5)
    page.screenshot(path=SCREENSHOTS / f"{name}-timeout.png")
    pytest.fail(f"{name} did not finish within {LESSON_SECONDS} s in JupyterLab; prompts: {_prompts(page)}")


def _errors(page) -> list[str]:
    """Error outputs and widgets that failed to render, as the page shows them."""
    # JupyterLab renders a traceback as stderr text.
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                          has_text="Traceback (most recent call last)").all_inner_texts()
    widget_failures = page.locator(".jp-OutputArea-output", has_text="Error displaying widget").all_inner_texts()
    return [text[-1500:] for text in errors + widget_failures]


def _assert_clean_run(page, name: str) -> None:
    errors = _errors(page)
    assert not errors, f"{name} shows an error in JupyterLab:\n{errors[0]}"
    prompts = [p.strip() for p in _prompts(page)]
    unrun = [p for p in prompts if not p[1:-2].strip().isdigit()]
    assert not unrun, f"{name}: cells left without an execution count in JupyterLab: {prompts}"


def _drag(page, handle, dx: float, release: bool = True) -> None:
    handle.scroll_into_view_if_needed()
    box = handle.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx, y, steps=12)
    if release:
        page.mouse.up()


def test_lesson_02_sliders_are_widgets_and_draw_on_release_in_jupyterlab(browser, jupyterlab):
    page = _open_notebook(browser, jupyterlab, "02_augmentation.ipynb")
    _run_all_cells(page)
    _wait_until_run(page, "02_augmentation")
    page.screenshot(path=SCREENSHOTS / "02_augmentation-run.png")
    _assert_clean_run(page, "02_augmentation")

    cell = page.locator(".jp-CodeCell", has_text="augment_viewer.augmentation_viewer(")
    sliders = cell.locator(".widget-slider")
    assert sliders.count() == 2, f"the augmentation viewer shows {sliders.count()} slider widgets, not 2 (padding, seed)"
    labels = cell.locator(".widget-slider .widget-label").all_inner_texts()
    assert labels == ["padding", "seed"], labels
    images = cell.locator(".widget-output img")
    assert images.count() == 0, "the viewer drew before any slider moved (it draws on slider moves only)"
    padding = sliders.nth(0)
    readout = padding.locator(".widget-readout")
    assert readout.inner_text().strip() == "4", readout.inner_text()

    # Drag without releasing: the readout follows, but nothing is drawn (continuous_update=False).
    _drag(page, padding.locator(".noUi-handle"), dx=80, release=False)
    page.wait_for_timeout(1500)
    held = readout.inner_text().strip()
    assert held != "4", "dragging the padding slider did not move it"
    assert images.count() == 0, "the viewer redrew while the slider was still held (continuous_update is on)"
    page.mouse.up()
    images.first.wait_for(timeout=60_000)
    cell.scroll_into_view_if_needed()
    cell.screenshot(path=SCREENSHOTS / "02_augmentation-viewer-after-drag.png")
    first_image = images.first.get_attribute("src")
    assert images.first.evaluate("img => img.naturalWidth") > 0, "the drawn image did not load"

    # Back to padding 0: a new figure replaces the first one.
    _drag(page, padding.locator(".noUi-handle"), dx=-400)
    page.wait_for_function(
        "([cell, before]) => { const img = cell.querySelector('.widget-output img');"
        " return img && img.getAttribute('src') !== before; }",
        arg=[cell.element_handle(), first_image], timeout=60_000,
    )
    assert readout.inner_text().strip() == "0", readout.inner_text()
    assert images.count() == 1, f"{images.count()} figures in the viewer: each move should replace the last"
    cell.screenshot(path=SCREENSHOTS / "02_augmentation-viewer-padding-0.png")
    _assert_clean_run(page, "02_augmentation")
    page.close()


def test_lesson_05_progress_bars_are_widgets_in_jupyterlab(browser, jupyterlab):
    page = _open_notebook(browser, jupyterlab, "05_training.ipynb")
    # tqdm's bars (leave=False) close at the end of each epoch: the page records every one that
    # appears while the lesson runs, and the test photographs one when it sees it.
    page.evaluate("""() => {
        window.progressBars = [];
        new MutationObserver(() => {
            for (const bar of document.querySelectorAll('.jp-OutputArea-output .widget-hprogress')) {
                if (!bar.dataset.seen) { bar.dataset.seen = '1'; window.progressBars.push(bar.parentElement.innerText); }
            }
        }).observe(document.body, {childList: true, subtree: true});
    }""")
    photographed = []

    def photograph_a_bar():
        bar = page.locator(".jp-OutputArea-output .widget-hprogress:not(:has(.progress-bar[style*='width: 0%']))")
        if not photographed and bar.count():
            try:
                bar.first.locator("xpath=ancestor::div[contains(@class, 'jp-Cell ')][1]").screenshot(
                    path=SCREENSHOTS / "05_training-progress-bar.png", timeout=5_000)
                photographed.append(True)
            except Exception:  # the bar closed while it was photographed: try the next one
                pass

    _run_all_cells(page)
    _wait_until_run(page, "05_training", while_running=photograph_a_bar)
    page.screenshot(path=SCREENSHOTS / "05_training-run.png")
    _assert_clean_run(page, "05_training")
    bars = page.evaluate("() => window.progressBars")
    assert bars, "lesson 05 trained without a progress bar widget (tqdm fell back to text?)"
    print(f"lesson 05: {len(bars)} progress bar widgets, e.g. {bars[0]!r}")
    text_bars = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                             has_text="it/s]").all_inner_texts()
    assert not text_bars, f"a progress bar rendered as text, not as a widget: {text_bars[0]}"
    page.close()


# --------------------------------------------------------------------------- the website


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # failures show up in the page's responses, checked by the tests
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):  # the browser dropping a connection is not an error
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site built by ``make site``'s script into a temporary folder, served on 127.0.0.1."""
    try:
        import myst_nb  # noqa: F401
        import sphinx_book_theme  # noqa: F401
    except ImportError:
        _missing("the site tooling is not installed: pip install -e '.[site]' (make site does)")
    out = tmp_path_factory.mktemp("site") / "site"
    started = time.perf_counter()
    subprocess.run([sys.executable, str(REPO_ROOT / "website" / "make_site.py"), "--out", str(out)], check=True)
    print(f"site built in {time.perf_counter() - started:.1f} s")
    handler = partial(_QuietHandler, directory=str(out))
    server = _QuietServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def _check_page(page, url: str, name: str) -> tuple[list[str], list[dict]]:
    """Load ``url``; assert its figures load and nothing it loads from the site fails.

    Returns the page's links within the site and its images from the site (``src``, ``width``).
    """
    failed = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.goto(url)
    page.wait_for_load_state("load")
    assert failed == [], f"{name}: the site answered {failed}"
    origin = url.split("/", 3)[:3]
    images = page.eval_on_selector_all(
        "img", "imgs => imgs.map(i => ({src: i.currentSrc || i.src, width: i.naturalWidth}))")
    local = [i for i in images if i["src"].startswith("/".join(origin))]
    broken = [i["src"] for i in local if i["width"] == 0]
    assert not broken, f"{name}: figures that did not load: {broken}"
    page.screenshot(path=SCREENSHOTS / f"site-{name}.png", full_page=True)
    hrefs = page.eval_on_selector_all("a[href]", "links => links.map(a => a.href)")
    return [h for h in hrefs if h.startswith("/".join(origin))], local


def _assert_links_resolve(links: list[str], name: str) -> None:
    missing = []
    for link in sorted({urldefrag(link).url for link in links}):
        try:
            urllib.request.urlopen(link, timeout=10)
        except OSError as err:
            missing.append(f"{link}: {err}")
    assert not missing, f"{name}: internal links that do not resolve: {missing}"


def test_site_front_page_is_the_readme_with_the_lessons_in_order(browser, site):
    page = _new_page(browser, site)
    links, _ = _check_page(page, site, "index")
    assert "Training a ResNet from scratch on CIFAR-10" in page.title()
    nav = page.locator("nav.bd-links a.reference.internal").all()
    lessons = [urlparse(a.get_attribute("href")).path for a in nav]
    lesson_pages = [p for p in lessons if p.startswith("notebooks/") and p[len("notebooks/"):][:2].isdigit()]
    expected = sorted(f"notebooks/{p.stem}.html" for p in (REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert lesson_pages == expected, f"the navigation lists {lesson_pages}, not the lessons in order"
    _assert_links_resolve(links, "index")
    page.close()


def test_site_lesson_page_shows_its_figures_and_an_open_in_colab_link(browser, site):
    page = _new_page(browser, site)
    links, images = _check_page(page, urljoin(site, "notebooks/05_training.html"), "05_training")
    assert len(images) >= 3, f"lesson 05's page shows {len(images)} figures (its notebook has 3)"
    colab = page.locator("article a[href^='https://colab.research.google.com/github/']")
    assert colab.count() >= 1, "no 'Open in Colab' link on the lesson page"
    href = colab.first.get_attribute("href")
    assert href.endswith("/notebooks/05_training.ipynb"), href
    badge = colab.first.locator("img")
    assert badge.evaluate("img => img.naturalWidth") > 0, "the 'Open in Colab' badge did not load"
    _assert_links_resolve(links, "05_training")
    page.close()
