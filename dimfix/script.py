"""Definitions-only loading for training scripts.

A tutorial script defines its model and then trains it at module level:
importing it to find ``ConvNet`` would download data, train for an hour and
write checkpoints. ``definitions_only`` returns a copy of the text in which the
statements that do work are replaced by inert ones, so that executing the copy
defines the classes, functions and constants and does nothing else.

Positions are kept exactly: the copy has the same lines, every kept statement
sits at the same line and column, and every line keeps its own line ending, so
code positions recorded while executing the copy (``sites.py``) are positions
in the original file. A skipped statement becomes ``pass`` at its own column
on its first line and empty lines for the rest; a skipped statement sharing a
line with kept ones (``a = 1; train()``) becomes ``pass`` (or ``0``) padded
with spaces to its own width in UTF-8 bytes (the unit of Python's column
offsets, so byte columns after it are unchanged), and where a multi-line skipped statement is
followed by a kept one on its last line, backslash continuations join them so
the kept one does not move.

The rule, applied in order to module-level statements, with ``known`` = the
names bound by statements kept so far, plus the builtins:

Kept
  * ``import`` / ``from ... import`` (whatever they import), ``global``, ``pass``;
  * ``def`` and ``class`` with their decorators, whole (their bodies, default
    values, decorators and bases are not inspected: class bodies run);
  * docstrings and other bare constants;
  * assignments (``=``, annotated, augmented) whose value, annotation and
    target subscripts are *harmless* and whose targets are names, tuples of
    names, or attributes/subscripts of names bound by kept assignments
    (``args.device = ...``; never attributes of imported modules);
  * argparse: ``parser = argparse.ArgumentParser(...)``, and on such a parser
    or a group made from it, ``add_argument``, ``add_argument_group``,
    ``add_mutually_exclusive_group``, ``set_defaults`` with harmless arguments;
    ``x = parser.parse_args()`` / ``parse_known_args()`` is kept rewritten to
    read defaults: ``parser.parse_args([])`` (an explicit argument is replaced
    by ``[]`` padded with spaces);
  * ``try`` and ``if`` blocks (other than ``if __name__ == "__main__"``) whose
    test is harmless are kept as blocks and this same rule is applied to the
    statements inside them (an ``if`` whose branches are all kept is thereby
    kept whole; skipped statements inside become ``pass``).

Skipped
  * everything else: bare calls (``train()``, ``torch.manual_seed(0)``,
    ``print``), assignments whose value calls anything not listed below
    (``model = ConvNet().to(device)``, ``loader = DataLoader(...)``,
    ``vocab_size = len(dataset.vocab)`` because ``dataset`` is not known),
    ``for``/``while``/``with``/``match``/``del``/``assert``/``raise``, ``if``
    blocks with a test that is not harmless, and ``if __name__ == "__main__":``
    blocks whole (``else`` included).

An expression is *harmless* when it is made only of literals, ``known``
names, attribute access, subscripts, operators, conditional expressions,
f-strings, lambdas and comprehensions over harmless iterables, and calls of:
a set of pure builtins (``dict``, ``list``, ``int``, ``len``, ``range``,
``min``, ``max``, ``sum``, ``zip``, ...); ``math.*``; ``os.getenv``,
``os.environ.get``, ``os.path.join/dirname/basename/abspath/splitext``;
``torch.device``, ``torch.cuda.is_available``, ``torch.cuda.device_count``,
``torch.backends.mps.is_available``, ``torch.get_default_dtype``,
``torch.Size``, ``torch.finfo``, ``torch.iinfo``; ``argparse.Namespace``,
``types.SimpleNamespace``, ``collections.namedtuple``, ``json.loads``, ``typing.TypeVar``/
``NamedTuple``, ``functools.partial``; a few str/dict methods (``format``,
``join``, ``split``, ``keys``, ``get``, ...) on a harmless receiver; and
classes of this file that are plain data: ``@dataclass`` with no bases and
only builtin ``default_factory`` values, ``NamedTuple`` or ``Enum``
subclasses, none with a method of its own (a method, property or dunder
could run anything: ``cfg.keys()``, ``list(cfg)``). Imported names are
resolved through the kept imports, so ``import torch as T`` and
``from torch import device`` work. The arguments of every harmless call must
be harmless too, all the way down, and what an allowed call *calls* must be
pure: ``map``'s and ``filter``'s function, ``sorted``/``min``/``max``'s
``key``, ``iter(f, sentinel)``, json's hooks and argparse's ``type=`` and
``action=`` are an allowed builtin or function (``int``, ``str.upper``,
``math.sqrt``), a plain data class or a lambda whose body is harmless:
``list(map(os.system, cmds))`` and ``sorted(x, key=os.mkdir)`` are skipped.
``type()`` with more than one argument builds a class and is skipped.

Limitations: module-level model instances (``model = ConvNet()``) are skipped,
so a target has to name the class or a factory; a name bound both by a kept
and by a later skipped statement keeps its kept value; an ``add_argument`` with
a non-harmless argument is skipped and its option is then missing from the
namespace (an ``AttributeError`` on ``args.x``, which ``undefined_after_skip``
cannot see); imports are always kept, so a local module that trains at import
still does. ``parse_args()`` gains two characters, so anything after the call
on that line moves right by two columns; only a kept statement can follow it
there, and kept statements never build layers, so no recorded layer site
moves.
"""

from __future__ import annotations

import ast
import builtins
import re
from dataclasses import dataclass, field
from typing import Iterable, Optional

__all__ = ["ScriptPlan", "definitions_only", "undefined_after_skip"]


@dataclass(frozen=True)
class ScriptPlan:
    """What to execute instead of a script, and what was left out.

    ``text``: same lines as the input, kept statements at the same positions.
    ``skipped``: ``(first_line, last_line, description)`` per skipped
    statement, 1-based and inclusive, in source order.
    ``needs_exec_module``: False when nothing was skipped or rewritten but
    ``if __name__ == "__main__":`` blocks (which an import skips anyway); then
    ``text`` is the input itself, ``skipped`` is empty and the file can be
    imported as it is.
    ``rewritten``: ``(line, description)`` per statement kept in a changed form
    (``parse_args()`` -> ``parse_args([])``).
    """

    text: str
    skipped: tuple[tuple[int, int, str], ...]
    needs_exec_module: bool
    rewritten: tuple[tuple[int, str], ...] = field(default=())


_SAFE_BUILTIN_CALLS = frozenset(
    """abs all any ascii bin bool bytes chr complex dict divmod enumerate filter
    float format frozenset hasattr hex int isinstance issubclass iter len list map
    max min oct ord pow range repr reversed round set slice sorted str sum tuple
    type zip""".split()
)
_SAFE_QUALIFIED_CALLS = frozenset(
    """os.getenv os.environ.get os.path.join os.path.dirname os.path.basename
    os.path.abspath os.path.splitext os.path.expanduser os.sep.join
    torch.device torch.cuda.is_available torch.cuda.device_count
    torch.backends.mps.is_available torch.get_default_dtype torch.Size
    torch.finfo torch.iinfo argparse.Namespace types.SimpleNamespace
    collections.namedtuple typing.NamedTuple typing.TypeVar
    dataclasses.field json.loads json.dumps functools.partial""".split()
)
_SAFE_QUALIFIED_PREFIXES = ("math.",)
# Allowed calls that call some of their arguments: (positions, keywords).
_CALLING = {
    "map": ((0,), ()), "filter": ((0,), ()), "iter": ((0,), ()),
    "sorted": ((), ("key",)), "min": ((), ("key",)), "max": ((), ("key",)),
    "functools.reduce": ((0,), ()),
    "json.loads": ((), ("cls", "object_hook", "object_pairs_hook", "parse_float", "parse_int",
                        "parse_constant")),
    "json.dumps": ((), ("cls", "default")),
}
_BUILTIN_TYPES = frozenset({"str", "bytes", "dict", "list", "tuple", "set", "frozenset", "int",
                            "float"})
_SAFE_METHODS = frozenset(
    """format join split rsplit strip lstrip rstrip lower upper replace
    startswith endswith keys values items get copy count index""".split()
)
_PARSER_METHODS = frozenset(
    {"add_argument", "add_argument_group", "add_mutually_exclusive_group", "set_defaults"}
)
_PARSER_MAKERS = frozenset({"add_argument_group", "add_mutually_exclusive_group"})
_PARSE_CALLS = frozenset({"parse_args", "parse_known_args"})
_SYS_PATH_CALLS = frozenset({"sys.path.insert", "sys.path.append", "sys.path.extend"})
_BUILTIN_NAMES = frozenset(dir(builtins)) | {"__file__", "__name__", "__doc__", "__spec__"}
_LINE_SPLIT = re.compile(r"(\r\n|\r|\n)")


# ---------------------------------------------------------------------------
# Public API


def definitions_only(text: str, newline: Optional[str] = "\n") -> ScriptPlan:
    """Plan the definitions-only version of the script ``text``.

    ``newline`` is the source file's newline convention (``SourceFile.newline``);
    it is accepted for callers' convenience and not needed: ``text`` is split
    on ``\\r\\n``, ``\\r`` and ``\\n`` alike and every line keeps its own ending,
    so the result needs no conversion either way.

    Raises ``SyntaxError`` when ``text`` does not parse.
    """
    del newline
    tree = ast.parse(text)
    lines = _Lines(text)
    walk = _KeepOrSkip(lines)
    walk.block(tree.body)
    if len(walk.skipped) == walk.main_guards and not walk.rewritten:
        # nothing but `if __name__ == "__main__":`, which an import skips anyway
        return ScriptPlan(text, (), False, ())
    new_text = lines.render()
    return ScriptPlan(
        new_text,
        tuple(sorted(walk.skipped)),
        True,
        tuple(sorted(walk.rewritten)),
    )


def undefined_after_skip(plan: ScriptPlan, original_text: str) -> dict[str, int]:
    """Names that only skipped statements bind at module level.

    Maps each name to the 1-based line of the first statement of
    ``original_text`` that binds it (the inner statement, e.g. line 12 for
    ``vocab_size = len(dataset.vocab)`` inside a ``with`` block, not the
    block's first line). Names bound inside ``if __name__ == "__main__":``
    count too. Use it to explain a ``NameError`` raised while executing
    ``plan.text``, e.g. ``train.py:12: vocab_size is set by a statement dimfix
    skips (it does work at import); pass --set vocab_size=VALUE or
    --exec-module``.
    """
    if not plan.needs_exec_module:
        return {}
    original = _module_bindings(ast.parse(original_text).body)
    kept = _module_bindings(ast.parse(plan.text).body)
    return {name: line for name, line in original.items() if name not in kept}


# ---------------------------------------------------------------------------
# Text with exact positions


class _Lines:
    """The text as lines with their endings; edits in AST coordinates."""

    def __init__(self, text: str) -> None:
        parts = _LINE_SPLIT.split(text)
        self.body: list[str] = parts[0::2]
        self.ends: list[str] = parts[1::2] + [""]

    def render(self) -> str:
        return "".join(b + e for b, e in zip(self.body, self.ends))

    def col(self, lineno: int, byte_col: int) -> int:
        """AST columns count UTF-8 bytes; return the character index."""
        line = self.body[lineno - 1]
        if line.isascii():
            return byte_col
        return len(line.encode("utf-8")[:byte_col].decode("utf-8", "replace"))

    def segment(self, node: ast.AST) -> str:
        l1, c1, l2, c2 = self.span(node)
        if l1 == l2:
            return self.body[l1 - 1][c1:c2]
        middle = self.body[l1 : l2 - 1]
        return "\n".join([self.body[l1 - 1][c1:], *middle, self.body[l2 - 1][:c2]])

    def span(self, node: ast.AST) -> tuple[int, int, int, int]:
        start = node
        decorators = getattr(node, "decorator_list", None)
        if decorators:
            start = min(decorators, key=lambda d: (d.lineno, d.col_offset))
            if (start.lineno, start.col_offset) > (node.lineno, node.col_offset):
                start = node
        l1, l2 = start.lineno, node.end_lineno
        c1 = self.col(l1, start.col_offset)
        c2 = self.col(l2, node.end_col_offset)
        if start is not node:  # include the '@'
            at = self.body[l1 - 1].rfind("@", 0, c1 + 1)
            c1 = at if at >= 0 else c1
        return l1, c1, l2, c2

    def blank(self, node: ast.AST) -> None:
        """Replace the statement ``node`` by an inert one, nothing else moving."""
        l1, c1, l2, c2 = self.span(node)
        if l1 == l2:
            line = self.body[l1 - 1]
            width = len(line[c1:c2].encode("utf-8"))  # keeps byte columns
            filler = ("pass" if width >= 4 else "0").ljust(width)
            rest = line[c2:]
            if not rest.strip() or rest.lstrip().startswith("#"):
                filler, rest = filler.rstrip(), ""
            self.body[l1 - 1] = line[:c1] + filler + rest
            return
        rest = self.body[l2 - 1][c2:]
        trailing_code = bool(rest.strip()) and not rest.lstrip().startswith("#")
        if trailing_code:
            # `train(\n  x); b = 2`: join the lines so `; b = 2` stays in place.
            self.body[l1 - 1] = self.body[l1 - 1][:c1] + "pass \\"
            for i in range(l1, l2 - 1):
                self.body[i] = "\\"
            self.body[l2 - 1] = " " * len(self.body[l2 - 1][:c2].encode("utf-8")) + rest
        else:
            self.body[l1 - 1] = self.body[l1 - 1][:c1] + "pass"
            for i in range(l1, l2):
                self.body[i] = ""

    def replace(self, lineno: int, c1: int, c2: int, new: str) -> None:
        line = self.body[lineno - 1]
        self.body[lineno - 1] = line[:c1] + new + line[c2:]


# ---------------------------------------------------------------------------
# The keep/skip rule


class _KeepOrSkip:
    """Walks a script's statements and decides, for each, whether an import
    for dimfix keeps it (definitions, configuration, the model's instance) or
    skips it (training, I/O): the rule above, as state over one pass."""

    def __init__(self, lines: _Lines) -> None:
        self.lines = lines
        self.known: set[str] = set()  # names bound by kept statements
        self.imports: dict[str, str] = {}  # local name -> qualified name
        self.data_classes: set[str] = set()  # plain-data classes of this file
        self.instances: set[str] = set()  # names bound by kept assignments
        self.parsers: set[str] = set()
        self.skipped: list[tuple[int, int, str]] = []
        self.rewritten: list[tuple[int, str]] = []
        self.main_guards = 0  # skipped `if __name__ == "__main__":` blocks

    # -- statements -------------------------------------------------------

    def block(self, body: Iterable[ast.stmt]) -> None:
        for stmt in body:
            if not self.statement(stmt):
                self.skip(stmt)

    def skip(self, stmt: ast.stmt) -> None:
        if isinstance(stmt, ast.If) and _is_main_guard(stmt.test):
            self.main_guards += 1
        l1, _c1, l2, _c2 = self.lines.span(stmt)
        self.skipped.append((l1, l2, _describe(self.lines.segment(stmt))))
        self.lines.blank(stmt)

    def statement(self, stmt: ast.stmt) -> bool:
        """Keep ``stmt`` (True), possibly partly, or leave it to be skipped."""
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            self.bind_import(stmt)
            return True
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            self.bind(stmt.name)
            return True
        if isinstance(stmt, ast.ClassDef):
            self.bind(stmt.name)
            if _is_plain_data(stmt, self):
                self.data_classes.add(stmt.name)
            return True
        if isinstance(stmt, (ast.Pass, ast.Global, ast.Nonlocal)):
            return True
        if isinstance(stmt, ast.Expr):
            return self.expression_statement(stmt.value)
        if isinstance(stmt, ast.Assign):
            return self.assign(stmt, stmt.targets, stmt.value)
        if isinstance(stmt, ast.AnnAssign):
            if not self.harmless(stmt.annotation):
                return False
            if stmt.value is None:
                return self.targets_ok([stmt.target]) and self.bind_targets([stmt.target])
            return self.assign(stmt, [stmt.target], stmt.value)
        if isinstance(stmt, ast.AugAssign):
            target = stmt.target
            if isinstance(target, ast.Name) and target.id not in self.instances:
                return False
            if not self.targets_ok([target]) or not self.harmless(stmt.value):
                return False
            return True
        if isinstance(stmt, ast.If):
            if _is_main_guard(stmt.test) or not self.harmless(stmt.test):
                return False
            self.block(stmt.body)
            self.block(stmt.orelse)
            return True
        if isinstance(stmt, (ast.Try, getattr(ast, "TryStar", ast.Try))):
            self.block(stmt.body)
            for handler in stmt.handlers:
                if handler.name:
                    self.bind(handler.name)
                self.block(handler.body)
            self.block(stmt.orelse)
            self.block(stmt.finalbody)
            return True
        return False

    def expression_statement(self, value: ast.expr) -> bool:
        if isinstance(value, ast.Constant):
            return True
        if isinstance(value, ast.Call) and self.parser_call(value, _PARSER_METHODS):
            # type= converts a string default in parse_args([]); action= is built here.
            return self.call_args_harmless(value) and all(
                self.pure_callable(k.value, frozenset()) for k in value.keywords
                if k.arg in ("type", "action"))
        if isinstance(value, ast.Call) and self.qualname(value.func) in _SYS_PATH_CALLS:
            # sys.path.insert(0, os.path.dirname(__file__)): the imports after need it.
            return self.call_args_harmless(value)
        return False

    def assign(self, stmt: ast.stmt, targets: list[ast.expr], value: ast.expr) -> bool:
        if not self.targets_ok(targets):
            return False
        if isinstance(value, ast.Call) and self.parser_call(value, _PARSE_CALLS):
            self.rewrite_parse(value)
            self.bind_targets(targets)
            return True
        if isinstance(value, ast.Call) and self.parser_call(value, _PARSER_MAKERS):
            if not self.call_args_harmless(value):
                return False
            self.bind_targets(targets)
            self.parsers.update(t.id for t in targets if isinstance(t, ast.Name))
            return True
        if (
            isinstance(value, ast.Call)
            and self.qualname(value.func) == "argparse.ArgumentParser"
            and self.call_args_harmless(value)
        ):
            self.bind_targets(targets)
            self.parsers.update(t.id for t in targets if isinstance(t, ast.Name))
            return True
        if not self.harmless(value):
            return False
        self.bind_targets(targets)
        return True

    def targets_ok(self, targets: list[ast.expr]) -> bool:
        for target in targets:
            if isinstance(target, ast.Name):
                continue
            if isinstance(target, (ast.Tuple, ast.List)):
                if not self.targets_ok(target.elts):
                    return False
            elif isinstance(target, ast.Starred):
                if not self.targets_ok([target.value]):
                    return False
            elif isinstance(target, (ast.Attribute, ast.Subscript)):
                base = target.value
                while isinstance(base, (ast.Attribute, ast.Subscript)):
                    if isinstance(base, ast.Subscript) and not self.harmless(base.slice):
                        return False
                    base = base.value
                if not (isinstance(base, ast.Name) and base.id in self.instances):
                    return False
                if isinstance(target, ast.Subscript) and not self.harmless(target.slice):
                    return False
            else:
                return False
        return True

    def bind_targets(self, targets: list[ast.expr]) -> bool:
        for target in targets:
            for node in ast.walk(target):
                if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    self.bind(node.id)
                    self.instances.add(node.id)
        return True

    def bind(self, name: str) -> None:
        self.known.add(name)
        self.imports.pop(name, None)
        self.data_classes.discard(name)
        self.instances.discard(name)
        self.parsers.discard(name)

    def bind_import(self, stmt: ast.Import | ast.ImportFrom) -> None:
        for alias in stmt.names:
            if alias.name == "*":
                continue
            if isinstance(stmt, ast.Import):
                local = alias.asname or alias.name.split(".")[0]
                qual = alias.name if alias.asname else local
            else:
                local = alias.asname or alias.name
                qual = f"{stmt.module}.{alias.name}" if stmt.module and not stmt.level else ""
            self.bind(local)
            if qual:
                self.imports[local] = qual

    # -- argparse ---------------------------------------------------------

    def parser_call(self, call: ast.Call, methods: frozenset[str]) -> bool:
        func = call.func
        return (
            isinstance(func, ast.Attribute)
            and func.attr in methods
            and isinstance(func.value, ast.Name)
            and func.value.id in self.parsers
        )

    def rewrite_parse(self, call: ast.Call) -> None:
        lines = self.lines
        explicit = call.args[0] if call.args else None
        if explicit is None:
            for keyword in call.keywords:
                if keyword.arg == "args":
                    explicit = keyword.value
        if explicit is not None:
            if isinstance(explicit, ast.List) and not explicit.elts:
                return
            l1, c1, l2, c2 = lines.span(explicit)
            width = len(lines.body[l1 - 1][c1:c2].encode("utf-8")) if l1 == l2 else 0
            if width >= 2:
                lines.replace(l1, c1, c2, "[]".ljust(width))
            else:  # several lines: keep the first, blank the rest
                lines.replace(l1, c1, len(lines.body[l1 - 1]), "[]")
                for i in range(l1, l2 - 1):
                    lines.body[i] = ""
                lines.body[l2 - 1] = " " * c2 + lines.body[l2 - 1][c2:]
        elif call.keywords:  # parse_args(namespace=ns): add args=[] first
            first = call.keywords[0]
            line, col = first.lineno, lines.col(first.lineno, first.col_offset)
            lines.replace(line, col, col, "[], ")
        else:
            line = call.end_lineno
            close = lines.col(line, call.end_col_offset) - 1
            lines.replace(line, close, close, "[]")
        self.rewritten.append(
            (call.lineno, f"{call.func.attr}(...) reads defaults: {call.func.attr}([])")
        )

    # -- expressions ------------------------------------------------------

    def qualname(self, node: ast.expr) -> Optional[str]:
        """``T.cuda.is_available`` -> ``torch.cuda.is_available`` via the imports."""
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name) or node.id not in self.imports:
            return None
        parts.append(self.imports[node.id])
        return ".".join(reversed(parts))

    def call_args_harmless(self, call: ast.Call, local: frozenset[str] = frozenset()) -> bool:
        return all(self.harmless(a, local) for a in call.args) and all(
            self.harmless(k.value, local) for k in call.keywords
        )

    def harmless_call(self, call: ast.Call, local: frozenset[str]) -> bool:
        if not self.call_args_harmless(call, local):
            return False
        callee = self.callee(call.func, local)
        if callee is None:
            return False
        if callee == "type" and len(call.args) + len(call.keywords) > 1:
            return False  # type(name, bases, ns) builds a class: its bases' hooks run
        # map(os.system, ...), sorted(x, key=os.mkdir): what the call calls
        # must be pure too.
        return all(self.pure_callable(a, local) for a in _called_args(callee, call))

    def callee(self, func: ast.expr, local: frozenset[str]) -> Optional[str]:
        """The allowed function ``func`` names (a builtin, a qualified name, a
        plain data class, ``str.method`` on a harmless receiver), or None."""
        if isinstance(func, ast.Name) and func.id not in local:
            name = func.id
            if name in self.data_classes:
                return name
            if name not in self.known and name in _SAFE_BUILTIN_CALLS:
                return name
        qual = self.qualname(func)
        if qual is not None:
            ok = qual in _SAFE_QUALIFIED_CALLS or qual.startswith(_SAFE_QUALIFIED_PREFIXES)
            return qual if ok else None
        if isinstance(func, ast.Attribute) and func.attr in _SAFE_METHODS:
            receiver = func.value
            if isinstance(receiver, ast.Name) and receiver.id in self.known:
                if receiver.id not in self.instances:  # a module, def or class
                    return None
            return func.attr if self.harmless(receiver, local) else None
        return None

    def pure_callable(self, node: ast.expr, local: frozenset[str]) -> bool:
        """``node``, passed to a call that calls it, is pure: an allowed builtin or
        function (``int``, ``math.sqrt``, ``str.lower``), a plain data class, a
        lambda whose body is harmless, or ``None`` (``filter(None, xs)``)."""
        if isinstance(node, ast.Constant):
            return node.value is None or isinstance(node.value, str)  # argparse action="store"
        if isinstance(node, ast.Lambda):
            args = node.args
            params = {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs}
            params |= {a.arg for a in (args.vararg, args.kwarg) if a is not None}
            return self.harmless(node, local) and self.harmless(node.body, local | params)
        if isinstance(node, ast.Name):
            if node.id in local:
                return False
            return node.id in self.data_classes or \
                (node.id not in self.known and node.id in _SAFE_BUILTIN_CALLS)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in _BUILTIN_TYPES and node.value.id not in self.known \
                and node.value.id not in local:
            return node.attr in _SAFE_METHODS  # str.lower
        qual = self.qualname(node)
        return qual is not None and (qual in _SAFE_QUALIFIED_CALLS or qual.startswith(
            _SAFE_QUALIFIED_PREFIXES) or qual.startswith("argparse."))

    def harmless(self, node: Optional[ast.expr], local: frozenset[str] = frozenset()) -> bool:
        if node is None:
            return True
        if isinstance(node, ast.Constant):
            return True
        if isinstance(node, ast.Name):
            return node.id in local or node.id in self.known or node.id in _BUILTIN_NAMES
        if isinstance(node, ast.Call):
            return self.harmless_call(node, local)
        if isinstance(node, ast.Lambda):
            args = node.args
            return all(self.harmless(d, local) for d in args.defaults) and all(
                self.harmless(d, local) for d in args.kw_defaults
            )
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            inner = set(local)
            for gen in node.generators:
                if not self.harmless(gen.iter, frozenset(inner)):
                    return False
                inner.update(
                    n.id for n in ast.walk(gen.target) if isinstance(n, ast.Name)
                )
                if not all(self.harmless(c, frozenset(inner)) for c in gen.ifs):
                    return False
            parts = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
            return all(self.harmless(p, frozenset(inner)) for p in parts)
        if isinstance(node, ast.NamedExpr):
            return False
        if isinstance(
            node,
            (
                ast.Attribute,
                ast.Subscript,
                ast.Starred,
                ast.Slice,
                ast.Tuple,
                ast.List,
                ast.Set,
                ast.Dict,
                ast.BinOp,
                ast.UnaryOp,
                ast.BoolOp,
                ast.Compare,
                ast.IfExp,
                ast.JoinedStr,
                ast.FormattedValue,
            ),
        ):
            return all(self.harmless(child, local) for child in _child_exprs(node))
        return False  # await, yield, ...


def _child_exprs(node: ast.expr) -> Iterable[Optional[ast.expr]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.expr):
            yield child
        # operators and contexts are not expressions and are harmless


def _is_main_guard(test: ast.expr) -> bool:
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
        return False
    if not isinstance(test.ops[0], (ast.Eq, ast.Is)):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    main = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return len(names) == 1 and len(main) == 1


def _is_plain_data(cls: ast.ClassDef, planner: _KeepOrSkip) -> bool:
    """A class whose instantiation only stores its arguments, and whose
    instances run no code of the file: a ``@dataclass`` with no bases, a
    ``NamedTuple`` or an ``Enum``, with no methods at all (a method, property or
    dunder of its own could run anything: ``cfg.keys()``, ``list(cfg)``)."""
    if cls.keywords or any(isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                           for s in cls.body):
        return False
    bases = [planner.qualname(b) or (b.id if isinstance(b, ast.Name) else None) for b in cls.bases]
    if bases and all(b in _DATA_BASES for b in bases):
        return all(planner.qualname(d) == "enum.unique" for d in cls.decorator_list)
    if bases:
        return False
    if len(cls.decorator_list) != 1:
        return False
    deco = cls.decorator_list[0]
    if isinstance(deco, ast.Call):
        deco = deco.func
    if planner.qualname(deco) != "dataclasses.dataclass":
        return False
    for node in ast.walk(cls):
        if isinstance(node, ast.keyword) and node.arg == "default_factory":
            value = node.value
            if not (isinstance(value, ast.Name) and value.id in _SAFE_BUILTIN_CALLS):
                return False
    return True


_DATA_BASES = frozenset({"typing.NamedTuple", "NamedTuple", "enum.Enum", "enum.IntEnum",
                         "enum.StrEnum", "enum.Flag", "enum.IntFlag"})


def _called_args(callee: str, call: ast.Call) -> list[ast.expr]:
    """The arguments ``callee`` calls (``map``'s function, ``sorted``'s key)."""
    positions, keywords = _CALLING.get(callee, ((), ()))
    if callee == "iter" and len(call.args) < 2:
        return []  # iter(x) calls nothing; iter(f, sentinel) calls f
    called = [call.args[i] for i in positions if i < len(call.args)]
    return called + [k.value for k in call.keywords if k.arg in keywords]


def _describe(segment: str) -> str:
    first = segment.strip().splitlines()[0].strip() if segment.strip() else ""
    more = "\n" in segment.strip()
    if len(first) > 60:
        first, more = first[:57].rstrip(), True
    return first + (" ..." if more else "")


# ---------------------------------------------------------------------------
# Module-level bindings, for undefined_after_skip


def _module_bindings(body: list[ast.stmt]) -> dict[str, int]:
    """Name -> line of the first statement binding it in module scope."""
    found: dict[str, int] = {}

    def add(name: str, line: int) -> None:
        found.setdefault(name, line)

    def targets(node: ast.AST, line: int) -> None:
        for sub in _walk_scope(node):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                add(sub.id, line)
            elif isinstance(sub, ast.NamedExpr) and isinstance(sub.target, ast.Name):
                add(sub.target.id, line)

    def visit(stmts: list[ast.stmt]) -> None:
        for stmt in stmts:
            line = stmt.lineno
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                add(stmt.name, line)
                continue
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                for alias in stmt.names:
                    if alias.name != "*":
                        add(alias.asname or alias.name.split(".")[0], line)
                continue
            for name, value in ast.iter_fields(stmt):
                if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
                    visit(value)
                elif isinstance(value, list):
                    for item in value:
                        if isinstance(item, ast.excepthandler):
                            if item.name:
                                add(item.name, item.lineno)
                            visit(item.body)
                        elif isinstance(item, ast.match_case):
                            targets(item.pattern, line)
                            visit(item.body)
                        elif isinstance(item, ast.AST):
                            targets(item, line)
                elif isinstance(value, ast.AST):
                    targets(value, line)

    visit(body)
    return found


def _walk_scope(node: ast.AST) -> Iterable[ast.AST]:
    """ast.walk without entering lambdas and comprehensions (their own scopes)."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        if isinstance(current, ast.MatchAs) and current.name:
            yield ast.Name(id=current.name, ctx=ast.Store())
        if isinstance(current, ast.MatchStar) and current.name:
            yield ast.Name(id=current.name, ctx=ast.Store())
        if isinstance(current, ast.MatchMapping) and current.rest:
            yield ast.Name(id=current.rest, ctx=ast.Store())
        for child in ast.iter_child_nodes(current):
            if isinstance(
                child, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
            ):
                continue
            stack.append(child)
