"""Score dimfix on real model libraries: torchvision and timm, one mutation per model.

Setup (once; a separate venv OUTSIDE the repository, ~5.6 GB, ~90 s from a local registry):

    python3 bench/zoo_corpus.py --setup /work/corpus-venv
    # = python3 -m venv /work/corpus-venv
    #   /work/corpus-venv/bin/pip install -c bench/corpus_requirements.txt \
    #       torch torchvision timm numpy libcst click black
    #   /work/corpus-venv/bin/pip install --no-deps -e .

Run:

    /work/corpus-venv/bin/python bench/zoo_corpus.py [--limit N] [--jobs N]
        [--only torchvision|timm] [--models a,b] [--kinds all|classic|new|k1,k2]
        [--json out.json] [--keep]

What it does. The installed `torchvision/` and `timm/` packages (sources and compiled
.so files, nothing of them is stored in this repository) are copied into one temporary
project per job. For every torchvision classification model and one model per timm
model file (the smallest by name), a worker that imported the copy:

1. builds the model and runs it once on its input (1x3x224x224 for torchvision, timm's
   pretrained_cfg input_size), on meta or, where meta fails, on CPU; a model that does
   not build is counted as "unbuildable" and left out. Line coverage of the model's own
   file is recorded while it runs;
2. runs `dimfix FILE::ENTRY --input SHAPE --check` on the untouched copy: it must exit 0
   and leave the bytes alone ("originals");
3. picks mutations of the model file (seeded by --seed and the model name), from the
   calls on executed lines (bench/zoo_mutations.py), one per group of kinds that --kinds
   selects. The classic group (drawn exactly as before issue 23, so old figures compare)
   changes the in-size argument (first positional, or in_channels/in_features/
   num_features/..., GroupNorm's num_channels) of a layer, norm or conv helper call:
     literal   an int literal changed (n >= 16: n - n//4, else n + 1),
     product   one int literal factor of a product changed the same way,
     name      a name swapped for another size-like name of the enclosing function,
     num-classes  a `num_classes` default changed, dimfix run with --num-classes;
   the new group (issue 23):
     name-expr    a name inside a product or sum of an in-size swapped (`bn_size * growth_rate`),
     conditional  an arm of `a if c else b` in an in-size (or assigned to a size name),
     subscript    a constant index of an in-size (`depths[1]` for `depths[0]`),
     call-site    an in-size passed to a helper defined in another file of the package,
     constant     a name (or self.attr) written as the literal it held at its first layer
                  (it "repairs" with the name back or a literal that works);
   a mutation is kept only if the model then fails with a RuntimeError while it is
   built or run (num-classes: if the output shape changes); otherwise the next one;
4. runs dimfix (write mode) on the mutated file and scores:
     repaired   the file now builds and runs with the original output shape,
     restored   the file is byte for byte the original,
     outside    dimfix edited lines outside the def that holds the mutation, or other files,
     idempotent a second dimfix run exits 0 and changes nothing (runs that exited 0),
   and every other changed file under the copy is reported and put back.

dimfix always runs as a subprocess (`python -m dimfix`, cwd = the temporary project,
so the copy is what gets imported) with --timeout-model seconds. Failures are grouped by
cause: the first error line of dimfix's stderr with paths, numbers and quoted names
normalized. It prints figures against issue 23's targets (>= 97 % repaired, >= 92 % restored,
0 runs edited outside, 100 % originals) and exits 0 whatever the result.
"""

from __future__ import annotations

import argparse
import collections
import inspect
import concurrent.futures as cf
import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import types
import warnings
from pathlib import Path

from zoo_mutations import CLASSIC_KINDS, NEW_KINDS, apply, candidates, func_span, more_candidates, watched_names

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "bench" / "corpus_requirements.txt"
TARGETS = {"repaired": 97.0, "restored": 92.0, "originals": 100.0}  # issue 23

# --------------------------------------------------------------------------- setup


def setup(venv: Path) -> None:
    if venv.resolve().is_relative_to(ROOT):
        raise SystemExit(f"{venv}: put the venv outside the repository")
    py = venv / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "-c", str(REQUIREMENTS),
                    "torch", "torchvision", "timm", "numpy", "libcst", "click", "black"], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "-e", str(ROOT)], check=True)
    subprocess.run([str(py), "-c", "import torch, torchvision, timm, dimfix; print('ok', torch.__version__, "
                    "torchvision.__version__, timm.__version__)"], check=True)
    print(f"now run: {py} {Path(__file__).relative_to(ROOT)}")


# --------------------------------------------------------------------------- model list

SIZE_ORDER = ["atto", "femto", "pico", "nano", "tiny", "xxs", "xs", "small", "s", "mobile", "lite",
              "mini", "t", "b0", "18", "26", "050", "075", "100", "m", "base", "b"]


def _size_rank(name: str):
    tokens = re.split(r"[_\.]", name)
    rank = len(SIZE_ORDER)
    for t in tokens:
        if t in SIZE_ORDER:
            rank = min(rank, SIZE_ORDER.index(t))
    big = any(re.fullmatch(r"(384|448|512|518|576|640|800|1024)", t) for t in tokens)
    return (big, rank, len(name), name)


def list_models(only: str | None, per_family: int):
    """[(source, entry, module, relpath, input)] in a deterministic interleaved order."""
    import timm
    import timm.models._registry as reg
    import torchvision
    import torchvision.models as tvm

    tv, tm = [], []
    if only in (None, "torchvision"):
        base = Path(torchvision.__file__).parent.parent
        for name in tvm.list_models(module=tvm):
            fn = tvm.get_model_builder(name)
            mod = sys.modules[fn.__module__]
            tv.append(("torchvision", fn.__name__, fn.__module__,
                       str(Path(mod.__file__).relative_to(base)), "1x3x224x224"))
    if only in (None, "timm"):
        base = Path(timm.__file__).parent.parent
        families = collections.defaultdict(list)
        for name, module in reg._model_to_module.items():
            if not reg._model_entrypoints[name].__module__.rpartition(".")[2].startswith("_"):  # deprecated aliases
                families[module].append(name)
        for module in sorted(families):
            for name in sorted(families[module], key=_size_rank)[:per_family]:
                fn = reg._model_entrypoints[name]
                mod = sys.modules[fn.__module__]
                cfg = reg.get_pretrained_cfg(name)
                size = getattr(cfg, "input_size", None) or (3, 224, 224)
                tm.append(("timm", name, fn.__module__, str(Path(mod.__file__).relative_to(base)),
                           "1x" + "x".join(str(s) for s in size)))
    out = []
    for i in range(max(len(tv), len(tm))):  # interleave so --limit samples both
        out += [lst[i] for lst in (tv, tm) if i < len(lst)]
    return out


# --------------------------------------------------------------------------- worker side

W: dict = {}  # worker globals: root, python, timeouts, pristine package dirs


class Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise Timeout("build/forward timed out")


def init_worker(roots, python, timeout_model, timeout_build):
    root = roots.get()
    W.update(root=Path(root), python=python, timeout_model=timeout_model,
             timeout_build=timeout_build, mtime=int(time.time()) + 10_000_000)
    sys.path.insert(0, root)
    warnings.filterwarnings("ignore")
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch
    torch.set_num_threads(1)
    import timm  # noqa: F401
    import torchvision  # noqa: F401
    for pkg in (torchvision, timm):
        if not Path(pkg.__file__).resolve().is_relative_to(Path(root).resolve()):
            raise RuntimeError(f"{pkg.__name__} imported from {pkg.__file__}, not from the copy {root}")
    signal.signal(signal.SIGALRM, _alarm)


def _write(path: Path, data: bytes) -> None:
    """Write with a fresh, unique mtime so a stale .pyc of an earlier version never matches."""
    path.write_bytes(data)
    W["mtime"] += 2
    os.utime(path, (W["mtime"], W["mtime"]))


def _output_shape(out):
    import torch
    if isinstance(out, torch.Tensor):
        return tuple(out.shape)
    if isinstance(out, dict):
        out = out.get("logits", next(iter(out.values())))
        return _output_shape(out)
    if isinstance(out, (tuple, list)):
        return _output_shape(out[0])
    raise TypeError(f"output of type {type(out).__name__}")


def build_run(fn, shape, device, tracer=None):
    """Build with fn() on device (under tracer, if given), run one forward; return the output shape."""
    import torch
    signal.alarm(W["timeout_build"])
    try:
        with torch.device(device):
            sys.settrace(tracer)
            try:
                model = fn()
            finally:
                sys.settrace(None)
        model.eval()
        with torch.no_grad():
            out = model(torch.zeros(shape, device=device))
        return _output_shape(out)
    finally:
        signal.alarm(0)


class registry_guard:
    """Let a model file be executed a second time: torchvision's register_model raises,
    timm's overwrites its registry; both are put back afterwards."""

    def __enter__(self):
        import timm.models._registry as treg
        import torchvision.models._api as tapi
        self.tapi, self.saved_tv = tapi, tapi.BUILTIN_MODELS
        tapi.BUILTIN_MODELS = {}
        self.treg = treg
        self.saved_timm = {k: (v, v.copy()) for k, v in vars(treg).items()
                           if isinstance(v, (dict, set)) and not k.startswith("__")}
        return self

    def __exit__(self, *exc):
        self.tapi.BUILTIN_MODELS = self.saved_tv
        for obj, copy in self.saved_timm.values():
            obj.clear()
            obj.update(copy)


def exec_source(src: bytes, modname: str, path: Path):
    """Execute src as module `modname` (relative imports work), without replacing it."""
    code = compile(src, str(path), "exec", dont_inherit=True)
    mod = types.ModuleType(modname)
    mod.__file__ = str(path)
    mod.__package__ = modname.rpartition(".")[0]
    old = sys.modules.get(modname)
    try:
        sys.modules[modname] = mod
        with registry_guard(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exec(code, mod.__dict__)
    finally:
        if old is not None:
            sys.modules[modname] = old
    return mod


def try_source(src: bytes, spec, device):
    """(output shape, None) or (None, exception) for the model built from src."""
    source, entry, modname, rel, shape = spec
    try:
        mod = exec_source(src, modname, W["root"] / rel)
        return build_run(getattr(mod, entry), _shape(shape), device), None
    except BaseException as e:  # noqa: BLE001 - a model may raise anything
        if isinstance(e, KeyboardInterrupt):
            raise
        return None, e


def _shape(s: str):
    return tuple(int(x) for x in s.split("x"))


class _Lines(set):
    int_names: dict
    values: dict


def covered_lines(fn, shape, device, path: str, watch=None):
    """Lines of path executed while the model is BUILT (constructor calls, not forward).
    watch: {line: {`name` or `self.attr`}} whose int values are recorded as that line runs."""
    lines = _Lines()
    int_names: dict[int, dict[str, int]] = collections.defaultdict(dict)  # def line -> {name: int size}
    values: dict[int, dict[str, list]] = collections.defaultdict(lambda: collections.defaultdict(list))
    watch = watch or {}

    def local(frame, event, arg):
        if event == "line":
            lines.add(frame.f_lineno)
            for ref in watch.get(frame.f_lineno, ()):
                v = _held(frame, ref)
                if type(v) is int and v >= 2 and v not in values[frame.f_lineno][ref]:
                    values[frame.f_lineno][ref].append(v)
        elif event == "return":
            int_names[frame.f_code.co_firstlineno].update(
                (k, v) for k, v in frame.f_locals.items() if type(v) is int and v >= 2)
        return local

    def glob(frame, event, arg):
        if frame.f_code.co_filename == path:
            lines.add(frame.f_lineno)
            return local
        return None

    out = build_run(fn, shape, device, glob)
    lines.int_names = int_names  # type: ignore[attr-defined]
    lines.values = values  # type: ignore[attr-defined]
    return out, lines


def _held(frame, ref: str):
    """The value `name` or `self.attr` has in frame now (None if unbound or not plain)."""
    base, _, attr = ref.partition(".")
    v = frame.f_locals.get(base, frame.f_globals.get(base))
    if attr:
        try:
            v = inspect.getattr_static(v, attr, None)
        except Exception:  # noqa: BLE001 - user objects may raise anything
            return None
    return v


def foreign_callables(mod, path: Path, root: Path) -> set[str]:
    """Names in mod's globals bound to a function or class defined in another .py file of the copy."""
    out = set()
    for name, obj in vars(mod).items():
        obj = getattr(obj, "func", obj)  # functools.partial
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        owner = sys.modules.get(getattr(obj, "__module__", "") or "")
        f = getattr(owner, "__file__", None)
        if f and Path(f).resolve() != path.resolve() and Path(f).resolve().is_relative_to(root.resolve()):
            out.add(name)
    return out


# ----- candidate mutations: bench/zoo_mutations.py

# ----- dimfix runs


def dimfix(target: str, args: list[str]):
    cmd = [W["python"], "-m", "dimfix", target, *args]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    start = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=W["root"], capture_output=True, text=True, env=env,
                           timeout=W["timeout_model"], start_new_session=True)
        rc, err = p.returncode, p.stderr
    except subprocess.TimeoutExpired as e:
        rc, err = "timeout", (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
    return {"rc": rc, "stderr": err[-4000:], "seconds": round(time.perf_counter() - start, 2),
            "command": "dimfix " + " ".join([target, *args])}


def _snapshot(root: Path):
    snap = {}
    for pkg in ("torchvision", "timm"):
        for dirpath, dirnames, filenames in os.walk(root / pkg):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            for f in filenames:
                if f.endswith(".py"):
                    st = os.stat(os.path.join(dirpath, f))
                    snap[os.path.join(dirpath, f)] = (st.st_mtime_ns, st.st_size)
    return snap


def run_model(spec, seed: int, kinds=CLASSIC_KINDS + NEW_KINDS):
    t0 = time.perf_counter()
    try:
        r = _run_model(spec, seed, kinds)
    except BaseException as e:  # noqa: BLE001
        if isinstance(e, KeyboardInterrupt):
            raise
        r = {"status": "bench-error", "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-2000:]}
    source, entry, modname, rel, shape = spec
    r.update(source=source, model=entry, file=rel, input=shape, seconds=round(time.perf_counter() - t0, 2))
    return r


def _run_model(spec, seed, kinds=CLASSIC_KINDS + NEW_KINDS):
    import importlib
    source, entry, modname, rel, shape_s = spec
    root = W["root"]
    path = root / rel
    target = f"{rel}::{entry}"
    orig = path.read_bytes()
    mod = importlib.import_module(modname)
    fn = getattr(mod, entry)
    shape = _shape(shape_s)
    device, base_out, executed, err = None, None, set(), None
    for dev in ("meta", "cpu"):
        try:
            base_out, executed = covered_lines(fn, shape, dev, str(path), watched_names(orig))
            device = dev
            break
        except BaseException as e:  # noqa: BLE001
            if isinstance(e, KeyboardInterrupt):
                raise
            err = e
    if device is None:
        return {"status": "unbuildable", "error": f"{type(err).__name__}: {str(err)[:200]}"}
    r = {"status": "built", "device": device, "output": list(base_out), "rows": []}

    # originals: untouched under --check
    chk = dimfix(target, ["--input", shape_s, "--check"])
    untouched = path.read_bytes() == orig
    r["original"] = {**chk, "ok": chk["rc"] == 0 and untouched, "untouched": untouched}
    if not untouched:
        _write(path, orig)

    # one mutation per group of kinds: the classic group is drawn exactly as before issue 23
    for group, group_kinds in (("classic", CLASSIC_KINDS), ("new", NEW_KINDS)):
        wanted = [k for k in group_kinds if k in kinds]
        if not wanted:
            continue
        if group == "classic":
            cands = candidates(orig, executed, shape[1])
        else:
            cands = more_candidates(orig, executed, shape[1], foreign_callables(mod, path, root), executed.values)
        rng = random.Random(f"{seed}:{source}:{entry}" + ("" if group == "classic" else ":new"))
        row = _pick(orig, [c for c in cands if c[0] in wanted], rng, spec, device, base_out, group == "new")
        row["group"] = group
        if row["status"] == "mutated":
            _score(row, spec, orig, device, base_out)
        r["rows"].append(row)
    return r


def _pick(orig, cands, rng, spec, device, base_out, rare_first=False):
    """The first candidate, in seeded order (kinds shuffled, then each kind's list), that breaks the model.
    rare_first: the kinds with fewest candidates first instead (conditional and subscript are rare in
    torchvision and timm; shuffled, they would hardly ever be drawn)."""
    by_kind = collections.defaultdict(list)
    for c in cands:
        by_kind[c[0]].append(c)
    kinds = sorted(by_kind)
    rng.shuffle(kinds)
    if rare_first:
        kinds.sort(key=lambda k: len(by_kind[k]))
    order = []
    for k in kinds:
        lst = by_kind[k][:]
        rng.shuffle(lst)
        order += lst
    row = {"candidates": {k: len(v) for k, v in by_kind.items()}, "status": "no-mutation"}
    tries, deadline = 0, time.perf_counter() + 60
    for cand in order[:40]:
        if time.perf_counter() > deadline:
            break
        tries += 1
        out, exc = try_source(apply(orig, cand), spec, device)
        if cand[0] == "num-classes":
            ok = out is not None and out != base_out
        else:
            ok = isinstance(exc, RuntimeError) and not isinstance(exc, (NotImplementedError, Timeout))
        if ok:
            kind, line, col, end, old, new, what = cand
            row.update(status="mutated", chosen=cand, mutation={"kind": kind, "line": line, "col": col, "old": old,
                                                                "new": new, "what": what})
            row["breaks_with"] = (f"output {list(out)}" if exc is None else f"{type(exc).__name__}: {str(exc)[:200]}")
            break
    row["tries"] = tries
    return row


def _score(row, spec, orig, device, base_out):
    """Run dimfix on the mutated file and score the row; the copy is put back afterwards."""
    source, entry, modname, rel, shape_s = spec
    root, path = W["root"], W["root"] / rel
    kind = row["mutation"]["kind"]
    mutated = apply(orig, row.pop("chosen"))
    args = ["--input", shape_s]
    if kind == "num-classes":
        args += ["--num-classes", str(base_out[-1])]
    target = f"{rel}::{entry}"
    snap = _snapshot(root)
    _write(path, mutated)
    snap[str(path)] = None
    try:
        fix = dimfix(target, args)
        after = path.read_bytes()
        others = [p for p, st in _snapshot(root).items() if p in snap and snap[p] is not None and snap[p] != st]
        if others:  # dimfix edited another file too: check in a fresh process
            out, exc = _fresh_check(spec, device)
        else:
            out, exc = try_source(after, spec, device)
        row["fix"] = {**fix, "changed": after != mutated, "other_files": [os.path.relpath(p, root) for p in others]}
        row["repaired"] = out is not None and out == base_out
        row["after_error"] = None if exc is None else f"{type(exc).__name__}: {str(exc)[:200]}"
        if out is not None and out != base_out:
            row["after_error"] = f"output {list(out)}, expected {list(base_out)}"
        row["restored"] = after == orig and not others
        row["outside"] = _outside(orig, after, row["mutation"]["line"], rel) + row["fix"]["other_files"]
        if after != orig:
            row["diff"] = _short_diff(orig, after)
        if fix["rc"] == 0:
            again = dimfix(target, args)
            row["again"] = again
            row["idempotent"] = again["rc"] == 0 and path.read_bytes() == after
    finally:
        _write(path, orig)
        for p in row.get("fix", {}).get("other_files", []):
            pristine = Path(W["pristine"][p.split("/")[0]]).parent / p
            _write(root / p, pristine.read_bytes())
    return row


def _outside(orig: bytes, after: bytes, line: int, rel: str) -> list[str]:
    """`rel:a-b` for each edit of after (vs orig) outside the def that holds the mutated line."""
    import difflib
    first, last = func_span(orig, line)
    a, b = orig.split(b"\n"), after.split(b"\n")
    out = []
    for op, i1, i2, _, _ in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        lo, hi = i1 + 1, max(i2, i1 + 1)  # an insertion counts as an edit at the line it precedes
        if op != "equal" and (lo < first or hi > last):
            out.append(f"{rel}:{lo}-{hi}")
    return out


def _fresh_check(spec, device):
    source, entry, modname, rel, shape = spec
    code = (f"import sys; sys.path.insert(0, {str(W['root'])!r}); import torch, importlib; "
            f"m = importlib.import_module({modname!r});\n"
            f"with torch.device({device!r}): model = m.{entry}()\n"
            f"model.eval(); out = model(torch.zeros({_shape(shape)!r}, device={device!r}))\n"
            "out = out[0] if isinstance(out, (tuple, list)) else out\nprint(list(out.shape))")
    p = subprocess.run([W["python"], "-c", code], capture_output=True, text=True, timeout=W["timeout_model"])
    if p.returncode:
        return None, RuntimeError((p.stderr.strip().splitlines() or ["?"])[-1])
    return tuple(json.loads(p.stdout.strip().splitlines()[-1])), None


def _short_diff(a: bytes, b: bytes) -> str:
    import difflib
    d = difflib.unified_diff(a.decode(errors="replace").splitlines(), b.decode(errors="replace").splitlines(),
                             lineterm="", n=0)
    return "\n".join(list(d)[2:14])


# --------------------------------------------------------------------------- report


ENTRY_NAMES: set[str] = set()


def cause(stderr: str, model: str = "") -> str:
    if not ENTRY_NAMES:
        try:
            import timm
            import torchvision
            ENTRY_NAMES.update(timm.list_models(), torchvision.models.list_models())
        except ImportError:
            pass
    lines = [l for l in stderr.splitlines() if l.strip() and not l.startswith((" ", "\t"))
             and "Warning" not in l and not l.startswith(("---", "+++", "@@", "-", "+"))]
    pick = next((l for l in lines if "cannot fix" in l), None) or next(
        (l for l in lines if re.search(r"error|Error|failed|cannot|refus", l)), None) or (lines[0] if lines else "")
    if "cannot fix:" in pick:  # keep the reason, not the layer path or the variable names
        pick = "cannot fix: " + pick.split("): ", 1)[-1].split(",")[0]
        pick = re.sub(r"`[^`]*`", "`…`", pick)
        pick = re.sub(r"comes from .*", "comes from …", pick)
    pick = re.sub(r"\S*/\S+\.py(:\d+(:\d+)?)?", "<file>", pick)
    pick = re.sub(r"'([^']*)'|\"([^\"]*)\"", lambda m: m.group(0) if re.fullmatch(r"[A-Za-z_.]{1,30}", m.group(1)
                  or m.group(2) or "") and (m.group(1) or m.group(2)) not in ENTRY_NAMES | {model} else "'…'", pick)
    pick = re.sub(r"\b\w+\.py\b", "<file>", pick)
    pick = re.sub(r"\d+", "N", pick)
    return pick[:140] or "(no stderr)"


def _rows(r):
    """The scored mutations of one model (a model of a run before issue 23 is its own row)."""
    if "rows" in r:
        return [{**row, "source": r["source"], "model": r["model"]} for row in r["rows"]]
    return [r] if r["status"] in ("mutated", "no-mutation") else []


def _of(rows, key):
    return [r for r in rows if r.get(key)]


def summarize(results, wall):
    built = [r for r in results if r["status"] in ("built", "mutated", "no-mutation")]
    rows = [row for r in results for row in _rows(r)]
    mutated = [r for r in rows if r["status"] == "mutated"]
    unbuildable = [r for r in results if r["status"] == "unbuildable"]
    nomut = [r for r in rows if r["status"] == "no-mutation"]
    bench_err = [r for r in results if r["status"] == "bench-error"]
    orig_ok = [r for r in built if r.get("original", {}).get("ok")]
    repaired = [r for r in mutated if r.get("repaired")]
    restored = [r for r in mutated if r.get("restored")]
    exit0 = [r for r in mutated if r["fix"]["rc"] == 0]
    idem = [r for r in exit0 if r.get("idempotent")]

    def pct(a, b):
        return 100.0 * len(a) / len(b) if b else 0.0

    def mark(v, key):
        return "PASS" if v >= TARGETS[key] else "MISS"

    print()
    print(f"models listed {len(results)}: built {len(built)} ({sum(r['source'] == 'torchvision' for r in built)} "
          f"torchvision, {sum(r['source'] == 'timm' for r in built)} timm), unbuildable {len(unbuildable)}, "
          f"no breaking mutation {len(nomut)}, bench errors {len(bench_err)}; mutated and scored {len(mutated)}")
    print(f"wall {wall:.0f} s; median per model {statistics.median([r['seconds'] for r in results]) if results else 0:.1f} s "
          f"(whole pipeline); median dimfix fix run "
          f"{statistics.median([r['fix']['seconds'] for r in mutated]) if mutated else 0:.1f} s")
    print()
    print("| figure | value | target | |")
    print("|---|---|---|---|")
    v = pct(orig_ok, built)
    print(f"| originals untouched and exit 0 under --check | {len(orig_ok)}/{len(built)} ({v:.1f} %) | 100 % | {mark(v, 'originals')} |")
    v = pct(repaired, mutated)
    print(f"| repaired (builds, runs, right output) | {len(repaired)}/{len(mutated)} ({v:.1f} %) | >= 97 % | {mark(v, 'repaired')} |")
    v = pct(restored, mutated)
    print(f"| restored byte for byte | {len(restored)}/{len(mutated)} ({v:.1f} %) | >= 92 % | {mark(v, 'restored')} |")
    print(f"| idempotent (of first runs that exited 0) | {len(idem)}/{len(exit0)} ({pct(idem, exit0):.1f} %) | 100 % | |")
    outside = [r for r in mutated if r.get("outside")]
    other = [r for r in mutated if r["fix"]["other_files"]]
    print(f"| runs that edited outside the mutation's function (other files) | {len(outside)} ({len(other)}) | 0 | "
          f"{'PASS' if not outside else 'MISS'} |")
    for group in ("classic", "new"):
        g = [r for r in mutated if r.get("group", "classic") == group]
        if g and len(g) < len(mutated):
            print(f"| {group} kinds: repaired / restored / edited outside | {len(_of(g, 'repaired'))}/{len(g)} "
                  f"({pct(_of(g, 'repaired'), g):.1f} %) / {len(_of(g, 'restored'))}/{len(g)} "
                  f"({pct(_of(g, 'restored'), g):.1f} %) / {len(_of(g, 'outside'))} | | |")
    print()
    print("| source / mutation | scored | repaired | restored | edited outside |")
    print("|---|---|---|---|---|")
    groups = collections.defaultdict(list)
    for r in mutated:
        groups[r["source"]].append(r)
        groups["  " + r["mutation"]["kind"]].append(r)
    for k in sorted(groups, key=lambda k: (k.startswith(" "), k)):
        g = groups[k]
        print(f"| {k.strip()} | {len(g)} | {len(_of(g, 'repaired'))} | {len(_of(g, 'restored'))} | {len(_of(g, 'outside'))} |")

    def classes(title, rows, why, run="fix"):
        c = collections.defaultdict(list)
        for r in rows:
            c[why(r)].append(r)
        if not c:
            return
        print(f"\n{title} ({len(rows)}):")
        for k, v in sorted(c.items(), key=lambda kv: -len(kv[1])):
            ex = v[0]
            cmd = ex.get(run, {}).get("command", "")
            print(f"  {len(v):4d}  {k}")
            print(f"        e.g. {ex['source']} {ex['model']}: {cmd}"
                  + (f"  [{ex['mutation']['kind']}: {ex['mutation']['what']} -> {ex['mutation']['new']}]"
                     if "mutation" in ex else ""))

    classes("originals failing --check", [r for r in built if not r.get("original", {}).get("ok")],
            lambda r: ("changed the file; " if not r["original"]["untouched"] else "")
            + f"exit {r['original']['rc']}: {cause(r['original']['stderr'], r['model'])}", run="original")
    classes("not repaired", [r for r in mutated if not r.get("repaired")],
            lambda r: f"exit {r['fix']['rc']}: {cause(r['fix']['stderr'], r['model'])}" if r["fix"]["rc"] != 0
            else f"exit 0 but {'unchanged' if not r['fix']['changed'] else 'still broken'}: "
                 f"{cause(r.get('after_error') or '')}")
    classes("repaired but not restored", [r for r in repaired if not r.get("restored")],
            lambda r: f"{r['mutation']['kind']}: " + ("other files changed" if r["fix"]["other_files"]
                                                      else "different text written"))
    classes("edited outside the mutation's function", outside,
            lambda r: f"{r['mutation']['kind']}: " + ("other files" if r["fix"]["other_files"] else "same file"))
    classes("not idempotent", [r for r in exit0 if not r.get("idempotent")],
            lambda r: f"exit {r['again']['rc']}: {cause(r['again']['stderr'], r['model'])}", run="again")
    classes("unbuildable (left out)", unbuildable, lambda r: cause(r["error"]))
    classes("bench errors (left out)", bench_err, lambda r: cause(r["error"]))
    if nomut:
        print(f"\nno breaking mutation found (left out): "
              f"{', '.join(r['model'] + (' (' + r['group'] + ')' if 'group' in r else '') for r in nomut)}")


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setup", metavar="VENV", type=Path, help="create VENV with torch, torchvision, timm and dimfix")
    ap.add_argument("--limit", type=int, help="only the first N models (torchvision and timm interleaved)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", choices=["torchvision", "timm"])
    ap.add_argument("--models", help="comma-separated entry names")
    ap.add_argument("--timm-per-family", type=int, default=1, help="timm models per model file (default 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kinds", default="all", help="comma-separated mutation kinds, or `classic` (literal, product, "
                    "name, num-classes: drawn as before issue 23), `new` (name-expr, conditional, subscript, "
                    "call-site, constant), `all` (default: one mutation of each group per model)")
    ap.add_argument("--timeout-model", type=int, default=180, help="seconds per dimfix run")
    ap.add_argument("--timeout-build", type=int, default=60, help="seconds per in-process build + forward")
    ap.add_argument("--json", type=Path, help="write every result here")
    ap.add_argument("--summarize", type=Path, metavar="JSON", help="print the summary of an earlier --json run")
    ap.add_argument("--keep", action="store_true", help="keep the temporary projects (printed)")
    ap.add_argument("--rev", help="measure dimfix as committed at REV (git archive REV dimfix, put first on "
                    "PYTHONPATH) instead of the working tree, which others may be editing")
    args = ap.parse_args()
    kinds = _kinds(args.kinds)
    if args.setup:
        return setup(args.setup)
    if args.summarize:
        data = json.loads(args.summarize.read_text())
        return summarize(data["results"], data["wall"])
    try:
        import timm
        import torchvision
        import dimfix  # noqa: F401
    except ImportError as e:
        raise SystemExit(f"{e}: run this with the corpus venv (see `--setup` and the top of this file)")
    specs = list_models(args.only, args.timm_per_family)
    ENTRY_NAMES.update(timm.list_models())
    ENTRY_NAMES.update(torchvision.models.list_models())
    if args.models:
        wanted = set(args.models.split(","))
        specs = [s for s in specs if s[1] in wanted]
    if args.limit:
        specs = specs[: args.limit]
    print(f"torch {__import__('torch').__version__}, torchvision {torchvision.__version__}, timm {timm.__version__}; "
          f"dimfix from {Path(__import__('dimfix').__file__).parent} "
          f"({'--rev ' + args.rev if args.rev else _git_state()}); {len(specs)} models, --jobs {args.jobs}, seed {args.seed}, "
          f"kinds {','.join(kinds)}", flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="dimfix-zoo-"))
    pristine = {p.__name__: str(Path(p.__file__).parent) for p in (torchvision, timm)}
    roots = []
    for i in range(args.jobs):
        r = tmp / f"w{i}"
        for name, src in pristine.items():
            shutil.copytree(src, r / name, symlinks=True)  # copy2 keeps mtimes, so .pyc stay valid
        roots.append(str(r))
    W["pristine"] = pristine
    if args.rev:
        export = tmp / "dimfix-rev"
        export.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.rev, "dimfix"], capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(export)], input=archive, check=True)
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(export), os.environ.get("PYTHONPATH")]))
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    for r in roots:
        q.put(r)
    results, start = [], time.perf_counter()
    try:
        with cf.ProcessPoolExecutor(args.jobs, mp_context=ctx, initializer=_init,
                                    initargs=(q, sys.executable, args.timeout_model, args.timeout_build,
                                              pristine)) as pool:
            futs = {pool.submit(run_model, s, args.seed, kinds): s for s in specs}
            for i, fut in enumerate(cf.as_completed(futs), 1):
                s = futs[fut]
                try:
                    r = fut.result()
                except Exception as e:  # noqa: BLE001 - a worker died
                    r = {"status": "bench-error", "error": f"{type(e).__name__}: {e}", "source": s[0],
                         "model": s[1], "file": s[3], "input": s[4], "seconds": 0.0}
                results.append(r)
                line = r["status"] if not _rows(r) else " | ".join(
                    row["status"] if row["status"] != "mutated" else
                    f"{row['mutation']['kind']:<11} fix rc={row['fix']['rc']} repaired={int(row['repaired'])} "
                    f"restored={int(row['restored'])} idem={row.get('idempotent', '-')}"
                    + (" OUTSIDE" if row.get("outside") else "") for row in _rows(r))
                print(f"[{i}/{len(specs)}] {r['source']:<11} {r['model']:<28} {r['seconds']:6.1f}s "
                      f"orig={r.get('original', {}).get('rc', '-')} {line}", flush=True)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    wall = time.perf_counter() - start
    results.sort(key=lambda r: (r["source"], r["model"]))
    summarize(results, wall)
    if args.json:
        args.json.write_text(json.dumps({"wall": wall, "seed": args.seed, "results": results}, indent=1))
        print(f"\nwrote {args.json}")


def _kinds(spec: str) -> tuple[str, ...]:
    out = []
    for k in spec.split(","):
        k = k.strip()
        group = {"all": CLASSIC_KINDS + NEW_KINDS, "classic": CLASSIC_KINDS, "new": NEW_KINDS}.get(k, (k,))
        if not set(group) <= set(CLASSIC_KINDS + NEW_KINDS):
            raise SystemExit(f"--kinds: unknown kind {k!r}; known: {', '.join(CLASSIC_KINDS + NEW_KINDS)}")
        out += group
    return tuple(dict.fromkeys(out))


def _init(q, python, timeout_model, timeout_build, pristine):
    W["pristine"] = pristine
    init_worker(q, python, timeout_model, timeout_build)


def _git_state() -> str:
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "dimfix"], capture_output=True,
                               text=True).stdout.strip()
        return rev + (" + uncommitted dimfix changes" if dirty else "")
    except OSError:
        return "?"


if __name__ == "__main__":
    main()
