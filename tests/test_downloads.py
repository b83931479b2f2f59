"""First use of a Hub model: downloads into the Hugging Face cache from a local fake Hub,
with progress, cancel, resume, and a readable message for each way it can fail."""
from __future__ import annotations

import hashlib
import re
import threading
from pathlib import Path

import pytest

from core import events as ev
from core.models import ModelCache
from core.errors import ModelError
from core.project import Project, Stage
from tests.engine_helpers import of, run_job
from tests.fake_hub import BIG_FILE, TINY_SD, FakeHub, go_offline, serving_tiny_sd

REPO = TINY_SD
# Files a diffusers repo may carry that DiffusionPipeline.from_pretrained does not need.
EXTRAS = {
    "unet/diffusion_pytorch_model.bin": b"pickle" * 100,
    "unet/diffusion_pytorch_model.fp16.safetensors": b"half" * 100,
    "README.md": b"# tiny\n",
}
BIG = BIG_FILE


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory) -> Path:
    from tests import tiny_pipelines as tp

    return tp.build_sd(tmp_path_factory.mktemp("tiny-sd") / "sd", seed=0)


@pytest.fixture
def hub(tiny_sd, tmp_path, monkeypatch):
    with serving_tiny_sd(tiny_sd, monkeypatch, tmp_path / "hf-cache", extra=EXTRAS) as h:
        yield h


def needed(hub: FakeHub) -> set[str]:
    return set(hub.repos[REPO].files) - set(EXTRAS)


def project() -> Project:
    return Project(prompt="a red circle", width=32, height=32, seed=3, stages=[Stage(REPO, steps=2)])


def storage(tmp_path: Path) -> Path:
    return tmp_path / "hf-cache" / "models--fake-org--tiny-sd"


def test_a_stopped_fake_hub_leaves_no_thread_behind():
    """A client keeps its connection open between requests (huggingface_hub's pooled
    session does), and its request thread on the fake Hub waits for the next one: stopping
    the hub ends that wait and joins the thread, so no server thread runs into later tests."""
    import http.client

    before = set(threading.enumerate())
    with FakeHub() as other:
        client = http.client.HTTPConnection(other.url.removeprefix("http://"), timeout=30)
        client.request("GET", "/api/models/fake-org/nothing-here")
        assert client.getresponse().read()  # answered, and the connection stays open
    assert [t.name for t in set(threading.enumerate()) - before] == []
    client.close()


def test_download_reports_bytes_and_fetches_only_what_diffusers_needs(hub):
    import diffusers.pipelines.pipeline_utils as pu

    from core.downloads import download_model

    before = pu.snapshot_download
    reports = []
    folder = download_model(REPO, reports.append)
    # The planning stand-in for diffusers' snapshot_download lived for that call only.
    assert pu.snapshot_download is before

    served = hub.repos[REPO].total_bytes(needed(hub))
    assert reports[-1].bytes_done == reports[-1].bytes_total == served
    assert all(a.bytes_done <= b.bytes_done for a, b in zip(reports, reports[1:]))
    assert max(r.rate_bytes_per_s for r in reports) > 0
    assert {r.file for r in reports} >= {BIG, "unet/diffusion_pytorch_model.safetensors"}
    fetched = {g.path.split("/", 5)[-1] for g in hub.gets()}
    assert fetched == needed(hub)  # no .bin, no fp16 variant, no README
    assert {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} == needed(hub)
    blob = (folder / BIG).resolve()  # an LFS file is stored under its sha256, huggingface_hub's way
    assert blob.name == hashlib.sha256(blob.read_bytes()).hexdigest()


def test_engine_downloads_by_hub_id_then_loads_it_offline(hub, tmp_path, monkeypatch):
    events = run_job(project(), tmp_path)
    said = [e.what for e in of(events, ev.Loading)]
    shown = [s for s in said if re.fullmatch(r"downloading \S+ \d+/\d+ kB, [\d.]+ [kM]B/s", s)]
    assert shown, said  # e.g. "downloading unet/diffusion_pytorch_model.safetensors 1200/6708 kB, 15 MB/s"
    total = round(hub.repos[REPO].total_bytes(needed(hub)) / 1e3)
    assert shown[-1].split()[2] == f"{total}/{total}"
    assert of(events, ev.JobFinished)

    hub.stop()
    go_offline(monkeypatch)
    events = run_job(project(), tmp_path, models=ModelCache())
    assert of(events, ev.JobFinished)
    assert not any("downloading" in e.what for e in of(events, ev.Loading))


def test_cancel_keeps_the_partial_file_and_the_next_call_resumes_it(hub, tmp_path, monkeypatch):
    from core import models
    from core.downloads import DownloadCancelled, download_model

    hub.throttle[BIG] = (16 * 1024, 0.01)
    cancel = threading.Event()

    def on_progress(p):
        if p.file == BIG and p.file_bytes_done >= 200_000:
            cancel.set()

    with pytest.raises(DownloadCancelled):
        download_model(REPO, on_progress, cancel)
    partial = list((storage(tmp_path) / "blobs").glob("*.incomplete"))
    assert len(partial) == 1
    have = partial[0].stat().st_size
    size = len(hub.repos[REPO].files[BIG].data)
    assert 200_000 <= have < size

    # Half a model is not a cached model: offline, it is reported missing, not loaded.
    with monkeypatch.context() as m:
        go_offline(m)
        with pytest.raises(ModelError, match="offline mode is on"):
            models.download(REPO)

    hub.throttle.clear()
    reports = []
    folder = download_model(REPO, reports.append)
    assert [g.range for g in hub.gets(BIG)] == [None, f"bytes={have}-"]
    first_of_big = next(r for r in reports if r.file == BIG)
    assert first_of_big.file_bytes_done == have  # progress starts where the file got to
    assert reports[-1].bytes_done == reports[-1].bytes_total
    data = (folder / BIG).read_bytes()
    assert data == hub.repos[REPO].files[BIG].data
    assert not list((storage(tmp_path) / "blobs").glob("*.incomplete"))


def test_a_connection_cut_midway_is_resumed_within_the_call(hub, monkeypatch):
    from core import downloads

    monkeypatch.setattr(downloads, "_pause", lambda cancel, seconds: None)
    hub.cut_after[BIG] = 300_000
    folder = downloads.download_model(REPO)
    assert [g.range for g in hub.gets(BIG)] == [None, "bytes=300000-"]
    assert (folder / BIG).read_bytes() == hub.repos[REPO].files[BIG].data


def test_models_download_passes_cancel_as_a_job_cancel(hub):
    from core import models
    from core.errors import Cancelled

    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        models.download(REPO, cancel=cancel)


def test_gated_repo_says_accept_the_licence_and_log_in(hub):
    from core import models

    with pytest.raises(ModelError) as err:
        models.download("fake-org/gated-sd")
    text = str(err.value)
    assert "gated" in text and "accept its licence" in text and "log in" in text
    assert f"{hub.url}/fake-org/gated-sd" in text


def test_missing_repo_says_not_found(hub, tmp_path):
    from core import models

    with pytest.raises(ModelError, match="not found"):
        models.download("fake-org/no-such-model")
    events = run_job(Project(prompt="x", width=32, height=32, stages=[Stage("fake-org/no-such-model")]),
                     tmp_path, on_event=lambda e: None)
    assert "was not found on the Hugging Face Hub" in of(events, ev.JobFailed)[0].message


def test_unreachable_hub_and_nothing_cached_says_so(hub, monkeypatch):
    from core import models

    hub.stop()  # its port now refuses connections
    with pytest.raises(ModelError, match="cannot be reached"):
        models.download(REPO)


def test_offline_mode_and_nothing_cached_says_so(hub, monkeypatch):
    from core import models

    go_offline(monkeypatch)
    with pytest.raises(ModelError, match=r"offline mode is on \(HF_HUB_OFFLINE=1\)"):
        models.download(REPO)
    assert not hub.requests


class _CutEveryTime(dict):
    """cut_after that cuts every GET of the file, not just the first (a link that keeps dropping)."""

    def pop(self, key, default=None):
        return self.get(key, default)


def test_a_download_failing_mid_file_fails_the_job_readably_and_the_next_job_resumes(hub, tmp_path, monkeypatch):
    from core import downloads

    monkeypatch.setattr(downloads, "_pause", lambda cancel, seconds: None)
    hub.cut_after = _CutEveryTime({BIG: 1000})
    models = ModelCache()
    events = run_job(project(), tmp_path, models, on_event=lambda e: None)
    (failed,) = of(events, ev.JobFailed)
    assert failed.message.startswith(f"{REPO} could not be downloaded") and "\n" not in failed.message, failed.message
    assert len(hub.gets(BIG)) == downloads.RETRIES + 1  # it retried, resuming each time, then gave up
    partial = list((storage(tmp_path) / "blobs").glob("*.incomplete"))
    assert len(partial) == 1 and partial[0].stat().st_size > 0  # kept for the next try

    hub.cut_after = {}
    events = run_job(project(), tmp_path, models)
    assert of(events, ev.JobFinished)
    assert hub.gets(BIG)[-1].range is not None, "the next job resumed the file where it got to"
