"""The error types every part of core raises, in one module that imports nothing of
core's, so any module can raise them without an import cycle."""
from __future__ import annotations


class ModelError(Exception):
    """A model that cannot be used, with a one-line reason a user can act on."""


class ProjectError(ValueError):
    """A project that cannot run, with every reason why."""

    def __init__(self, problems: list[str]):
        # One line each, whatever user text they quote (a model name, a field of a file).
        self.problems = [" ".join(str(p).split()) for p in problems]
        super().__init__("; ".join(self.problems))


class Cancelled(Exception):
    """Raised from the step callback: the pipeline stops at once, skipping its decode."""


class ReadError(ProjectError):
    """An outside file that is malformed (a project file, a PNG's recipe, another tool's
    metadata, the settings file, a model's config): one line naming the file and the field.
    Every reader of outside files raises this and nothing else."""

    def __init__(self, message: str):
        super().__init__([message])
