#!/usr/bin/env bash
# Smoke-test a built Handoff bundle the way a user gets it: extracted into a fresh folder
# (no checkout, no venv on the path), run with a clean environment (env -i: PATH, HOME in
# the scratch folder, QT_QPA_PLATFORM=offscreen).
#
#     packaging/smoke_test.sh [dist/Handoff-<version>-linux-x86_64.tar.gz | dist/Handoff]
#
# Checks: a demo `generate` writes a PNG carrying its `parameters` chunk, from the demo
# weights inside the bundle; `run` re-runs that recipe saved as a .handoff project; the
# window opens offscreen with that project (as a double-click does), loads torch, says what
# it runs on and closes with status 0; --install-desktop writes the
# menu entry, MIME type and icons into XDG_DATA_HOME and --uninstall-desktop removes them.
# Not in .ci/run: building the bundle takes minutes (README: A self-contained app).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
src="${1:-}"
if [[ -z "$src" ]]; then
  src="$(ls -t "$repo"/dist/Handoff-*-linux-*.tar.gz 2>/dev/null | head -n1 || true)"
  [[ -n "$src" ]] || src="$repo/dist/Handoff"
fi
[[ -e "$src" ]] || { echo "smoke: no bundle at $src (build one: python packaging/build.py)" >&2; exit 2; }

tmp="$(mktemp -d "${TMPDIR:-/tmp}/handoff-smoke.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
if [[ -d "$src" ]]; then
  cp -a "$src" "$tmp/Handoff"
else
  tar -xzf "$src" -C "$tmp"
fi
app="$tmp/Handoff/Handoff"
mkdir -p "$tmp/home" "$tmp/work"
cd "$tmp/work"
clean() { env -i PATH=/usr/bin:/bin HOME="$tmp/home" QT_QPA_PLATFORM=offscreen "$@"; }
fail() { echo "smoke: FAIL: $*" >&2; exit 1; }
step() { printf '\nsmoke: %s\n' "$*"; }
secs() { echo $(( $(date +%s) - $1 )); }

step "bundle $src ($(du -sh "$tmp/Handoff" | cut -f1) extracted) in $tmp"

step "generate (the demo family, 8 steps)"
t0=$(date +%s)
clean "$app" generate "a red circle on a blue background" --model builtin:demo-base \
  --refiner builtin:demo-refiner --switch-at 0.8 --steps 8 --seed 1 --out x.png >generate.log 2>&1 \
  || { tail -n 20 generate.log; fail "generate exited with status $?"; }
tail -n 4 generate.log | sed 's/^/  /'
[[ -s x.png ]] || fail "generate wrote no x.png"
[[ "$(head -c 8 x.png | od -An -tx1 | tr -d ' \n')" == "89504e470d0a1a0a" ]] || fail "x.png is not a PNG"
if command -v python3 >/dev/null; then
  # The PNG's text chunks, read with the standard library (no PIL needed on this machine).
  python3 - x.png <<'EOF' || fail "x.png has no parameters chunk naming the demo"
import struct, sys, zlib
data, pos, text = open(sys.argv[1], "rb").read(), 8, {}
while pos < len(data):
    size, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + size]
    if kind == b"tEXt":
        key, _, value = body.partition(b"\0")
        text[key.decode()] = value.decode("latin-1")
    elif kind == b"iTXt":
        key, _, rest = body.partition(b"\0")
        flag, rest = rest[0], rest[2:]
        value = rest.split(b"\0", 2)[2]
        text[key.decode()] = (zlib.decompress(value) if flag else value).decode("utf-8")
    pos += 12 + size
params = text.get("parameters", "")
print("  parameters:", params.replace("\n", " | ")[:160])
# A1111 quotes a value holding a colon: Model: "builtin:demo-base".
assert "builtin:demo-base" in params and "Seed: 1" in params and "handoff" in text, text.keys()
EOF
else
  grep -aq "parameters" x.png || fail "x.png has no parameters chunk"
fi
[[ ! -e "$tmp/home/.local/share/handoff/cache/demo-random" ]] || fail "the demo weights were not found in the bundle"
echo "  ok in $(secs "$t0") s: x.png ($(stat -c %s x.png) bytes) with its parameters"

step "generate with the demo adapters (builtin:demo-lora and builtin:demo-controlnet, inside the bundle)"
t0=$(date +%s)
clean "$app" generate "a red circle on a checkered background" --model builtin:demo-base --steps 8 --seed 1 \
  --lora builtin:demo-lora:1 --controlnet builtin:demo-controlnet --control-image x.png --out adapters.png \
  >adapters.log 2>&1 || { tail -n 20 adapters.log; fail "generate with adapters exited with status $?"; }
[[ -s adapters.png ]] || fail "generate with adapters wrote no adapters.png"
echo "  ok in $(secs "$t0") s: adapters.png"

project=x.png
if command -v python3 >/dev/null; then
  # A project file made from the recipe x.png carries (core/project_file.py's layout: a zip
  # with project.json), as a user would save it and then double-click it.
  python3 - x.png demo.handoff <<'EOF' || fail "could not make demo.handoff from x.png's recipe"
import json, struct, sys, zipfile, zlib
data, pos, recipe = open(sys.argv[1], "rb").read(), 8, None
while pos < len(data):
    size, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + size]
    if kind in (b"tEXt", b"iTXt") and body.startswith(b"handoff\0"):
        rest = body[len(b"handoff\0"):]
        if kind == b"iTXt":
            flag, rest = rest[0], rest[2:].split(b"\0", 2)[2]
            rest = zlib.decompress(rest) if flag else rest
        recipe = json.loads(rest.decode("utf-8"))["recipe"]
    pos += 12 + size
manifest = {"format": "handoff-project", "schema_version": recipe.get("schema_version", 1), "project": recipe,
            "history": []}
with zipfile.ZipFile(sys.argv[2], "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("project.json", json.dumps(manifest))
EOF
  project=demo.handoff
fi

step "run $project"
t0=$(date +%s)
clean "$app" run "$project" --out renders/ >run.log 2>&1 || { tail -n 20 run.log; fail "run exited with status $?"; }
ls renders/*.png >/dev/null 2>&1 || fail "run wrote nothing in renders/"
cmp -s x.png "$(ls renders/*.png | grep -v -- '-1-' | head -n1)" && same="the same image as x.png" || same="written"
echo "  ok in $(secs "$t0") s: $(ls renders | tr '\n' ' ')($same)"

step "window (offscreen, opening $project as a double-click does; closes once torch has loaded)"
t0=$(date +%s)
rc=0
out="$(clean HANDOFF_QUIT_AFTER_MS=500 "$app" "$tmp/work/$project" 2>&1)" || rc=$?
[[ $rc -eq 0 ]] || { echo "$out"; fail "the window exited with status $rc"; }
grep -q "^smoke: window shown=True" <<<"$out" || { echo "$out"; fail "the window did not report itself shown"; }
grep "^smoke:" <<<"$out" | sed 's/^/  /'
grep -q "Runs on " <<<"$out" || fail "the status bar does not say what the engine runs on"
if [[ $project == demo.handoff ]]; then
  grep -q "“Handoff — demo”" <<<"$out" || { echo "$out"; fail "the window did not open $project"; }
fi
echo "  ok in $(secs "$t0") s: status 0"

step "desktop integration (XDG_DATA_HOME=$tmp/xdg)"
clean XDG_DATA_HOME="$tmp/xdg" "$app" --install-desktop | tail -n 1 | sed 's/^/  /'
entry="$tmp/xdg/applications/io.github.handoff.Handoff.desktop"
[[ -f "$entry" ]] || fail "no desktop entry"
grep -qx "Exec=$app %f" "$entry" || fail "the entry does not start $app: $(grep ^Exec "$entry")"
[[ -f "$tmp/xdg/mime/packages/io.github.handoff.Handoff.xml" ]] || fail "no MIME type"
icons=$(ls "$tmp"/xdg/icons/hicolor/*/apps/io.github.handoff.Handoff.png | wc -l)
[[ "$icons" -ge 9 ]] || fail "only $icons icon sizes"
clean XDG_DATA_HOME="$tmp/xdg" "$app" --uninstall-desktop >/dev/null
left="$(find "$tmp/xdg" -name 'io.github.handoff.Handoff*')"
[[ -z "$left" ]] || fail "left behind: $left"
echo "  ok: entry, MIME type and $icons icons written, then removed"

printf '\nsmoke: PASS\n'
