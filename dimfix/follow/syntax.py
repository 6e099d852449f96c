"""libcst helpers for following values: assignments, scopes, loops, calls,
``self.x`` stores and loads, argparse defaults. Pure functions of the syntax."""

from __future__ import annotations

import functools
from typing import Dict, List, Optional, Set, Tuple

import libcst as cst
from libcst.metadata.scope_provider import Assignment

from dimfix.exprs import MISSING, Evaluator
from dimfix.locate import find_argument


def loop_iterable(target, iterable, name):
    """(the sequence the loop variable ``name`` reads, the index its first pass
    reads, the name of ``enumerate``'s counter or None), if the loop is simple:
    ``for x in xs``, ``for i, x in enumerate(xs)``, ``for a, x in zip(as, xs)``,
    ``for x in xs[1:]``."""
    index_name = None
    if is_call_to(iterable, "enumerate") and isinstance(target, cst.Tuple):
        parts = [e.value for e in target.elements]
        if len(parts) != 2 or not isinstance(parts[0], cst.Name):
            return None
        index_name, target, iterable = parts[0].value, parts[1], iterable.args[0].value
    if is_call_to(iterable, "zip") and isinstance(target, cst.Tuple):
        parts = [e.value for e in target.elements]
        args = [a.value for a in iterable.args]
        if len(parts) != len(args):
            return None
        for part, arg in zip(parts, args):
            if isinstance(part, cst.Name) and part.value == name:
                target, iterable = part, arg
                break
        else:
            return None
    if not (isinstance(target, cst.Name) and target.value == name):
        return None
    offset = 0
    if isinstance(iterable, cst.Subscript):
        offset = slice_start(iterable)
        if offset is None:
            return None
        iterable = iterable.value
    return iterable, offset, index_name


def reads_of(target, scopes, parents) -> List[cst.CSTNode]:
    if isinstance(target, cst.Name):
        found = assignments(scopes, target) if scopes.get(target) else []
        if len(found) != 1:
            return [target]  # unknown: counts as unaccounted
        return [a.node for a in found[0].references]
    if isinstance(target, cst.Attribute) and isinstance(target.value, cst.Name) \
            and target.value.value == "self":
        cls = enclosing(parents, target, cst.ClassDef)
        if cls is not None:
            return self_attribute_uses(cls, target.attr.value)[1]
    return [target]


def enclosing(parents, node, kind):
    node = parents.get(node)
    while node is not None and not isinstance(node, kind):
        node = parents.get(node)
    return node


def within(parents, node, ancestor) -> bool:
    while node is not None:
        if node is ancestor:
            return True
        node = parents.get(node)
    return False


def is_method(parents, func: cst.FunctionDef) -> bool:
    parent = parents.get(parents.get(func))
    return isinstance(parent, cst.ClassDef) and not any(
        isinstance(d.decorator, cst.Name) and d.decorator.value == "staticmethod"
        for d in func.decorators
    )


def assignments(scopes, node: cst.Name) -> List[Assignment]:
    """The bindings of ``node`` that dimfix can follow (none if any is an
    import, a builtin or another kind it cannot read)."""
    scope = scopes.get(node)
    if scope is None:
        return []
    found = list(scope[node.value])
    if not found or any(type(a) is not Assignment for a in found):
        return []
    return found


def descendants(root: cst.CSTNode, kind=cst.CSTNode) -> List[cst.CSTNode]:
    """Every node under ``root`` (itself included) of type ``kind``, in order."""
    found: List[cst.CSTNode] = []

    class Visit(cst.CSTVisitor):
        def on_visit(self, node) -> bool:
            if isinstance(node, kind):
                found.append(node)
            return True

    root.visit(Visit())
    return found


def assigned_value(parents, target) -> Optional[cst.BaseExpression]:
    """``value`` of ``target = value`` (one target) or ``target: T = value``,
    or the element of ``a, target = x, value`` at its place."""
    parent = parents.get(target)
    if isinstance(parent, cst.Element):
        return _unpacked_value(parents, parent)
    if isinstance(parent, cst.AssignTarget):
        assign = parents.get(parent)
        if isinstance(assign, cst.Assign) and len(assign.targets) == 1:
            return assign.value
    if isinstance(parent, cst.AnnAssign) and parent.target is target:
        return parent.value
    return None


def _unpacked_value(parents, element: cst.Element) -> Optional[cst.BaseExpression]:
    """``prev_dim, fc_input_dim = input_dim, 0``: the value at the element's place."""
    targets = parents.get(element)
    holder = parents.get(targets)
    assign = parents.get(holder)
    if not (isinstance(targets, (cst.Tuple, cst.List)) and isinstance(holder, cst.AssignTarget)
            and isinstance(assign, cst.Assign) and len(assign.targets) == 1
            and isinstance(assign.value, (cst.Tuple, cst.List))):
        return None
    values = assign.value.elements
    if len(values) != len(targets.elements) or any(
            isinstance(e, cst.StarredElement) for e in (*values, *targets.elements)):
        return None
    return values[targets.elements.index(element)].value


def dominating(found: List[Assignment], read: cst.Name, parents) -> List[Assignment]:
    """``out_chs = out_chs or in_chs`` written straight in the function body,
    before the statement that reads ``out_chs``, and after every other binding
    of it: it runs before the read on every path and hides the parameter."""
    func = enclosing(parents, read, cst.FunctionDef)
    if func is None or not isinstance(func.body, cst.IndentedBlock) \
            or enclosing(parents, read, cst.Lambda) is not None:
        return []
    index = {statement: k for k, statement in enumerate(func.body.body)}

    def statement_of(node) -> Optional[int]:
        while node is not None and node not in index:
            node = parents.get(node)
        return index.get(node) if node is not None else None

    def direct(a: Assignment) -> bool:  # the whole statement, not nested in a block
        return assigned_value(parents, a.node) is not None \
            and enclosing(parents, a.node, cst.SimpleStatementLine) in index

    read_at = statement_of(read)
    placed = [(statement_of(a.node), a) for a in found if not isinstance(a.node, cst.Param)]
    if read_at is None or any(k is None for k, _ in placed):
        return []
    last = max(placed, key=lambda p: p[0], default=None)
    if last is None or last[0] >= read_at or not direct(last[1]) \
            or sum(k == last[0] for k, _ in placed) > 1:
        return []
    return [last[1]]


def binds_after(parents, assignment: Assignment, read: cst.Name) -> bool:
    """Is ``read`` inside the value ``assignment`` binds, so read before it binds?"""
    value = assigned_value(parents, assignment.node)
    return value is not None and within(parents, read, value)


def is_module_scope(assignment: Assignment) -> bool:
    from libcst.metadata import GlobalScope

    return isinstance(assignment.scope, GlobalScope)


def enclosing_loop(parents, target) -> Optional[Tuple[cst.BaseExpression, cst.BaseExpression]]:
    node, child = parents.get(target), target
    while node is not None:
        if isinstance(node, (cst.For, cst.CompFor)) and node.target is child:
            return node.target, node.iter
        if not isinstance(node, (cst.Tuple, cst.List, cst.Element, cst.StarredElement)):
            return None
        node, child = parents.get(node), node
    return None


def bound_argument(call: cst.Call, func: cst.FunctionDef, name: str, is_method: bool):
    """The expression ``call`` passes for parameter ``name`` of ``func``; None if
    the default applies; MISSING if it cannot be told (``*args``, ``**kwargs``)."""
    params = func.params
    positional = [p.name.value for p in (*params.posonly_params, *params.params)]
    if is_method and positional:
        positional = positional[1:]
    order = tuple(positional) + (("*",) if isinstance(params.star_arg, cst.Param) else ())
    order += tuple(p.name.value for p in params.kwonly_params)
    arg, why = find_argument(call, order, name)
    if arg is not None:
        return arg.value
    if "unpacking" in why or "*args" in why:
        return MISSING
    return None


def self_attribute_uses(cls: cst.ClassDef, attr: str):
    """(stores as [(target, value)], loads) of ``self.<attr>`` in ``cls``."""
    stores, loads = class_attribute_uses(cls).get(attr, ((), ()))
    if any(value is None for _, value in stores):
        return [], list(loads)
    return list(stores), list(loads)


@functools.lru_cache(maxsize=256)
def class_attribute_uses(cls: cst.ClassDef) -> Dict[str, tuple]:
    """For every ``self.<attr>`` in ``cls``: (stores as (target, value or None),
    loads). One walk of the class (NASNet's cells are read thousands of times)."""
    stores: Dict[str, list] = {}
    loads: Dict[str, list] = {}
    targets: Set[int] = set()

    def store(target, value) -> None:
        attr = self_attr_name(target)
        if attr is not None:
            targets.add(id(target))
            stores.setdefault(attr, []).append((target, value))

    class Visit(cst.CSTVisitor):
        def visit_Assign(self, node: cst.Assign) -> None:
            for t in node.targets:
                store(t.target, node.value if len(node.targets) == 1 else None)

        def visit_AugAssign(self, node: cst.AugAssign) -> None:
            store(node.target, None)

        def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
            store(node.target, node.value)

        def visit_Attribute(self, node: cst.Attribute) -> None:
            attr = self_attr_name(node)
            if attr is not None and id(node) not in targets:
                loads.setdefault(attr, []).append(node)

    cls.visit(Visit())
    return {attr: (tuple(stores.get(attr, ())),
                   tuple(n for n in loads.get(attr, ()) if id(n) not in targets))
            for attr in set(stores) | set(loads)}


def self_attr_name(node) -> Optional[str]:
    if isinstance(node, cst.Attribute) and isinstance(node.value, cst.Name) \
            and node.value.value == "self":
        return node.attr.value
    return None


def is_call_to(node, name: str) -> bool:
    return isinstance(node, cst.Call) and isinstance(node.func, cst.Name) and node.func.value == name


def callee(call: cst.Call) -> str:
    func = call.func
    if isinstance(func, cst.Name):
        return func.value
    if isinstance(func, cst.Attribute):
        return func.attr.value
    return "call"


def slice_start(node: cst.Subscript) -> Optional[int]:
    if len(node.slice) != 1 or not isinstance(node.slice[0].slice, cst.Slice):
        return None
    s = node.slice[0].slice
    if s.step is not None:
        return None
    if s.lower is None:
        return 0
    return Evaluator().integer(s.lower)


def add_argument_default(module: cst.Module, parser: str,
                         dest: str) -> Optional[Tuple[str, cst.BaseExpression]]:
    """The option as the user types it (``--img-size``) and the ``default=`` of
    the one ``parser.add_argument`` (or one of its groups') whose destination
    is ``dest`` (``img_size``)."""
    found: List[Tuple[str, cst.BaseExpression]] = []

    class Visit(cst.CSTVisitor):
        def visit_Call(self, call: cst.Call) -> None:
            func = call.func
            if not (isinstance(func, cst.Attribute) and func.attr.value == "add_argument"):
                return
            flags = [a.value.evaluated_value for a in call.args
                     if a.keyword is None and isinstance(a.value, cst.SimpleString)]
            named = {a.keyword.value: a.value for a in call.args if a.keyword is not None}
            explicit = named.get("dest")
            target = explicit.evaluated_value if isinstance(explicit, cst.SimpleString) else \
                next((f.lstrip("-").replace("-", "_") for f in flags if f.startswith("--")),
                     flags[0].replace("-", "_") if flags else None)
            if target == dest and "default" in named:
                flag = next((f for f in flags if f.startswith("--")), f"--{dest}")
                found.append((flag, named["default"]))

    module.visit(Visit())
    return found[0] if len(found) == 1 else None


def attribute_reads(module: cst.Module, owner: str, attr: str) -> List[cst.CSTNode]:
    reads: List[cst.CSTNode] = []

    class Visit(cst.CSTVisitor):
        def visit_Attribute(self, node: cst.Attribute) -> None:
            if isinstance(node.value, cst.Name) and node.value.value == owner \
                    and node.attr.value == attr:
                reads.append(node)

    module.visit(Visit())
    return reads
