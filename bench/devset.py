"""Score dimfix on a development set of real authors' code, each with one realistic mistake.

    /work/corpus-venv/bin/python bench/devset.py --sources /work/.mirror
        [--cases bench/devset/cases.toml] [--only a,b] [--kinds k1,k2] [--json out.json]
        [--keep] [--timeout 180] [--list]

No fetched code is stored in this repository: bench/devset/cases.toml names, per case, the
public repository, commit, path and license of the author's file, the sibling files it
imports, the model (`FILE::NAME`, `--input`, `--init`, `--set`, `--num-classes`) and the
mistake as one exact substitution of the file's bytes (old -> new, the occurrence-th
match, counted from 0). At run time each case's files are read from the fetched
repositories under --sources (`<owner>+<name>/repo`, the layout the search tool's fetch
leaves, or `<owner>/<name>`, `<name>` clones) with `git show COMMIT:PATH`, into a temp
folder with the repository's layout. Then, per case:

1. the author's file must build and run (bench/devset_load.py, which does not use dimfix)
   and the mistake must break it: a raise, or for a `num-classes` case another output;
   a case where either fails is reported as a bad case and left out of the figures;
2. originals: `dimfix FILE::NAME ... --check` on the author's file must exit 0 and leave
   every byte alone;
3. dimfix (write mode, `python -m dimfix`, cwd = the temp folder) on the mistaken file,
   scored: repaired (the judge builds and runs it with the author's output shape),
   restored (byte for byte the author's file, and no other file changed), exit code, time.

It prints a table, the failures with dimfix's first stderr line and the diff against the
author's file, a summary against the target (>= 90 % restored byte for byte) and exits 0
whatever the result. Run it with the venv the cases need (torch, torchvision, einops: the
corpus venv of bench/zoo_corpus.py plus einops); dimfix comes from that venv or
PYTHONPATH.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import difflib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET_RESTORED = 90.0


# --------------------------------------------------------------------------- sources


def _repo_dir(sources: Path, repo: str) -> Path:
    owner, name = repo.split("/")
    for d in (sources / f"{owner}+{name}" / "repo", sources / owner / name, sources / name):
        if d.exists():
            return d
    raise FileNotFoundError(f"{repo} is not under {sources} (fetch it: see bench/README.md)")


def read_source(sources: Path, case: dict, rel: str) -> bytes:
    """The bytes of rel (repository-relative) at the case's commit."""
    d = _repo_dir(sources, case["repo"])
    p = subprocess.run(["git", "-C", str(d), "show", f"{case['commit']}:{rel}"], capture_output=True)
    if p.returncode:
        raise FileNotFoundError(f"{case['repo']}@{case['commit'][:10]}:{rel}: {p.stderr.decode().strip()}")
    return p.stdout


def mutate(src: bytes, m: dict) -> bytes:
    """src with the occurrence-th match of m['old'] replaced by m['new']."""
    old, new, k = m["old"].encode(), m["new"].encode(), m.get("occurrence", 0)
    at = -1
    for _ in range(k + 1):
        at = src.find(old, at + 1)
        if at < 0:
            raise ValueError(f"mutation: {m['old']!r} occurs {k} time(s) or fewer, no occurrence {k}")
    return src[:at] + new + src[at + len(old):]


# --------------------------------------------------------------------------- runs


def _model_args(case: dict) -> list[str]:
    args = [a for s in case["input"] for a in ("--input", s)]
    args += [a for s in case.get("init", []) for a in ("--init", s)]
    args += [a for s in case.get("set", []) for a in ("--set", s)]
    return args


def judge(work: Path, case: dict, timeout: int) -> dict:
    """{"ok", "shape"|"error"} for the case's file as it is now in work."""
    cmd = [sys.executable, str(HERE / "devset_load.py"), case["path"], case["target"], *_model_args(case)]
    try:
        p = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=timeout,
                           env=dict(os.environ, OMP_NUM_THREADS="1"))
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": "timeout"}
    last = (p.stdout.strip().splitlines() or [""])[-1]
    try:
        return json.loads(last)
    except json.JSONDecodeError:
        return {"ok": False, "error": (p.stderr.strip().splitlines() or ["no output"])[-1]}


def dimfix(work: Path, case: dict, extra: list[str], timeout: int) -> dict:
    args = [f"{case['path']}::{case['target']}", *_model_args(case)]
    if case.get("num_classes"):
        args += ["--num-classes", str(case["num_classes"])]
    cmd = [sys.executable, "-m", "dimfix", *args, *extra]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=timeout,
                           env=dict(os.environ, OMP_NUM_THREADS="1"), start_new_session=True)
        rc, err = p.returncode, p.stderr
    except subprocess.TimeoutExpired:
        rc, err = "timeout", ""
    return {"rc": rc, "stderr": err[-4000:], "seconds": round(time.perf_counter() - t0, 2),
            "command": "dimfix " + " ".join(args + extra)}


def _snapshot(work: Path) -> dict[str, bytes]:
    return {str(p.relative_to(work)): p.read_bytes() for p in work.rglob("*") if p.is_file()
            and "__pycache__" not in p.parts}


def run_case(case: dict, sources: Path, tmp: Path, timeout: int, validate: bool = False) -> dict:
    r = {"name": case["name"], "kind": case["kind"], "repo": case["repo"]}
    work = tmp / case["name"]
    files = [case["path"], *case.get("files", [])]
    for rel in files:
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_bytes(read_source(sources, case, rel))
    target = work / case["mutate"].get("file", case["path"])
    expected = _snapshot(work)
    broken = mutate(target.read_bytes(), case["mutate"])
    base = judge(work, case, timeout)
    if not base["ok"]:
        return {**r, "status": "bad-case", "why": f"the author's file does not run: {base['error']}"}
    target.write_bytes(broken)
    after_mut = judge(work, case, timeout)
    _restore(work, expected)
    if case.get("num_classes") and after_mut.get("shape") == base["shape"]:
        return {**r, "status": "bad-case", "why": "the mistake does not change the output"}
    if not case.get("num_classes") and after_mut["ok"]:
        return {**r, "status": "bad-case", "why": f"the mistake does not break the model (output {after_mut['shape']})"}
    r["breaks_with"] = after_mut.get("error") or f"output {after_mut.get('shape')}"
    if validate:
        return {**r, "status": "valid", "why": f"valid: output {base['shape']}; the mistake gives {r['breaks_with']}"}

    chk = dimfix(work, case, ["--check"], timeout)
    r["original"] = {**chk, "ok": chk["rc"] == 0 and _snapshot(work) == expected}
    _restore(work, expected)
    target.write_bytes(broken)
    fix = dimfix(work, case, [], timeout)
    after = _snapshot(work)
    changed = sorted(k for k, v in after.items() if expected.get(k) != v)
    res = judge(work, case, timeout)
    mutated_rel = str(target.relative_to(work))
    r.update(status="scored", fix={**fix, "other_files": [k for k in changed if k != mutated_rel]},
             repaired=res.get("shape") == base["shape"], restored=not changed,
             changed=after[mutated_rel] != broken or len(changed) > 1,
             after_error=None if res.get("shape") == base["shape"] else res.get("error") or f"output {res.get('shape')}")
    r["diff"] = "\n".join(_diff(expected.get(k, b""), after[k], k) for k in changed)
    return r


def _restore(work: Path, snap: dict[str, bytes]) -> None:
    for rel, data in snap.items():
        if (work / rel).read_bytes() != data:
            (work / rel).write_bytes(data)


def _diff(expected: bytes, got: bytes, name: str) -> str:
    """Unified diff (no context) from the author's file to dimfix's result."""
    a = expected.decode(errors="replace").splitlines()
    b = got.decode(errors="replace").splitlines()
    d = list(difflib.unified_diff(a, b, f"{name} (author)", f"{name} (dimfix)", lineterm="", n=0))
    return "\n".join(d[2:22])


# --------------------------------------------------------------------------- report


def first_line(stderr: str) -> str:
    """The line that says why: the first `cannot fix`/error line of stderr, else its first line."""
    lines = [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith((" ", "\t"))]
    return next((ln for ln in lines if re.search(r"cannot fix|error|Error|refus", ln)), lines[0] if lines else "(no stderr)")


def _why(r: dict) -> str:
    rc = r["fix"]["rc"]
    if not r["repaired"]:
        if rc != 0:
            return f"not repaired, exit {rc}"
        return f"not repaired, exit 0, {'file changed' if r['changed'] else 'file unchanged'}"
    return "repaired, other files changed" if r["fix"]["other_files"] else "repaired, different text"


def report(results: list[dict], wall: float) -> None:
    scored = [r for r in results if r["status"] == "scored"]
    bad = [r for r in results if r["status"] != "scored"]
    print("\n| case | kind | exit | repaired | restored | original | s |")
    print("|---|---|---|---|---|---|---|")
    for r in scored:
        print(f"| {r['name']} | {r['kind']} | {r['fix']['rc']} | {'yes' if r['repaired'] else 'NO'} | "
              f"{'yes' if r['restored'] else 'NO'} | {'ok' if r['original']['ok'] else 'CHANGED/exit ' + str(r['original']['rc'])} "
              f"| {r['fix']['seconds']:.1f} |")
    for r in bad:
        print(f"| {r['name']} | {r['kind']} | bad case: {r['why']} | | | | |")

    failures = [r for r in scored if not r["restored"]]
    if failures:
        print(f"\nnot restored ({len(failures)}), by cause:")
    for why in sorted({_why(r) for r in failures}):
        group = [r for r in failures if _why(r) == why]
        print(f"\n## {why} ({len(group)})")
        for r in group:
            print(f"\n{r['name']} [{r['kind']}] {r['repo']}: {r['what']}")
            print(f"  $ {r['fix']['command']}")
            print(f"  stderr: {first_line(r['fix']['stderr'])}")
            if r.get("after_error"):
                print(f"  after: {r['after_error']}")
            if r["fix"]["other_files"]:
                print(f"  other files changed: {', '.join(r['fix']['other_files'])}")
            if r.get("diff"):
                print("  " + r["diff"].replace("\n", "\n  "))
    originals = [r for r in scored if not r["original"]["ok"]]
    for r in originals:
        print(f"\noriginal not clean: {r['name']}: exit {r['original']['rc']}: {first_line(r['original']['stderr'])}")

    def pct(k):
        n = sum(bool(r[k]) for r in scored)
        return n, 100.0 * n / len(scored) if scored else 0.0

    print(f"\ncases {len(results)}: scored {len(scored)}, bad cases {len(bad)}; "
          f"{len({r['repo'] for r in results})} repositories; wall {wall:.0f} s; median dimfix run "
          f"{statistics.median([r['fix']['seconds'] for r in scored]) if scored else 0:.1f} s")
    (nrep, prep), (nres, pres) = pct("repaired"), pct("restored")
    norig = sum(r["original"]["ok"] for r in scored)
    print("\n| figure | value | target | |\n|---|---|---|---|")
    print(f"| restored byte for byte | {nres}/{len(scored)} ({pres:.1f} %) | >= {TARGET_RESTORED:.0f} % | "
          f"{'PASS' if pres >= TARGET_RESTORED else 'MISS'} |")
    print(f"| repaired (author's output shape) | {nrep}/{len(scored)} ({prep:.1f} %) | | |")
    print(f"| originals untouched, exit 0 under --check | {norig}/{len(scored)} | all | "
          f"{'PASS' if norig == len(scored) else 'MISS'} |")
    print(f"| exit codes | {dict(collections.Counter(str(r['fix']['rc']) for r in scored))} | | |")
    print("\n| kind | cases | repaired | restored |\n|---|---|---|---|")
    for kind in sorted({r["kind"] for r in scored}):
        g = [r for r in scored if r["kind"] == kind]
        print(f"| {kind} | {len(g)} | {sum(r['repaired'] for r in g)} | {sum(r['restored'] for r in g)} |")


# --------------------------------------------------------------------------- main


def load_cases(path: Path) -> list[dict]:
    cases = tomllib.loads(path.read_text())["case"]
    names = [c["name"] for c in cases]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise SystemExit(f"{path}: duplicate case names: {', '.join(sorted(dup))}")
    return cases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sources", type=Path, default=Path("/work/.mirror"),
                    help="folder of fetched repositories (default /work/.mirror)")
    ap.add_argument("--cases", type=Path, default=HERE / "devset" / "cases.toml")
    ap.add_argument("--only", help="comma-separated case names")
    ap.add_argument("--kinds", help="comma-separated mistake kinds")
    ap.add_argument("--timeout", type=int, default=180, help="seconds per dimfix or judge run")
    ap.add_argument("--jobs", type=int, default=1, help="cases run at once (default 1)")
    ap.add_argument("--json", type=Path, help="write every result here")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder (printed)")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--validate", action="store_true", help="only check each case (the author's file runs, the "
                    "mistake breaks it); no dimfix run")
    a = ap.parse_args()
    cases = load_cases(a.cases)
    if a.only:
        cases = [c for c in cases if c["name"] in a.only.split(",")]
    if a.kinds:
        cases = [c for c in cases if c["kind"] in a.kinds.split(",")]
    if a.list:
        for c in cases:
            print(f"{c['name']:<40} {c['kind']:<12} {c['repo']}:{c['path']}::{c['target']}  {c['what']}")
        return
    import dimfix
    print(f"{len(cases)} cases; python {sys.executable}; dimfix from {Path(dimfix.__file__).parent}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="dimfix-devset-"))
    results, t0 = [], time.perf_counter()

    def one(c):
        try:
            r = run_case(c, a.sources, tmp, a.timeout, a.validate)
        except (OSError, ValueError) as e:
            r = {"name": c["name"], "kind": c["kind"], "repo": c["repo"], "status": "bad-case", "why": str(e)}
        return {**r, "what": c["what"]}

    try:  # threads: each case runs in subprocesses
        with concurrent.futures.ThreadPoolExecutor(a.jobs) as pool:
            for i, r in enumerate(pool.map(one, cases), 1):
                results.append(r)
                line = r["why"] if r["status"] != "scored" else (
                    f"exit {r['fix']['rc']} repaired={int(r['repaired'])} restored={int(r['restored'])} "
                    f"{r['fix']['seconds']:.1f}s")
                print(f"[{i}/{len(cases)}] {r['name']:<40} {line}", flush=True)
    finally:
        if a.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if not a.validate:
        report(results, time.perf_counter() - t0)
    if a.json:
        a.json.write_text(json.dumps({"results": results}, indent=1))
        print(f"\nwrote {a.json}")


if __name__ == "__main__":
    main()
