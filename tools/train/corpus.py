#!/usr/bin/env python3
"""Collect the training corpus: the Python sources of the CPython standard library installed
on this machine (PSF licence). Deterministic: files are sorted by relative path and split into
train / held-out by a hash of the relative path (so the split does not depend on the machine's
file order or on which other files exist).

Writes (under --data, default tools/train/data, git-ignored except the manifests):
  manifest-train.tsv, manifest-heldout.tsv  relative paths (sha256 of contents) one per line
  train.txt, heldout.txt                     concatenated text, documents separated by <|endoftext|>
  corpus.json                                sizes, source, licence, split
and the held-out prompt set bench/prompts/heldout-code.jsonl (kept in git).
"""
import argparse, ast, hashlib, json, os, random, sys

EOT = "<|endoftext|>"
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))


def default_root():
    import sysconfig
    return sysconfig.get_paths()["stdlib"]


def excluded(rel):
    parts = rel.split(os.sep)
    return (parts[0] in ("site-packages", "test", "idlelib")
            or "tests" in parts or "test" in parts or "__pycache__" in parts)


def collect(root):
    files = []
    for d, dirs, names in os.walk(root):
        dirs.sort()
        for n in sorted(names):
            if not n.endswith(".py"):
                continue
            full = os.path.join(d, n)
            rel = os.path.relpath(full, root)
            if excluded(rel) or os.path.islink(full):
                continue
            files.append(rel)
    return sorted(files)


def is_heldout(rel, pct):
    h = int(hashlib.sha256(rel.encode()).hexdigest()[:8], 16)
    return (h % 100) < pct


def make_prompts(root, held, n, seed=0):
    """Prompt = source lines up to and including the first docstring line of a function
    (signature + start of docstring), from held-out files. Deterministic."""
    cands = []
    for rel in held:
        src = open(os.path.join(root, rel), encoding="utf-8", errors="replace").read()
        try:
            tree = ast.parse(src)
        except SyntaxError:
            continue
        lines = src.splitlines(keepends=True)
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if not node.body or not isinstance(node.body[0], ast.Expr):
                continue
            c = node.body[0].value
            if not (isinstance(c, ast.Constant) and isinstance(c.value, str)):
                continue
            if len(node.body) < 2:
                continue
            start = node.lineno - 1
            if node.decorator_list:
                start = node.decorator_list[0].lineno - 1
            doc_line = c.lineno - 1   # first docstring line
            if doc_line - start > 6:
                continue
            text = "".join(lines[start:doc_line + 1])
            # dedent to the function's column
            col = node.col_offset
            text = "".join(l[col:] if l[:col].strip() == "" else l for l in text.splitlines(True))
            if not (40 <= len(text) <= 400):
                continue
            cands.append({"file": rel, "line": node.lineno, "name": node.name, "prompt": text})
    rng = random.Random(seed)
    # at most 3 prompts per file, so the set covers many files
    rng.shuffle(cands)
    per, out = {}, []
    for c in cands:
        if per.get(c["file"], 0) >= 3:
            continue
        per[c["file"]] = per.get(c["file"], 0) + 1
        out.append(c)
        if len(out) == n:
            break
    out.sort(key=lambda c: (c["file"], c["line"]))
    for i, c in enumerate(out):
        c["id"] = f"heldout-{i:03d}"
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=default_root(), help="stdlib directory (default: this Python's)")
    ap.add_argument("--data", default=os.path.join(HERE, "data"))
    ap.add_argument("--heldout-pct", type=int, default=5)
    ap.add_argument("--prompts", default=os.path.join(REPO, "bench", "prompts", "heldout-code.jsonl"))
    ap.add_argument("--num-prompts", type=int, default=32)
    a = ap.parse_args()

    files = collect(a.root)
    train = [f for f in files if not is_heldout(f, a.heldout_pct)]
    held = [f for f in files if is_heldout(f, a.heldout_pct)]
    os.makedirs(a.data, exist_ok=True)
    stats = {}
    for name, lst in (("train", train), ("heldout", held)):
        nbytes = 0
        with open(os.path.join(a.data, f"{name}.txt"), "w", encoding="utf-8") as out, \
             open(os.path.join(a.data, f"manifest-{name}.tsv"), "w") as man:
            for rel in lst:
                raw = open(os.path.join(a.root, rel), "rb").read()
                text = raw.decode("utf-8", errors="replace").replace(EOT, "")
                out.write(text)
                out.write(EOT)
                nbytes += len(raw)
                man.write(f"{rel}\t{hashlib.sha256(raw).hexdigest()}\n")
        stats[name] = {"files": len(lst), "bytes": nbytes}
    info = {
        "source": "CPython standard library (.py files), " + a.root,
        "python_version": sys.version.split()[0],
        "licence": "PSF License Agreement (Python Software Foundation License Version 2)",
        "excluded": "site-packages/, test/ and tests/ directories, idlelib/",
        "split": f"sha256(relative path) % 100 < {a.heldout_pct} -> held-out",
        "document_separator": EOT,
        **stats,
    }
    json.dump(info, open(os.path.join(a.data, "corpus.json"), "w"), indent=2)
    prompts = make_prompts(a.root, held, a.num_prompts)
    os.makedirs(os.path.dirname(a.prompts), exist_ok=True)
    with open(a.prompts, "w") as f:
        for p in prompts:
            f.write(json.dumps(p) + "\n")
    print(json.dumps(info, indent=2))
    print(f"{len(prompts)} prompts -> {a.prompts}")


if __name__ == "__main__":
    main()
