"""Malformed variants of every format, made from the real samples by Hypothesis: each one
restores a project or raises ReadError with a message naming the file; nothing else ever
escapes. Damaged images and project files say so in one line too."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import ReadError
from core.interop.detect import from_chunks
from core.metadata import read_recipe
from tests.interop_helpers import no_models, png_with, sample

SAMPLES = {
    "a1111": ({"parameters": "a1111/landscape-hires-latent-adetailer.txt"}, {}),
    "comfyui-api": ({"prompt": "comfyui/default_graph_sdxl1_0.json"}, {}),
    "comfyui-ui": ({"workflow": "comfyui/img2img_workflow.json"}, {}),
    "invokeai": ({"invokeai_metadata": "invokeai/invokeai_metadata-3.3.json"}, {}),
    "sd-metadata": ({"sd-metadata": "invokeai/sd-metadata-2.2.4.json"}, {}),
    "dream": ({"Dream": "invokeai/dream.txt"}, {}),
    "fooocus": ({"parameters": "fooocus/meta.json"}, {"fooocus_scheme": "fooocus"}),
    "fooocus-legacy": ({"parameters": "fooocus/meta-legacy.json"}, {}),
}
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8)


def _chunks(name: str) -> dict[str, str]:
    if name == "novelai":
        return json.loads(sample("novelai/novelai1-chunks.json"))
    files, extra = SAMPLES[name]
    return {**{key: sample(path) for key, path in files.items()}, **extra}


def _check(chunks: dict[str, str]) -> None:
    try:
        imported = from_chunks(chunks, "broken.png", (64, 64), lookup=no_models())
    except ReadError as exc:
        assert str(exc).startswith("broken.png"), str(exc)
        assert "\n" not in str(exc)
        return
    if imported is None:
        return
    p = imported.project
    json.dumps(p.to_dict())  # plain data, of the types the dataclasses declare
    assert isinstance(p.width, int) and isinstance(p.seed, int) and 0 <= p.seed < 2**64
    for s in p.stages:
        assert isinstance(s.steps, int) and isinstance(s.guidance, float) and isinstance(s.model, str)
        assert isinstance(s.upscale, float) and (s.scheduler is None or isinstance(s.scheduler, str))


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


def _replaced(value, path, new):
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replaced(value[head], rest, new)}
    out = list(value)
    out[head] = _replaced(value[head], rest, new)
    return out


FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@pytest.mark.parametrize("name", sorted(SAMPLES) + ["novelai"])
@given(data=st.data())
def test_text_damage(name, data):
    chunks = _chunks(name)
    key = data.draw(st.sampled_from(sorted(chunks)))
    text = chunks[key]
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, min(len(text), start + 40)))
    junk = data.draw(st.text(max_size=20))
    _check({**chunks, key: text[:start] + junk + text[end:]})


@FAST
@pytest.mark.parametrize("name", ["comfyui-api", "comfyui-ui", "invokeai", "sd-metadata", "fooocus", "fooocus-legacy",
                                  "novelai"])
@given(data=st.data())
def test_json_values_of_the_wrong_shape(name, data):
    chunks = _chunks(name)
    key = "Comment" if name == "novelai" else next(k for k in chunks if k != "fooocus_scheme")
    value = json.loads(chunks[key])
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(list(_paths(value))))
        value = _replaced(value, path, data.draw(JSON_VALUES))
    _check({**chunks, key: json.dumps(value)})


def test_a_file_that_is_not_an_image(tmp_path):
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(ReadError, match="fake.png"):
        read_recipe(fake)


def test_a_damaged_handoff_chunk(tmp_path):
    path = png_with(tmp_path / "h.png", {"handoff": '{"recipe": {"stages": [{"steps": 3}]}}'})
    with pytest.raises(ReadError, match="h.png: the `handoff` chunk's recipe: stage 1: no model given"):
        read_recipe(path)
    path = png_with(tmp_path / "j.png", {"handoff": "{not json"})
    with pytest.raises(ReadError, match="j.png: the `handoff` chunk is not JSON"):
        read_recipe(path)


def test_inspect_says_one_line_for_what_it_cannot_read(tmp_path, capsys):
    from core.cli import EXIT_USAGE, main

    bad = tmp_path / "broken.json"
    bad.write_text('{"stages": 7}')
    assert main(["inspect", str(bad)]) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err.startswith("handoff: broken.json") and "\n" not in err
    plain = png_with(tmp_path / "plain.png", {})
    assert main(["inspect", str(plain)]) == EXIT_USAGE
    assert "carries no recipe" in capsys.readouterr().err
    comfy = png_with(tmp_path / "c.png", {"prompt": '{"3": {"class_type": "KSampler", "inputs": {"steps": "many"}}}'})
    assert main(["inspect", str(comfy)]) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err.startswith("handoff: c.png: ComfyUI prompt") and "\n" not in err
