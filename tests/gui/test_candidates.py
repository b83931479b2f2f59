"""The window's candidate strip: a job with candidates shows each first-stage candidate with
its score, the best one checked, and clicking another re-runs the chain from stage 2 with it."""
from __future__ import annotations

from conftest import JOB_TIMEOUT_MS
from core.events import JobFinished


def test_the_strip_shows_scored_candidates_and_a_click_continues_with_another(window, qtbot, fast, tmp_path):
    from tests.tiny_scorers import build_clip

    fast(window)
    clip = build_clip(tmp_path / "clip", projection=32)
    project = window.project
    project.candidates, project.scorer, project.keep = 2, f"clip:{clip}", 1
    from core.candidates import candidate_seeds
    from core.metadata import read_recipe

    seeds = candidate_seeds(project)
    assert not window.candidates.isVisible()
    canvas = window.compare.canvas

    def where():
        return canvas.mapTo(window, canvas.rect().topLeft()), canvas.size(), window.splitters["viewer"].sizes()

    before = where()
    with qtbot.waitSignal(window.jobEnded, timeout=JOB_TIMEOUT_MS) as blocker:
        assert window.generate()
    assert isinstance(blocker.args[0], JobFinished), getattr(blocker.args[0], "message", "")
    strip = window.candidates
    assert strip.isVisible() and sorted(strip.buttons) == seeds
    qtbot.wait(10)
    assert where() == before  # a tab under the viewer: the image did not move down mid-run
    assert all("score " in b.text() for b in strip.buttons.values())
    (kept,) = [s for s, b in strip.buttons.items() if b.isChecked()]
    first = read_recipe(blocker.args[0].stages[-1].path).project
    assert first.seed == kept or first.stages[0].seed == kept
    other = next(s for s in seeds if s != kept)
    with qtbot.waitSignal(window.jobEnded, timeout=JOB_TIMEOUT_MS) as blocker:
        strip.buttons[other].click()
    finished = blocker.args[0]
    assert isinstance(finished, JobFinished), getattr(finished, "message", "")
    assert [s.reused for s in finished.stages] == [True, False]  # only stage 2 ran again
    assert strip.buttons[other].isChecked() and not strip.buttons[kept].isChecked()
    again = read_recipe(finished.stages[-1].path).project
    assert again.seed == other or again.stages[0].seed == other
