"""Following a name imported from another file of the project to where its
value is written (``from config import cfg``: the ``cfg = {...}`` in
config.py), and an entry of a dict literal read by a constant key
(``cfg["image_size"]``: the ``"image_size": 48`` written in the dict)."""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Mapping, Optional

import libcst as cst
from libcst.metadata.scope_provider import Assignment, ImportAssignment

from dimfix.exprs import code_of
from dimfix.follow.expansion import Binding, Expansion
from dimfix.follow.syntax import assigned_value


class Imports:
    """The resolver's part that crosses ``from ... import`` (a mixin of
    follow.resolver.Resolver)."""

    def _imported(self, node: cst.Name, site, i) -> Optional[Expansion]:
        """``cfg`` bound only by ``from config import cfg`` (or ``from .config``):
        the value of its one module-level assignment in config.py, as a
        constant there. Not followed: a module dimfix did not see imported, a
        name bound there more than once or by anything but ``NAME = value``."""
        scope = self._scopes(site, i).get(node)
        found = list(scope[node.value]) if scope is not None else []
        if len(found) != 1 or not isinstance(found[0], ImportAssignment) \
                or not isinstance(found[0].node, cst.ImportFrom):
            return None
        statement = found[0].node
        if isinstance(statement.names, cst.ImportStar):
            return None
        alias = next((a for a in statement.names
                      if code_of(a.asname.name if a.asname else a.name) == node.value), None)
        if alias is None or not isinstance(alias.name, cst.Name):
            return None
        module = _module_of(statement, site.chain[i].global_values)
        path = getattr(module, "__file__", None) if module is not None else None
        f = self.file(path) if path else None
        if f is None:
            return None
        name = alias.name.value
        written = [a for a in f.scopes[f.index.module][name]]
        if len(written) != 1 or type(written[0]) is not Assignment:
            return None
        value = assigned_value(f.parents, written[0].node)
        if value is None:
            return None
        binding = Binding(node.value, tuple(a.node for a in found[0].references))
        return Expansion(value, "constant", name, {}, vars(module), (binding,),
                         path=os.path.abspath(path))


def dict_entry(mapping: Expansion, key_node: cst.BaseExpression, key: object) -> Optional[Expansion]:
    """The value a dict literal holds for ``key``, as written: the last entry
    with that constant key, unless an entry after it might hold the key too
    (``**other``, a key that is not a literal); or the keyword argument
    ``key=`` of ``dict(...)``, which no other argument can override."""
    if isinstance(mapping.node, cst.Call):
        return _dict_keyword(mapping, key_node, key)
    hit = None
    for element in mapping.node.elements:
        if isinstance(element, cst.DictElement) and isinstance(
                element.key, (cst.SimpleString, cst.Integer)):
            if element.key.evaluated_value == key:
                hit = element
        else:
            hit = None  # ``**defaults`` or ``f"x{i}": ...`` may set it again
    if hit is None:
        return None
    label = f"{mapping.label}[{code_of(key_node)}]" if mapping.label else "dict entry"
    return Expansion(hit.value, "element", label, mapping.local_values, mapping.global_values,
                     mapping.bindings, path=mapping.path)


def _dict_keyword(mapping: Expansion, key_node, key: object) -> Optional[Expansion]:
    call = mapping.node
    if not (isinstance(call.func, cst.Name) and call.func.value == "dict"
            and mapping.global_values.get("dict", dict) is dict and isinstance(key, str)):
        return None
    kw = next((a for a in call.args if a.keyword is not None and a.keyword.value == key), None)
    if kw is None:
        return None
    label = f"{mapping.label}[{code_of(key_node)}]" if mapping.label else "dict entry"
    return Expansion(kw.value, "element", label, mapping.local_values, mapping.global_values,
                     mapping.bindings, path=mapping.path)


def _module_of(statement: cst.ImportFrom, global_values: Mapping[str, object]):
    """The module ``from <module> import ...`` imported, as the importing
    module's package resolves it, if it is loaded."""
    name = code_of(statement.module) if statement.module is not None else ""
    dots = len(statement.relative)
    try:
        full = importlib.util.resolve_name("." * dots + name, global_values.get("__package__")) \
            if dots else name
    except (ImportError, ValueError):
        return None
    return sys.modules.get(full)
