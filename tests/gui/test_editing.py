"""Editing the project through the widgets: prompts, stages, size, strength advice."""
from __future__ import annotations

from PySide6.QtCore import Qt

from core import demo
from core.project import validate


def test_default_project_is_the_two_stage_demo(window):
    p = window.project
    assert p.prompt == "a red circle on a blue background"
    assert (p.width, p.height) == (64, 64)
    assert [s.model for s in p.stages] == [demo.BASE, demo.REFINER]
    assert window.windowTitle() == "Handoff — untitled"
    assert window.generate_button.isEnabled()


def test_prompt_edit_updates_project_and_title(window, qtbot):
    window.prompt_editor.prompt.clear()
    qtbot.keyClicks(window.prompt_editor.prompt, "a blue square")
    window.prompt_editor.negative.setPlainText("noise")
    assert window.project.prompt == "a blue square"
    assert window.project.negative_prompt == "noise"
    assert window.windowTitle() == "Handoff — untitled*"


def test_stage_prompt_override_and_suffix(window, qtbot):
    window.stage_list.list.setCurrentRow(1)
    fields = window.stage_list.editor.prompts
    fields.suffix.clear()
    qtbot.keyClicks(fields.suffix, "sharp edges")
    qtbot.keyClicks(fields.override, "a green star")
    stage = window.project.stages[1]
    assert stage.prompt_suffix == "sharp edges" and stage.prompt == "a green star"
    assert stage.effective_prompt(window.project.prompt) == "a green star, sharp edges"
    fields.override.clear()
    fields.override.textEdited.emit("")
    assert stage.prompt is None  # empty override: the project prompt shows through


def test_empty_prompt_is_reported_by_core_validation(window):
    window.prompt_editor.prompt.setPlainText("   ")
    assert not window.generate_button.isEnabled()
    assert "the prompt is empty" in window.problems.text()
    assert not window.generate()
    assert window.banner.isVisible()


def test_stage_add_duplicate_reorder_disable_remove(window, qtbot):
    stages = window.project.stages
    window.stage_list.list.setCurrentRow(1)
    qtbot.mouseClick(window.stage_list.add_button, Qt.LeftButton)
    assert len(stages) == 3 and stages[2].model == demo.REFINER and stages[2].handoff == "pixel"
    assert window.stage_list.list.currentRow() == 2
    window.stage_list.editor.steps.setValue(12)
    assert stages[2].steps == 12
    qtbot.mouseClick(window.stage_list.dup_button, Qt.LeftButton)
    assert len(stages) == 4 and stages[3].steps == 12 and stages[3] is not stages[2]
    window.stage_list.editor.steps.setValue(7)
    qtbot.mouseClick(window.stage_list.up_button, Qt.LeftButton)
    assert [s.steps for s in stages] == [20, 20, 7, 12]
    window.stage_list.set_enabled(2, False)
    assert not stages[2].enabled
    assert "7 steps" in window.stage_list.list.item(2).text()
    qtbot.mouseClick(window.stage_list.remove_button, Qt.LeftButton)
    assert len(stages) == 3
    validate(window.project)


def test_stage_editor_fields_write_the_stage(window):
    window.stage_list.list.setCurrentRow(1)
    ed = window.stage_list.editor
    ed.guidance.setValue(3.5)
    ed.own_seed.setChecked(True)
    ed.seed.setValue(42)
    ed.handoff.setCurrentIndex(ed.handoff.findData("pixel"))
    assert ed.strength.isVisibleTo(ed) and not ed.switch_at.isVisibleTo(ed)
    ed.strength.setValue(0.2)
    ed.strength.valueChanged.emit(0.2)
    ed.model.set_ref("")
    ed.model._commit("builtin:demo-base")
    s = window.project.stages[1]
    assert (s.guidance, s.seed, s.handoff, s.strength, s.model) == (3.5, 42, "pixel", 0.2, "builtin:demo-base")
    ed.own_seed.setChecked(False)
    assert s.seed is None
    ed.handoff.setCurrentIndex(ed.handoff.findData("ensemble"))
    assert ed.switch_at.isVisibleTo(ed) and not ed.strength.isVisibleTo(ed)


def test_first_stage_generates_and_hides_handoff(window):
    window.stage_list.list.setCurrentRow(0)
    ed = window.stage_list.editor
    assert not ed.handoff.isEnabled()
    assert "generates" in ed.handoff_note.text()


def test_resolution_presets_swap_and_snap(window):
    picker = window.resolution
    items = [picker.preset.itemText(i) for i in range(picker.preset.count())]
    assert items[0] == "64 × 64" and "128 × 128" in items and items[-1] == "Custom"
    picker.set_size(128, 64)
    assert (window.project.width, window.project.height) == (128, 64)
    picker.swap_sides()
    assert (window.project.width, window.project.height) == (64, 128)
    picker.width_spin.setValue(100)  # not a multiple of 8: snapped
    assert window.project.width == 96
    assert picker.preset.currentText() == "Custom"


def test_presets_for_a_1024_model():
    from core.model_info import ModelInfo
    from gui.resolution_picker import presets

    assert presets(ModelInfo(1024, 8, "sdxl")) == [(1024, 1024), (1152, 896), (896, 1152), (1024, 1536), (1536, 1024)]
    assert all(w % 16 == 0 and h % 16 == 0 for w, h in presets(ModelInfo(1328, 16, "qwen")))


def test_strength_advice_and_effective_steps(window):
    window.stage_list.list.setCurrentRow(1)
    ed = window.stage_list.editor
    ed.handoff.setCurrentIndex(ed.handoff.findData("pixel"))
    ed.strength.spin.setValue(0.6)
    slider = ed.strength
    assert "12 of 20 steps" in slider.hint.text()
    assert "Same family" in slider.hint.text()  # demo base and refiner are one family
    assert slider.warning.isVisibleTo(slider) and "drift" in slider.warning.text()
    slider.spin.setValue(0.2)
    assert not slider.warning.isVisibleTo(slider)
    assert "4 of 20 steps" in slider.hint.text()
    assert window.project.stages[1].strength == 0.2


def test_the_command_line_gives_the_sliders_advice(window, tmp_path, capsys):
    """core.strength speaks for both: `inspect` notes the warning the slider shows."""
    from core import project_file
    from core.cli import main

    window.stage_list.list.setCurrentRow(1)
    ed = window.stage_list.editor
    ed.handoff.setCurrentIndex(ed.handoff.findData("pixel"))
    for value, words in ((0.6, "drift"), (0.04, "runs no step")):
        ed.strength.spin.setValue(value)
        warning = ed.strength.warning.text()
        assert words in warning
        path = project_file.save(tmp_path / "p.handoff", project_file.ProjectDocument(window.project.copy()))
        assert main(["inspect", str(path)]) == 0
        notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("handoff: note:")]
        assert notes == [f"handoff: note: stage 2 ({window.project.stages[1].name}): {warning}"]


def test_seeds_past_32_bits_are_shown_typed_and_stepped(window, qtbot):
    """ComfyUI's and A1111's seeds are 64-bit (to 2**64 - 1); QSpinBox stops at 2**31 - 1."""
    from core.defaults import default_project
    from core.project import MAX_SEED

    assert MAX_SEED == 2**64 - 1
    project = default_project()
    project.seed = 2**63 + 5
    window.load_project(project, None, [])
    assert window.seed.text() == str(2**63 + 5) and window.project.seed == 2**63 + 5
    window.seed.lineEdit().clear()
    qtbot.keyClicks(window.seed.lineEdit(), "18446744073709551615")
    assert window.project.seed == MAX_SEED
    qtbot.keyClicks(window.seed.lineEdit(), "9")  # past the maximum: refused, nothing changes
    assert window.seed.text() == "18446744073709551615" and window.project.seed == MAX_SEED
    window.seed.lineEdit().clear()
    qtbot.keyClicks(window.seed.lineEdit(), "-1")  # no sign: refused
    assert window.project.seed == 1 and window.seed.text() == "1"
    window.seed.setValue(MAX_SEED)
    window.seed.stepBy(1)
    assert window.project.seed == MAX_SEED
    window.seed.stepBy(-2)
    assert window.project.seed == MAX_SEED - 2 and window.seed.text() == str(MAX_SEED - 2)
    # The whole number fits in the field as the window lays it out.
    assert window.seed.width() >= window.seed.fontMetrics().horizontalAdvance(str(MAX_SEED))
    window.stage_list.list.setCurrentRow(1)
    ed = window.stage_list.editor
    ed.own_seed.setChecked(True)
    ed.seed.setValue(2**64 - 7)
    assert window.project.stages[1].seed == 2**64 - 7
    assert ed.seed.text() == str(2**64 - 7)


def test_scheduler_choice_fits_the_model_and_is_kept(window, qtbot, tmp_path, answers):
    window.stage_list.list.setCurrentRow(0)
    ed = window.stage_list.editor
    names = [ed.scheduler.itemText(i) for i in range(ed.scheduler.count())]
    # The demo is SDXL-shaped (noise prediction): no flow-matching sampler is offered.
    assert names[0] == "model default" and "DPM++ 2M Karras" in names and "Flow Euler" not in names
    ed.scheduler.setCurrentIndex(ed.scheduler.findText("DPM++ 2M Karras"))
    assert window.project.stages[0].scheduler == "DPM++ 2M Karras"
    path = tmp_path / "sched.handoff"
    answers.save_path = path
    assert window.save()
    window.new_project()
    window.open_path(path)
    window.stage_list.list.setCurrentRow(0)
    assert window.project.stages[0].scheduler == "DPM++ 2M Karras"
    assert window.stage_list.editor.scheduler.currentText() == "DPM++ 2M Karras"
    ed.scheduler.setCurrentIndex(0)
    assert window.project.stages[0].scheduler is None


def test_upscale_shows_for_refine_stages_and_sets_the_output_size(window):
    window.stage_list.list.setCurrentRow(0)
    ed = window.stage_list.editor
    assert not ed.upscale.isVisibleTo(window)  # the base generates at the project size
    window.stage_list.list.setCurrentRow(1)
    ed.handoff.setCurrentIndex(ed.handoff.findData("pixel"))
    assert ed.upscale.isVisibleTo(window)
    ed.upscale.setValue(2.0)
    stage = window.project.stages[1]
    assert stage.upscale == 2.0 and "upscale ×2" in window.stage_list.list.item(1).text()
    assert "output 128×128" in window.resolution.note.text()
    assert not window.problems_now()
    ed.handoff.setCurrentIndex(ed.handoff.findData("ensemble"))
    assert not ed.upscale.isVisibleTo(window)
    assert stage.upscale == 1.0 and not window.problems_now()  # an ensemble keeps the size


def test_a_prompt_the_text_encoder_cuts_is_noticed_on_the_stage_before_the_run(window):
    editor = window.stage_list.editor
    window.stage_list.list.setCurrentRow(1)  # the refiner: the project prompt plus its detail terms
    assert not editor.prompt_fit.isVisible()
    # 13 tokens of prompt: the base reads them all; the refiner's detail terms fall past its 16.
    window.prompt_editor.prompt.setPlainText("a big red circle on a dark blue background with a green star")
    assert editor.prompt_fit.isVisible()
    assert editor.prompt_fit.text() == "prompt is 19 tokens; CLIP reads 16: “sharp detailed texture” are cut"
    window.stage_list.list.setCurrentRow(0)
    assert not editor.prompt_fit.isVisible()
    # The stage's own prompt counts instead of the project's.
    window.stage_list.list.setCurrentRow(1)
    editor.prompts.override.setText("a red circle")
    editor.prompts.override.textEdited.emit("a red circle")
    assert not editor.prompt_fit.isVisible()
    editor.prompts.override.clear()
    editor.prompts.override.textEdited.emit("")
    assert "“sharp detailed texture” are cut" in editor.prompt_fit.text()
    # A disabled stage does not run: nothing to say. Nor once the prompt is short again.
    window.stage_list.set_enabled(1, False)
    assert not editor.prompt_fit.isVisible()
    window.stage_list.set_enabled(1, True)
    assert editor.prompt_fit.isVisible()
    window.prompt_editor.prompt.setPlainText("a red circle")
    assert not editor.prompt_fit.isVisible()
    assert window.generate_button.isEnabled()  # a notice, not a problem: the job still runs
