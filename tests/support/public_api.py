#!/usr/bin/env python3
"""The public API of atlas-actix, one item a line, from rustdoc's JSON output.

    python3 tests/support/public_api.py            # compares with atlas-actix/public-api.txt
    python3 tests/support/public_api.py --bless    # writes it

A change to the public API shows in review as a change of that file: CI fails while they
differ. Each line names an item by the path users write (re-exports followed), with what a
release must keep: `#[non_exhaustive]`, fields and their types, variants, signatures, trait
implementations (Send and Sync included). rustdoc's JSON is unstable, hence RUSTC_BOOTSTRAP.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = ROOT / "atlas-actix" / "public-api.txt"
AUTO_TRAITS = {"Send", "Sync"}


def rustdoc_json() -> dict:
    env = dict(os.environ)
    env["RUSTC_BOOTSTRAP"] = "1"
    env["RUSTDOCFLAGS"] = "-Z unstable-options --output-format json"
    target = Path(env.get("CARGO_TARGET_DIR", ROOT / "target"))
    subprocess.run(
        ["cargo", "doc", "-q", "-p", "atlas-actix", "--all-features", "--no-deps"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    return json.loads((target / "doc" / "atlas_actix.json").read_text())


class Inventory:
    def __init__(self, doc: dict):
        self.index = doc["index"]
        self.paths = doc["paths"]
        self.lines: set[str] = set()

    def item(self, id_):
        return self.index.get(str(id_))

    # Types, as a reader writes them.
    def ty(self, t) -> str:
        if t is None:
            return "()"
        (kind, v), = t.items() if isinstance(t, dict) else (("primitive", t),)
        if kind == "resolved_path":
            return self.path_of(v)
        if kind == "primitive":
            return v
        if kind == "generic":
            return v
        if kind == "borrowed_ref":
            life = f"{v['lifetime']} " if v.get("lifetime") else ""
            mut = "mut " if v.get("is_mutable") else ""
            return f"&{life}{mut}{self.ty(v['type'])}"
        if kind == "raw_pointer":
            return f"*{'mut' if v['is_mutable'] else 'const'} {self.ty(v['type'])}"
        if kind == "tuple":
            return "(" + ", ".join(self.ty(x) for x in v) + ")"
        if kind == "slice":
            return f"[{self.ty(v)}]"
        if kind == "array":
            return f"[{self.ty(v['type'])}; {v['len']}]"
        if kind == "impl_trait":
            return "impl " + " + ".join(self.bound(b) for b in v)
        if kind == "dyn_trait":
            return "dyn " + " + ".join(self.path_of(p["trait"]) for p in v["traits"])
        if kind == "qualified_path":
            trait = self.path_of(v["trait"]) if v.get("trait") else "_"
            return f"<{self.ty(v['self_type'])} as {trait}>::{v['name']}"
        if kind == "function_pointer":
            return "fn(..)"
        return kind

    def path_of(self, p) -> str:
        name = p.get("path") or p.get("name") or "?"
        args = p.get("args")
        if args and "angle_bracketed" in args:
            parts = []
            for a in args["angle_bracketed"]["args"]:
                if "type" in a:
                    parts.append(self.ty(a["type"]))
                elif "lifetime" in a:
                    parts.append(a["lifetime"])
                elif "const" in a:
                    parts.append(str(a["const"].get("expr", "_")))
            for c in args["angle_bracketed"].get("constraints", []):
                binding = c.get("binding", {})
                if "equality" in binding and "type" in binding["equality"]:
                    parts.append(f"{c['name']} = {self.ty(binding['equality']['type'])}")
            if parts:
                name += "<" + ", ".join(parts) + ">"
        elif args and "parenthesized" in args:
            ins = ", ".join(self.ty(x) for x in args["parenthesized"]["inputs"])
            out = args["parenthesized"].get("output")
            name += f"({ins})" + (f" -> {self.ty(out)}" if out else "")
        return name

    def bound(self, b) -> str:
        if "trait_bound" in b:
            return self.path_of(b["trait_bound"]["trait"])
        if "outlives" in b:
            return b["outlives"]
        return "?"

    def generics(self, g) -> str:
        params = []
        for p in g.get("params", []):
            kind = p["kind"]
            if "lifetime" in kind:
                params.append(p["name"])
            elif "type" in kind:
                if kind["type"].get("is_synthetic"):
                    continue
                bounds = kind["type"].get("bounds", [])
                params.append(p["name"] + (": " + " + ".join(self.bound(b) for b in bounds) if bounds else ""))
            elif "const" in kind:
                params.append(f"const {p['name']}: {self.ty(kind['const']['type'])}")
        return "<" + ", ".join(params) + ">" if params else ""

    def signature(self, name, f) -> str:
        header = f["header"]
        prefix = ("const " if header.get("is_const") else "") + ("async " if header.get("is_async") else "")
        inputs = ", ".join(
            ("self" if n == "self" and self.ty(t) == "Self" else f"{n}: {self.ty(t)}")
            for n, t in f["sig"]["inputs"]
        )
        out = f["sig"].get("output")
        return f"{prefix}fn {name}{self.generics(f['generics'])}({inputs})" + (f" -> {self.ty(out)}" if out else "")

    @staticmethod
    def marks(item) -> str:
        attrs = [a if isinstance(a, str) else json.dumps(a) for a in item.get("attrs", [])]
        keep = [a for a in attrs if "non_exhaustive" in a or "must_use" in a]
        return "".join(" #[" + ("non_exhaustive" if "non_exhaustive" in a else "must_use") + "]" for a in keep)

    def add(self, line: str):
        self.lines.add(line)

    def impls(self, path, ids):
        for id_ in ids:
            imp = self.item(id_)
            if not imp:
                continue
            inner = imp["inner"]["impl"]
            if inner.get("blanket_impl"):
                continue
            trait = inner.get("trait")
            if trait is None:
                for method_id in inner["items"]:
                    method = self.item(method_id)
                    if method and method.get("visibility") == "public" and "function" in method["inner"]:
                        self.add("pub " + self.signature(path + "::" + method["name"], method["inner"]["function"]) + self.marks(method))
                    elif method and method.get("visibility") == "public" and "assoc_const" in method["inner"]:
                        self.add(f"pub const {path}::{method['name']}")
            else:
                name = self.path_of(trait)
                if inner.get("is_synthetic") and trait.get("path", "").split("::")[-1] not in AUTO_TRAITS:
                    continue
                negative = "!" if inner.get("is_negative") else ""
                self.add(f"impl {negative}{name} for {path}")

    def walk(self, id_, path):
        item = self.item(id_)
        if item is None:
            return
        inner = item["inner"]
        kind = next(iter(inner))
        v = inner[kind]
        if kind == "module":
            if path != "atlas_actix":
                self.add(f"pub mod {path}")
            for child in v["items"]:
                c = self.item(child)
                if c is None or c.get("visibility") != "public":
                    continue
                if "use" in c["inner"]:
                    use = c["inner"]["use"]
                    if use.get("id") is not None and self.item(use["id"]) is not None:
                        name = use["name"]
                        if use.get("is_glob"):
                            self.walk(use["id"], path)
                        else:
                            self.walk_named(use["id"], f"{path}::{name}")
                    else:
                        self.add(f"pub use {path}::{use['name']} = {use['source']}")
                    continue
                self.walk(child, f"{path}::{c['name']}")
        elif kind == "struct":
            self.add(f"pub struct {path}{self.generics(v['generics'])}{self.marks(item)}")
            fields = v["kind"].get("plain", {}).get("fields", []) if isinstance(v["kind"], dict) else []
            tuple_fields = v["kind"].get("tuple", []) if isinstance(v["kind"], dict) else []
            for f in fields:
                field = self.item(f)
                if field and field.get("visibility") == "public":
                    self.add(f"pub {path}::{field['name']}: {self.ty(field['inner']['struct_field'])}")
            for n, f in enumerate(tuple_fields):
                field = self.item(f) if f is not None else None
                if field and field.get("visibility") == "public":
                    self.add(f"pub {path}::{n}: {self.ty(field['inner']['struct_field'])}")
            self.impls(path, v["impls"])
        elif kind == "enum":
            self.add(f"pub enum {path}{self.generics(v['generics'])}{self.marks(item)}")
            for variant_id in v["variants"]:
                variant = self.item(variant_id)
                vk = variant["inner"]["variant"]["kind"]
                shape = ""
                if isinstance(vk, dict) and "struct" in vk:
                    shape = " { " + ", ".join(
                        f"{self.item(f)['name']}: {self.ty(self.item(f)['inner']['struct_field'])}" for f in vk["struct"]["fields"]
                    ) + " }"
                elif isinstance(vk, dict) and "tuple" in vk:
                    shape = "(" + ", ".join(self.ty(self.item(f)["inner"]["struct_field"]) for f in vk["tuple"] if f is not None) + ")"
                self.add(f"pub {path}::{variant['name']}{shape}{self.marks(variant)}")
            self.impls(path, v["impls"])
        elif kind == "function":
            self.add(f"pub {self.signature(path, v)}{self.marks(item)}")
        elif kind == "trait":
            self.add(f"pub trait {path}{self.generics(v['generics'])}")
            for member in v["items"]:
                m = self.item(member)
                if m and "function" in m["inner"]:
                    self.add("pub " + self.signature(path + "::" + m["name"], m["inner"]["function"]))
        elif kind in ("macro", "proc_macro"):
            self.add(f"pub macro {path}!")
        elif kind == "constant":
            self.add(f"pub const {path}: {self.ty(v['type'])}")
        elif kind == "static":
            self.add(f"pub static {path}: {self.ty(v['type'])}")
        elif kind == "type_alias":
            self.add(f"pub type {path} = {self.ty(v['type'])}")
        else:
            self.add(f"pub {kind} {path}")

    def walk_named(self, id_, path):
        self.walk(id_, path)


def main() -> int:
    doc = rustdoc_json()
    inventory = Inventory(doc)
    inventory.walk(doc["root"], "atlas_actix")
    text = "".join(line + "\n" for line in sorted(inventory.lines) if "::__private" not in line)
    if "--bless" in sys.argv:
        INVENTORY.write_text(text)
        print(f"wrote {INVENTORY.relative_to(ROOT)}: {text.count(chr(10))} lines")
        return 0
    current = INVENTORY.read_text() if INVENTORY.exists() else ""
    if current == text:
        print(f"public API unchanged: {text.count(chr(10))} items")
        return 0
    import difflib

    sys.stdout.writelines(
        difflib.unified_diff(current.splitlines(True), text.splitlines(True), str(INVENTORY.name), "now")
    )
    print("the public API changed: review it, then run `python3 tests/support/public_api.py --bless`")
    return 1


if __name__ == "__main__":
    sys.exit(main())
