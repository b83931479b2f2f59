"""Fetching a diffusers model from the Hugging Face Hub into the standard Hugging Face
cache, with progress in bytes, cancellation between chunks, and resume.

Which files: exactly those `DiffusionPipeline.download` would fetch (model_index.json,
each component's config and weights, safetensors preferred, no .bin/.onnx/flax/variant
files when safetensors exist). Rather than re-implement diffusers' filtering, we let
`DiffusionPipeline.download` compute it and stop it at the moment it hands its allow
and ignore patterns to `snapshot_download` (see `_plan`).

Why not `snapshot_download` for the bytes: huggingface_hub 2.4.0 writes each file to a
process-unique temporary file and deletes it when the download fails or is interrupted
(`file_download._download_to_tmp_and_move`), so an interrupted multi-GB download starts
again from zero. Here each weight file streams into `blobs/<etag>.incomplete` in the
cache, under huggingface_hub's own per-blob lock, and a later call resumes it with an
HTTP Range request. Once every blob is complete, `snapshot_download` links the snapshot
(refs, snapshot symlinks, the cached tree listing that offline loads check) from blobs
that are already there, so the cache layout is huggingface_hub's own.

No Qt here, and nothing heavy at import: huggingface_hub and diffusers are imported in
the functions that use them.
"""
from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

# How often progress is reported while bytes flow (file starts and ends are always reported).
REPORT_INTERVAL_S = 0.1
RATE_WINDOW_S = 3.0
RETRIES = 5  # transient network errors mid-file: resume from where the file got to


class DownloadCancelled(Exception):
    """The download was cancelled; what arrived is kept and the next call resumes it."""


@dataclass(frozen=True)
class DownloadProgress:
    file: str  # path in the repo, e.g. "unet/diffusion_pytorch_model.safetensors"
    file_bytes_done: int
    file_bytes_total: int | None
    bytes_done: int  # over the whole model, counting files already in the cache
    bytes_total: int
    rate_bytes_per_s: float  # over the last few seconds of this call's transfer

    def eta_s(self) -> float | None:
        if self.rate_bytes_per_s <= 0 or self.bytes_total <= 0:
            return None
        return max(self.bytes_total - self.bytes_done, 0) / self.rate_bytes_per_s

    def describe(self) -> str:
        """'downloading unet/diffusion_pytorch_model.safetensors 120/3400 MB, 45 MB/s'"""
        return f"downloading {self.file} {format_mb(self.bytes_done, self.bytes_total)}, {format_rate(self.rate_bytes_per_s)}"


def format_mb(done: int, total: int) -> str:
    unit = 1e6
    if total < 10 * unit:  # tiny models: MB would read 0/0
        return f"{done / 1e3:.0f}/{total / 1e3:.0f} kB"
    return f"{done / unit:.0f}/{total / unit:.0f} MB"


def format_rate(rate: float) -> str:
    if rate >= 1e6:
        return f"{rate / 1e6:.0f} MB/s" if rate >= 1e7 else f"{rate / 1e6:.1f} MB/s"
    return f"{rate / 1e3:.0f} kB/s"


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return "less than a minute left"
    if seconds < 3600:
        return f"about {round(seconds / 60)} min left"
    return f"about {seconds / 3600:.1f} h left"


ProgressFn = Callable[[DownloadProgress], None]


# ---------------------------------------------------------------- the download


def download_model(repo_id: str, progress: ProgressFn | None = None, cancel: threading.Event | None = None,
                   revision: str | None = None) -> Path:
    """The model's snapshot folder in the Hugging Face cache, downloading what is missing.

    Raises DownloadCancelled when `cancel` is set (partial files stay, and resume next
    time), and huggingface_hub's own errors otherwise (GatedRepoError,
    RepositoryNotFoundError, OfflineModeIsEnabled, connection errors), which
    `core.models.explain_hub_error` turns into a sentence.
    """
    from huggingface_hub import HfApi, constants, get_cached_repo_tree, get_hf_file_metadata, hf_hub_url, snapshot_download
    from huggingface_hub.file_download import repo_folder_name
    from huggingface_hub.utils import build_hf_headers, filter_repo_objects, tqdm as hf_tqdm

    class Quiet(hf_tqdm):  # no console bars (a windowed app may have no stderr at all)
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    api = HfApi()
    # One commit for every file, even if the repo changes meanwhile (also writes refs/<revision>).
    rev = api.resolve_revision(repo_id, revision=revision)
    sha = getattr(rev, "resolved", None) or str(rev)
    planned = _plan(repo_id, rev)
    if isinstance(planned, Path):
        return planned  # diffusers found every file it needs in the cache
    allow, ignore = planned
    _check_cancel(cancel)

    # snapshot_download of the (already cached) model_index.json lists the repo and caches
    # that listing first: from then on a half-downloaded snapshot reads as incomplete to
    # cache-only loads (diffusers, snapshot_download), never as a model.
    snapshot_download(repo_id, revision=rev, allow_patterns=["model_index.json"], tqdm_class=Quiet)
    entries = get_cached_repo_tree(repo_id, revision=sha)
    wanted = set(filter_repo_objects(items=[f.path for f in entries], allow_patterns=allow, ignore_patterns=ignore))
    files = [(f.path, f.lfs.size if f.lfs is not None else f.size) for f in entries if f.path in wanted]
    tracker = _Tracker(files, progress, cancel)

    cache = Path(constants.HF_HUB_CACHE)
    storage = cache / repo_folder_name(repo_id=repo_id, repo_type="model")
    for path, size in files:
        _check_cancel(cancel)
        if (storage / "snapshots" / sha / path).exists():
            tracker.already_there(path, size)
            continue
        url = hf_hub_url(repo_id, path, revision=sha)
        meta = get_hf_file_metadata(url)
        if meta.size is not None and meta.size != size:
            tracker.resize(path, size, meta.size)
            size = meta.size
        blob = storage / "blobs" / meta.etag
        if blob.exists():
            tracker.already_there(path, size)
            continue
        headers = build_hf_headers()
        location = meta.location or url
        if urlparse(location).netloc != urlparse(url).netloc:
            headers.pop("authorization", None)  # a signed CDN address: the token stays on the Hub
        lock = cache / ".locks" / storage.name / f"{meta.etag}.lock"
        _fetch(location, blob, size, headers, lock, path, tracker)

    # Every blob is there: huggingface_hub links the snapshot and caches the tree listing.
    folder = snapshot_download(repo_id, revision=rev, allow_patterns=allow, ignore_patterns=ignore, tqdm_class=Quiet)
    tracker.finish()
    return Path(folder)


def _check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise DownloadCancelled("download cancelled")


def _pause(cancel: threading.Event | None, seconds: float) -> None:
    """Wait before retrying, waking at once if the download is cancelled."""
    if cancel is not None:
        cancel.wait(seconds)
    else:
        time.sleep(seconds)


def _fetch(url: str, blob: Path, size: int | None, headers: dict, lock: Path, name: str, tracker: "_Tracker") -> None:
    """Stream one file into `<blob>.incomplete`, resuming what is there, then move it into place."""
    import httpx2
    from huggingface_hub import constants
    from huggingface_hub.utils import WeakFileLock, hf_raise_for_status, http_stream_backoff

    partial = blob.with_name(blob.name + ".incomplete")
    blob.parent.mkdir(parents=True, exist_ok=True)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with WeakFileLock(str(lock)):
        if blob.exists():  # another process finished it while we waited
            tracker.already_there(name, size)
            return
        for attempt in range(RETRIES + 1):
            have = partial.stat().st_size if partial.exists() else 0
            if size is not None and have > size:
                partial.unlink()
                have = 0
            tracker.start_file(name, size, have)
            if size is not None and have == size:
                break
            request_headers = dict(headers, **{"Accept-Encoding": "identity"})
            if have:
                request_headers["Range"] = f"bytes={have}-"
            try:
                with http_stream_backoff("GET", url, headers=request_headers, timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT,
                                         retry_on_exceptions=(), retry_on_status_codes=(408, 429, 500, 502, 503, 504)) as r:
                    hf_raise_for_status(r)
                    if have and r.status_code != 206:  # the server ignored the Range: start over
                        tracker.start_file(name, size, 0)
                        have = 0
                    with open(partial, "ab" if have else "wb") as out:
                        for chunk in r.iter_bytes():
                            out.write(chunk)
                            tracker.add(len(chunk))  # raises DownloadCancelled after the write
                break
            except (httpx2.TransportError, httpx2.RemoteProtocolError):
                if attempt == RETRIES:
                    raise
                _pause(tracker.cancel, min(0.5 * 2 ** attempt, 8))
                _check_cancel(tracker.cancel)
        got = partial.stat().st_size if partial.exists() else 0
        if size is not None and got != size:
            partial.unlink(missing_ok=True)
            raise OSError(f"{name}: received {got} bytes, expected {size}; try again")
        os.replace(partial, blob)
    tracker.end_file()


def _plan(repo_id: str, rev) -> Path | tuple[list[str] | None, list[str] | None]:
    """What DiffusionPipeline.download would fetch, as its (allow, ignore) patterns; or the
    snapshot folder when everything it needs is already cached."""
    from diffusers import DiffusionPipeline

    with _planning_snapshot_download():
        try:
            folder = DiffusionPipeline.download(repo_id, revision=rev)
        except _Planned as planned:
            return planned.kwargs.get("allow_patterns"), planned.kwargs.get("ignore_patterns")
    return Path(folder)


_planning = threading.local()
_plan_lock = threading.Lock()


class _Planned(Exception):
    def __init__(self, kwargs: dict) -> None:
        super().__init__("planned")
        self.kwargs = kwargs


@contextlib.contextmanager
def _planning_snapshot_download():
    """For this call only, the `snapshot_download` diffusers' pipeline module calls records
    the patterns instead of downloading, on this thread; cache-only calls and every other
    thread get the original function. The module's own function is back afterwards."""
    import diffusers.pipelines.pipeline_utils as pu

    with _plan_lock:  # one planner at a time, so each restores what it found
        original = pu.snapshot_download

        @functools.wraps(original)
        def snapshot_download(*args, **kwargs):
            if getattr(_planning, "active", False) and not kwargs.get("local_files_only"):
                raise _Planned(kwargs)
            return original(*args, **kwargs)

        pu.snapshot_download = snapshot_download
        _planning.active = True
        try:
            yield
        finally:
            _planning.active = False
            pu.snapshot_download = original


# ---------------------------------------------------------------- progress


class _Tracker:
    def __init__(self, files: list[tuple[str, int | None]], progress: ProgressFn | None,
                 cancel: threading.Event | None) -> None:
        self.progress = progress
        self.cancel = cancel
        self.total = sum(s or 0 for _, s in files)
        self.done = 0  # bytes of finished files, cached or downloaded
        self.file = files[0][0] if files else ""
        self.file_total: int | None = None
        self.file_done = 0
        self.transferred = 0  # bytes received by this call
        self.samples: deque[tuple[float, int]] = deque([(time.monotonic(), 0)])
        self.last_report = 0.0

    def resize(self, name: str, old: int | None, new: int) -> None:
        self.total += new - (old or 0)

    def already_there(self, name: str, size: int | None) -> None:
        self.file, self.file_total, self.file_done = name, size, 0
        self.done += size or 0
        self.report(force=True, finished_file=True)

    def start_file(self, name: str, size: int | None, have: int) -> None:
        self.file, self.file_total, self.file_done = name, size, have
        self.report(force=True)

    def add(self, n: int) -> None:
        self.file_done += n
        self.transferred += n
        self.report()
        if self.cancel is not None and self.cancel.is_set():
            raise DownloadCancelled(f"download cancelled during {self.file}")

    def end_file(self) -> None:
        self.done += self.file_done
        self.file_done = 0
        self.file_total = 0 if self.file_total is None else self.file_total
        self.report(force=True, finished_file=True)

    def finish(self) -> None:
        self.report(force=True, finished_file=True)

    def rate(self, now: float) -> float:
        samples = self.samples
        samples.append((now, self.transferred))
        while len(samples) > 2 and now - samples[1][0] > RATE_WINDOW_S:
            samples.popleft()
        t0, b0 = samples[0]
        return (self.transferred - b0) / (now - t0) if now > t0 else 0.0

    def report(self, force: bool = False, finished_file: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_report < REPORT_INTERVAL_S:
            return
        self.last_report = now
        if self.progress is None:
            return
        in_flight = 0 if finished_file else self.file_done
        file_done = self.file_total if finished_file and self.file_total is not None else self.file_done
        self.progress(DownloadProgress(self.file, file_done or 0, self.file_total, self.done + in_flight, self.total,
                                       self.rate(now)))
