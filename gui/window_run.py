"""Run control: Generate and Cancel, and the engine thread's events shown as they come
(progress, previews, peaks, the log), and a candidate picked again."""
from __future__ import annotations

from datetime import datetime


from core import paths
from core.document import Run
from core.events import (
    CandidatesScored, JobCancelled, JobFailed, JobFinished, JobStarted, Loading, Notice, StageFinished,
    StageImageUpdated, StagePreview, StageStarted, Step,
)
from core.project import Project
from gui.images import pil_to_qimage
from gui.run_progress import reset_bars
from gui.timing_table import describe_finish


TERMINAL = (JobFinished, JobFailed, JobCancelled)


class RunControlMixin:
    """Mixed into MainWindow (gui/main_window.py): the runner, the progress widgets and the log."""

    def reset_progress(self) -> None:
        """Bars and peaks that say nothing about a run: a new project, a preset, a failed run
        must not keep showing the last run's stage and peaks."""
        reset_bars(self.stage_progress, self.overall_progress, self.step_rate)
        self.gauge.clear_peaks()

    def generate(self) -> bool:
        """Run the project, or queue it while a job runs."""
        problems = self._validate()
        if problems:
            self.show_error("The job cannot start:\n" + "\n".join(f"• {p}" for p in problems))
            return False
        return self.tuning.submit()

    def start_job(self, project: Project, from_stage: int | None = None) -> bool:
        self.banner.hide()
        self.reset_progress()
        self.document.begin_run(project)
        if not self.runner.ready:
            self.statusBar().showMessage("Waiting for torch to load…")
        started = self.runner.start(project, paths.outputs_dir(), from_stage)
        if started:
            self.tuning.queue_panel.show_running(project, from_stage)
        return started

    def cancel(self) -> None:
        if self.runner.busy:
            self.runner.cancel()
            self.statusBar().showMessage("Cancelling…")

    def _on_busy(self, busy: bool) -> None:
        self.cancel_button.setEnabled(busy)
        self.cancel_action.setEnabled(busy)
        self._validate()

    def _on_torch_ready(self, text: str) -> None:
        self.torch_status.setText(text.split(" (")[0])
        self.torch_status.setToolTip(text)
        if not self.runner.busy:
            self.statusBar().showMessage(text.splitlines()[-1])  # what it runs on (core.devices.runtime_summary)
        self.log_line(text)

    def _on_torch_failed(self, text: str) -> None:
        self.torch_status.setText("torch unavailable")
        self.show_error(text)

    def log_line(self, text: str) -> None:
        self.log.appendPlainText(f"{datetime.now():%H:%M:%S}  {text}")

    def on_event(self, ev) -> None:
        """Every engine event lands here, on the GUI thread: the view updates, and the
        document records it (which may tell the views of a new run or stage)."""
        handler = self._on_engine_event.get(type(ev))
        if handler is not None:
            handler(ev)
        self.document.record(ev)
        if isinstance(ev, TERMINAL):
            self.jobEnded.emit(ev)

    def _candidates_scored(self, ev: CandidatesScored) -> None:
        self._candidates_of = ev.project
        if self.tabs.indexOf(self.candidates) < 0:
            self.tabs.addTab(self.candidates, "Candidates")
        self.candidates.show_candidates(ev)
        self.tabs.setCurrentWidget(self.candidates)
        scores = ", ".join(f"seed {c.seed}: {c.score:.3f}" for c in ev.candidates)
        self.log_line(f"candidates scored by {ev.scorer}: {scores}; continuing with seed {ev.kept[0]}")

    def _repick(self, seed: int) -> None:
        """Another candidate continues: a re-run from stage 2 (its stage 1 is stored by seed)."""
        from core.candidates import repick

        if self._candidates_of is None:
            return
        project, from_stage = repick(self._candidates_of, seed)
        if from_stage is None:
            self.statusBar().showMessage(f"seed {seed}'s image is the final one: nothing to re-run", 8000)
            return
        if not self.start_job(project, from_stage):
            self.statusBar().showMessage("A job is running: pick again when it ends", 8000)

    def _job_started(self, ev: JobStarted) -> None:
        self.log_line(f"job {ev.job_id}: {ev.stage_count} stage(s) on {ev.device}")
        self.statusBar().showMessage(f"Running {ev.stage_count} stage(s) on {ev.device}")
        self.gauge.start_run()

    def _stage_started(self, ev: StageStarted) -> None:
        how = ev.handoff + (f" ({ev.note})" if ev.note else "")
        self.statusBar().showMessage(f"{ev.label}: {ev.model}, {how}")
        self.log_line(f"{ev.label}: {ev.model}, {how}")
        self.stage_progress.setValue(0)
        self.stage_progress.setFormat(f"{ev.label}: starting")
        self.step_rate.start(ev.label)

    def _loading(self, ev: Loading) -> None:
        self.statusBar().showMessage(ev.what)
        self.log_line(ev.what)

    def _step(self, ev: Step) -> None:
        self.stage_progress.setMaximum(max(1, ev.total))
        self.stage_progress.setValue(ev.step)
        self.stage_progress.setFormat(self.step_rate.text(ev.step, ev.total))
        self.overall_progress.setValue(int(ev.overall * 1000))

    def _stage_preview(self, ev: StagePreview) -> None:
        # The preview is a PIL image made on the engine thread; the QImage is made here.
        self.compare.show_live(pil_to_qimage(ev.image), f"{self.step_rate.label}, step {ev.step}")

    def _stage_finished(self, ev: StageFinished) -> None:
        self.gauge.add_finished(ev)
        self.log_line(describe_finish(ev))

    def _stage_image_updated(self, ev: StageImageUpdated) -> None:
        if ev.decode_seconds:
            self.log_line(f"{ev.label}: decoded in {ev.decode_seconds:.2f} s → {ev.path}")
        if ev.drift is not None:
            self.log_line(f"{ev.label}: drift against that decode: {ev.drift.label()}")

    def _notice(self, ev: Notice) -> None:
        self.log_line(ev.message)
        self.statusBar().showMessage(ev.message, 8000)

    def _job_finished(self, ev: JobFinished) -> None:
        self.overall_progress.setValue(1000)
        self.statusBar().showMessage(f"Done in {ev.seconds:.1f} s", 15000)
        self.log_line(f"finished in {ev.seconds:.2f} s")

    def _job_failed(self, ev: JobFailed) -> None:
        self.reset_progress()
        self.stage_progress.setFormat("failed")
        self.show_error(f"Generation failed: {ev.message}")
        self.log_line(f"failed: {ev.message}")
        if ev.detail:
            self.log_line(ev.detail)

    def _job_cancelled(self, ev: JobCancelled) -> None:
        where = f" during stage {ev.at_stage + 1}" if ev.at_stage is not None else ""
        self.reset_progress()
        self.stage_progress.setFormat("cancelled")
        self.statusBar().showMessage(f"Cancelled{where}", 10000)
        self.log_line(f"cancelled{where}")

    def _on_run_ended(self, run: Run) -> None:
        self.timings.add_run(run.label, run.stages, run.seconds)
        self.compare.stage_added(run)
        self.autosave()
