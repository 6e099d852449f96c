"""What a child executes for the target file: its definitions only.

A training script (or a notebook's script) that does work at module level is
not executed as it is: the child runs ``script.definitions_only(text).text``
instead, which has the same lines and keeps every kept statement at the same
line and column, so recorded sites are positions in the original text, which
the planner and the rewriter keep working on. A file that only defines things
is executed as it is.

``--set NAME=VALUE`` gives a name that only a skipped statement binds
(``vocab_size = len(dataset.vocab)``): the value is a global of the module
before its first statement runs, and the skipped statement stays skipped. A
name that a kept statement binds cannot be set (the statement would overwrite
it): edit it, or pass it with ``--init``. ``--exec-module`` executes the whole
file, as Python would import it; ``--set`` then has nothing to replace.

A target that is a module-level instance (``model = ConvNet()``) is bound by a
skipped statement: the last such assignment at module level runs, the rest
stays skipped.

Runs in the child (draft.py); errors and notes carry positions in the script
(``Position``), which renderers show as cells and lines of a notebook.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence, Tuple

from dimfix.errors import BadUsage, DimfixError, Position, TargetNotFound, option
from dimfix.records import Note, Options
from dimfix.script import definitions_only, undefined_after_skip

_LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")


@dataclass(frozen=True)
class Loading:
    """How to execute one file: the text, the globals it starts with, notes for -v."""

    text: str
    seed: Mapping[str, object] = field(default_factory=dict)
    notes: Tuple[Note, ...] = ()
    missing: Mapping[str, int] = field(default_factory=dict)  # name -> line binding it


def plan_loading(text: str, names: Sequence[str], options: Options, path: str,
                 in_package: bool = False) -> Loading:
    """The text to execute for ``text``, whose models are ``names``.

    A module of a package (``in_package``) is a library file: its package
    imports it whole anyway, and its module-level calls build configs and
    registries (timm's ``model_cfgs = dict(...)``), so it runs as written.
    Definitions-only loading is for scripts and notebooks, which stand alone."""
    sets = dict(options.sets)
    if in_package and not sets:
        return Loading(text)
    if options.exec_module:
        if sets:
            raise BadUsage(f"{option('set')} gives values to statements dimfix skips; with "
                           f"{option('exec-module')} nothing is skipped: drop one of them")
        return Loading(text)
    try:
        plan = definitions_only(text)
    except SyntaxError:
        return Loading(text, sets)  # the import reports where it does not parse
    missing = undefined_after_skip(plan, text)
    for name in sets:
        if name not in missing:
            line = _binding_line(text, name)
            if line:
                raise BadUsage(f"{option('set', name)}: {name} is set by a statement dimfix "
                               "runs; change it there, or pass the model's argument with "
                               f"{option('init')}", Position(path, line))
            raise BadUsage(f"{option('set', name)}: the file has no statement that binds {name}",
                           Position(path))
    run = plan.text
    notes = []
    for name in dict.fromkeys(n.split(".")[0] for n in names):
        if name in missing and name not in sets:
            restored, line = _restore(run, text, name)
            if restored is not None:
                run = restored
                notes.append(Note(f"runs: it binds the target {name}", Position(path, line)))
    notes += [Note(f"skipped (does work at import): {what}", Position(path, first))
              for first, _last, what in plan.skipped]
    notes += [Note(what, Position(path, line)) for line, what in plan.rewritten]
    if plan.skipped:
        notes.append(Note(f"definitions only: {len(plan.skipped)} statement(s) skipped "
                          f"({option('exec-module')} runs them)"))
    left = {n: line for n, line in missing.items() if n not in sets}
    return Loading(run, sets, tuple(notes), left)


def explain(error: DimfixError, loading: Loading, names: Sequence[str],
            path: str, text: str = "") -> Optional[DimfixError]:
    """A clearer error when ``error`` comes from a name only a skipped statement binds."""
    seen = set()
    cause: Optional[BaseException] = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, NameError) and getattr(cause, "name", None) in loading.missing:
            name = cause.name
            return BadUsage(f"{name} is set by a statement dimfix skips (it does work at "
                            f"import); pass {option('set', name + '=VALUE')} or "
                            f"{option('exec-module')}", Position(path, loading.missing[name]))
        cause = cause.__cause__ or cause.__context__
    if isinstance(error, TargetNotFound):
        for name in names:
            top = name.split(".")[0]
            if top in loading.missing:
                return TargetNotFound(
                    f"{top} is set by a statement dimfix skips (it does work at import); name "
                    f"the model's class or factory, or pass {option('exec-module')}",
                    Position(path, loading.missing[top]))
    if isinstance(error, TargetNotFound) and error.models:
        # Module-level instances (``model = Net()``) are skipped statements:
        # name them too, as a target they would be.
        listed = list(error.models)
        lines = text.split("\n")
        extra = []
        for n, line in loading.missing.items():
            built = re.match(rf"\s*{re.escape(n)}\s*=\s*(\w+)\(", lines[line - 1]) \
                if 0 < line <= len(lines) else None
            if built and built.group(1) in listed and n not in listed:
                extra.append(n)
        if extra:
            from dimfix.load import not_defined

            return not_defined(error.name, path, tuple(listed + extra))
    return None


def _restore(run: str, text: str, name: str) -> Tuple[Optional[str], int]:
    """``run`` with the last module-level ``name = ...`` of ``text`` put back, and
    its line, when it is a whole statement standing on lines of its own."""
    body = ast.parse(text).body
    for i in reversed(range(len(body))):
        stmt = body[i]
        targets = stmt.targets if isinstance(stmt, ast.Assign) else \
            [stmt.target] if isinstance(stmt, ast.AnnAssign) and stmt.value else []
        if not any(isinstance(t, ast.Name) and t.id == name for t in targets):
            continue
        if any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(stmt.value)):
            continue  # ``G = G.to(device)``: the statement that built it comes before
        alone = (i == 0 or body[i - 1].end_lineno < stmt.lineno) and \
            (i + 1 == len(body) or body[i + 1].lineno > stmt.end_lineno)
        old, new = _LINES.findall(text), _LINES.findall(run)
        if not alone or len(old) != len(new):
            return None, 0
        first, last = stmt.lineno - 1, stmt.end_lineno
        return "".join(new[:first] + old[first:last] + new[last:]), stmt.lineno
    return None, 0


def _binding_line(text: str, name: str) -> int:
    """The line of the first module-level statement that binds ``name`` (0: none)."""
    from dimfix.script import _module_bindings

    try:
        return _module_bindings(ast.parse(text).body).get(name, 0)
    except SyntaxError:
        return 0
