"""Static facts about the code around a layer's call: the names its statement
uses, the loops its function runs, and whether two frames are one run."""

from __future__ import annotations

from typing import Optional, Sequence, Set, Tuple

import libcst as cst

from dimfix.exprs import code_of
from dimfix.origin import descendants
from dimfix.records import Frame


def of_call(call: cst.Call, parents) -> Tuple[Set[str], Set[str]]:
    """(names the statement of ``call`` uses outside the call, loop leftovers:
    variables of loops in its function that the call is not in, and names
    only such a loop binds, unless bound again before the call)."""
    statement, loops, node = None, set(), call
    while node is not None:
        if statement is None and isinstance(node, (cst.SimpleStatementLine,
                                                   cst.BaseCompoundStatement)):
            statement = node
        if isinstance(node, cst.For):
            loops.add(node)
        if isinstance(node, cst.FunctionDef):
            break
        node = parents.get(node)
    own = set(descendants(call))  # not its own arguments: in == out is no sign
    used = {code_of(n) for n in descendants(statement or call)
            if n not in own and isinstance(n, (cst.Name, cst.Attribute))}
    leftovers: Set[str] = set()
    if node is not None:
        order = descendants(node.body)
        at = {n: i for i, n in enumerate(order)}
        here = at.get(call, len(order))
        params = {p.name.value for p in descendants(node.params) if isinstance(p, cst.Param)}
        for loop in order:
            if isinstance(loop, cst.For) and loop not in loops:
                # A loop's variables, and names only its body binds (a
                # per-pass ``output_channel``, where ``input_channel``
                # carries the width on), unless bound again before the call.
                end = at[loop] + len(descendants(loop))
                before = bound(order[:at[loop]]) | params
                leftovers |= (_targets(loop) | (bound(order[at[loop]:end]) - before)) \
                    - bound(order[end:here])
    return used, leftovers - {name for loop in loops for name in _targets(loop)}


def loop_variables(call: cst.Call, parents) -> Set[str]:
    """The variables of the ``for`` loops ``call`` runs in, inside its
    function: what differs from one layer built there to the next."""
    found: Set[str] = set()
    node = parents.get(call)
    while node is not None and not isinstance(node, cst.FunctionDef):
        if isinstance(node, cst.For):
            found |= _targets(node)
        node = parents.get(node)
    return found


def iterated(call: cst.Call, parents) -> Set[str]:
    """Names the function holding ``call`` loops over (``for x in NAME``,
    ``zip(NAME, ...)``, ``enumerate(NAME)``, comprehensions too)."""
    func = call
    while func is not None and not isinstance(func, cst.FunctionDef):
        func = parents.get(func)
    if func is None:
        return set()
    found = set()
    for node in descendants(func):
        if isinstance(node, (cst.For, cst.CompFor)):
            sources = [node.iter]
            if isinstance(node.iter, cst.Call) and isinstance(node.iter.func, cst.Name) \
                    and node.iter.func.value in ("zip", "enumerate", "reversed", "sorted"):
                sources = [a.value for a in node.iter.args]
            found.update(code_of(x) for x in sources if isinstance(x, (cst.Name, cst.Attribute)))
    return found


def same_run(a: Sequence[Frame], i: int, b: Sequence[Frame], j: int) -> bool:
    """Are frame i of chain ``a`` and frame j of chain ``b`` one run of one
    function: the same ``self``, or else the same calls outward, pass for pass?
    A comprehension's own frame (before Python 3.12) runs in the run of the
    function around it (``[nn.Conv1d(embed_dim, ...) for fs in sizes]``)."""
    i, j = _enclosing(a, i), _enclosing(b, j)
    x, y = a[i], b[j]
    if (x.path, x.qualname) != (y.path, y.qualname):
        return False
    x_self, y_self = x.local_values.get("self"), y.local_values.get("self")
    if x_self is not None or y_self is not None:
        return x_self is y_self
    outer_x, outer_y = a[i + 1:], b[j + 1:]
    return len(outer_x) == len(outer_y) and all(
        p == q and p.visit == q.visit for p, q in zip(outer_x, outer_y))


COMPREHENSIONS = ("<listcomp>", "<setcomp>", "<dictcomp>", "<genexpr>")


def _enclosing(chain: Sequence[Frame], i: int) -> int:
    while i + 1 < len(chain) and chain[i].function in COMPREHENSIONS:
        i += 1
    return i


def first_word(name: str) -> str:
    """``in`` of ``in_channels`` and of ``self.in_chs``."""
    return name.rsplit(".", 1)[-1].lstrip("_").split("_", 1)[0]


def bound(nodes) -> Set[str]:
    """Names the assignments among ``nodes`` bind (``x = ...``, ``a, b = ...``,
    ``x: int = ...``, ``x += ...``)."""
    def names(target):
        if isinstance(target, cst.Name):
            yield target.value
        elif isinstance(target, (cst.Tuple, cst.List)):
            for element in target.elements:
                yield from names(element.value)

    found: Set[str] = set()
    for n in nodes:
        if isinstance(n, cst.Assign):
            for t in n.targets:
                found.update(names(t.target))
        elif isinstance(n, (cst.AnnAssign, cst.AugAssign)):
            found.update(names(n.target))
    return found


def _targets(loop: cst.For) -> Set[str]:
    return {n.value for n in descendants(loop.target) if isinstance(n, cst.Name)}


def enclosing_function(node, parents) -> Optional[cst.FunctionDef]:
    while node is not None and not isinstance(node, cst.FunctionDef):
        node = parents.get(node)
    return node
