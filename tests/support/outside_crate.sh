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
build() { CARGO_TARGET_DIR="$target" cargo build --manifest-path "$app/Cargo.toml" --quiet "$@"; }
build
echo "the README's main example builds against the packaged crates ($version)"

# Feature ids checked at compile time: with a snapshot of the sample pricing model at the
# app's root, a typo'd id and a limit on an on/off feature fail the build with their
# messages; fixed, it builds; without the snapshot, nothing is checked.
cp "$root/atlas-snapshot.json" "$app/atlas-snapshot.json"
main="$app/src/main.rs"
cp "$main" "$work/main.rs.orig"
expect_failure() {
  local what="$1" message="$2"
  if build 2>"$work/stderr"; then
    echo "the build with $what passed; it must fail" >&2; exit 1
  fi
  if ! grep -qF -- "$message" "$work/stderr"; then
    echo "the build with $what failed without saying: $message" >&2; cat "$work/stderr" >&2; exit 1
  fi
  echo "with the snapshot, $what fails the build: $message"
}
sed -i 's/#\[requires_feature("data-explorer")\]/#[requires_feature("data-explorr")]/' "$main"
expect_failure "a typo'd feature id" '`data-explorr` is not a feature of the pricing model snapshot (atlas-snapshot.json); did you mean `data-explorer`?'
cp "$work/main.rs.orig" "$main"
sed -i 's/limit!(Atlas::builder(), "seats"/limit!(Atlas::builder(), "sso"/' "$main"
expect_failure "limit! on an on/off feature" '`limit!` counts `sso`, but no plan gives it a limit in the pricing model snapshot (atlas-snapshot.json: it is on-off)'
cp "$work/main.rs.orig" "$main"
build
echo "fixed, it builds against the snapshot"
rm "$app/atlas-snapshot.json"
sed -i 's/#\[requires_feature("data-explorer")\]/#[requires_feature("data-explorr")]/' "$main"
build
echo "without the snapshot, ids are not checked at compile time (the typo builds)"
