"""Names in scope that hold a size: the edit its author would write.

When a layer needs 40 channels and the parameter ``n_mels`` is 40 at every
layer built by that call, ``n_mels`` is the fix, not ``40``; when
``out_chs`` was written where ``in_chs`` belongs, ``in_chs`` is. A name
qualifies only if it holds the needed value at *every* construction from the
call site (a loop builds several layers; a helper is called from several
places), and only names that plausibly mean a width: loop counters, class
counts, strides and the like are passed over, since their values match by
coincidence.
"""

from __future__ import annotations

import inspect
import types
from dataclasses import dataclass, replace
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from dimfix.records import Construction, Frame

# Parts of names that hold counts or hyper-parameters other than a width.
_NOT_A_WIDTH = ("class", "batch", "epoch", "seed", "layer", "depth", "stride", "kernel", "pad",
                "group", "heads", "step", "iter", "drop", "rate", "dilation", "block", "repeat",
                "expansion", "ratio", "worker", "device", "len", "max_", "min_", "vocab",
                "scale", "factor", "gpu", "img", "image", "patch", "window", "resolution", "height")
# Of those, the parts of names that never hold a layer's width (a sequence's
# length or a class count may: DLinear's ``nn.Linear(seq_len, pred_len)``).
_NEVER_A_WIDTH = ("gpu", "worker", "device", "seed", "epoch", "batch", "iter", "rate", "drop",
                  "stride", "kernel", "pad", "dilation")
_COUNTERS = {"i", "j", "k", "n", "m", "t", "_", "idx", "index", "it", "ii", "jj", "count"}
# Rank of each kind of name: lower is what an author reaches for first.
PARAM, ATTRIBUTE, FIELD, LOCAL, CONSTANT, LOCAL_FIELD, GLOBAL = range(7)
ALL = frozenset(range(7))
# A literal becomes a name only if the name says what it is: a parameter,
# self.x, config.x or a CONSTANT, not a loop's leftover local.
FOR_LITERALS = frozenset({PARAM, ATTRIBUTE, FIELD, CONSTANT})


@dataclass(frozen=True)
class Found:
    """Names that hold the needed size at every construction, best rank only."""

    names: Tuple[str, ...]
    rank: int = CONSTANT
    # The names say they count something other than a width (``num_classes``,
    # ``scale_factor``): found only where no other name holds the size.
    odd: bool = False

    @property
    def ambiguous(self) -> bool:
        return len(self.names) > 1


def names_holding(constructions: Sequence[Construction], exclude: Iterable[str] = (),
                  ranks: frozenset = ALL, prefer: Iterable[str] = (), param: str = "") -> Found:
    """Names (``n_mels``, ``self.hidden``, ``config.hidden_size``, ``EMBED``)
    whose value equals each construction's required size, at its own call.
    Names in ``prefer`` (used nearby), if any holds it, come before all others.
    A name that counts something other than a width is none of them, unless
    the parameter it is for counts the same (``seq_length`` for ``seq_length``)."""
    needed = [c for c in constructions if c.required is not None and type(c.required) is int]
    if not needed:
        return Found(())
    excluded = set(exclude)
    best: Dict[str, int] = {}
    odd: Dict[str, int] = {}
    for name, rank in _candidates(needed[0].site.call):
        if rank not in ranks or name.split(".")[0] in excluded or name in excluded \
                or _counter(name):
            continue
        if all(_value(c.site.call, name) == c.required for c in needed):
            (best if width_like(name) or counts_like(name, param) else odd)[name] = rank
    if not best:
        return replace(_best_ranked(odd), odd=True) if odd else Found(())
    nearby = {n: r for n, r in best.items() if n in set(prefer)}
    return _best_ranked(nearby or best)


def names_giving(frame: Frame, gives: Callable[[str], bool], exclude: Iterable[str] = (),
                 counters: Iterable[str] = ()) -> Found:
    """Names visible at ``frame`` for which ``gives(name)`` holds (the caller
    checks what an expression becomes with the name in it, at every
    construction), best rank only; the loop ``counters`` named are
    candidates too. Names that say they count something other than a width
    only where no other name gives it, as in names_holding."""
    excluded, allowed = set(exclude), set(counters)
    best: Dict[str, int] = {}
    odd: Dict[str, int] = {}
    for name, rank in _candidates(frame):
        if name.split(".")[0] in excluded or name in excluded \
                or (_counter(name) and name not in allowed):
            continue
        if gives(name):
            (best if width_like(name) or name in allowed else odd)[name] = rank
    if not best:
        return replace(_best_ranked(odd), odd=True) if odd else Found(())
    return _best_ranked(best)


def sequences_of_length(constructions: Sequence[Construction], length: int,
                        among: Iterable[str] = ()) -> Found:
    """Lists or tuples in scope (``filter_sizes``), of the names ``among``, whose
    length is ``length`` at every construction: what ``len(...)`` of a count the
    trace saw can name. Parameters, ``self.x`` and constants only, best rank."""
    needed = [c for c in constructions if c.required is not None]
    allowed = set(among)
    if not needed or not allowed:
        return Found(())
    best: Dict[str, int] = {}
    for name, rank in _candidates(needed[0].site.call, sequences=True):
        if rank not in FOR_LITERALS or name not in allowed:
            continue
        values = [_value(c.site.call, name) for c in needed]
        if all(isinstance(v, (list, tuple)) and len(v) == length for v in values):
            best[name] = rank
    return _best_ranked(best)


def sequences_holding(constructions: Sequence[Construction], exclude: Iterable[str] = ()) -> Found:
    """Lists or tuples in scope, but those in ``exclude``, as long as each
    construction's required size at its own call: what ``len(COLUMNS)`` becomes
    when another list counts what arrives (``len(FEATURE_COLS)``). Best rank."""
    needed = [c for c in constructions if type(c.required) is int]
    if not needed:
        return Found(())
    excluded = set(exclude)
    best: Dict[str, int] = {}
    for name, rank in _candidates(needed[0].site.call, sequences=True):
        if name in excluded or _counter(name):
            continue
        values = [_value(c.site.call, name) for c in needed]
        if all(isinstance(v, (list, tuple)) and len(v) == c.required
               for v, c in zip(values, needed)):
            best[name] = rank
    return _best_ranked(best)


def _best_ranked(ranked: Dict[str, int]) -> Found:
    """The names of the best rank in ``ranked`` (name -> rank), if any."""
    if not ranked:
        return Found(())
    top = min(ranked.values())
    return Found(tuple(sorted(n for n, r in ranked.items() if r == top)), top)


def counts_like(name: str, param: str) -> bool:
    """``seq_length`` for a parameter ``seq_length`` or ``seq_len``."""
    last, param = name.rsplit(".", 1)[-1].lower(), param.lower()
    return bool(param) and not width_like(param) and (
        last == param or last.split("_")[0] == param.split("_")[0])


def width_like(name: str) -> bool:
    last = name.rsplit(".", 1)[-1].lower()
    return not any(part in last for part in _NOT_A_WIDTH)


def never_a_width(name: str) -> bool:
    """``ngpu``, ``batch_size``, ``stride``: what such a name holds is never a width."""
    last = name.rsplit(".", 1)[-1].lower()
    return any(part in last for part in _NEVER_A_WIDTH)


def _counter(name: str) -> bool:
    """A loop counter or a dunder: never a size's name, whatever it holds."""
    last = name.rsplit(".", 1)[-1].lower()
    return last in _COUNTERS or last.startswith("__")


def _candidates(frame: Frame, sequences: bool = False) -> List[Tuple[str, int]]:
    """Names visible at ``frame`` with their rank: integers, or with
    ``sequences`` lists and tuples."""
    found: List[Tuple[str, int]] = []

    def wanted(value: object) -> bool:
        return isinstance(value, (list, tuple)) if sequences else type(value) is int

    for name, value in frame.local_values.items():
        if wanted(value):
            rank = ATTRIBUTE if name.startswith("self.") else PARAM if name in frame.params \
                else LOCAL
            found.append((name, rank))
        elif _is_record(value) and name != "self":
            # ``config.hidden_size`` of a parameter; a field of a local object
            # (``block_cnf.out_channels``, a loop's copy) is a last resort.
            rank = FIELD if name in frame.params else LOCAL_FIELD
            found.extend((f"{name}.{attr}", rank) for attr in _int_fields(value, wanted))
    for name, value in frame.global_values.items():
        if name in frame.local_values:
            continue
        if wanted(value):
            # ``NUM_CLASSES``; a script's lowercase ``nc = 3`` names a value too,
            # though less surely (a name swap may write it, not a literal's fix).
            found.append((name, CONSTANT if name.isupper() else GLOBAL))
        elif _is_record(value):
            found.extend((f"{name}.{attr}", FIELD) for attr in _int_fields(value, wanted))
    return found


def _is_record(value: object) -> bool:
    """A config-like object: argparse's Namespace, a dataclass, a plain object."""
    if isinstance(value, (type, types.ModuleType, types.FunctionType, int, float, str, bytes,
                          tuple, list, dict, set)) or value is None:
        return False
    try:
        import torch.nn as nn

        if isinstance(value, nn.Module):
            return False
    except ImportError:  # pragma: no cover
        pass
    return isinstance(getattr(value, "__dict__", None), dict)


def _int_fields(value: object, wanted=lambda v: type(v) is int) -> List[str]:
    return [k for k, v in vars(value).items() if wanted(v) and not k.startswith("_")]


def _value(frame: Frame, name: str) -> Optional[object]:
    if name in frame.local_values:
        return frame.local_values[name]
    head, _, attr = name.partition(".")
    values: Mapping[str, object] = frame.local_values if head in frame.local_values \
        else frame.global_values
    if head not in values:
        return None
    obj = values[head]
    if not attr:
        return obj
    try:
        return inspect.getattr_static(obj, attr)
    except AttributeError:
        return None
