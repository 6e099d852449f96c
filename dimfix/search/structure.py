"""Generators that write arithmetic, only where the trace saw the structure:
torch.cat joined k tensors of a name's size (``HIDDEN * 2``), or tensors
names in scope hold (``embedding_dim + hidden_dim``); a bidirectional RNN's
output is two directions of its hidden size (``2*hidden_size+embedding_length``);
a literal counts the parts of a cat over a list in scope (``len(filter_sizes)``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Iterator

import libcst as cst

from dimfix.exprs import code_of, names_in
from dimfix.scope import names_holding, sequences_of_length
from dimfix.search.candidate import ARITHMETIC, LITERAL, NAME, Candidate, Task
from dimfix.search.solve import addends, solve, times
from dimfix.search.world import reads

BARE = (cst.Name, cst.Attribute, cst.Subscript)


class CatParts:
    """A name that holds one part of a torch.cat, at the call or where a caller
    passed it on unchanged (cGAN's ``block(opt.latent_dim, 128)``): the sum of
    the names that hold the other parts there (``opt.latent_dim +
    opt.n_classes``), or ``HIDDEN * 2`` when every part is that size and no
    other name holds one; a bidirectional RNN's output read directly is two
    directions of the name (``hidden_size * 2``). Never ``num_classes * 4``."""

    kind = "cat parts"

    def propose(self, task: Task) -> Iterator[Candidate]:
        m, world = task.m, task.world
        chain = task.exp.chain()
        for depth, e in enumerate(chain):
            node = e.bare()
            if e.frame is None or (depth and e.kind == "argument") \
                    or not isinstance(node, BARE + (cst.BinaryOperation,) + ((cst.Call,) if depth == 0 else ())):
                continue
            group = [replace(c, site=replace(c.site, chain=c.site.chain[e.frame:]))
                     for c in world.site_constructions(m)
                     if node in world.reach.get((c.layer_path, c.arg), ())]
            frame = m.site.chain[e.frame]
            for new, because in _structures(m, e.value(), node, group, world, frame):
                yield Candidate(self.kind, {node: new}, node,
                                "" if depth == 0 else (e.label or code_of(node)), because,
                                tuple(b for x in chain[1:depth + 1] for b in x.bindings),
                                writes=ARITHMETIC, over=NAME, depth=depth, patch=depth == 0)


def _structures(m, current, node, group, world, frame):
    """(new expression, why) for ``node``, which holds ``current``, one part of
    what arrives. A name for another part may say it counts something else
    (``opt.n_classes``, a label embedding's width) only if the function reads
    it elsewhere too (``nn.Embedding(opt.n_classes, opt.n_classes)``)."""
    parts = list(m.parts)
    if len(parts) == 1 and len(m.blocks) == 1 and current * m.blocks[0] == parts[0] > current:
        k = m.blocks[0]
        yield (times(node, k, world.spacing(node, cst.Multiply)),
               f"a bidirectional RNN puts out {k} directions of {current}")
        return
    if len(parts) < 2 or not group:
        return
    if current in parts:
        parts.remove(current)
    elif isinstance(node, cst.BinaryOperation):
        # ``latent_dim + n_classes`` of a cat of noise, label and code: the
        # sum of some parts, one left out.
        parts = _rest(parts, current)
        if not parts:
            return
    else:
        return
    # The names that hold the other parts, each its own: ``n_embd + n_embd2``
    # even when both hold 64 (then ``n_embd * 2`` would be right by chance).
    # When the parts are all of one size, the other name must be one the
    # function reads: a global that only holds the same number
    # (``HIDDEN_DIM = 128`` over a bidirectional LSTM's two final states) is no
    # part; ``hidden_dim * 2`` is.
    exclude = [*names_in(node), code_of(node)]
    others = [names_holding([replace(group[0], required=p)], exclude=exclude) for p in parts]
    read = world.function_reads(frame)
    alike = all(p == current for p in parts)
    names = [f.names[0] for f in others if len(f.names) == 1
             and (not (f.odd or alike) or f.names[0] in read)]
    if len(names) == len(parts) and len(set(names)) == len(names):
        plus = world.spacing(node, cst.Add)
        total = f"{plus}+{plus}".join([code_of(node)] + names)
        yield cst.parse_expression(total), f"torch.cat joins {' + '.join(map(str, m.parts))}"
    elif all(p == current for p in parts) and isinstance(node, BARE) and current in m.parts:
        yield (times(node, len(parts) + 1, world.spacing(node, cst.Multiply)),
               f"torch.cat joins {len(parts) + 1} tensors of {current}")


def _rest(parts, total: int):
    """The parts left when exactly one way of choosing the others sums to ``total``."""
    import itertools

    found = {tuple(sorted(p for i, p in enumerate(parts) if i not in chosen))
             for k in range(2, len(parts))
             for chosen in itertools.combinations(range(len(parts)), k)
             if sum(parts[i] for i in chosen) == total}
    return list(found.pop()) if len(found) == 1 else []


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
        origin = _by_origin(task, terms, values)
        found = origin or _by_value(parts, values)
        if found is None:
            return
        i, j = found
        term, value, k = terms[i], values[i], blocks[j]
        if k < 2 or parts[j] != k * value or not isinstance(term, BARE):
            return
        yield Candidate(self.kind, {expr: expr.deep_replace(term, _scaled(term, k, expr, task.world))},
                        expr,
                        because=f"torch.cat joins {' + '.join(map(str, parts))}; {parts[j]} "
                        f"is a bidirectional RNN's output, {k} directions of `{code_of(term)}`",
                        writes=ARITHMETIC, over=ARITHMETIC, patch=True,
                        attributed=frozenset(n for _, n in _term_reads(exp, term)) if origin
                        else frozenset())


def _by_value(parts, values):
    """(term, part): the one term whose value is no part's, and the one part
    no term's value is."""
    unmatched, odd = list(range(len(parts))), []
    for i, v in enumerate(values):
        j = next((j for j in unmatched if parts[j] == v), None)
        if j is None:
            odd.append(i)
        else:
            unmatched.remove(j)
    return (odd[0], unmatched[0]) if len(odd) == 1 and len(unmatched) == 1 else None


def _by_origin(task: Task, terms, values):
    """(term, part): the term that stands for the hidden size of the
    bidirectional RNN the trace saw make a part, where it is written
    (``enc_hid_dim + dec_hid_dim`` both 128, the encoder's GRU built with
    ``enc_hid_dim``), the other terms' values the other parts."""
    m, world, exp = task.m, task.world, task.exp
    for j, source in enumerate(m.sources):
        hit = world.size_of(source, "hidden_size") if source and m.blocks[j] > 1 else None
        if hit is None:
            continue
        rnn, size = hit
        own = [i for i, t in enumerate(terms)
               if world.same_origin(_term_reads(exp, t), m.site.chain, reads(size), rnn.site.chain)]
        rest = sorted(p for n, p in enumerate(m.parts) if n != j)
        if len(own) == 1 and rest == sorted(v for n, v in enumerate(values) if n != own[0]):
            return own[0], j
    return None


def _term_reads(exp, term):
    sub = exp.subs.get(term)
    return [(exp.frame, term), *(reads(sub) if sub is not None else ())]


def _scaled(term, k: int, expr, world) -> cst.BinaryOperation:
    """``k * term``, or ``term * k`` where the file writes it so (``enc_hid_dim
    * 2`` elsewhere): spaced as the sum around it."""
    space = expr.operator.whitespace_before
    operator = cst.Multiply(whitespace_before=space, whitespace_after=space)
    if world.factor_last(term, k):
        return cst.BinaryOperation(left=term.deep_clone(), right=cst.Integer(str(k)), operator=operator)
    return cst.BinaryOperation(left=cst.Integer(str(k)), right=term.deep_clone(), operator=operator)


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
