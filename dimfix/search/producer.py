"""The out size of the layer that made the arriving tensor, changed where it
is written: a block pasted from the one before it and not fully adapted.

    self.conv2 = nn.Conv2d(32, 32, 3, padding=1)   # pasted; 64 was meant
    self.bn2 = nn.BatchNorm2d(64)
    self.conv3 = nn.Conv2d(64, 128, 3, padding=1)

The layers the producer feeds (through layers that keep the width, a norm)
agree on one width the producer does not put out: one edit of its out size
fixes them all, where editing each in size would make them follow the one
mistake. Proposed only where at least two layers it feeds are built for the
width, every layer it feeds that ran is (none built right for the old width,
none for a third), and the out size is not the class count --num-classes
demands. Where only one layer disagrees, its own in size is the edit.

The edits of the out argument are those of every other generator, proposed
for a task of that argument wanting the new width (the literal where it is
written: at the call, a default, a constant, a list's element; a name in
scope), never a literal over a name there; the assessment (assess.py) checks
them against every construction they reach and every layer the producer
feeds (``Candidate.needs``), and a re-trace verifies the one taken.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Dict, Iterator, List, Optional, Sequence

from dimfix.families import keeps_width
from dimfix.records import Mismatch
from dimfix.search.candidate import LITERAL, NAME, Candidate, Key, Task

AGREE = 2  # layers that must agree on the width before the producer is the odd one


class ProducerOut:
    """Change the producer's out size to the width the layers it feeds agree on."""

    kind = "producer"

    def __init__(self, generators: Sequence[object]) -> None:
        self.generators = generators  # those proposed for the out argument's task

    def propose(self, task: Task) -> Iterator[Candidate]:
        world, m = task.world, task.m
        root = _root(world, m)
        if root is None or root in world.demanded or root not in world.expansions:
            return
        con, exp = world.expansions[root]
        old, want = con.declared, m.declared
        if not isinstance(old, int) or not isinstance(want, int) or old <= 0 \
                or con.required != old or want == old:
            return
        needs = _needs(world, root, old, want)
        if needs is None:
            return
        agree = [k for k, w in needs.items()
                 if k != root and _now(world, k, task.base) == w != world.built[k].required]
        if _votes(world, agree) < AGREE or not task.own <= set(agree):
            return
        names = ", ".join(f"{p} {a}" for p, a in agree)
        subject = Mismatch(root[0], con.kind, con.kind, root[1], old, want,
                           f"{names} are built for {want}", con.site, con.params)
        sub = Task((subject,), world.args[root], exp, world, task.base,
                   local=root not in world.problems)
        pinned = tuple(needs.items())
        for generator in self.generators:
            for c in generator.propose(sub):
                if c.patch or (c.writes == LITERAL and c.over == NAME):
                    continue  # a literal over a name other code may read: refused
                yield replace(c, kind=f"{self.kind} {c.kind}", subject=subject, within=sub,
                              needs=pinned)


def _now(world, key: Key, base) -> int:
    """What ``key`` declares with the edits chosen before (``base``) in place."""
    hit = world.expansions.get(key)
    return hit[1].value(base) if hit is not None else world.built[key].declared


def _votes(world, agree: List[Key]) -> int:
    """How many separately written values the agreeing layers read: two that
    read one value (``dim=embed_dim * 3`` passed to a norm and an attention)
    are one mistake, not two layers agreeing; a value dimfix cannot follow
    is no evidence."""
    groups: List[frozenset] = []
    for key in agree:
        reach = world.reach.get(key)
        if reach is None:
            continue
        joined = [g for g in groups if g & reach]
        groups = [g for g in groups if not g & reach] + [reach.union(*joined)]
    return len(groups)


def _root(world, m: Mismatch) -> Optional[Key]:
    """The out argument that made ``m``'s arriving width, through the layers
    that keep it (a norm's size is fed by the conv before it)."""
    key, seen = tuple(m.producer), set()
    while len(key) == 2 and key not in seen:
        seen.add(key)
        con = world.built.get(key)
        if con is None:
            return None
        if len(con.producer) != 2:
            return key
        if not keeps_width(con.kind):
            return None  # the trace named a layer that makes another width by its input
        key = tuple(con.producer)
    return None


def _needs(world, root: Key, old: int, want: int) -> Optional[Dict[Key, int]]:
    """The width each argument the producer feeds must take once it puts out
    ``want``: ``want`` itself, or a flattened size scaled with it. None when
    what one of them was fed is not a whole multiple of ``old`` (the trace
    named the producer by a guess)."""
    needs: Dict[Key, int] = {root: want}
    todo: List[Key] = [root]
    while todo:
        for key in world.fed_by.get(todo.pop(), ()):
            con = world.built[key]
            if key in needs or con.required is None:
                continue
            if not isinstance(con.required, int) or con.required % old:
                return None
            needs[key] = con.required // old * want
            if keeps_width(con.kind):
                todo.append(key)  # a norm: the layers after it are fed the width too
    return needs
