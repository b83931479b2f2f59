"""`main.py library ...`: the model library from the command line, the same list (the
settings file's "models" section) the window's Model Library shows and edits.

    library add DIR           a ComfyUI models folder, an A1111/Forge install or an InvokeAI root
    library list [--kind K]   kind, name, path: one tab-separated line per entry
    library remove DIR        forget a folder added before, and what was scanned from it
    library where NAME        the file a model name or A1111 hash (10-hex AutoV2, 8-hex old) is
"""
from __future__ import annotations

import argparse
import sys

LIST_KINDS = ("checkpoint", "lora", "controlnet", "upscaler", "gguf")
EXIT_NOT_FOUND, EXIT_USAGE = 1, 2


def add_parser(sub) -> None:
    lib = sub.add_parser("library", help="the model library: add or remove a ComfyUI, A1111 or InvokeAI models "
                                         "folder, list what it holds, say which file a name or hash is")
    verbs = lib.add_subparsers(dest="library_command", required=True)
    add = verbs.add_parser("add", help="scan a ComfyUI models folder, an A1111/Forge install or an InvokeAI root "
                                       "and keep it (the window's Model Library shows it too)")
    add.add_argument("folder")
    listing = verbs.add_parser("list", help="one line per entry: kind, name, path (tab separated)")
    listing.add_argument("--kind", choices=LIST_KINDS, default=None)
    remove = verbs.add_parser("remove", help="forget a folder added with `library add` (its files stay)")
    remove.add_argument("folder")
    where = verbs.add_parser("where", help="the file a model name, 'name [hash]' or A1111 hash resolves to")
    where.add_argument("name")


def library_main(args: argparse.Namespace) -> int:
    from core import model_library as ml
    from core.errors import ModelError

    lib = ml.ModelLibrary.load()
    verb = args.library_command
    if verb == "list":
        for e in lib.all():
            kind = e.listed_kind()
            if args.kind is None or kind == args.kind:
                print(f"{kind}\t{_cell(e.name)}\t{_cell(e.ref)}")
        return 0
    if verb == "where":
        from core.interop.model_lookup import ModelLookup

        found = ModelLookup().find(args.name)
        if found is None:
            print(f"handoff: no model in the library is {args.name!r} (by file name or hash)", file=sys.stderr)
            return EXIT_NOT_FOUND
        print(found.ref)
        return 0
    if verb == "add":
        try:
            tools, found, added = lib.add_folder(args.folder)
        except (ModelError, OSError) as exc:
            print(f"handoff: {' '.join(str(exc).split())}", file=sys.stderr)
            return EXIT_USAGE
        lib.save()
        shown = " and ".join(ml.SOURCES[t] for t in tools)
        print(f"{args.folder}: {shown}: {len(found)} file(s) found, {added} new", file=sys.stderr)
        return 0
    gone = lib.remove_folder(args.folder)
    if gone is None:
        known = ", ".join(lib.folders) or "none"
        print(f"handoff: {args.folder} is not a folder of the library (its folders: {known})", file=sys.stderr)
        return EXIT_USAGE
    lib.save()
    print(f"{args.folder}: removed, with {gone} entr{'y' if gone == 1 else 'ies'} (the files stay)", file=sys.stderr)
    return 0


def _cell(text: str) -> str:
    """A field as one tab-free cell (a name could hold a tab or a newline)."""
    return " ".join(text.split("\t")).replace("\n", " ")
