"""Seeded size mutations of a model file for bench/zoo_corpus.py (no I/O, no torch).

`candidates` proposes the kinds the corpus has always used (literal, product, name,
num-classes); it is kept byte for byte as it was so a seed picks the same mutation as in
earlier runs. `more_candidates` proposes the kinds of issue 23: a name swapped inside a
product or sum (`name-expr`), an arm of `a if c else b` (`conditional`), a subscript index
(`subscript`), an argument passed to a helper defined in another file of the package
(`call-site`), and a name written as a literal it holds at one layer (`constant`).

A candidate is (kind, line, col_byte, end_col_byte, old_text, new_text, description).
"""

from __future__ import annotations

import ast
import re

IN_KEYWORDS = {"in_channels", "in_chs", "in_features", "in_planes", "inplanes", "inp", "in_dim", "dim_in",
               "input_channels", "num_features", "num_channels", "in_chans", "input_dim", "in_ch",
               "normalized_shape", "embed_dim", "dim", "channels", "input_size"}
SKIP_FUNCS = {"range", "len", "int", "float", "round", "max", "min", "tuple", "list", "zip", "enumerate", "dict",
              "isinstance", "getattr", "setattr", "hasattr", "super", "print", "str", "sum", "any", "all", "sorted",
              "reversed", "slice", "make_divisible", "_make_divisible", "make_div", "to_2tuple", "to_ntuple",
              "partial", "ceil", "floor", "sqrt", "Parameter", "Tensor", "Size", "ValueError", "TypeError",
              "AssertionError", "RuntimeError", "NotImplementedError", "_make_layer", "make_layer", "Sequential",
              "ModuleList", "ModuleDict", "Identity", "Dropout", "DropPath", "Flatten", "Unflatten",
              "Upsample", "interpolate", "view", "reshape", "expand", "repeat", "permute", "transpose", "format",
              "append", "extend", "insert", "get", "pop", "update", "Dropout2d", "MaxPool2d", "AvgPool2d",
              "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "ReLU", "GELU", "SiLU", "Sigmoid", "Softmax"}
HELPER_HINT = re.compile(r"conv|norm|linear|create|mlp|layer|block|attn|attention|head|stem|embed|bn|fc|proj|"
                         r"downsample|gn|ln|se|squeeze|excite|stage|cell|unit|mixer", re.I)
NOT_SIZE_NAME = re.compile(r"layer|block|norm|act|fn|cfg|kwargs|args|drop|weight|progress|pretrained|bias|stride|"
                           r"kernel|pad|group|dilat|inplace|eps|momentum|prob|rate|ratio|scale|mode|type|name|"
                           r"device|dtype|^i$|^j$|^k$|^x$|^_|self|idx|depth|heads|^n$|init|fused|use_|is_|"
                           r"shape|size_divisor|layers", re.I)
SIZE_NAME = re.compile(r"dim|ch|planes|feat|width|hidden|embed|out|in|filters|c\d|c_|num_features", re.I)


def _func_name(call: ast.Call):
    f = call.func
    if isinstance(f, ast.Name):
        return f.id, None
    if isinstance(f, ast.Attribute):
        base = f.value.id if isinstance(f.value, ast.Name) else None
        return f.attr, base
    return None, None


def _in_arg(call: ast.Call, local_funcs: set[str]):
    name, base = _func_name(call)
    if not name or name in SKIP_FUNCS or base in {"F", "torch", "math", "np", "self"} and not name[0].isupper():
        return None
    if not (name[0].isupper() or name in local_funcs or HELPER_HINT.search(name)):
        return None
    if name == "GroupNorm":
        if len(call.args) >= 2:
            return call.args[1]
        return next((k.value for k in call.keywords if k.arg == "num_channels"), None)
    if call.args and not isinstance(call.args[0], ast.Starred):
        return call.args[0]
    return next((k.value for k in call.keywords if k.arg in IN_KEYWORDS), None)


def _new_int(n: int) -> int:
    return n - n // 4 if n >= 16 else n + 1


def _int_const(node) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) is int and node.value >= 2


def candidates(src: bytes, executed: set[int], in_channels: int = 3):
    """[(kind, line, col_byte, end_col_byte, old_text, new_text, description)]"""
    tree = ast.parse(src)
    local_funcs = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    lines = src.split(b"\n")
    out = []

    def text(node):
        return lines[node.lineno - 1][node.col_offset:node.end_col_offset].decode()

    def add(kind, node, new, what):
        if node.lineno != node.end_lineno:
            return
        out.append((kind, node.lineno, node.col_offset, node.end_col_offset, text(node), new, what))

    def visit_func(func):
        names = [a.arg for a in func.args.posonlyargs + func.args.args + func.args.kwonlyargs]
        for n in ast.walk(func):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                names.append(n.id)
        first = func.decorator_list[0].lineno if func.decorator_list else func.lineno
        ints = getattr(executed, "int_names", {}).get(first)
        names = list(dict.fromkeys(x for x in names if not NOT_SIZE_NAME.search(x) and (ints is None or x in ints)))
        if ints is not None:  # the input's channel count (stem `in_chans`) is not a width to break
            names = [x for x in names if ints[x] != in_channels]
        names.sort(key=lambda x: not SIZE_NAME.search(x))
        body_lines = {ln for s in func.body for ln in range(s.lineno, s.end_lineno + 1)}
        if not body_lines & executed:
            return
        # num-classes: a default of a `num_classes` parameter
        pos = func.args.posonlyargs + func.args.args
        defaults = [None] * (len(pos) - len(func.args.defaults)) + list(func.args.defaults)
        for arg, default in list(zip(pos, defaults)) + list(zip(func.args.kwonlyargs, func.args.kw_defaults)):
            if arg.arg == "num_classes" and _int_const(default):
                add("num-classes", default, str(_new_int(default.value)), f"num_classes default {default.value}")
        for call in ast.walk(func):
            if not isinstance(call, ast.Call):
                continue
            if not set(range(call.lineno, call.end_lineno + 1)) & executed:
                continue
            arg = _in_arg(call, local_funcs)
            if arg is None:
                continue
            fname = _func_name(call)[0]
            if _int_const(arg) and arg.value != in_channels:  # the stem's 3 is the input's, not a width
                add("literal", arg, str(_new_int(arg.value)), f"{fname}({arg.value}, ...)")
            elif isinstance(arg, ast.BinOp) and isinstance(arg.op, ast.Mult):
                for c in ast.walk(arg):
                    if _int_const(c) and c.value != in_channels:
                        add("product", c, str(_new_int(c.value)), f"{fname}({text(arg)}, ...) factor {c.value}")
            elif isinstance(arg, ast.Name) and (ints is None or arg.id in names):
                for other in [x for x in names if x != arg.id and (ints is None or ints[x] != ints[arg.id])][:3]:
                    add("name", arg, other, f"{fname}({arg.id} -> {other}, ...)")

    seen = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            # innermost function owns the call: visit only calls not inside nested defs
            visit_func(node)
    uniq = []
    for c in out:  # a call inside a nested def is seen by every enclosing def
        if c[:6] not in seen:
            seen.add(c[:6])
            uniq.append(c)
    return uniq


def apply(src: bytes, cand) -> bytes:
    kind, line, col, end, old, new, _ = cand
    lines = src.split(b"\n")
    assert lines[line - 1][col:end].decode() == old
    lines[line - 1] = lines[line - 1][:col] + new.encode() + lines[line - 1][end:]
    return b"\n".join(lines)




# --------------------------------------------------------------------------- issue 23's kinds

CLASSIC_KINDS = ("literal", "product", "name", "num-classes")
NEW_KINDS = ("name-expr", "conditional", "subscript", "call-site", "constant")
SWAP_OPS = (ast.Mult, ast.Add, ast.Sub)
# names that hold a geometry, not a width: never written in as a swap, and never swapped at a call site
# (PatchEmbed(img_size, patch_size, ..., embed_dim) would break on geometry, not on a layer size)
NOT_WIDTH = re.compile(r"img|image|patch|size|len|seq|pos|window|kernel|grid|resolution|stride|heads", re.I)
CALL_IN_KEYWORDS = IN_KEYWORDS - {"embed_dim", "input_size"}  # PatchEmbed's embed_dim is its output width


def watched_names(src: bytes) -> dict[int, set[str]]:
    """{line: {`name` or `self.attr`}} for every call argument written as one, so the
    worker can record the int values each held when its line ran (for `constant`)."""
    lines = src.split(b"\n")
    out: dict[int, set[str]] = {}
    for call in ast.walk(ast.parse(src)):
        if not isinstance(call, ast.Call):
            continue
        for arg in call.args + [k.value for k in call.keywords]:
            if _plain_ref(arg):
                out.setdefault(arg.lineno, set()).add(lines[arg.lineno - 1][arg.col_offset:arg.end_col_offset].decode())
    return out


def _plain_ref(node) -> bool:
    return isinstance(node, ast.Name) or (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                                          and node.value.id == "self")


def func_span(src: bytes, line: int) -> tuple[int, int]:
    """(first, last) line of the innermost def holding `line` (decorators included); the
    whole file when it is at module level."""
    best = (1, src.count(b"\n") + 1)
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = min([d.lineno for d in node.decorator_list] + [node.lineno])
            if first <= line <= node.end_lineno and node.end_lineno - first < best[1] - best[0]:
                best = (first, node.end_lineno)
    return best


def _size_names(func, executed, in_channels):
    """The size-like locals of func with the ints they held (as `candidates` picks them)."""
    names = [a.arg for a in func.args.posonlyargs + func.args.args + func.args.kwonlyargs]
    names += [n.id for n in ast.walk(func) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)]
    first = func.decorator_list[0].lineno if func.decorator_list else func.lineno
    ints = getattr(executed, "int_names", {}).get(first)
    names = list(dict.fromkeys(x for x in names if not NOT_SIZE_NAME.search(x) and (ints is None or x in ints)))
    if ints is not None:
        names = [x for x in names if ints[x] != in_channels]
    names.sort(key=lambda x: not SIZE_NAME.search(x))
    return names, ints


def _size_args(call: ast.Call):
    """The in-size arguments of a helper call: the first positional and in-size keywords."""
    out = [call.args[0]] if call.args and not isinstance(call.args[0], ast.Starred) else []
    out += [k.value for k in call.keywords if k.arg in CALL_IN_KEYWORDS]
    return [a for a in out if not (isinstance(a, ast.Name) and NOT_WIDTH.search(a.id))]


def _ops_names(expr):
    """Names that are direct operands of `*`, `+` or `-` inside expr."""
    for node in ast.walk(expr):
        if isinstance(node, ast.BinOp) and isinstance(node.op, SWAP_OPS):
            yield from (side for side in (node.left, node.right) if isinstance(side, ast.Name))


def _index(sub: ast.Subscript):
    i = sub.slice
    if _int_value(i) is not None:
        return i, _int_value(i)
    return None, None


def _int_value(node):
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant) \
            and type(node.operand.value) is int:
        return -node.operand.value
    return None


def more_candidates(src: bytes, executed: set[int], in_channels: int = 3, foreign=frozenset(), values=None):
    """Candidates of NEW_KINDS. foreign: names of callables the module imports from another
    file of its package; values: {line: {text: [ints held, in order]}} from the build."""
    tree = ast.parse(src)
    local_funcs = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    lines = src.split(b"\n")
    values = values or {}
    out = []

    def text(node):
        return lines[node.lineno - 1][node.col_offset:node.end_col_offset].decode()

    def add(kind, node, new, what):
        if node.lineno == node.end_lineno:
            out.append((kind, node.lineno, node.col_offset, node.end_col_offset, text(node), new, what))

    def on_executed(node):
        return bool(set(range(node.lineno, node.end_lineno + 1)) & executed)

    def visit_func(func):
        if not {ln for s in func.body for ln in range(s.lineno, s.end_lineno + 1)} & executed:
            return
        names, ints = _size_names(func, executed, in_channels)

        def swaps(node):
            if ints is None or node.id not in ints:
                return []
            return [x for x in names if x != node.id and ints[x] != ints[node.id] and not NOT_WIDTH.search(x)][:3]

        def swap_or_bump(kind, node, fname):
            if isinstance(node, ast.Name):
                for other in swaps(node):
                    add(kind, node, other, f"{fname}(... {node.id} -> {other} ...)")
            elif _int_const(node) and node.value != in_channels:
                add(kind, node, str(_new_int(node.value)), f"{fname}(... {node.value} ...)")

        for node in ast.walk(func):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.IfExp) and on_executed(node) \
                    and any(isinstance(t, ast.Name) and t.id in names for t in node.targets):
                for arm in (node.value.body, node.value.orelse):
                    swap_or_bump("conditional", arm, f"{text(node.targets[0])} = ")
            if not isinstance(node, ast.Call) or not on_executed(node):
                continue
            call, fname = node, _func_name(node)[0]
            arg = _in_arg(call, local_funcs)
            if arg is not None:
                if isinstance(arg, ast.BinOp):
                    for n in _ops_names(arg):
                        for other in swaps(n):
                            add("name-expr", n, other, f"{fname}({text(arg)}, ...) {n.id} -> {other}")
                for ifexp in (n for n in ast.walk(arg) if isinstance(n, ast.IfExp)):
                    for arm in (ifexp.body, ifexp.orelse):
                        swap_or_bump("conditional", arm, fname)
                for sub in (n for n in ast.walk(arg) if isinstance(n, ast.Subscript)):
                    node_i, i = _index(sub)
                    for j in ([i + 1, i - 1] if i >= 0 else [i - 1]) if node_i is not None else []:
                        if j >= 0 or i < 0:
                            add("subscript", node_i, str(j), f"{fname}({text(sub)} -> [{j}], ...)")
                held = values.get(arg.lineno, {}).get(text(arg)) if _plain_ref(arg) else None
                if held and len(held) > 1:
                    add("constant", arg, str(held[0]), f"{fname}({text(arg)} -> {held[0]}, the value at its first layer)")
            if isinstance(call.func, ast.Name) and call.func.id in foreign:
                for a in _size_args(call):
                    swap_or_bump("call-site", a, fname)
                    if isinstance(a, ast.BinOp) and isinstance(a.op, ast.Mult):
                        for c in (c for c in ast.walk(a) if _int_const(c) and c.value != in_channels):
                            add("call-site", c, str(_new_int(c.value)), f"{fname}({text(a)}, ...) factor {c.value}")

    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            visit_func(node)
    return list(dict.fromkeys(out))  # a call inside a nested def is seen by every enclosing def
