#!/usr/bin/env python3
"""Finds import circles in the crate's own code: at every folder of src/, its files and
subfolders are the nodes, and an arrow runs from one to another when code in the first names a
path (`use` or inline, `crate::`/`super::`/`self::`) that lands in the second. A folder's mod.rs
is the folder's face, not one of its files, so a child reaching up to it is no arrow inside that
folder. Test code (tests.rs, tests/ folders, `#[cfg(test)]` items) is left out: tests may import
from anywhere. Prints each circle with the names behind every arrow; exits 1 when there is one.

    python3 scripts/import_circles.py [SRC_DIR]     (default: src)
"""
import re
import sys
from pathlib import Path

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
INLINE = re.compile(r"(?<![A-Za-z0-9_:])(?:crate|super|self)(?:::" + IDENT + r")+")
USE = re.compile(r"^[ \t]*(?:pub(?:\([^)]*\))?[ \t]+)?use[ \t]+([^;]+);", re.M)


def module_of(src, path):
    """The module path of a file: src/a/mod.rs -> ("a",), src/a/b.rs -> ("a", "b")."""
    parts = path.relative_to(src).with_suffix("").parts
    if parts[-1] in ("mod", "lib"):
        parts = parts[:-1]
    return tuple(parts)


def strip_comments(text):
    """Drops // comments (doc comments too: they name paths in prose) and /* */ blocks."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def strip_test_items(text):
    """Drops every item under `#[cfg(test)]`: a braced block (mod tests { ... }) or one line."""
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]", text):
        if m.start() < i:
            continue
        out.append(text[i : m.start()])
        j = m.end()
        semi, brace = text.find(";", j), text.find("{", j)
        if brace == -1 or (semi != -1 and semi < brace):
            i = semi + 1 if semi != -1 else len(text)
            continue
        depth, k = 0, brace
        while k < len(text):
            depth += {"{": 1, "}": -1}.get(text[k], 0)
            k += 1
            if depth == 0:
                break
        i = k
    out.append(text[i:])
    return "".join(out)


def expand_use(tree):
    """`super::{a, b::{C, D}}` -> ["super::a", "super::b::C", "super::b::D"] (renames dropped)."""
    tree = re.sub(r"\s+", "", re.sub(r"\s+as\s+", "@as@", tree))
    depth, start = 0, None
    for i, ch in enumerate(tree):
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                prefix, inner, rest = tree[:start], tree[start + 1 : i], tree[i + 1 :]
                items, d, s = [], 0, 0
                for j, c in enumerate(inner + ","):
                    if c == "{":
                        d += 1
                    elif c == "}":
                        d -= 1
                    elif c == "," and d == 0:
                        if inner[s:j]:
                            items.append(inner[s:j])
                        s = j + 1
                out = []
                for item in items:
                    if item == "self":
                        out.extend(expand_use(prefix.rstrip(":") + rest))
                    else:
                        out.extend(expand_use(prefix + item + rest))
                return out
    return [tree.split("@as@")[0]]


def resolve(path, here, modules):
    """The module a path lands in (the longest known prefix) and the name after it."""
    segs = path.split("::")
    base = list(here)
    if segs[0] == "crate":
        base, segs = [], segs[1:]
    elif segs[0] in ("super", "self"):
        # In a plain file, `self` is the file's module; `super` its folder. A mod.rs is its
        # folder already, so `super` goes one folder up from there.
        while segs and segs[0] in ("super", "self"):
            if segs[0] == "super":
                base = base[:-1]
            segs = segs[1:]
    else:
        return None
    target = tuple(base)
    rest = segs
    while rest and target + (rest[0],) in modules:
        target, rest = target + (rest[0],), rest[1:]
    if target not in modules:
        return None
    return target, (rest[0] if rest else "*")


def arrows(src):
    """Every (from module, to module, name) seen in the crate's non-test code."""
    files = {}
    for p in sorted(src.rglob("*.rs")):
        rel = p.relative_to(src).parts
        if p.name == "main.rs" and len(rel) == 1:
            continue  # the binary: a crate of its own over the library
        if p.name == "tests.rs" or "tests" in rel[:-1]:
            continue
        files[module_of(src, p)] = p
    modules = set(files)
    out = set()
    for mod, p in files.items():
        text = strip_test_items(strip_comments(p.read_text(encoding="utf-8")))
        paths = []
        for m in USE.finditer(text):
            paths.extend(expand_use(m.group(1)))
        paths.extend(INLINE.findall(USE.sub("", text)))
        for path in paths:
            hit = resolve(path, mod, modules)
            if hit and hit[0] != mod:
                out.add((mod, hit[0], hit[1]))
    return modules, out


def circles(modules, edges):
    """Per folder: the strongly connected groups (two or more children) among its children."""
    folders = {m[:i] for m in modules for i in range(len(m))}
    found = []
    for folder in sorted(folders):
        n = len(folder)
        graph, names = {}, {}
        for a, b, name in edges:
            if len(a) > n and len(b) > n and a[:n] == folder and b[:n] == folder:
                ca, cb = a[n], b[n]
                if ca != cb:
                    graph.setdefault(ca, set()).add(cb)
                    names.setdefault((ca, cb), set()).add(f"{'/'.join(a)} -> {'/'.join(b)}: {name}")
        for group in sccs(graph):
            if len(group) > 1:
                ties = sorted(
                    t for (x, y), ts in names.items() if x in group and y in group for t in ts
                )
                found.append((folder, sorted(group), ties))
    return found


def sccs(graph):
    """Tarjan's strongly connected components."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    nodes = set(graph) | {b for bs in graph.values() for b in bs}

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on.discard(w)
                group.add(w)
                if w == v:
                    break
            out.append(group)

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def main():
    src = Path(sys.argv[1] if len(sys.argv) > 1 else "src")
    if not src.is_dir():
        print(f"import_circles: {src} is not a directory (expected the crate's src/)",
              file=sys.stderr)
        return 2
    modules, edges = arrows(src)
    found = circles(modules, edges)
    for folder, group, ties in found:
        where = "src/" + "/".join(folder) if folder else "src"
        print(f"circle in {where}: {', '.join(group)}")
        for t in ties:
            print(f"  {t}")
    print(f"{len(modules)} modules, {len(edges)} named imports, {len(found)} circle(s)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
