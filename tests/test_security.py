"""What a file from someone else can make Handoff do: nothing but be read. Archive entries
that climb out or link elsewhere are refused, pickled checkpoints are refused, opening
a project, a PNG or a workflow runs no code (no pickle, no eval, no torch.load), and no
string reaches a shell."""
from __future__ import annotations

import ast
import io
import json
import pickle
import sys
import zipfile
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from core import events as ev
from core import project_file
from core.checkpoints import describe_file
from core.errors import ModelError, ReadError
from core.project import Project, Stage
from tests.engine_helpers import of, run_job

ROOT = Path(__file__).resolve().parent.parent


def recipe() -> dict:
    return Project(prompt="a cat", width=64, height=64, stages=[Stage("builtin:demo-base", steps=2)]).to_dict()


def archive(entries: list[tuple[zipfile.ZipInfo | str, bytes]], project: dict | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for info, data in entries:
            z.writestr(info, data)
        z.writestr("project.json", json.dumps({"format": "handoff-project", "project": project or recipe()}))
    return buf.getvalue()


def png(info: PngInfo | None = None) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix, whose mode bits ride in the high word
    info.external_attr = 0o120777 << 16  # S_IFLNK
    return info


@pytest.mark.parametrize("entry, why", [
    ("../evil.png", r"climbs out of the archive \(\.\.\)"),
    ("images/../../evil.png", r"climbs out of the archive \(\.\.\)"),
    ("/etc/evil.png", "is an absolute path"),
    ("C:/evil.png", "is an absolute path"),
    (symlink("images/init.png"), "is a symbolic link"),
])
def test_archive_entries_that_climb_out_or_link_are_refused(tmp_path, entry, why):
    path = tmp_path / "x.handoff"
    path.write_bytes(archive([(entry, b"/etc/passwd" if isinstance(entry, zipfile.ZipInfo) else png())],
                             dict(recipe(), init_image="images/init.png")))
    with pytest.raises(ReadError, match=rf"^x.handoff: entry '.*' {why}: refused$"):
        project_file.load(path)
    assert not (tmp_path.parent / "evil.png").exists()


def test_a_manifest_naming_a_file_outside_the_archive_reads_nothing_there(tmp_path):
    (tmp_path / "secret.png").write_bytes(png())
    path = tmp_path / "x.handoff"
    path.write_bytes(archive([], dict(recipe(), init_image=str(tmp_path / "secret.png"))))
    with pytest.raises(ReadError, match="has no entry"):
        project_file.load(path)


def test_pickled_checkpoints_stay_refused(tmp_path, monkeypatch):
    import torch

    real_load = torch.load

    def weights_only_load(*a, **k):
        # A .pth may be an upscaler's state dict (core.upscalers): read only with weights_only.
        if not (str(a[0]).endswith(".pth") and k.get("weights_only") is True):
            pytest.fail(f"torch.load called on a user file without weights_only: {a} {k}")
        return real_load(*a, **k)

    monkeypatch.setattr(torch, "load", weights_only_load)
    for suffix in (".ckpt", ".pt"):
        path = tmp_path / f"model{suffix}"
        path.write_bytes(b"\x80\x04pickled")
        family, _, note = describe_file(path)
        assert family is None and "pickled .ckpt/.pt files can run code" in note
        from core.models import parse_ref, resolve

        with pytest.raises(ModelError, match="can run code"):
            resolve(parse_ref(str(path)))
    # A .pth whose pickle would run code: refused by the weights_only loader, the code never runs.
    ran = tmp_path / "ran"
    evil = tmp_path / "model.pth"
    evil.write_bytes(pickle.dumps(_RunsCode(str(ran))))
    from core.models import parse_ref, resolve

    with pytest.raises(ModelError, match="pickled Python objects"):
        resolve(parse_ref(str(evil)))
    assert not ran.exists()
    events = run_job(Project(prompt="x", width=64, height=64, stages=[Stage(str(tmp_path / "model.ckpt"))]),
                     tmp_path, on_event=lambda e: None)
    assert "pickled .ckpt/.pt files can run code" in of(events, ev.JobFailed)[0].message


# ---------------------------------------------------------------- opening files runs no code

def first_opens(mode: str, paths: list[Path]) -> dict[str, dict]:
    """Each file opened once, in a fresh process whose audit hook was in place before that
    first open (tests/audit_open.py): {file name: {"result", "events"}}."""
    import subprocess

    done = subprocess.run([sys.executable, "-m", "tests.audit_open", mode, *map(str, paths)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return {Path(r["path"]).name: r for r in json.loads(done.stdout.splitlines()[-1])}


def user_files(tmp_path: Path) -> list[Path]:
    pickle_bytes = b"\x80\x04\x95cos\nsystem\n(S'touch /tmp/pwned'\ntR."
    made = PngInfo()
    made.add_itxt("handoff", json.dumps({"recipe": recipe(), "stage": 0}))
    comfy = PngInfo()
    comfy.add_text("workflow", json.dumps({"nodes": [{"type": "CheckpointLoaderSimple", "widgets_values": [
        "__import__('os').system('touch /tmp/pwned')"]}], "extra": {"pickle": pickle_bytes.hex()}}))
    comfy.add_text("prompt", json.dumps({"1": {"class_type": "KSampler", "inputs": {"seed": "eval('1')"}}}))
    a1111 = PngInfo()
    a1111.add_text("parameters", "__import__('os').system('x')\nSteps: 20, Sampler: eval, Seed: 1, Size: 64x64, Model: x")
    files = {"made.png": png(made), "comfy.png": png(comfy), "a1111.png": png(a1111),
             "p.handoff": archive([("images/run1-1.png", png()), ("images/evil.pkl", pickle_bytes)]),
             "p.json": json.dumps(recipe()).encode()}
    paths = []
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)
    return paths


def test_opening_a_project_a_png_or_a_workflow_runs_no_code(tmp_path):
    paths = user_files(tmp_path)
    report = first_opens("document", paths)
    assert sorted(report) == sorted(p.name for p in paths)
    for name, r in report.items():
        assert r["result"] in ("opened", "refused"), (name, r["result"])
        assert not r["events"], f"code ran while {name} was first opened: {r['events']}"
    assert report["made.png"]["result"] == "opened" and report["p.json"]["result"] == "opened"
    assert not Path("/tmp/pwned").exists()


def test_the_detector_sees_code_running_on_a_first_open(tmp_path):
    import pickle

    (tmp_path / "x.pkl").write_bytes(pickle.dumps(Path("x")))
    (tmp_path / "x.py").write_text("1 + 1")
    assert "pickle.find_class" in first_opens("pickle", [tmp_path / "x.pkl"])["x.pkl"]["events"]
    assert "compile" in first_opens("eval", [tmp_path / "x.py"])["x.py"]["events"]


# ---------------------------------------------------------------- no string reaches a shell


class _RunsCode:
    """Unpickling this creates a file: a stand-in for code a hostile .pth would run."""

    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def _weights_only(call: ast.Call) -> bool:
    return any(kw.arg == "weights_only" and isinstance(kw.value, ast.Constant) and kw.value.value is True
               for kw in call.keywords)


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def test_no_shell_no_eval_no_pickle_in_the_code():
    shell_calls = {"os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput"}
    code_calls = {"eval", "exec", "pickle.load", "pickle.loads", "torch.load", "marshal.loads"}
    found = []
    files = [ROOT / "main.py", *(ROOT / "core").rglob("*.py"), *(ROOT / "gui").rglob("*.py"),
             *(ROOT / "packaging").rglob("*.py")]
    for path in files:
        tree = ast.parse(path.read_text(), str(path))
        for call, name in _calls(tree):
            where = f"{path.relative_to(ROOT)}:{call.lineno} {name}"
            if name == "torch.load" and _weights_only(call):
                continue  # an upscaler's .pth state dict: torch's weights-only unpickler runs no code
            if name in shell_calls or (name in code_calls and path.parts[-2] != "packaging"):
                found.append(where)
            for kw in call.keywords:
                if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    found.append(f"{where}(shell=...)")
            command = call.args[0] if name.startswith("subprocess.") and call.args else None
            if isinstance(command, ast.JoinedStr) or isinstance(command, ast.Constant) and isinstance(command.value, str):
                found.append(f"{where}: a command line as one string, not a list")
    assert not found, found
