"""The stage editor's Refine tile box: where a stage refines, it sets the stage's refine_tile."""
from __future__ import annotations


def test_refine_tile_box_sets_a_refining_stage_and_hides_where_none_can_be(window):
    ed = window.stage_list.editor
    window.stage_list.list.setCurrentRow(0)
    assert not ed.refine_tile.isVisibleTo(window)  # the base generates: nothing to tile
    window.stage_list.list.setCurrentRow(1)
    ed.handoff.setCurrentIndex(ed.handoff.findData("pixel"))
    assert ed.refine_tile.isVisibleTo(window) and ed.refine_tile.specialValueText() == "off"
    ed.refine_tile.setValue(512)
    stage = window.project.stages[1]
    assert stage.refine_tile == 512
    assert "512 px tiles" in window.stage_list.list.item(1).text()
    # Loaded back from the stage when it is shown again.
    window.stage_list.list.setCurrentRow(0)
    window.stage_list.list.setCurrentRow(1)
    assert ed.refine_tile.value() == 512
    # An ensemble is not tiled: the box hides and holds no value.
    ed.handoff.setCurrentIndex(ed.handoff.findData("ensemble"))
    assert not ed.refine_tile.isVisibleTo(window) and stage.refine_tile == 0
