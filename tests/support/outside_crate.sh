#!/usr/bin/env bash
# Builds the README's main example ("Use it in your app") as a program outside the workspace
# that depends on the *packaged* crates: what `cargo package --workspace` left in
# target/package, unpacked, with the macros crate patched in (it is not on crates.io yet).
# Run after `cargo package --workspace`. Reuses the workspace's target directory and lock file.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)"
target="${CARGO_TARGET_DIR:-$root/target}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for crate in atlas-actix atlas-actix-macros; do
  tar -xzf "$target/package/$crate-$version.crate" -C "$work"
done
app="$work/app"
mkdir -p "$app/src"
cat >"$app/Cargo.toml" <<TOML
[package]
name = "readme-app"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
atlas-actix = { path = "../atlas-actix-$version", features = ["clerk"] }
actix-web = "4"
actix-cors = "0.7.2"
serde_json = "1"

[patch.crates-io]
atlas-actix-macros = { path = "../atlas-actix-macros-$version" }
TOML
# The first Rust block after "## Use it in your app", hidden doctest lines ("# ...") shown.
python3 - "$root/README.md" "$app/src/main.rs" <<'PY'
import re, sys
readme = open(sys.argv[1]).read()
section = readme[readme.index("## Use it in your app"):]
block = re.search(r"```rust[^\n]*\n(.*?)```", section, re.S).group(1)
lines = [line[2:] if line.startswith("# ") else ("" if line == "#" else line) for line in block.splitlines()]
open(sys.argv[2], "w").write("\n".join(lines) + "\n")
PY
cp "$root/Cargo.lock" "$app/Cargo.lock"
CARGO_TARGET_DIR="$target" cargo build --manifest-path "$app/Cargo.toml" --quiet
echo "the README's main example builds against the packaged crates ($version)"
