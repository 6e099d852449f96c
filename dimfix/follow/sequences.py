"""Following a value read out of a sequence to the element written there:
``dims[i]`` by a known index, a loop variable over a list (``for a, b in
zip(dims, dims[1:])``, ``enumerate``) by the iteration it was read in, and
``cfg["key"]`` of a dict literal (or of ``dict(key=...)``) by its key."""

from __future__ import annotations

from typing import List, Optional

import libcst as cst

from dimfix.exprs import MISSING, Evaluator
from dimfix.follow.expansion import Expansion
from dimfix.follow.imports import dict_entry
from dimfix.follow.syntax import loop_iterable


class Sequences:
    """The resolver's part that reads elements of lists, tuples and dicts (a
    mixin of follow.resolver.Resolver)."""

    def _subscript(self, node: cst.Subscript, site, i, depth, module_level) -> Optional[Expansion]:
        if len(node.slice) != 1 or not isinstance(node.slice[0].slice, cst.Index):
            return None
        frame = site.chain[i]
        values = {} if module_level else frame.local_values
        key_node = node.slice[0].slice.value
        if isinstance(key_node, cst.SimpleString):  # ``cfg["image_size"]`` of a dict literal
            mapping = self._sequence(node.value, site, i, depth, module_level, (cst.Dict, cst.Call))
            return dict_entry(mapping, key_node, key_node.evaluated_value) if mapping else None
        seq = self._sequence(node.value, site, i, depth, module_level)
        if seq is None:
            return None
        index = Evaluator(values, frame.global_values).integer(key_node)
        return self._element(seq, index)

    def _loop_element(self, node: cst.Name, loop, site, i, depth, binding) -> Optional[Expansion]:
        """``for a, b in zip(dims, dims[1:])``: the element this iteration read."""
        target, iterable = loop
        frame = site.chain[i]
        current = frame.local_values.get(node.value, MISSING)
        if type(current) is not int:
            return None
        sources = self._loop_sources(target, iterable, node.value, site, i, depth)
        if sources is None:
            return None
        seq, offset, index_name = sources
        if index_name is not None:  # enumerate(): the index is known
            k = frame.local_values.get(index_name)
            return self._element(seq, k + offset if type(k) is int else None)
        elements = _element_values(seq)
        hits = [k for k, v in enumerate(elements) if v == current]
        if len(hits) != 1:
            self.why = f"{node.value} is {current}, found {len(hits)} times in the list"
            return None
        return self._element(seq, hits[0])

    def _loop_sources(self, target, iterable, name, site, i, depth):
        """The sequence (and offset) the loop variable ``name`` reads, if simple."""
        found = loop_iterable(target, iterable, name)
        if found is None:
            return None
        iterable, offset, index_name = found
        self.traversed.add(iterable)
        seq = self._sequence(iterable, site, i, depth, False)
        return (seq, offset, index_name) if seq is not None else None

    def _sequence(self, node, site, i, depth, module_level,
                  kinds=(cst.List, cst.Tuple)) -> Optional[Expansion]:
        if isinstance(node, kinds):
            return self._expand(node, site, i, "literal", "", (), depth, module_level)
        if not isinstance(node, cst.Name):
            return None
        found = self._name(node, site, i, depth, module_level)
        if found is None:
            return None
        self.traversed.add(node)
        found = found.passthrough()
        return found if isinstance(found.node, kinds) else None

    def _element(self, seq: Expansion, index: Optional[int]) -> Optional[Expansion]:
        elements = seq.node.elements
        if type(index) is not int or not -len(elements) <= index < len(elements):
            return None
        element = elements[index]
        if isinstance(element, cst.StarredElement):
            return None
        label = f"{seq.label}[{index % len(elements)}]" if seq.label else "list element"
        return Expansion(element.value, "element", label, seq.local_values,
                         seq.global_values, seq.bindings, path=seq.path)


def _element_values(seq: Expansion) -> List[object]:
    ev = Evaluator(seq.local_values, seq.global_values)
    return [ev.value(e.value) if not isinstance(e, cst.StarredElement) else None
            for e in seq.node.elements]
