"""Build a model from a file the way a reader would run it, without dimfix, and print its
output shape: the independent judge of bench/devset.py (is the mutation really a break,
is dimfix's result really a repair).

    python bench/devset_load.py FILE NAME --input SHAPE [--input ...] [--init K=V] [--set K=V]

prints one JSON line: {"ok": true, "shape": [...]} or {"ok": false, "error": "..."}.

Scripts and notebooks train at module level, so only their definitions run: imports,
defs and classes, assignments whose calls are plain arithmetic or argparse, and
`parser.add_argument(...)`; `parse_args()` reads the defaults (`parse_args([])`). Each kept
statement runs on its own, and one that fails (it needed a skipped statement) is skipped
too. A file inside a package is executed as its dotted module, so relative imports work.
The model is built on CPU with `NAME(**init)` and run once on zeros, in eval mode.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import sys
import types
from pathlib import Path

# calls an assignment may make and still be a definition (hyper-parameters, argparse, devices)
PLAIN_CALLS = {"ArgumentParser", "parse_args", "parse_known_args", "add_argument_group", "int", "float", "str",
               "len", "range", "dict", "list", "tuple", "set", "max", "min", "sum", "round", "abs", "pow", "sqrt",
               "ceil", "floor", "log2", "prod", "device", "is_available", "namedtuple", "TypeVar", "getenv", "get",
               "join", "zip", "sorted", "enumerate", "manual_seed"}


def _call_name(call: ast.Call) -> str:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def _plain(node) -> bool:
    return all(_call_name(c) in PLAIN_CALLS for c in ast.walk(node) if isinstance(c, ast.Call))


def _definitions(tree: ast.Module) -> list[ast.stmt]:
    """The module-level statements that define things (see the module docstring)."""
    keep = []
    for stmt in tree.body:
        if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            keep.append(stmt)
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)) and stmt.value is not None \
                and _plain(stmt.value):
            keep.append(stmt)
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) \
                and _call_name(stmt.value) in {"add_argument", "set_defaults"}:
            keep.append(stmt)
        elif isinstance(stmt, ast.Try) and all(isinstance(s, (ast.Import, ast.ImportFrom)) for s in stmt.body):
            keep.append(stmt)
    for node in keep:  # argparse reads its defaults, not the command line
        for call in ast.walk(node):
            if isinstance(call, ast.Call) and _call_name(call) in {"parse_args", "parse_known_args"} \
                    and not call.args:
                call.args = [ast.List(elts=[], ctx=ast.Load())]
    return keep


def _notebook_source(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    out = []
    for cell in cells:
        if cell.get("cell_type") != "code":
            continue
        src = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        if src.lstrip().startswith("%%"):
            continue
        out += [ln for ln in src.splitlines() if not ln.lstrip().startswith(("%", "!"))]
    return "\n".join(out) + "\n"


def _module_name(path: Path) -> tuple[Path, str]:
    """(sys.path entry, dotted name): walk up the __init__.py files like `import` would."""
    parts, d = [path.stem], path.parent
    while (d / "__init__.py").exists():
        parts.insert(0, d.name)
        d = d.parent
    return d, ".".join(parts)


def load(path: Path, sets: dict) -> dict:
    """The namespace of path's definitions (with `sets` bound first)."""
    src = _notebook_source(path) if path.suffix == ".ipynb" else path.read_text()
    root, name = _module_name(path)
    sys.path[:0] = [str(root), str(path.parent)]
    if "." in name:  # the package first, as `import` would (its __init__ may import this module)
        try:
            importlib.import_module(name.rpartition(".")[0])
        except Exception:  # noqa: BLE001 - the statements below will say what is missing
            pass
    mod = types.ModuleType(name)
    mod.__file__ = str(path)
    mod.__package__ = name.rpartition(".")[0]
    mod.__dict__.update(sets)
    sys.modules[name] = mod
    for stmt in _definitions(ast.parse(src)):
        code = compile(ast.fix_missing_locations(ast.Module(body=[stmt], type_ignores=[])), str(path), "exec")
        try:
            exec(code, mod.__dict__)
        except (Exception, SystemExit):  # noqa: BLE001 - it needed a statement that was skipped
            pass
    return mod.__dict__


def _tensor(spec: str):
    import torch
    dtype, _, dims = spec.rpartition(":")
    dtypes = {"": torch.float32, "long": torch.long, "int": torch.int32, "float": torch.float32, "bool": torch.bool}
    return torch.zeros([int(d) for d in dims.split("x")], dtype=dtypes[dtype])


def _shape(out):
    import torch
    if isinstance(out, torch.Tensor):
        return list(out.shape)
    if isinstance(out, dict):
        return _shape(out.get("logits", next(iter(out.values()))))
    if isinstance(out, (tuple, list)) and out:
        return _shape(out[0])
    raise TypeError(f"forward returned {type(out).__name__}")


def run(path: Path, name: str, inputs: list[str], init: dict, sets: dict) -> list[int]:
    import torch
    torch.manual_seed(0)
    ns = load(path, sets)
    if name not in ns:  # a module-level instance (`model = Net().to(device)`): run that one statement
        src = _notebook_source(path) if path.suffix == ".ipynb" else path.read_text()
        for stmt in ast.parse(src).body:
            if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in stmt.targets):
                exec(compile(ast.Module(body=[stmt], type_ignores=[]), str(path), "exec"), ns)
    if name not in ns:
        raise LookupError(f"{name} is not defined by the definitions of {path.name}")
    model = ns[name](**init) if isinstance(ns[name], type) or not hasattr(ns[name], "forward") else ns[name]
    args = [_tensor(s) for s in inputs if "=" not in s.split(":")[0]]
    kwargs = {s.split("=", 1)[0]: _tensor(s.split("=", 1)[1]) for s in inputs if "=" in s.split(":")[0]}
    model.eval()
    with torch.no_grad():
        return _shape(model(*args, **kwargs))


def _pairs(items: list[str]) -> dict:
    return {k: ast.literal_eval(v) for k, _, v in (i.partition("=") for i in items)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", type=Path)
    ap.add_argument("name")
    ap.add_argument("--input", action="append", default=[])
    ap.add_argument("--init", action="append", default=[])
    ap.add_argument("--set", action="append", default=[])
    a = ap.parse_args()
    import warnings
    warnings.filterwarnings("ignore")
    try:
        print(json.dumps({"ok": True, "shape": run(a.file.resolve(), a.name, a.input, _pairs(a.init), _pairs(a.set))}))
    except Exception as e:  # noqa: BLE001 - the model may raise anything; that is the answer
        msg = (str(e).strip().splitlines() or [""])[0]
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {msg[:300]}"}))


if __name__ == "__main__":
    main()
