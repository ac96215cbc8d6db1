"""The MLflow UI of a real training run, over the tracking stack of tests/services.py.

One small training run (tests/test_train.py's shards and settings, in this process:
``num_workers=0``) logs to ``mlflow server`` (PostgreSQL backend, artifacts proxied to
moto's S3). Then: the run, its metrics and its validation grids read back over HTTP
through ``MlflowClient``; its artifacts are objects in the bucket; its rows are in the
database; and headless Chromium shows them on the run's pages (docs/MLFLOW.md).

Chromium is driven by Playwright (its sync API), which starts the system's ``chromium``
(Debian's package; Playwright's own browsers are never downloaded): the UI is a single-page
app that fetches as it renders, so each check waits for what it looks for rather than for a
fixed time. Screenshots go to the test's folder, and also to ``$AVRSP_UI_SCREENSHOTS`` when
that is set (``AVRSP_UI_SCREENSHOTS=docs/images`` renews the docs' pictures).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np
import pytest
import test_train as tt  # the tiny shard writer and fast settings; a module import
from PIL import Image

from workflows import tracking
from workflows.loop import TRAIN_CONFIG_FILE
from workflows.train import TrainResult, train

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
WAIT_S = 60.0
EXPERIMENT = "ui-check"
RUN_NAME = "ui-stage1"
#: The UI opens in its GenAI view unless told otherwise (docs/MLFLOW.md, "Model training").
TRAINING_VIEW = "workflowType=machine_learning"


@pytest.fixture(scope="module")
def trained(ray_session, tracking_stack, tmp_path_factory) -> tuple[Any, TrainResult]:
    """2 epochs × 1 step, 2 validation windows per grid, logged to the stack's server."""
    data = tt.write_shards(
        tmp_path_factory.mktemp("data"), tt.small_network(), {"train": 2, "val": 1}
    )
    cfg = tt.fast_config(
        data,
        tmp_path_factory.mktemp("runs"),
        tracking_stack.mlflow_uri,
        experiment=EXPERIMENT,
        run_name=RUN_NAME,
        mlflow_model_format="pickle",  # torch.export costs ~20 s here; test_train checks it
    )
    return cfg, train(cfg)


def grid_shape(cfg: Any) -> tuple[int, int]:
    """(height, width) of a validation grid: one row per window, frame | target | prediction."""
    return cfg.grid_windows * cfg.network.input.height, 3 * cfg.network.input.width


def model_metric_keys(run: Any) -> list[str]:
    return sorted(k for k in run.data.metrics if not k.startswith("system/"))


# =========================================================================== over HTTP


def test_run_metrics_and_grids_read_back_through_the_server(trained, tracking_stack) -> None:
    from mlflow.tracking import MlflowClient

    cfg, result = trained
    client = MlflowClient(tracking_uri=tracking_stack.mlflow_uri)
    run = client.get_run(result.mlflow_run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == RUN_NAME
    # Artifacts are proxied: the client sees the server's scheme, never s3://.
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == EXPERIMENT
    assert experiment.tags[tracking.EXPERIMENT_KIND_TAG] == tracking.EXPERIMENT_KIND
    assert run.data.params["network.input.frames"] == "8" and run.data.params["epochs"] == "2"
    history = sorted(client.get_metric_history(run.info.run_id, "val_loss"), key=lambda m: m.step)
    assert [m.step for m in history] == [0, 1]
    assert [m.value for m in history] == pytest.approx([h["val_loss"] for h in result.history])
    # One grid per epoch (log_image with step=epoch): a PNG and the UI's WebP preview.
    images = [a.path for a in client.list_artifacts(run.info.run_id, "images")]
    pngs = sorted(p for p in images if p.endswith(".png"))
    assert [p.split("+")[2] for p in pngs] == ["0", "1"]
    assert sum(p.endswith("+compressed.webp") for p in images) == 2
    local = Path(client.download_artifacts(run.info.run_id, pngs[-1]))
    grid = np.asarray(Image.open(local))
    assert grid.shape == (*grid_shape(cfg), 3) and grid.dtype == np.uint8
    # The model went through the server too, and is registered under the run name.
    assert result.registered_model == f"models:/{RUN_NAME}/1"
    logged = client.get_logged_model(result.model_uri.removeprefix("models:/"))
    assert logged.artifact_location.startswith("mlflow-artifacts:/")


def test_artifacts_are_objects_in_the_bucket(trained, tracking_stack) -> None:
    from mlflow.tracking import MlflowClient

    _, result = trained
    client = MlflowClient(tracking_uri=tracking_stack.mlflow_uri)
    run = client.get_run(result.mlflow_run_id)

    def listed(path: str | None = None) -> set[str]:
        out: set[str] = set()
        for item in client.list_artifacts(run.info.run_id, path):
            out |= listed(item.path) if item.is_dir else {item.path}
        return out

    prefix = f"mlflow/{run.info.experiment_id}/{run.info.run_id}/artifacts/"
    keys = tracking_stack.store.keys(prefix)
    assert keys and {k.removeprefix(prefix) for k in keys} == listed()
    s3 = tracking_stack.store.client()

    def body(key: str) -> bytes:
        return s3.get_object(Bucket=tracking_stack.bucket, Key=key)["Body"].read()

    config = result.run_dir / TRAIN_CONFIG_FILE
    assert body(f"{prefix}config/{TRAIN_CONFIG_FILE}") == config.read_bytes()
    png = sorted(k for k in keys if k.endswith(".png"))[0]
    through_server = client.download_artifacts(run.info.run_id, png.removeprefix(prefix))
    assert body(png) == Path(through_server).read_bytes()
    # The logged model's files: the exported model.pt travels inside, byte for byte.
    model_id = result.model_uri.removeprefix("models:/")
    model_prefix = f"mlflow/{run.info.experiment_id}/models/{model_id}/artifacts/"
    model_keys = set(tracking_stack.store.keys(model_prefix))
    assert f"{model_prefix}MLmodel" in model_keys
    assert body(f"{model_prefix}extra_files/model.pt") == result.model_path.read_bytes()


def test_postgres_holds_the_run(trained, tracking_stack) -> None:
    import psycopg2

    _, result = trained
    with contextlib.closing(psycopg2.connect(tracking_stack.postgres_dsn)) as db, db.cursor() as q:
        q.execute(
            "SELECT name, status, artifact_uri, experiment_id FROM runs WHERE run_uuid = %s",
            (result.mlflow_run_id,),
        )
        name, status, artifact_uri, experiment_id = q.fetchone()
        assert (name, status) == (RUN_NAME, "FINISHED")
        assert artifact_uri == f"mlflow-artifacts:/{experiment_id}/{result.mlflow_run_id}/artifacts"
        q.execute(
            "SELECT step, value FROM metrics WHERE run_uuid = %s AND key = 'val_loss' "
            "ORDER BY step",
            (result.mlflow_run_id,),
        )
        rows = q.fetchall()
        assert [s for s, _ in rows] == [0, 1]
        assert [v for _, v in rows] == pytest.approx([h["val_loss"] for h in result.history])
        q.execute(
            "SELECT value FROM params WHERE run_uuid = %s AND key = 'network.model.use_audio'",
            (result.mlflow_run_id,),
        )
        assert q.fetchone() == ("False",)
        q.execute(
            "SELECT value FROM experiment_tags WHERE experiment_id = %s AND key = %s",
            (experiment_id, tracking.EXPERIMENT_KIND_TAG),
        )
        assert q.fetchone() == (tracking.EXPERIMENT_KIND,)
        q.execute("SELECT version, run_id FROM model_versions WHERE name = %s", (RUN_NAME,))
        assert q.fetchall() == [(1, result.mlflow_run_id)]


# =========================================================================== in Chromium


@pytest.fixture(scope="module")
def tab() -> Iterator[Page]:
    """One tab of headless Chromium for the module (each start and first load of the app
    costs seconds), driven by Playwright. The Debian ``chromium``, never a download."""
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"chromium not found ({CHROMIUM}; Debian: apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page()
            page.set_default_timeout(WAIT_S * 1000)
            yield page
        finally:
            browser.close()


def wait_for(page: Page, expression: str, what: str, timeout_s: float = WAIT_S) -> None:
    """Wait until ``expression`` is truthy in the page (an exception counts as not yet: the
    page may still be loading); fail with the page's address, images and text."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    guarded = f"() => {{ try {{ return ({expression}); }} catch (e) {{ return null; }} }}"
    try:
        page.wait_for_function(guarded, polling=250, timeout=timeout_s * 1000)
    except PlaywrightTimeout:
        images = page.evaluate(
            "Array.from(document.images).map(i => "
            "`${i.src.slice(0, 120)} ${i.naturalWidth}x${i.naturalHeight}`)"
        )
        text = page.evaluate("document.body ? document.body.innerText : ''")
        raise AssertionError(
            f"{what}: not seen after {timeout_s:.0f} s on {page.url}\nimages: {images}\n"
            f"text: {text[:1500]}"
        ) from None


def open_page(page: Page, url: str, width: int, height: int) -> None:
    page.set_viewport_size({"width": width, "height": height})
    page.goto(url)


def close_assistant(page: Page) -> None:
    """The "MLflow Assistant" side panel opens on a first visit; it only takes room."""
    page.evaluate("document.querySelectorAll('button[aria-label=Close]').forEach(b => b.click())")


def screenshot(page: Page, path: Path) -> Path:
    """The page as it stands: transitions (the assistant panel closing) are finished and
    the caret hidden, so no fixed wait is needed for a still picture."""
    page.screenshot(path=path, animations="disabled")
    if folder := os.environ.get("AVRSP_UI_SCREENSHOTS"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(folder) / path.name)
    return path


def run_page(stack: Any, result: TrainResult, section: str = "") -> tuple[str, Any]:
    """The address of the run's page (``section``: ``model-metrics``, ``artifacts/PATH``…)."""
    from mlflow.tracking import MlflowClient

    run = MlflowClient(tracking_uri=stack.mlflow_uri).get_run(result.mlflow_run_id)
    page = f"#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    return f"{stack.mlflow_uri}/{page}{'/' + section if section else ''}?{TRAINING_VIEW}", run


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("L"), dtype=np.float32)
        assert pixels.std() > 10, f"{path} looks blank"  # not an empty page
        return image.size


def test_runs_list_in_the_training_view(trained, tracking_stack, tab, tmp_path) -> None:
    _, result = trained
    _, run = run_page(tracking_stack, result)
    experiment_url = f"{tracking_stack.mlflow_uri}/#/experiments/{run.info.experiment_id}"

    open_page(tab, f"{experiment_url}?{TRAINING_VIEW}", 1440, 700)
    # The training view lists runs (the GenAI view opens on a traces overview) and has the
    # model registry in its side bar.
    wait_for(tab, "location.hash.includes('/runs?')", "the runs list")
    wait_for(tab, f"document.body.innerText.includes('{RUN_NAME}')", "the run's name")
    text = tab.inner_text("body")
    assert "Model registry" in text and "Evaluation runs" not in text
    close_assistant(tab)
    assert png_size(screenshot(tab, tmp_path / "mlflow-runs.png")) == (1440, 700)


def js_number(x: float) -> str:
    """A metric value as the UI writes it (JavaScript's ``String(x)``)."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def test_run_page_shows_the_metrics(trained, tracking_stack, tab, tmp_path) -> None:
    _, result = trained
    url, run = run_page(tracking_stack, result)
    # Python's repr and JavaScript agree on a double's shortest text, except exponents.
    expected = {k: js_number(v) for k, v in run.data.metrics.items() if "e" not in repr(v)}
    assert {"val_loss", "val_cc", "val_auc_judd"} <= set(expected)

    open_page(tab, url, 1440, 1000)
    wait_for(tab, "document.body.innerText.includes('val_auc_judd')", "the metrics")
    rows = tab.evaluate(
        "Array.from(document.querySelectorAll('[role=row], tr'))"
        ".map(r => r.innerText.trim().split(/\\s+/).slice(0, 2))"
    )
    shown = {r[0]: r[1] for r in rows if len(r) == 2 and r[0] in expected}
    assert shown == expected  # every metric, with its last value
    text = tab.inner_text("body")
    assert RUN_NAME in text and result.mlflow_run_id in text and "Finished" in text
    assert re.search(rf"{RUN_NAME}\s+v1\b", text)  # its registered model
    close_assistant(tab)
    png_size(screenshot(tab, tmp_path / "mlflow-run-overview.png"))


def test_model_metrics_tab_shows_charts_and_the_grid(
    trained, tracking_stack, tab, tmp_path
) -> None:
    cfg, result = trained
    url, run = run_page(tracking_stack, result, "model-metrics")
    keys = model_metric_keys(run)
    val_keys = [k for k in keys if k.startswith("val_")]
    height, width = grid_shape(cfg)
    grid_img = (
        "Array.from(document.images).find(i => i.src.includes('val_grid')"
        " && i.complete && i.naturalWidth > 0)"
    )
    box = "input[placeholder='Search metric charts']"

    def cards(n: int) -> str:  # the section's title counts its cards
        return f"/Model metrics\\s*\\({n}\\)/.test(document.body.innerText)"

    open_page(tab, url, 1440, 1300)
    wait_for(tab, cards(len(keys) + 1), f"{len(keys)} charts and the grid's card")
    close_assistant(tab)
    # Only cards in view are drawn: the search box brings the validation ones together.
    wait_for(tab, f'!!document.querySelector("{box}")', "the chart search box")
    tab.fill(box, "val_")
    wait_for(tab, cards(len(val_keys) + 1), "the validation charts and the grid")
    wait_for(tab, f"!!({grid_img})", "the validation grid's image")
    wait_for(
        tab,
        f"document.querySelectorAll('.js-plotly-plot').length >= {len(val_keys)}",
        f"{len(val_keys)} drawn charts",
    )
    titles = tab.evaluate(
        "Array.from(document.querySelectorAll('*')).filter(e => e.childElementCount === 0)"
        ".map(e => e.textContent.trim())"
    )
    assert {*val_keys, "val_grid"} <= set(titles)
    src, w, h = tab.evaluate(f"(i => [i.src, i.naturalWidth, i.naturalHeight])({grid_img})")
    assert f"run_uuid={result.mlflow_run_id}" in src and quote("val_grid+step+") in src
    assert w / h == pytest.approx(width / height, rel=0.03)  # our grid, as a preview
    # The step slider spans the epochs.
    slider = tab.evaluate(
        "(s => s && [s.getAttribute('aria-valuemin'), s.getAttribute('aria-valuemax')])"
        "(document.querySelector('[role=slider]'))"
    )
    assert slider == ["0", str(len(result.history) - 1)]
    png_size(screenshot(tab, tmp_path / "mlflow-run-metrics.png"))


def test_artifacts_tab_previews_the_grid_png(trained, tracking_stack, tab, tmp_path) -> None:
    from mlflow.tracking import MlflowClient

    cfg, result = trained
    client = MlflowClient(tracking_uri=tracking_stack.mlflow_uri)
    pngs = sorted(
        a.path
        for a in client.list_artifacts(result.mlflow_run_id, "images")
        if a.path.endswith(".png")
    )
    last = pngs[-1]  # the last epoch's grid
    url, _ = run_page(tracking_stack, result, f"artifacts/{last}")
    height, width = grid_shape(cfg)
    # The preview shows the PNG itself: its full size (the WebP thumbnail is 256 wide).
    preview = (
        "Array.from(document.images).find(i => i.complete"
        f" && i.naturalWidth === {width} && i.naturalHeight === {height})"
    )

    open_page(tab, url, 1440, 800)
    wait_for(tab, f"document.body.innerText.includes({json.dumps(last)})", "the file")
    wait_for(tab, f"!!({preview})", f"a {width}×{height} image (the grid)")
    close_assistant(tab)
    png_size(screenshot(tab, tmp_path / "mlflow-run-grid.png"))
