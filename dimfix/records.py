"""Frozen records passed between the pipeline stages."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Mapping, Optional, Tuple

from dimfix.errors import Position, Problem


class Cause(enum.Enum):
    """Why a layer's declared size is wrong."""

    INPUT = "input"  # the tensor that arrives does not fit it
    NUM_CLASSES = "num-classes"  # --num-classes asks another output size of the head


@dataclass(frozen=True)
class Note:
    """A line for --verbose, about a place in the user's code or about the run."""

    text: str
    where: Optional[Position] = None


@dataclass(frozen=True)
class Frame:
    """One frame of user code on the way to a layer's constructor.

    ``line``/``col`` .. ``end_line``/``end_col`` span the call being executed in
    that frame; columns are 0-based UTF-8 byte offsets, as Python reports them.
    """

    path: str
    line: int
    col: int
    end_line: int
    end_col: int
    function: str
    # The frame's variables when the call ran (a shallow copy) and its globals:
    # what names in the call's arguments held, for reasoning about expressions.
    local_values: Mapping[str, object] = field(default_factory=dict, compare=False, hash=False, repr=False)
    global_values: Mapping[str, object] = field(default_factory=dict, compare=False, hash=False, repr=False)
    params: Tuple[str, ...] = field(default=(), compare=False, hash=False, repr=False)
    # How many times this frame had run this call before (0 on a loop's first
    # pass): which of ``x = 3`` before a loop and ``x = v`` in it was in force.
    visit: int = field(default=0, compare=False, hash=False, repr=False)
    # The function's qualified name (``MBConv.__init__``): ``function`` alone
    # does not tell two classes' ``__init__`` apart.
    qualname: str = field(default="", compare=False, hash=False, repr=False)


@dataclass(frozen=True)
class Site:
    """Where a layer was built: the innermost user frame and the chain outward."""

    chain: Tuple[Frame, ...]
    # Set when the user's call built something else (a library builder or
    # layer) that in turn built this layer, e.g. "torch.nn.TransformerEncoderLayer".
    via: Optional[str] = None

    @property
    def call(self) -> Frame:
        return self.chain[0]

    @property
    def names(self) -> Mapping[str, int]:
        """Integer values of the names visible at the call (locals over globals)."""
        found = {k: v for k, v in self.call.global_values.items() if type(v) is int}
        found.update((k, v) for k, v in self.call.local_values.items() if type(v) is int)
        return found

    @property
    def key(self) -> tuple:
        """The whole chain of calls: layers built by one helper body but from
        different call sites are different sites; a loop's iterations are one."""
        return tuple((c.path, c.line, c.col, c.end_line, c.end_col) for c in self.chain)


@dataclass(frozen=True)
class Construction:
    """One layer argument, where the layer was built, and what it must become."""

    layer_path: str
    declared: int
    required: Optional[int]  # None: the layer never ran, so it sets no constraint
    site: Site
    arg: str = ""
    kind: str = ""  # the layer's class name
    params: Tuple[str, ...] = ()  # the constructor's parameters, in order
    # (layer path, argument) of what made the tensor this argument's check
    # read, right or wrong (see Mismatch.producer); empty for an out size.
    producer: Tuple[str, ...] = ()


@dataclass(frozen=True)
class Mismatch:
    """A layer whose declared size disagrees with what arrives (or is demanded)."""

    layer_path: str
    family: str  # a key of families.FAMILIES, e.g. "Linear"
    kind: str  # the layer's class name, e.g. "Conv2d"
    arg: str  # constructor parameter, e.g. "in_features"
    declared: int
    observed: int
    why: str  # "input arrives as 2x64x16x16 flattened", "--num-classes 10"
    site: Optional[Site]
    params: Tuple[str, ...] = ()  # the constructor's parameters, in order
    # Per-sample shape of the tensor before it was flattened, when the size is a
    # product (64x16x16 for 16384): lets ``64 * 14 * 14`` keep its form.
    factors: Tuple[int, ...] = ()
    note: str = ""  # why this cannot be fixed by one argument, if so
    # Sizes torch.cat joined into the arriving dimension (256, 256 for a skip
    # concatenation): ``HIDDEN * 2`` or ``embed + hidden`` is then structure.
    parts: Tuple[int, ...] = ()
    # For each part, the equal blocks the trace saw it made of: 2 for the output
    # of a bidirectional RNN (both directions), else 1. Empty when not known.
    blocks: Tuple[int, ...] = ()
    # For each part, the layer path of the bidirectional RNN whose output it is
    # ("" for any other part): the hidden size that part is two directions of.
    sources: Tuple[str, ...] = ()
    # (layer path, argument) of the layer that made the arriving tensor, through
    # layers that keep its shape: the size argument its author named this width
    # with (``outplanes`` in ``conv2 = Conv2d(planes, outplanes)`` before ``bn2``).
    producer: Tuple[str, ...] = ()
    cause: Cause = Cause.INPUT
    # The axes of the tensor that arrives, after the batch's (128x64 of 4x128x64),
    # where a layer's input size is checked: a declared size one of them has
    # is right for another axis (the sequence length read as the channels).
    axes: Tuple[int, ...] = ()
    # The tensor is the model's input as given, the size declared is its last
    # axis and the size arriving its axis 1: its channels look last (an ECG's
    # (batch, time, leads) fed to Conv1d(n_leads)). The permute that would put
    # them first (``x.permute(0, 2, 1)``); empty otherwise.
    channels_last: str = ""
    # The same for a tensor a layer made with the declared width on its last
    # axis (an Embedding's output fed to Conv1d(emb_dim)): that layer's path.
    # Empty for the input as given.
    channels_last_from: str = ""


@dataclass(frozen=True)
class Trace:
    """What one traced forward pass found."""

    mismatches: Tuple[Mismatch, ...]
    # Every size argument of every layer of a known family with a recorded
    # site: an edit must leave each of them at its required value.
    constructions: Tuple[Construction, ...]
    device: str
    notes: Tuple[Note, ...] = ()  # for --verbose: what the train-mode pass met
    output: Tuple[int, ...] = ()  # shape of the output (the classes' tensor), eval mode
    stopped: Optional[Problem] = None  # the forward raised after these mismatches
    # The size argument of layers outside the families that make a width (an
    # embedding's embedding_dim): the producer a mismatch may name; never checked.
    makers: Tuple[Construction, ...] = ()
    # (layer path, argument) the pass in train mode found wrong at a larger
    # batch than the input's (trace.py's ``train``): not a size the edit left wrong.
    train_doubled: Tuple[Tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Weighed:
    """A candidate edit the search weighed, as ``-v`` lists it."""

    code: str  # "`HIDDEN` -> `HIDDEN * 2`"
    cost: float  # inf: it cannot be the fix (``facts`` says why)
    facts: str  # what the symbolic check found: "fixes 1, unseen"
    kind: str = ""  # the generator that proposed it


@dataclass(frozen=True)
class Edit:
    """One expression to rewrite, and why."""

    mismatch: Mismatch
    line: int  # 1-based, in the original text
    col: int  # 1-based character column of the edited expression
    new_code: str
    path: str = ""  # absolute path of the file edited
    old_code: str = ""
    # Where the value is written, when not at the layer's own argument
    # ("argument in_chs of Stage()", "default of hidden", "NUM_CLASSES").
    label: str = ""
    because: str = ""  # why this form of the edit ("`in_chs` holds 32 there")
    group: int = 1  # layers built by this call that the edit fixes
    tried: int = 0  # candidate edits the planner weighed, this one included
    cost: float = 0.0  # what the search's cost function gave this edit
    weighed: Tuple[Weighed, ...] = ()  # the cheapest candidates weighed, this one included
    # Layer arguments (layer path, argument) it makes right without changing
    # them: those a producer's out size feeds (search/producer.py).
    covers: Tuple[Tuple[str, str], ...] = ()

    @property
    def reason(self) -> str:
        """The reason line's text, after ``path:line:col: ``."""
        m = self.mismatch
        more = f" (and {self.group - 1} more built here)" if self.group > 1 else ""
        layer = f"{m.layer_path} ({m.kind}){more}"
        if self.label:
            because = f"; {self.because}" if self.because else ""
            return (f"{self.label} {self.old_code} -> {self.new_code} (used by {layer} {m.arg}; "
                    f"{m.why}{because})")
        because = f" ({self.because})" if self.because else ""
        return f"{layer} {m.arg} {m.declared} -> {m.observed}: {m.why}{because}"

    @property
    def position(self) -> Position:
        return Position(self.path, self.line, self.col)

    # The names the README's API example uses.
    @property
    def file(self) -> str:
        from dimfix.source import display_path

        return display_path(self.path)

    @property
    def column(self) -> int:
        return self.col

    @property
    def old(self) -> int:
        return self.mismatch.declared

    @property
    def new(self) -> int:
        return self.mismatch.observed


@dataclass(frozen=True)
class Unfixable:
    """A mismatch dimfix found but will not edit, and why not (``reason``)."""

    mismatch: Mismatch
    path: str  # absolute; line 0 when no place is known
    line: int
    col: int
    reason: str

    @property
    def position(self) -> Position:
        return Position(self.path, self.line, self.col)


@dataclass(frozen=True)
class Options:
    """What the user asked for, once parsed."""

    name: str
    inputs: Tuple["InputSpec", ...]
    init: Mapping[str, object] = field(default_factory=dict)
    num_classes: Optional[int] = None
    max_memory: Optional[int] = None  # bytes allowed for a CPU trace
    format: bool = True
    output: Optional[str] = None  # which output holds the classes: a dict key or tuple index
    unbatched: bool = False  # the sample input has no batch dimension, on purpose
    # How the target file is loaded (definitions.py): --set globals, --exec-module.
    sets: Mapping[str, object] = field(default_factory=dict)
    exec_module: bool = False

    def __post_init__(self) -> None:
        # The CLI's strings are welcome: Options("Net", ["1x3x32x32"]).
        if not isinstance(self.inputs, tuple) or any(isinstance(i, str) for i in self.inputs):
            from dimfix.target import parse_input

            parsed = tuple(parse_input(i) if isinstance(i, str) else i for i in self.inputs)
            object.__setattr__(self, "inputs", parsed)


@dataclass(frozen=True)
class InputSpec:
    shape: Tuple[int, ...]
    dtype: str = "float32"
    name: Optional[str] = None  # keyword input, else positional

    def __str__(self) -> str:
        dims = "x".join(map(str, self.shape))
        return dims if self.dtype == "float32" else f"{self.dtype}:{dims}"

    def batch_times(self, k: int) -> "InputSpec":
        """This input with its batch (first dimension) ``k`` times as large:
        verification's check that no size depends on the batch."""
        return self if k == 1 else replace(self, shape=(self.shape[0] * k, *self.shape[1:]))
