"""The records of the search: a candidate edit, what the symbolic check found
about it, and a candidate weighed (shown by ``-v``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import FrozenSet, Optional, Tuple

import libcst as cst

from dimfix.exprs import Replacements
from dimfix.records import Weighed

Key = Tuple[str, str]  # (layer path, argument)

# What an edit writes, and what it writes over.
LITERAL, NAME, ARITHMETIC = "literal", "name", "arithmetic"


@dataclass(frozen=True, eq=False)
class Candidate:
    """One way to fix a group: nodes to replace, and what its generator knows.

    ``label`` is empty for an edit of the layer's own argument, else how the
    reason line names the place further out ("default of hidden").
    """

    kind: str  # the generator that proposed it, for -v
    replacements: Replacements
    node: cst.CSTNode  # the node the reason line names
    label: str = ""
    because: str = ""  # why this form, for the reason line
    bindings: tuple = ()  # bindings the new value flows through, besides the literals'
    writes: str = LITERAL
    over: str = LITERAL
    depth: int = 0  # expansions between the layer's argument and the edit
    # The edited literal reaches the layer unchanged, through names only (a
    # default, a constant, a caller's argument): where the value is written.
    passthrough: bool = False
    name_cost: float = 0.0  # scope.py's prior for the name written, if one
    # It changes a factor that already reads as its dimension of the tensor
    # flattened into the size (``64`` of ``64 * 7 * 7`` fed 64x14x14).
    agrees: bool = False
    change: float = 0.0  # |log(new / old)| of a literal changed
    identity: bool = False  # the literal becomes 1 in ``x * 1``: its arithmetic means nothing
    drops: bool = False  # arithmetic that means nothing dropped (``512 * 7 * 7`` -> ``512``)
    # The value reaches an input size through a name that says it never holds
    # a width (``Discriminator(ngpu)`` -> ``Conv2d(ngpu, ...)``).
    through_odd: bool = False
    # A literal that reaches an input size unchanged through a name other than
    # the one the layer that made the tensor was sized by, in the same run, and
    # is the size of another axis of that tensor (``Conv1d(seq_len, ...)`` fed
    # 4x128x64 by ``Embedding(vocab_size, emb_dim)``): the name is the mistake.
    renamed: bool = False
    # A new expression at the layer's own call over a name or arithmetic whose
    # value is written elsewhere: the symptom patched, not the cause fixed.
    patch: bool = False
    # A literal in the exponent of ``**`` over a computed size
    # (``(image_size // patch) ** 2``): it counts dimensions, not a size.
    exponent: bool = False
    # A literal in the own call of a tensor sized in __init__ (the class
    # token's ``num_patches + 1``): it counts extra entries; the configuration
    # the rest is computed from sets the size.
    counts: bool = False
    # The term the trace saw stand for one part, by where its value is written
    # (a bidirectional RNN's hidden size), and the names it was passed
    # through: an edit that swaps one of them for another name loses that.
    attributed: FrozenSet[cst.CSTNode] = frozenset()
    holds: str = ""  # what the name it writes holds, where ("64 there"), for a tie's message
    # An edit of the out size of the layer that made the arriving tensor
    # (search/producer.py): that layer's mismatch as it would read, the task
    # of its out argument the edit was proposed for, and the width each
    # argument must take after it (the out size; the layers it feeds).
    subject: Optional[object] = None
    within: Optional[object] = None
    needs: Tuple[Tuple[Key, int], ...] = ()

    @property
    def further(self) -> bool:
        """Is the edit away from the layer's own call?"""
        return bool(self.label)


@dataclass(frozen=True, eq=False)
class Task:
    """One group of mismatches (one call site, one argument) to fix: what
    every generator reads."""

    group: Tuple[object, ...]  # the Mismatches
    arg: cst.Arg  # the argument at the layer's call
    exp: object  # its Expansion
    world: object  # search.world.World
    base: Replacements  # the edits chosen for groups before this one
    local: bool  # the value does not come from outside the file (--init)

    @property
    def m(self):
        return self.group[0]

    @property
    def expr(self) -> cst.BaseExpression:
        return self.arg.value

    @property
    def want(self) -> int:
        return self.group[0].observed

    @property
    def dims(self) -> Tuple[Tuple[int, ...], ...]:
        """The dimensions the size is a product of, as the trace saw them: the
        tensor flattened into it (64x7x7), or a bidirectional RNN's two
        directions of its hidden size (in either order: ``2 * h``, ``h * 2``)."""
        m = self.group[0]
        if m.factors:
            return (m.factors,)
        if len(m.parts) == 1 and len(m.blocks) == 1 and m.blocks[0] > 1:
            k = m.blocks[0]
            return ((m.parts[0] // k, k), (k, m.parts[0] // k))
        return ()

    @property
    def own(self) -> FrozenSet[Key]:
        return frozenset((x.layer_path, x.arg) for x in self.group)


@dataclass(frozen=True)
class Facts:
    """What the symbolic check found, over every construction the edit reaches."""

    fixes: int = 0  # wrong layer arguments it makes right
    breaks: int = 0  # right ones it changes, where what arrives may follow
    knock_ons: FrozenSet[Key] = frozenset()  # wrong ones left to follow, as traced
    reshapes: bool = False  # it changes what a layer puts out: shapes downstream follow
    unseen: bool = False  # reads the trace cannot see share the value it changes
    unknown: bool = False  # layers that never ran read it (a trace stopped by an error)
    shared: bool = False  # it changes a literal several calls read
    # A literal where a name in scope, or the structure, says it; a name
    # where the layer that made the tensor was given a literal, or over the
    # name the structure says stands for a part.
    named: bool = False
    # In a trace stopped by an error: a shared value changed that layers the
    # trace never reached, or reads it cannot see, may need as it is.
    blind: bool = False
    infeasible: str = ""  # why it cannot be the fix, if so
    # The model's input arrives with its channels last (Mismatch.channels_last):
    # the width is right, the input's axes are not in the order the layer reads.
    layout: bool = False
    # Another edit, of the out size of the layer that made the arriving
    # tensor, fixes more of the layers it feeds than this one: they agree
    # with each other, the producer is the odd one (search/producer.py).
    outvoted: bool = False

    @property
    def certain(self) -> bool:
        """Does the symbolic check settle it, so verification only confirms?"""
        return not (self.breaks or self.knock_ons or self.reshapes or self.unseen)

    def summary(self) -> str:
        parts = [f"fixes {self.fixes}"]
        parts += [f"breaks {self.breaks}"] if self.breaks else []
        parts += [f"{len(self.knock_ons)} knock-on(s)"] if self.knock_ons else []
        for flag in ("reshapes", "unseen", "unknown", "shared", "named", "blind", "layout",
                     "outvoted"):
            parts += [flag] if getattr(self, flag) else []
        return ", ".join(parts)


@dataclass(frozen=True, eq=False)
class Ranked:
    """A feasible candidate, its facts and cost."""

    candidate: Candidate
    facts: Facts
    cost: float
    code: str = ""

    def weighed(self) -> Weighed:
        return Weighed(self.code, round(self.cost, 3), self.facts.summary(), self.candidate.kind)


@dataclass(frozen=True)
class Outcome:
    """A group's result: candidates in cost order, or why none is taken."""

    ranked: Tuple[Ranked, ...] = ()
    refusal: Optional[Tuple[object, str]] = None  # (node or None, why): nothing may be taken
    skip: bool = False  # already fixed by an edit for another group
    weighed: Tuple[Weighed, ...] = ()  # the cheapest, and then those that cannot be
    # Why nothing would be taken if the candidates were all rejected (by
    # verification): the refusal of an alternative that refuses this group.
    otherwise: Optional[Tuple[object, str]] = None
    tried: int = 0  # candidates proposed and assessed
