"""Generators that write arithmetic, only where the trace saw the structure:
torch.cat joined k tensors of a name's size (``HIDDEN * 2``), or tensors
names in scope hold (``embedding_dim + hidden_dim``); a bidirectional RNN's
output is two directions of its hidden size (``2*hidden_size+embedding_length``);
a literal counts the parts of a cat over a list in scope (``len(filter_sizes)``)."""

from __future__ import annotations

from typing import Iterator

import libcst as cst

from dimfix.exprs import code_of, names_in
from dimfix.scope import names_holding, sequences_of_length
from dimfix.search.candidate import ARITHMETIC, LITERAL, NAME, Candidate, Task
from dimfix.search.solve import addends, solve, times

BARE = (cst.Name, cst.Attribute, cst.Subscript)


class CatParts:
    """A name at the call that holds one part of a torch.cat: ``HIDDEN * 2``
    when every part is that size, else the sum of the names that hold the
    other parts (``embedding_dim + hidden_dim``); never ``num_classes * 4``."""

    kind = "cat parts"

    def propose(self, task: Task) -> Iterator[Candidate]:
        expr, m, exp, world = task.expr, task.m, task.exp, task.world
        if not isinstance(expr, BARE):
            return
        current, parts = exp.value(), list(m.parts)
        if len(parts) == 1 and len(m.blocks) == 1 and current * m.blocks[0] == parts[0] > current:
            k = m.blocks[0]
            yield Candidate(self.kind, {expr: times(expr, k, world.spacing(expr, cst.Multiply))}, expr,
                            because=f"a bidirectional RNN puts out {k} directions of {current}",
                            writes=ARITHMETIC, over=NAME, patch=True)
            return
        if len(parts) < 2 or current not in parts:
            return
        parts.remove(current)
        # The names that hold the other parts, each its own: ``n_embd + n_embd2``
        # even when both hold 64 (then ``n_embd * 2`` would be right by chance).
        exclude = [*names_in(expr), code_of(expr)]
        others = [names_holding(world.at_site(m, p), exclude=exclude) for p in parts]
        names = [f.names[0] for f in others if f.names and not f.ambiguous and not f.odd]
        if len(names) == len(parts) and len(set(names)) == len(names):
            total = f"{world.spacing(expr, cst.Add)}+{world.spacing(expr, cst.Add)}".join(
                [code_of(expr)] + names)
            joined = " + ".join(map(str, m.parts))
            yield Candidate(self.kind, {expr: cst.parse_expression(total)}, expr,
                            because=f"torch.cat joins {joined}", writes=ARITHMETIC,
                            over=NAME, patch=True)
        elif all(p == current for p in parts):
            yield Candidate(self.kind, {expr: times(expr, len(parts) + 1,
                                                     world.spacing(expr, cst.Multiply))}, expr,
                            because=f"torch.cat joins {len(parts) + 1} tensors of {current}",
                            writes=ARITHMETIC, over=NAME, patch=True)


class BidirectionalSum:
    """``hidden_size+embedding_length`` fed torch.cat of a bidirectional RNN's
    output and the embedding: each term stands for one part, and the one that
    differs is the RNN's, two directions of it: ``2*hidden_size+embedding_length``."""

    kind = "bidirectional"

    def propose(self, task: Task) -> Iterator[Candidate]:
        expr, m, exp = task.expr, task.m, task.exp
        parts, blocks = m.parts, m.blocks
        if not isinstance(expr, cst.BinaryOperation):
            return
        terms = addends(expr)
        if len(parts) < 2 or len(blocks) != len(parts) or len(terms) != len(parts):
            return
        values = [exp.value_of(t) for t in terms]
        if any(type(v) is not int for v in values):
            return
        unmatched, odd = list(range(len(parts))), []
        for i, v in enumerate(values):
            j = next((j for j in unmatched if parts[j] == v), None)
            if j is None:
                odd.append(i)
            else:
                unmatched.remove(j)
        if len(odd) != 1 or len(unmatched) != 1:
            return
        term, value, j = terms[odd[0]], values[odd[0]], unmatched[0]
        k = blocks[j]
        if k < 2 or parts[j] != k * value or not isinstance(term, BARE):
            return
        space = expr.operator.whitespace_before
        scaled = cst.BinaryOperation(
            left=cst.Integer(str(k)), right=term.deep_clone(),
            operator=cst.Multiply(whitespace_before=space, whitespace_after=space))
        yield Candidate(self.kind, {expr: expr.deep_replace(term, scaled)}, expr,
                        because=f"torch.cat joins {' + '.join(map(str, parts))}; {parts[j]} "
                        f"is a bidirectional RNN's output, {k} directions of `{code_of(term)}`",
                        writes=ARITHMETIC, over=ARITHMETIC, patch=True)


class PartCount:
    """``4 * n_filters`` fed a torch.cat of 3 tensors of n_filters: the 4 counts
    the parts, and a list in scope as long as the count (``filter_sizes``,
    one conv per element) says so: ``len(filter_sizes) * n_filters``."""

    kind = "part count"

    def propose(self, task: Task) -> Iterator[Candidate]:
        m, exp, world = task.m, task.exp, task.world
        parts = m.parts
        if len(parts) < 2 or len(set(parts)) != 1:
            return
        for lit, stack in world.literals[(m.layer_path, m.arg)]:
            value = solve(exp, lit, m.observed, task.base)
            if len(stack) != 1 or value != len(parts):
                continue
            if exp.value({**task.base, lit: lit.with_changes(value="1")}) != parts[0]:
                continue  # the literal does not count tensors of one part's size
            # Only a list the code that built the layer iterates (``for fs in
            # filter_sizes``): a kernel size or a mean of the same length is no count.
            found = sequences_of_length(world.site_constructions(m), value,
                                        among=world.iterated(m))
            if found.names and not found.ambiguous:
                name = found.names[0]
                yield Candidate(self.kind, {lit: cst.parse_expression(f"len({name})")}, lit,
                                because=f"torch.cat joins len({name}) tensors of {parts[0]}",
                                writes=ARITHMETIC, over=LITERAL)
