"""An expression, where it is evaluated, and what its names were bound to:
the tree the resolver builds for a layer's size argument."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

import libcst as cst

from dimfix.exprs import MISSING, Evaluator


@dataclass(frozen=True)
class Binding:
    """A name (or ``self.attr``) a value flows through, and every place it is read."""

    label: str
    references: Tuple[cst.CSTNode, ...]


@dataclass(eq=False)
class Expansion:
    """An expression, where it is evaluated, and what its names were bound to."""

    node: cst.BaseExpression
    kind: str  # argument, call-site, default, constant, local, attribute, element
    label: str  # how the reason line names it: "default of hidden", "NUM_CLASSES"
    local_values: Mapping[str, object]
    global_values: Mapping[str, object]
    bindings: Tuple[Binding, ...] = ()  # bindings crossed to reach this expression
    subs: Dict[cst.CSTNode, "Expansion"] = field(default_factory=dict)
    path: str = ""  # the file the expression is written in
    frame: Optional[int] = None  # index in the site's chain of the frame it is read in

    def value(self, override: Optional[Mapping[cst.CSTNode, cst.CSTNode]] = None,
              used: Optional[List[Tuple[cst.Integer, Tuple["Expansion", ...]]]] = None,
              stack: Tuple["Expansion", ...] = ()) -> Optional[int]:
        """Evaluate, with ``override`` swapping nodes; record literals in ``used``."""
        result = self.number(override, used, stack)
        return result if type(result) is int else None

    def number(self, override=None, used=None, stack=()) -> object:
        """The value, also when it is not an int (``bottleneck_multiplier=1.0``)."""
        plain = not override and used is None
        if plain and "_number" in self.__dict__:
            return self.__dict__["_number"]  # an expansion is not changed once built
        stack = stack + (self,)

        def hook(node):
            sub = self.subs.get(node)
            if sub is None:
                return MISSING
            return sub.number(override, used, stack)

        ev = Evaluator(self.local_values, self.global_values, hook, override, self._none)
        result = ev.value(self.node)
        if used is not None:
            used.extend((literal, stack) for literal in ev.used)
        if plain:
            self.__dict__["_number"] = result
        return result

    def _none(self, node: cst.CSTNode) -> bool:
        """Does ``node``, a name in this expression, stand for a written ``None``
        (``out_chs=None``, a parameter no caller gave)?"""
        sub = self.subs.get(node)
        if sub is None:
            return False
        bare = sub.node
        return (isinstance(bare, cst.Name) and bare.value == "None") or sub._none(bare)

    def value_of(self, node: cst.CSTNode) -> object:
        """The value of ``node``, a part of this expression, in its context."""
        return self._evaluator().value(node)

    def _evaluator(self, read: Optional[List["Expansion"]] = None) -> Evaluator:
        """An Evaluator in this expression's context whose names answer from the
        sub-expansions (each one consulted is appended to ``read``)."""

        def hook(n):
            sub = self.subs.get(n)
            if sub is None:
                return MISSING
            if read is not None:
                read.append(sub)
            return sub.number()

        return Evaluator(self.local_values, self.global_values, hook, none=self._none)

    def literals(self) -> List[Tuple[cst.Integer, Tuple["Expansion", ...]]]:
        """Every integer literal the value depends on, with the path to it."""
        used: List[Tuple[cst.Integer, Tuple[Expansion, ...]]] = []
        self.value(used=used)
        return used

    def passthrough(self) -> "Expansion":
        """Follow bare names to the expression they stand for."""
        return self.chain()[-1]

    def live(self) -> List["Expansion"]:
        """The sub-expansions the value reads (not the branch ``a if t else b``
        did not take)."""
        if "_live" not in self.__dict__:
            read: List[Expansion] = []
            self._evaluator(read).value(self.node)
            self.__dict__["_live"] = read
        return list(self.__dict__["_live"])

    def chain(self) -> List["Expansion"]:
        """This expansion and each one its bare name stands for, outward."""
        found = [self]
        while True:
            sub = found[-1].subs.get(found[-1].bare())
            if sub is None:
                return found
            found.append(sub)

    def bare(self) -> cst.CSTNode:
        """The part of the expression its value is: the branch ``a if test else b``
        took, the operand of ``a or b``; the expression itself otherwise."""
        node = self.node
        while isinstance(node, (cst.IfExp, cst.BooleanOperation)):
            taken = self._evaluator().taken(node)
            if taken is None:
                return node
            node = taken
        return node
