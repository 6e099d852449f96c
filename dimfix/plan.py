"""Plan the edits for a trace's mismatches: a few alternatives, in cost order.

Every size argument of every traced layer is expanded to its origins
(origin.py, search/world.py). Each group of mismatches (one call site, one
argument) is weighed by the search (search/rank.py): every candidate edit,
assessed against every construction it reaches and costed. The cheapest
candidate of each group, in trace order, makes the first alternative. Where
that candidate is one only verification can judge, the next ones make
further alternatives, down to refusing the group; the driver verifies them
in cost order by tracing the edited text, and takes the first that holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Tuple

from dimfix.exprs import Replacements
from dimfix.locate import CallIndex
from dimfix.origin import Resolver
from dimfix.records import Edit, Mismatch, Trace, Unfixable
from dimfix.search.cost import REFUSE
from dimfix.search.rank import weigh
from dimfix.search.reasons import edit_of, refusals
from dimfix.search.world import World

MAX_ALTERNATIVES = 8  # each one verified costs a trace


@dataclass(frozen=True)
class Alternative:
    """One way to fix every group: its edits, refusals and total cost."""

    edits: Tuple[Edit, ...]
    unfixable: Tuple[Unfixable, ...]
    replacements: Replacements
    cost: float
    certain: bool  # the symbolic check settled every edit: verification confirms
    # An edit changes a value where it is written that only verification can
    # judge: it may resize layers that were right (draft.py guards how many).
    rebuilds: bool = False


@dataclass(frozen=True)
class Plan:
    alternatives: Tuple[Alternative, ...]
    index: CallIndex
    resolver: Resolver

    @property
    def edits(self) -> Tuple[Edit, ...]:
        return self.alternatives[0].edits

    @property
    def unfixable(self) -> Tuple[Unfixable, ...]:
        return self.alternatives[0].unfixable

    def new_texts(self, alternative: Optional[Alternative] = None) -> Dict[str, str]:
        """The new text of every file ``alternative`` (the first) changes, by absolute path."""
        from dimfix.rewrite import splice_edits

        replacements = (alternative or self.alternatives[0]).replacements
        out = {}
        for path, f in self.resolver.files.items():
            if f is None:
                continue
            mine = {n: r for n, r in replacements.items() if n in f.index.positions}
            if mine:
                out[path] = splice_edits(f.index, mine)
        return out


def plan_edits(text: str, path: str, trace: Trace,
               init: Mapping[str, object] = (), texts: Mapping[str, str] = (),
               editable: Callable[[str], bool] = lambda p: False,
               inputs: Tuple[Tuple[int, ...], ...] = ()) -> Plan:
    """The alternatives for ``trace``'s mismatches in the file ``path`` holding
    ``text``, cheapest first. Values written in other files may be edited where
    ``editable(path)`` says so (project files, never installed packages);
    ``texts`` holds the current text of files that differ from disk. A trace
    stopped by an error gets one alternative: it is traced again, not verified.
    ``inputs`` are the shapes the model was traced on."""
    index = CallIndex(text, path)
    resolver = Resolver(index, path, dict(init), texts)
    world = World(index, resolver, path, editable, trace, inputs)
    groups: Dict[tuple, List[Mismatch]] = {}
    for m in trace.mismatches:
        key = (m.site.key, m.arg) if m.site is not None else (m.layer_path, m.arg)
        groups.setdefault(key, []).append(m)
    search = _Search(list(groups.values()), world)
    return Plan(search.alternatives(single=world.stopped), index, resolver)


class _Search:
    """The groups, weighed in trace order with the edits chosen before each."""

    def __init__(self, groups: List[List[Mismatch]], world: World) -> None:
        self.groups = groups
        self.world = world
        self.cache: Dict[tuple, object] = {}

    def alternatives(self, single: bool) -> Tuple[Alternative, ...]:
        first, choices = self._path({})
        if single or first.certain:
            return (first,)
        found = [first, self._path({}, certain_only=True)[0]]
        for i, j, outcome in choices:
            for k in range(j + 1, len(outcome.ranked) + 1):
                found.append(self._path({i: k})[0])
                if k < len(outcome.ranked) and outcome.ranked[k].facts.certain:
                    break
        unique: Dict[tuple, Alternative] = {}
        for alt in found:
            key = tuple(sorted((id(n), id(r)) for n, r in alt.replacements.items()))
            if key not in unique or alt.cost < unique[key].cost:
                unique[key] = alt
        ranked = sorted(unique.values(), key=lambda a: a.cost)
        return tuple(ranked[:MAX_ALTERNATIVES])

    def _path(self, forced: Dict[int, int], certain_only: bool = False):
        """The alternative that takes, for each group, its cheapest candidate
        (the ``forced[i]``-th for group i; a number past the last refuses it)."""
        base: Replacements = {}
        deferred: set = set()
        edits: List[Edit] = []
        unfixable: List[Unfixable] = []
        choices = []
        total, certain, rebuilds = 0.0, True, False
        for i, group in enumerate(self.groups):
            outcome = self._weigh(i, group, base, deferred)
            if outcome.skip:
                continue
            if outcome.refusal is not None:
                unfixable += refusals(group, *outcome.refusal, self.world)
                continue
            ranked = outcome.ranked
            j = forced.get(i, 0)
            if certain_only:
                j = next((k for k, r in enumerate(ranked) if r.facts.certain), len(ranked))
            if j >= len(ranked):
                unfixable += refusals(group, *outcome.otherwise, self.world)
                total += REFUSE
                continue
            r = ranked[j]
            if not r.facts.certain:
                choices.append((i, j, outcome))
            base.update(r.candidate.replacements)
            deferred |= r.facts.knock_ons
            edits.append(edit_of(group, r, outcome, self.world))
            total += r.cost
            certain = certain and r.facts.certain
            rebuilds = rebuilds or (not r.facts.certain and r.candidate.further
                                    and r.candidate.writes == "literal")
        unfixable = [u for u in unfixable if not self.world.fixed_by(u.mismatch, base)]
        target = self.world.path
        edits.sort(key=lambda e: (e.path != target, e.path, e.line, e.col))
        return Alternative(tuple(edits), tuple(unfixable), base, total, certain,
                           rebuilds), choices

    def _weigh(self, i: int, group, base: Replacements, deferred: set):
        key = (i, frozenset((id(n), id(r)) for n, r in base.items()), frozenset(deferred))
        if key not in self.cache:
            self.cache[key] = weigh(group, self.world, base, deferred)
        return self.cache[key]
