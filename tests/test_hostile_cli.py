"""The command line fed hostile input: batch files that are pipes, devices, bad bytes, deep
nesting, huge lines or huge prompts; sweeps of a million cells; an --out that cannot be
written; Ray addresses where nothing listens; an unusable XDG_DATA_HOME; LoRA files with
every field of their header wrong. Each is refused before the first job with one line
(`handoff: ...`) and exit 2, or, for a batch with --keep-going, its good lines run."""
from __future__ import annotations

import json
import os
import re
import socket
import struct
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from core import checked, project_file
from core.cli import EXIT_FAILED, EXIT_USAGE, main
from core.cluster import MAX_LINE_BYTES, ClusterError, check_batch, probe
from core.errors import ModelError, ProjectError, ReadError
from core.project import MAX_PROMPT_CHARS, Project, Stage, validate

DEMO = dict(prompt="a red circle", width=64, height=64, seed=1)


def demo_project(steps: int = 1) -> Project:
    return Project(**DEMO, stages=[Stage("builtin:demo-base", steps=steps)])


@pytest.fixture
def base(tmp_path) -> Path:
    return project_file.save(tmp_path / "base.handoff", project_file.ProjectDocument(demo_project()))


def refused(capsys, *needles: str) -> str:
    """The one `handoff:` line a refusal printed, holding every needle."""
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("handoff: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture
def unwritable(tmp_path) -> Path:
    """A folder this process cannot write into (root ignores permission bits: then a
    sysfs folder, which no one can add files to)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    found = folder
    if _writable(folder):
        found = Path("/sys/kernel")
        if not found.is_dir() or _writable(found):
            folder.chmod(0o755)
            pytest.skip("no folder here refuses this user's writes")
    yield found
    folder.chmod(0o755)


def _writable(folder: Path) -> bool:
    try:
        (folder / ".handoff-probe").write_bytes(b"")
    except OSError:
        return False
    (folder / ".handoff-probe").unlink()
    return True


# ---------------------------------------------------------------- batch files


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not Path("/dev/zero").exists(), reason="POSIX pipes and devices")
def test_a_batch_file_that_is_not_a_regular_file_is_refused_without_reading_it(tmp_path, base, capsys):
    fifo = tmp_path / "jobs.fifo"
    os.mkfifo(fifo)  # opening it to read would block until a writer comes: none ever does
    for path, kind in [(fifo, "a pipe (FIFO)"), (tmp_path, "a folder"), (Path("/dev/zero"), "a device")]:
        with pytest.raises(ReadError, match=re.escape(f"batch file {path} is {kind}, not a file")):
            check_batch(path)
        assert main(["batch", str(path), "--project", str(base), "--out", str(tmp_path / "out")]) == EXIT_USAGE
        refused(capsys, str(path), kind)


def bad_lines(tmp_path: Path) -> tuple[Path, dict[int, str]]:
    """A batch file of good lines and every kind of bad one; {line: what its message says}."""
    good = json.dumps({"prompt": "a blue square", "seed": 2}).encode()
    lines = [
        good,  # 1
        b'{"prompt": "caf\xff"}',  # 2: not UTF-8
        b"[" * 100_000 + b"]" * 100_000,  # 3: nested past Python's own limit
        b'{"prompt": ' + b"[" * 40 + b'"x"' + b"]" * 40 + b"}",  # 4: deeper than a project goes
        b"",  # 5: blank, skipped
        b'{"prompt": "x", "negative_prompt": "' + b"n" * (MAX_PROMPT_CHARS + 1) + b'"}',  # 6
        b"not json",  # 7
        good,  # 8
    ]
    path = tmp_path / "jobs.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, {2: "is not text (UTF-8", 3: f"nested more than {checked.MAX_JSON_DEPTH}", 4: f"nested more than {checked.MAX_NESTING}",
                  6: f"the negative prompt is {MAX_PROMPT_CHARS + 1:,} characters", 7: "is not valid JSON"}


def test_bad_batch_lines_are_named_by_line_and_no_job_runs(tmp_path, base, capsys):
    path, expected = bad_lines(tmp_path)
    batch = check_batch(path, demo_project())
    assert batch.lines == [1, 8] and [p.prompt for p in batch.jobs] == ["a blue square"] * 2
    assert len(batch.problems) == len(expected)
    for problem, (line, says) in zip(batch.problems, expected.items()):
        assert problem.startswith(f"{path}, line {line}") and says in problem and "\n" not in problem, problem
    with pytest.raises(ProjectError, match="line 2"):
        from core.cluster import read_batch

        read_batch(path, demo_project())
    out = tmp_path / "out"
    assert main(["batch", str(path), "--project", str(base), "--out", str(out)]) == EXIT_USAGE
    err = capsys.readouterr().err.splitlines()
    assert [line.split(", line ")[1].split()[0].rstrip(":") for line in err] == ["2", "3", "4", "6", "7"]
    assert err[-1].endswith("(no job ran; --keep-going runs the 2 good lines)")
    assert not list(out.iterdir()), "nothing ran"


def test_keep_going_runs_the_good_lines_and_exits_1(tmp_path, base, capsys):
    path, expected = bad_lines(tmp_path)
    out = tmp_path / "out"
    assert main(["batch", str(path), "--project", str(base), "--out", str(out), "--keep-going"]) == EXIT_FAILED
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("handoff:")]
    assert len(err) == len(expected) and all(line.startswith("handoff: skipped ") for line in err)
    assert sorted(f.name for f in out.glob("*.png")) == ["job-1-1-stage-1.png", "job-2-1-stage-1.png"]


def test_a_line_over_the_cap_is_refused_without_being_kept(tmp_path):
    path = tmp_path / "jobs.jsonl"
    with open(path, "wb") as f:  # a 40 MB negative prompt on line 2, as reported
        f.write(b'{"prompt": "a"}\n{"prompt": "x", "negative_prompt": "')
        for _ in range(40):
            f.write(b"n" * 1_000_000)
        f.write(b'"}\n{"prompt": "b"}\n')
    batch = check_batch(path, demo_project())
    assert [p.prompt for p in batch.jobs] == ["a", "b"] and batch.lines == [1, 3]
    (problem,) = batch.problems
    assert problem == f"{path}, line 2 is longer than {MAX_LINE_BYTES // checked.MiB} MiB: a line is one project"


lines = st.one_of(
    st.binary(max_size=60),
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                 lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3),
                 max_leaves=6).map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({}, optional={"prompt": st.text(max_size=8) | st.integers(), "seed": st.integers(-5, 2**40),
                                        "width": st.integers(-64, 9000), "negative_prompt": st.text(max_size=4),
                                        "stages": st.just([]) | st.just([{"model": "builtin:demo-base"}])}
                           ).map(lambda v: json.dumps(v).encode()),
)


@given(st.lists(lines, min_size=1, max_size=6))
def test_batch_lines_take_anything(tmp_path, content):
    path = tmp_path / "jobs.jsonl"
    path.write_bytes(b"\n".join(line.replace(b"\n", b" ") for line in content) + b"\n")
    try:
        batch = check_batch(path, demo_project())
    except ReadError as exc:  # only a file with no line at all
        assert str(exc) == f"batch file {path} holds no job"
        return
    for problem in batch.problems:
        assert problem.startswith(f"{path}, line ") and "\n" not in problem, problem
    for project in batch.jobs:
        validate(project)  # what is taken is a project that runs
    assert len(batch.jobs) + len(batch.problems) == sum(1 for line in content if line.replace(b"\n", b" ").strip())


def test_a_prompt_longer_than_any_encoder_reads_is_refused_with_one_line(tmp_path, capsys):
    project = demo_project()
    project.stages[0].prompt_suffix = "x" * (MAX_PROMPT_CHARS + 1)
    with pytest.raises(ProjectError, match="stage 1's prompt suffix is"):
        validate(project)
    assert main(["generate", "a cat", "--negative", "n" * (MAX_PROMPT_CHARS + 1), "--model", "builtin:demo-base",
                 "--size", "64x64", "--out", str(tmp_path / "a.png")]) == EXIT_USAGE
    refused(capsys, f"the negative prompt is {MAX_PROMPT_CHARS + 1:,} characters")


# ---------------------------------------------------------------- sweeps and --out


def test_a_sweep_of_too_many_cells_is_refused_before_one_is_built(tmp_path, base, capsys, monkeypatch):
    import core.sweep

    def no_cells(*args):
        raise AssertionError("cells were built")

    monkeypatch.setattr(core.sweep, "cells", no_cells)
    values = ",".join(str(n) for n in range(1, 1001))
    args = ["sweep", str(base), "--x", f"seed={values}", "--y", f"1.steps={values}", "--out", str(tmp_path / "s")]
    assert main(args) == EXIT_USAGE
    refused(capsys, "1,000,000 cells (1,000 x 1,000) are more than 10,000", "--max-cells 1000000")
    monkeypatch.undo()
    x = core.sweep.parse_axis("seed=1,2,3", demo_project())
    assert core.sweep.check_cell_count(x, x, max_cells=9) == 9
    with pytest.raises(core.sweep.SweepError):
        core.sweep.check_cell_count(x, x, max_cells=8)


@pytest.mark.parametrize("command", ["sweep", "batch"])
def test_an_out_that_cannot_be_written_is_refused_before_the_first_job(tmp_path, base, capsys, unwritable, command):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"prompt": "a dog"}\n')
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    head = ["sweep", str(base), "--x", "seed=1,2"] if command == "sweep" else ["batch", str(jobs), "--project", str(base)]
    assert main(head + ["--out", str(a_file)]) == EXIT_USAGE
    refused(capsys, f"--out: {a_file} is a file, not a folder")
    assert main(head + ["--out", str(unwritable / "out")]) == EXIT_USAGE
    refused(capsys, f"--out: cannot write to {unwritable / 'out'}")


# ---------------------------------------------------------------- Ray addresses


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on return: nothing listens there


def test_an_unreachable_ray_address_is_refused_in_one_line_before_ray_is_asked(tmp_path, base, capsys, monkeypatch):
    port = closed_port()
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))  # no cluster started here
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}", f"localhost:{port}"):
        with pytest.raises(ClusterError, match=f"cannot reach the Ray cluster at {address}"):
            probe(address)
        assert main(["sweep", str(base), "--x", "seed=1,2", "--out", str(tmp_path / "s"), "--ray", address]) == EXIT_USAGE
        refused(capsys, f"cannot reach the Ray cluster at {address}")
    assert main(["sweep", str(base), "--x", "seed=1,2", "--out", str(tmp_path / "s"), "--ray", "auto"]) == EXIT_USAGE
    refused(capsys, "--ray auto: no Ray cluster runs on this machine")
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{port}\n")  # what `ray start` leaves
    assert main(["sweep", str(base), "--x", "seed=1,2", "--out", str(tmp_path / "s"), "--ray", "auto"]) == EXIT_USAGE
    refused(capsys, f"cannot reach the Ray cluster at auto (127.0.0.1:{port}")
    monkeypatch.setenv("RAY_ADDRESS", f"ray://127.0.0.1:{port}")
    with pytest.raises(ClusterError, match=f"cannot reach the Ray cluster at auto \\(127.0.0.1:{port}"):
        probe("auto")
    for junk in ("ray://", "host:port", "a:99999"):
        with pytest.raises(ClusterError, match="is not an address"):
            probe(junk)


# ---------------------------------------------------------------- desktop install


@pytest.mark.parametrize("action", ["--install-desktop", "--uninstall-desktop"])
def test_an_unusable_xdg_data_home_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, action):
    import sys

    from core.desktop import desktop_command

    monkeypatch.setattr(sys, "platform", "linux")
    a_file = tmp_path / "data"
    a_file.write_text("")
    monkeypatch.setenv("XDG_DATA_HOME", str(a_file))
    assert desktop_command(action) == 2
    refused(capsys, action, f"{a_file} is a file, not a folder")


def test_install_into_a_read_only_data_folder_is_one_line_and_exit_2(monkeypatch, capsys, unwritable):
    import sys

    from core.desktop import desktop_command

    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_DATA_HOME", str(unwritable / "share"))
    assert desktop_command("--install-desktop") == 2
    refused(capsys, "--install-desktop: cannot write to")


def test_uninstall_that_cannot_remove_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    import sys

    from core import desktop

    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    desktop.install_linux(["handoff"], tmp_path, refresh=False)

    def unlink(self, *a, **k):  # what a read-only folder does to an unlink, for any user
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "unlink", unlink)
    assert desktop.desktop_command("--uninstall-desktop") == 2
    refused(capsys, "--uninstall-desktop: cannot use", "Permission denied")


# ---------------------------------------------------------------- LoRA headers


def lora_file(path: Path, header: dict | None = None, length: int | None = None, data: bytes = b"\0" * 32) -> Path:
    header = header if header is not None else {
        "__metadata__": {"format": "pt"},
        "unet.down.lora_A.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
        "unet.down.lora_B.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [16, 32]}}
    body = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(body) if length is None else length) + body + data)
    return path


def entry(**change) -> dict:
    return {"unet.down.lora_A.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16], **change}}


MALFORMED = {
    "shape": (entry(shape=["abc", "def"]), 'shape ["abc", "def"] is not a list of whole numbers'),
    "negative shape": (entry(shape=[-1, 4]), "is not a list of whole numbers"),
    "dtype": (entry(dtype="F33"), 'dtype "F33" is not a safetensors type'),
    "dtype type": (entry(dtype=7), "dtype 7 is not a safetensors type"),
    "offsets": (entry(data_offsets=[0, 10**12]), "data_offsets [0, 1000000000000] are not a span"),
    "offsets type": (entry(data_offsets="0-16"), 'data_offsets "0-16" are not a span'),
    "size": (entry(shape=[3, 3]), "shape [3, 3] of F32 does not fit its 16 bytes"),
    "entry": ({"unet.down.lora_A.weight": [1, 2]}, "must be a table of fields"),
    "metadata": ({**entry(), "__metadata__": {"ss_base_model_version": 5}}, "must be text, not 5"),
    "metadata type": ({**entry(), "__metadata__": ["x"]}, "__metadata__ must be a table"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_every_malformed_lora_header_field_names_the_flag_and_the_file(tmp_path, capsys, case):
    from core.adapters import lora_info

    header, says = MALFORMED[case]
    path = lora_file(tmp_path / "bad.safetensors", header)
    with pytest.raises(ModelError, match="^LoRA ") as info:
        lora_info(path)
    assert str(path) in str(info.value) and says in str(info.value)
    assert main(["generate", "a cat", "--model", "builtin:demo-base", "--size", "64x64", "--lora", f"{path}:0.5",
                 "--out", str(tmp_path / "a.png")]) == EXIT_USAGE
    refused(capsys, "--lora: LoRA", str(path), says)


def test_a_lora_header_length_past_the_file_names_the_flag_and_the_file(tmp_path, capsys):
    for length in (2**40, 90 * 1024 * 1024, 2**64 - 1):
        path = lora_file(tmp_path / "huge.safetensors", length=length)
        assert main(["generate", "a cat", "--model", "builtin:demo-base", "--size", "64x64", "--refiner",
                     "builtin:demo-refiner", "--refiner-lora", str(path), "--out", str(tmp_path / "a.png")]) == EXIT_USAGE
        refused(capsys, "--refiner-lora: LoRA", str(path), f"header length {length}")
    from core.adapters import lora_info

    assert lora_info(lora_file(tmp_path / "good.safetensors")).tensors == 2  # the well-formed one reads


@given(st.dictionaries(st.text(max_size=30), st.none() | st.integers() | st.text(max_size=5)
                       | st.lists(st.integers(-3, 40) | st.text(max_size=3), max_size=3)
                       | st.dictionaries(st.sampled_from(["dtype", "shape", "data_offsets", "x"]),
                                         st.sampled_from(["F32", "F16", "Q"]) | st.lists(st.integers(-2, 40), max_size=3)
                                         | st.integers(), max_size=4), max_size=4))
def test_lora_headers_take_anything(tmp_path, header):
    from core.adapters import lora_info

    path = lora_file(tmp_path / "any.safetensors", header)
    try:
        lora_info(path)
    except ModelError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
