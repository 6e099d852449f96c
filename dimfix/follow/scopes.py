"""libcst's scopes of a module, resolved for the statements a fix reads.

libcst's ScopeProvider walks the whole module (0.9 s on timm's 2300-line
resnet.py) where a fix reads the scopes of a few classes and functions.
``Scopes`` runs it on the module with every other top-level function and
class cut to its name (``def f(): ...``) and every other module-level value
to ``...``: each kept statement sees the same bindings, so its nodes get the
scopes the whole module would give them. Only the accesses recorded on a
module-level or builtin binding may be missing (reads in a statement cut
out): before such a binding is handed out, every statement whose text
mentions its name is kept too. A statement is added when one of its nodes
is first asked about; the provider then runs again over the kept ones.
"""

from __future__ import annotations

import re
from typing import Dict, Optional, Set

import libcst as cst
from libcst.metadata import BuiltinScope, GlobalScope, MetadataWrapper, ScopeProvider

from dimfix.locate import CallIndex

_BODY = cst.IndentedBlock(body=[cst.SimpleStatementLine(body=[cst.Expr(cst.Ellipsis())])])


class Scopes:
    """``node -> Scope`` (``get``, ``[]``) as ScopeProvider gives it over the
    whole module of ``index``; each scope's ``[name]`` as libcst's."""

    def __init__(self, index: CallIndex) -> None:
        self.index = index
        module = index.module
        # Statements that bind or run at module level in ways a cut would lose;
        # and one-line statements (imports, config constants): next to nothing
        # to analyse, and a fix follows its sizes to them one name at a time,
        # each name one more run of the provider over every kept statement.
        spans = index.units.spans
        self.kept: Set[int] = {k for k, u in enumerate(module.body)
                               if u in index.binding_units or not _cuttable(u)
                               or (spans is not None and isinstance(u, cst.SimpleStatementLine)
                                   and spans[k][0] == spans[k][2])}
        self.closed: Set[str] = set()  # names whose every reader is kept
        self._analysed: Optional[frozenset] = None
        self._scopes: Dict[cst.CSTNode, object] = {}
        self._module: Optional[cst.Module] = None  # the module the provider ran on

    def expect(self, lines) -> None:
        """Keep the statements spanning ``lines``: scopes will be asked of them."""
        for line in lines:
            k = self.index.units.at_line(line)
            if k is not None:
                self.kept.add(k)

    def get(self, node: cst.CSTNode, default=None):
        return _View(self, node) if self._real(node) is not None else default

    def __getitem__(self, node: cst.CSTNode):
        found = self.get(node)
        if found is None:
            raise KeyError(node)
        return found

    def __contains__(self, node: object) -> bool:
        return self.get(node) is not None

    def _real(self, node: cst.CSTNode):
        """libcst's Scope of ``node`` (None: not in this module)."""
        index = self.index
        if node is index.module:
            self._analyse()
            return self._scopes.get(self._module)
        if node not in index.parents:
            return None
        k = index.positions.unit_of(node)
        if k is None:  # the module's header or footer
            self.kept.update(range(len(index.module.body)))
        else:
            self.kept.add(k)
        self._analyse()
        return self._scopes.get(node)

    def close(self, name: str) -> bool:
        """Keep every statement whose text mentions ``name``; whether any was added."""
        if name in self.closed:
            return False
        self.closed.add(name)
        units = self.index.units
        pattern = re.compile(r"(?<![\w.])" + re.escape(name) + r"(?!\w)") if name.isidentifier() \
            else re.compile(re.escape(name))
        before = len(self.kept)
        self.kept.update(k for k in range(len(self.index.module.body))
                         if k not in self.kept and pattern.search(units.lines(k)))
        return len(self.kept) > before

    def _analyse(self) -> None:
        if self._analysed == frozenset(self.kept):
            return
        module = self.index.module
        self._analysed = frozenset(self.kept)
        if len(self._analysed) == len(module.body):
            self._module = module
        else:
            self._module = module.with_changes(body=[u if k in self._analysed else _cut(u)
                                                     for k, u in enumerate(module.body)])
        self._scopes = MetadataWrapper(self._module, unsafe_skip_copy=True).resolve(ScopeProvider)


class _View:
    """A node's scope: ``[name]`` keeps, before it answers, every statement
    that may read a module-level or builtin ``name``, so that each binding's
    ``references`` are all of them."""

    def __init__(self, scopes: Scopes, node: cst.CSTNode) -> None:
        self._scopes = scopes
        self._node = node

    def __getitem__(self, name: str):
        found = self._scopes._real(self._node)[name]
        if any(isinstance(a.scope, (GlobalScope, BuiltinScope)) for a in found) \
                and self._scopes.close(name):
            found = self._scopes._real(self._node)[name]
        return found

    def __contains__(self, name: str) -> bool:
        return name in self._scopes._real(self._node)

    def __getattr__(self, attr: str):
        return getattr(self._scopes._real(self._node), attr)


def _cuttable(unit: cst.CSTNode) -> bool:
    return isinstance(unit, (cst.FunctionDef, cst.ClassDef, cst.SimpleStatementLine))


def _cut(unit: cst.CSTNode) -> cst.CSTNode:
    """``unit`` binding the same module names, reading none of them."""
    if isinstance(unit, cst.FunctionDef):
        return unit.with_changes(body=_BODY, decorators=(), params=cst.Parameters(), returns=None)
    if isinstance(unit, cst.ClassDef):
        return unit.with_changes(body=_BODY, decorators=(), bases=(), keywords=())
    return unit.with_changes(body=[_cut_small(s) for s in unit.body])


def _cut_small(statement: cst.BaseSmallStatement) -> cst.BaseSmallStatement:
    if isinstance(statement, (cst.Assign, cst.AugAssign, cst.Expr)) or (
            isinstance(statement, cst.AnnAssign) and statement.value is not None):
        return statement.with_changes(value=cst.Ellipsis())
    return statement
