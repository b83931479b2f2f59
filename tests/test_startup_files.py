"""Handoff's own files, read at start as outside files: the job queue (queue.json), the
settings (settings.json: the window's section and the model library's list), and the
autosave a crash leaves (autosave.handoff and autosave.json). Each is damaged the ways
a disk, an editor or another program damages it: a null, a number, a word where a number
goes, nesting 100,000 deep, bytes that are not UTF-8, JSON cut short, a folder where the
file should be. After each the loader returns what could be read, never raises, keeps
the file as it was as NAME.damaged, and says so in one line, once.

The window starting over each of these is tests/gui/test_damaged_home.py."""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from core import checked, paths, settings_file
from core.errors import ReadError
from core.project import Project, Stage

DEEP = b"[" * 100_000 + b"]" * 100_000


def project(seed: int) -> Project:
    return Project(prompt="a cat", width=32, height=32, seed=seed, stages=[Stage("m"), Stage("m", handoff="pixel")])


def place(path: Path, content: bytes | None) -> None:
    """The damaged file: bytes, or a folder (None) where the file should be."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if content is None:
        (path / "inside").mkdir(parents=True)  # not empty: a folder that cannot just be replaced
    else:
        path.write_bytes(content)


def kept(path: Path, content: bytes | None) -> bool:
    """The file as it was, kept beside it as NAME.damaged."""
    damaged = path.with_name(path.name + checked.DAMAGED_SUFFIX)
    return (damaged / "inside").is_dir() if content is None else damaged.read_bytes() == content


def one_line(text: str | None, *names: str) -> str:
    assert text and "\n" not in text, f"not one line: {text!r}"
    assert all(n in text for n in names), text
    return text


# ---------------------------------------------------------------- queue.json

GOOD_JOB = {"id": "good0001", "title": "", "added": "", "from_stage": 1, "project": project(1).to_dict()}


def queue_bytes(*jobs) -> bytes:
    return json.dumps({"version": 1, "jobs": list(jobs)}).encode()


QUEUE_CASES = {  # name: (the file, how many good jobs it holds, what the message says)
    "jobs null": (b'{"version": 1, "jobs": null}', 0, "jobs must be a list, not null"),
    "jobs 5": (b'{"version": 1, "jobs": 5}', 0, "jobs must be a list, not 5"),
    "from_stage two": (queue_bytes(GOOD_JOB, dict(GOOD_JOB, id="bad00002", from_stage="two")), 1,
                       "job 2: from_stage must be an integer, not 'two'"),
    "from_stage past the stages": (queue_bytes(dict(GOOD_JOB, from_stage=7), GOOD_JOB), 1,
                                   "job 1: from_stage 7 is not a stage of its project"),
    "a project field wrong": (queue_bytes(GOOD_JOB, dict(GOOD_JOB, project=dict(project(2).to_dict(), seed=None))), 1,
                              "job 2: seed must be an integer, not null"),
    "nested 100,000 deep": (b'{"version": 1, "jobs": ' + DEEP + b"}", 0, "nested more than 64 levels deep"),
    "nested 70 deep": (b'{"jobs": [' + b"[" * 70 + b"]" * 70 + b"]}", 0, "nested more than 64 levels deep"),
    "not UTF-8": (b'{"jobs": [\xff\xfe]}', 0, "queue.json is not text"),
    "cut short": (queue_bytes(GOOD_JOB)[:200], 0, "queue.json is not valid JSON"),
    "a folder": (None, 0, "queue.json cannot be read"),
}


@pytest.mark.parametrize("case", QUEUE_CASES)
def test_a_damaged_queue_starts_with_the_good_jobs_keeps_the_file_and_says_so_once(case):
    from core.job_queue import JobQueue, queue_file

    content, good, says = QUEUE_CASES[case]
    place(queue_file(), content)
    q = JobQueue.load()
    one_line(q.problem, "queue.json", says, "kept as queue.json.damaged")
    assert [j.id for j in q.jobs] == ["good0001"] * good
    assert kept(queue_file(), content)
    again = JobQueue.load()  # the next start: the good jobs, and nothing more to say
    assert again.problem is None and [j.id for j in again.jobs] == ["good0001"] * good
    again.add(project(3))  # and the queue saves again (no folder or damaged file in the way)
    assert len(JobQueue.load()) == good + 1


def test_a_queue_whose_damaged_file_cannot_be_moved_aside_loses_nothing(handoff_home):
    from core.job_queue import JobQueue, queue_file

    place(queue_file(), queue_bytes(GOOD_JOB, dict(GOOD_JOB, from_stage="two")))
    place(queue_file().with_name("queue.json.damaged"), None)  # earlier damage, a folder: the next name
    q = JobQueue.load()
    assert "queue.json is kept as queue.json.damaged.1" in q.problem and len(q) == 1
    assert queue_file().with_name("queue.json.damaged.1").read_bytes() == queue_bytes(GOOD_JOB, dict(GOOD_JOB, from_stage="two"))


# ---------------------------------------------------------------- settings.json: the window's section

GOOD_MODELS = {"schema_version": 1, "hidden_presets": ["org/x"],
               "entries": [{"name": "mine", "ref": "/models/mine", "source": "user", "family": "sdxl",
                            "kind": "pipeline", "note": ""}]}
GOOD_GUI = {"recent_files": ["/a.handoff"], "autosave_seconds": 60}

WHOLE_FILE_CASES = {  # the file as a whole: every section reads as defaults
    "the file null": (b"null", "settings.json must be a table of fields, not null"),
    "the file 5": (b"5", "settings.json must be a table of fields, not 5"),
    "nested 100,000 deep": (b'{"gui": ' + DEEP + b"}", "nested more than 64 levels deep"),
    "not UTF-8": (b'{"gui": {"recent_files": ["\xff\xfe"]}}', "settings.json is not text"),
    "cut short": (json.dumps({"gui": GOOD_GUI, "models": GOOD_MODELS}).encode()[:60], "settings.json is not valid JSON"),
    "a folder": (None, "settings.json cannot be read"),
}
GUI_CASES = {  # one section wrong: the rest of the file stays in use
    "gui null": ({"gui": None}, None),  # null is "not set": defaults, nothing to say
    "gui 5": ({"gui": 5}, "gui: must be a table of fields, not 5"),
    "recent_files 5": ({"gui": dict(GOOD_GUI, recent_files=5)}, "recent_files must be a list of text, not 5"),
    "autosave_seconds two": ({"gui": dict(GOOD_GUI, autosave_seconds="two")}, "autosave_seconds must be from 5 to 3600, not 'two'"),
    "last_dir with a NUL": ({"gui": dict(GOOD_GUI, last_dir="/a\0b")}, "last_dir is not a folder"),
    "geometry not base64": ({"gui": dict(GOOD_GUI, window_geometry="é")}, "window_geometry is not a saved geometry"),
    "splitters 5": ({"gui": dict(GOOD_GUI, splitters=5)}, "splitters must be a table of lists of sizes, not 5"),
    "a splitter null": ({"gui": dict(GOOD_GUI, splitters={"main": None, "left": [1, 2]})},
                        "splitters: main must be a list of sizes, not null"),
}


@pytest.mark.parametrize("case", WHOLE_FILE_CASES)
def test_a_damaged_settings_file_gives_defaults_keeps_the_file_and_says_so_once(case):
    from core.model_library import ModelLibrary
    from gui.settings import Settings

    content, says = WHOLE_FILE_CASES[case]
    place(paths.settings_file(), content)
    s, lib = Settings.load(), ModelLibrary.load()
    assert s.recent_files == [] and s.autosave_seconds == 60 and lib.entries == []
    one_line(settings_file.take_problem(), says, "using defaults", "settings.json is kept as settings.json.damaged")
    assert settings_file.take_problem() is None, "said once"
    assert kept(paths.settings_file(), content)
    s.add_recent_file("/b.handoff")
    s.save()  # the next save writes a good file, with no folder in the way
    assert Settings.load().recent_files == [str(Path("/b.handoff").resolve())] and settings_file.take_problem() is None


@pytest.mark.parametrize("case", GUI_CASES)
def test_a_wrong_gui_section_keeps_the_good_values_and_the_other_sections(case):
    from core.model_library import ModelLibrary
    from gui.settings import Settings

    doc, says = GUI_CASES[case]
    content = json.dumps(dict(doc, models=GOOD_MODELS)).encode()
    place(paths.settings_file(), content)
    s = Settings.load()
    assert s.autosave_seconds == 60
    if says is None:
        assert settings_file.take_problem() is None and not paths.settings_file().with_name("settings.json.damaged").exists()
        return
    one_line(settings_file.take_problem(), "settings.json: gui: ", says, "settings.json is kept as settings.json.damaged")
    assert kept(paths.settings_file(), content)
    if isinstance(doc["gui"], dict):
        assert s.recent_files == ["/a.handoff"] or "recent_files" in says, "the good values are kept"
        assert s.splitters == ({"left": [1, 2]} if case == "a splitter null" else {})
    assert [e.ref for e in ModelLibrary.load().entries] == ["/models/mine"], "the library's section is untouched"
    assert Settings.load() == s and settings_file.take_problem() is None, "written back: nothing more to say"


# ---------------------------------------------------------------- settings.json: the model library's list

BAD_ENTRY = dict(GOOD_MODELS["entries"][0], ref="/models/bad")
LIBRARY_CASES = {
    "entries null": ({"models": dict(GOOD_MODELS, entries=None)}, 0, "entries must be a list, not null"),
    "models 5": ({"models": 5}, 0, "models: the section must be a table of fields, not 5"),
    "an entry's source two": ({"models": dict(GOOD_MODELS, entries=GOOD_MODELS["entries"] + [dict(BAD_ENTRY, source="two")])},
                              1, "entries[2]: source 'two' is not one of"),
    "an entry's ref 5": ({"models": dict(GOOD_MODELS, entries=[dict(BAD_ENTRY, ref=5)] + GOOD_MODELS["entries"])},
                         1, "entries[1]: ref must be text, not 5"),
    "a hidden preset null": ({"models": dict(GOOD_MODELS, hidden_presets=[None, "org/x"])}, 1,
                             "hidden_presets[1] must be text, not null"),
}


@pytest.mark.parametrize("case", LIBRARY_CASES)
def test_a_damaged_library_list_keeps_the_good_entries_and_the_window_settings(case):
    from core.model_library import ModelLibrary
    from gui.settings import Settings

    doc, good, says = LIBRARY_CASES[case]
    content = json.dumps(dict(doc, gui=GOOD_GUI)).encode()
    place(paths.settings_file(), content)
    lib = ModelLibrary.load()
    assert [e.ref for e in lib.entries] == ["/models/mine"] * good
    one_line(settings_file.take_problem(), "settings.json: models: ", says, "settings.json is kept as settings.json.damaged")
    assert kept(paths.settings_file(), content)
    assert Settings.load().recent_files == ["/a.handoff"], "the window's section is untouched"
    assert ModelLibrary.load() == lib and settings_file.take_problem() is None, "written back: nothing more to say"


def test_two_damaged_sections_keep_the_original_not_the_first_repair():
    from core.model_library import ModelLibrary
    from gui.settings import Settings

    content = json.dumps({"gui": dict(GOOD_GUI, autosave_seconds="two"), "models": 5}).encode()
    place(paths.settings_file(), content)
    Settings.load(), ModelLibrary.load()
    text = one_line(settings_file.take_problem(), "gui: autosave_seconds", "models: the section")
    assert "kept already" in text and kept(paths.settings_file(), content)


# ---------------------------------------------------------------- the autosave a crash leaves


def _autosave() -> bytes:
    from core.document import Document, autosave_file

    d = Document(project(4))
    d.write_autosave()
    return autosave_file().read_bytes()


def _with_manifest(change) -> bytes:
    """The autosave with its project.json changed by `change` (a function of the manifest)."""
    src = zipfile.ZipFile(io.BytesIO(_autosave()))
    manifest = json.loads(src.read("project.json"))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        data = change(manifest)
        z.writestr("project.json", data if isinstance(data, bytes) else json.dumps(data))
    return out.getvalue()


AUTOSAVE_CASES = {
    "project null": (lambda: _with_manifest(lambda m: dict(m, project=None)), "the project must be a table of fields, not null"),
    "stages 5": (lambda: _with_manifest(lambda m: dict(m, project=dict(m["project"], stages=5))), "stages must be a list, not 5"),
    "steps two": (lambda: _with_manifest(lambda m: {**m, "project": {**m["project"], "stages": [
        dict(m["project"]["stages"][0], steps="two")]}}), "stage 1: steps must be an integer, not 'two'"),
    "nested 100,000 deep": (lambda: _with_manifest(lambda m: b'{"format": "handoff-project", "project": ' + DEEP + b"}"),
                            "nested more than 64 levels deep"),
    "not UTF-8": (lambda: _with_manifest(lambda m: b'{"format": "\xff\xfe"}'), "project.json is not text"),
    "cut short": (lambda: _autosave()[:150], "autosave.handoff"),
    "a folder": (lambda: None, "autosave.handoff"),
}


@pytest.mark.parametrize("case", AUTOSAVE_CASES)
def test_a_damaged_autosave_is_kept_aside_and_said_in_one_line(case):
    from core import document

    make, says = AUTOSAVE_CASES[case]
    content = make()
    place(document.autosave_file(), content)
    with pytest.raises(ReadError) as info:
        document.read_autosave()
    one_line(str(info.value), says, "autosave.handoff is kept as autosave.handoff.damaged")
    assert kept(document.autosave_file(), content)
    document.Document(project(5)).write_autosave()  # the next autosave is written, over nothing
    assert document.read_autosave().project.seed == 5


@pytest.mark.parametrize("meta, says", [(b"null", "autosave.json must be a table of fields, not null"),
                                        (b'{"source": 5}', "autosave.json: source must be text, not 5"),
                                        (b'{"source": ' + DEEP + b"}", "nested more than 64 levels deep"),
                                        (b'{"source": "\xff"}', "autosave.json is not text"),
                                        (b'{"source": "/a.hand', "autosave.json is not valid JSON"),
                                        (None, "autosave.json cannot be read")])
def test_a_damaged_autosave_note_still_recovers_the_project(meta, says):
    from core import document

    _autosave()  # the project and its note
    document._autosave_meta().unlink()
    place(document._autosave_meta(), meta)
    recovered = document.read_autosave()
    assert recovered.project.seed == 4 and recovered.source is None
    one_line(recovered.problem, says, "autosave.json is kept as autosave.json.damaged")
    assert kept(document._autosave_meta(), meta)


def test_a_folder_where_the_lock_or_the_autosave_should_be_is_moved_aside():
    from core import document

    place(document._lock_file(), None)
    assert document.begin_session() is False  # no autosave: nothing to offer
    assert document._lock_file().is_file() and kept(document._lock_file(), None)
    document.end_session()
    place(document.autosave_file(), None)
    assert document.begin_session() is False and kept(document.autosave_file(), None)
    document.Document(project(6)).write_autosave()  # autosaves are written again
    assert document.read_autosave().project.seed == 6
    document.end_session()


# ---------------------------------------------------------------- the nesting cap, shared by every reader


def test_every_json_reader_refuses_nesting_past_the_cap(tmp_path):
    ok = b"[" * checked.MAX_JSON_DEPTH + b"]" * checked.MAX_JSON_DEPTH
    assert checked.depth(checked.parse_json(ok, "x")) == checked.MAX_JSON_DEPTH
    for deep in (b"[" + ok + b"]", b'{"a": ' + ok.replace(b"[]", b"[{}]", 1) + b"}", DEEP):
        with pytest.raises(ReadError, match="^x is nested more than 64 levels deep"):
            checked.parse_json(deep, "x")


def test_the_command_line_says_a_damaged_settings_file_once(tmp_path, capsys):
    """`inspect` of an Automatic1111 PNG looks its model up in the library: the damaged
    library list is kept aside and said in one `handoff: note:` line."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    from core.cli import main

    info = PngInfo()
    info.add_text("parameters", "a cat\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 64x64, Model: foo")
    Image.new("RGB", (64, 64)).save(tmp_path / "a.png", pnginfo=info)
    place(paths.settings_file(), b'{"models": 5}')
    assert main(["inspect", str(tmp_path / "a.png")]) == 0
    err = capsys.readouterr().err
    assert err.count("handoff: note: settings.json: models: the section must be a table of fields, not 5") == 1, err
    assert kept(paths.settings_file(), b'{"models": 5}')
    assert main(["inspect", str(tmp_path / "a.png")]) == 0
    assert "handoff: note: settings" not in capsys.readouterr().err
