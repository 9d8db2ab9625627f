"""Notebook 00 in a real browser: JupyterLab + headless Chromium (Debian's), driven by Playwright.

Papermill proves the notebook *executes*; only a browser proves the ipywidgets player *renders*
(widget JS loaded, PNG bytes reach an <img>, the slider round-trips to the kernel). Never runs
``playwright install``: it uses /usr/bin/chromium (``apt-get install chromium``) or $DARKNB_CHROMIUM.
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("DARKNB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

# Pixel statistics of every rendered widget image, computed in the page from a canvas copy
# (the images are same-origin blob: URLs, so the canvas is readable).
IMAGE_STATS_JS = """
() => Array.from(document.querySelectorAll('.jp-OutputArea-output img.widget-image')).map(img => {
    const c = document.createElement('canvas');
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    if (!c.width || !c.height) return {w: 0, h: 0, min: 0, max: 0, sum: 0};
    const ctx = c.getContext('2d');
    ctx.drawImage(img, 0, 0);
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    let min = 255, max = 0, sum = 0, hash = 0;
    for (let i = 0; i < d.length; i += 4) {
        for (let k = 0; k < 3; k++) {
            const v = d[i + k];
            if (v < min) min = v;
            if (v > max) max = v;
            sum += v;
            hash = (hash * 31 + v) >>> 0;
        }
    }
    return {w: c.width, h: c.height, min, max, sum, hash};
})
"""


# True once the open notebook's kernel has started and is idle.
KERNEL_IDLE_JS = """
() => {
    const app = window.jupyterapp;
    const w = app && app.shell.currentWidget;
    const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
    return Boolean(k) && k.status === 'idle';
}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"jupyter lab did not answer {url} in {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def lab_notebook(tmp_path, tiny_synthetic):
    """JupyterLab serving a tiny-parameterised copy of 00_explore.ipynb; yields (url, out_dir, log)."""
    # Skip before starting anything when the browser side is missing.
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set DARKNB_CHROMIUM)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    pytest.importorskip("jupyterlab", reason="jupyterlab is not installed")
    pytest.importorskip("papermill", reason="papermill is not installed")
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    root = tmp_path / "lab"
    root.mkdir()
    out_dir = tmp_path / "out"
    nb = load_notebook_node(str(REPO / "notebooks" / "00_explore.ipynb"))  # papermill's own loader
    nb = parameterize_notebook(nb, dict(data_root=str(tiny_synthetic), output_dir=str(out_dir),
                                        cache_dir=str(tmp_path / "cache"), enhancer_fit_steps=3,
                                        val_fraction=0.0,
                                        max_frames=6))
    nbformat.write(nb, root / "00_explore.ipynb")

    token = uuid.uuid4().hex
    port = _free_port()
    # Private config/runtime/settings dirs: the user's Jupyter settings cannot change the test.
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"),
               IPYTHONDIR=str(tmp_path / "ipython"), PYTHONPATH=str(REPO))
    env.pop("MPLBACKEND", None)  # e.g. Agg from a CI shell would stop inline figures
    log = tmp_path / "jupyter.log"
    with open(log, "w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root",
             "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
             "--expose-app-in-browser",
             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
            cwd=root, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for_server(f"{base}/api/status?token={token}", proc, log)
        yield f"{base}/lab/tree/00_explore.ipynb?token={token}", out_dir, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_explore_notebook_widget_renders_and_slides(lab_notebook):
    from playwright import sync_api

    url, out_dir, log = lab_notebook
    start = time.monotonic()

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            console_errors = []
            page.on("pageerror", lambda err: console_errors.append(str(err)))
            page.goto(url, wait_until="domcontentloaded", timeout=90_000)
            # The notebook panel is ready when its kernel has started and reports idle.
            page.wait_for_function(KERNEL_IDLE_JS, timeout=90_000)
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            # Three images: raw, Zero-DCE, gamma; wait until all have decoded pixels.
            page.wait_for_function(
                """() => {
                    const imgs = document.querySelectorAll('.jp-OutputArea-output img.widget-image');
                    return imgs.length === 3 && Array.from(imgs).every(i => i.complete && i.naturalWidth > 0);
                }""", timeout=120_000)
            before = page.evaluate(IMAGE_STATS_JS)
            for stats in before:
                assert stats["w"] > 0 and stats["max"] > stats["min"], f"blank image: {stats}"
            labels = page.locator(".jp-OutputArea-output .widget-label").all_inner_texts()
            assert sum("mean brightness" in text for text in labels) == 3, labels

            # Move the slider with the keyboard (noUiSlider handles arrow keys), as a user would.
            handle = page.locator(".jp-OutputArea-output .widget-slider .noUi-handle").first
            handle.focus()
            for _ in range(3):
                handle.press("ArrowRight")
            readout = page.locator(".jp-OutputArea-output .widget-slider .widget-readout").first
            page.wait_for_function("el => el.textContent.trim() === '3'", arg=readout.element_handle(),
                                   timeout=30_000)
            page.wait_for_function(
                f"""() => {{
                    const now = ({IMAGE_STATS_JS})();
                    const before = {json.dumps([s["hash"] for s in before])};
                    return now.length === 3 && now.every((s, i) => s.w > 0 && s.hash !== before[i]);
                }}""", timeout=30_000)
            after = page.evaluate(IMAGE_STATS_JS)
            for stats in after:
                assert stats["max"] > stats["min"], f"blank image after sliding: {stats}"

            # The whole notebook ran: the last cell wrote the static figure, and no cell failed.
            figure = out_dir / "explore_comparison.png"
            deadline = time.monotonic() + 120
            while not figure.is_file() and time.monotonic() < deadline:
                page.wait_for_timeout(500)
            page.wait_for_function(KERNEL_IDLE_JS, timeout=60_000)
            errors = page.locator('[data-mime-type="application/vnd.jupyter.error"]').all_inner_texts()
            assert not errors, errors
            assert not console_errors, console_errors
        finally:
            browser.close()
    assert figure.is_file() and figure.stat().st_size > 1000, log.read_text()[-3000:]
    print(f"browser test: {time.monotonic() - start:.1f} s in the browser")


# Pixel statistics of the images in the output cells that follow the markdown cell whose heading
# contains `heading`, up to the next markdown cell (one report section).
SECTION_IMAGES_JS = """
(heading) => {
    const cells = Array.from(document.querySelectorAll('.jp-Cell'));
    const start = cells.findIndex(c => c.classList.contains('jp-MarkdownCell')
                                       && c.textContent.includes(heading));
    if (start < 0) return null;
    const images = [];
    for (const cell of cells.slice(start + 1)) {
        if (cell.classList.contains('jp-MarkdownCell')) break;
        images.push(...cell.querySelectorAll('.jp-OutputArea-output img'));
    }
    return images.map(img => {
        const c = document.createElement('canvas');
        c.width = img.naturalWidth; c.height = img.naturalHeight;
        if (!img.complete || !c.width || !c.height) return {w: 0, h: 0, min: 0, max: 0};
        const ctx = c.getContext('2d');
        ctx.drawImage(img, 0, 0);
        const d = ctx.getImageData(0, 0, c.width, c.height).data;
        let min = 255, max = 0;
        for (let i = 0; i < d.length; i += 4) {
            for (let k = 0; k < 3; k++) { min = Math.min(min, d[i + k]); max = Math.max(max, d[i + k]); }
        }
        return {w: c.width, h: c.height, min, max};
    });
}
"""


@pytest.fixture
def explore_report(tmp_path, tiny_synthetic):
    """00_explore executed by the runner with tiny parameters: its HTML report."""
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set DARKNB_CHROMIUM)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    from darknb.pipeline import run_pipeline

    out = run_pipeline("offline", preset=None, notebooks=["00_explore"], reports_dir=tmp_path,
                       params=dict(data_root=str(tiny_synthetic), cache_dir=str(tmp_path / "cache"),
                                   enhancer_fit_steps=3, val_fraction=0.0, max_frames=6))
    return out / "00_explore.html"


def test_explore_report_shows_the_player_section_offline(explore_report):
    """With the network blocked (the widget manager's CDN out of reach) the frame-by-frame section
    of the HTML report still shows its frames: the static strip, drawn, not blank."""
    from playwright import sync_api

    blocked = []

    def only_the_file(route):
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(offline=True, viewport={"width": 1400, "height": 1000})
            context.route("**/*", only_the_file)
            page = context.new_page()
            page.goto(explore_report.as_uri(), wait_until="load", timeout=60_000)
            page.wait_for_function(
                "() => Array.from(document.images).every(i => i.complete)", timeout=30_000)
            stats = page.evaluate(SECTION_IMAGES_JS, "Frame by frame")
        finally:
            browser.close()
    assert stats is not None, "no 'Frame by frame' section in the report"
    assert stats, "the frame-by-frame section shows no image offline"
    for s in stats:
        assert s["w"] > 100 and s["max"] > s["min"] + 20, f"blank image in the player section: {s}"
    print(f"offline report: {len(stats)} image(s) in the player section; blocked {blocked[:3]}")
