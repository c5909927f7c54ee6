#!/usr/bin/env bash
# The container's dependency layer: writes, next to the workspace manifests already copied into
# DIR, an empty source file for every target they declare, so that `cargo build` there compiles
# all the dependencies and nothing of Parley's own. The layer then depends only on Cargo.toml,
# media/Cargo.toml and Cargo.lock, and a source edit rebuilds Parley alone.
#
#   stub_workspace.sh DIR
#
# tests/container.rs checks that the stubbed workspace resolves to exactly the real one's
# dependencies (cargo metadata), so a new bench or binary in a manifest cannot break the image.
set -euo pipefail

DIR="${1:?usage: stub_workspace.sh DIR}"
cd "$DIR"
[ -f Cargo.toml ] && [ -f Cargo.lock ] || {
    echo "stub_workspace: $DIR has no Cargo.toml and Cargo.lock" >&2
    exit 2
}

python3 - <<'PY'
import os, tomllib

def stub(path, body):
    if os.path.exists(path):
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        f.write(body)

def package(dir):
    with open(os.path.join(dir, "Cargo.toml"), "rb") as f:
        manifest = tomllib.load(f)
    if "package" not in manifest:
        return manifest
    lib = manifest.get("lib", {})
    stub(os.path.join(dir, lib.get("path", "src/lib.rs")), "")
    # Targets declared by name must have a file for the manifest to load; autodiscovered ones
    # (no entry) need none, and get none: a stub the real tree does not have would survive
    # `COPY . .` and become a target of the real build.
    for kind, default_dir in (("bin", "src/bin"), ("bench", "benches"), ("test", "tests"),
                              ("example", "examples")):
        for target in manifest.get(kind, []):
            path = target.get("path", os.path.join(default_dir, target["name"] + ".rs"))
            stub(os.path.join(dir, path), "fn main() {}\n")
    build = manifest["package"].get("build")
    if isinstance(build, str):
        stub(os.path.join(dir, build), "fn main() {}\n")
    return manifest

root = package(".")
for member in root.get("workspace", {}).get("members", []):
    if member != ".":
        package(member)
PY
echo "stub_workspace: stubbed the targets of $DIR"
