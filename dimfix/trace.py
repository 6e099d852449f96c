"""Build the model and run it once with hooks that compare, at every layer, the
size it declares with the size that arrives. A wrong layer is resized in the
live model and the pass goes on, so one run finds every mismatch.

Small models are traced on CPU with zeroed weights (cheap, and data-dependent
code works); large ones on the meta device, which holds no weights. A model
that fails on meta is retried on CPU when its weights fit in the memory limit.
"""

from __future__ import annotations

import collections
import contextlib
import inspect
import math
import weakref
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from dimfix.blame import Operands, demanded, differing
from dimfix.build import build, has_lazy, materialize, nbytes, no_init, threads, unwrap, what
from dimfix.cost import CPU_TRACE_MACS, OverBudget, macs
from dimfix.errors import (BadUsage, DimfixError, ModelRaised, Stopped, TooBig, first_line,
                           option)
from dimfix.families import WEIGHTED, Family, all_args, family_of, overridden_family
from dimfix.families import declared as declared_size
from dimfix.load import user_frame
from dimfix.probe import probe, probe_weights, runs
from dimfix.provenance import SIZED_BY, Provenance
from dimfix.records import Cause, Construction, Mismatch, Note, Options, Trace
from dimfix.sites import SiteBook, ignored, recording_sites
from dimfix.target import default_max_memory, input_bytes, size_text
from dimfix.views import ViewChecker

# Below this many bytes of weights a CPU trace is faster than meta's ~1.3 s
# one-time cost of loading torch's Python meta kernels.
CPU_TRACE_BYTES = 256 * 2**20
MAX_PASSES = 3
# Modules rebuilt because their own parameters did not fit (see _own_parameters),
# each followed by a new pass: a bound on what one trace may rebuild.
MAX_REBUILDS = 8
# Layers asked for another out size after an op raised (blame.py): one per
# residual block a wrong width reaches (a ResNet's every block), each a pass.
MAX_BLAMES = 32

# An optional observer of every module call (shapes.py): set by observing().
_observer = None


@contextlib.contextmanager
def observing(observer):
    """Within, every _Tracer calls ``observer.start(tracer)`` when it runs, and
    ``observer.before`` / ``observer.after`` around each module call: before is
    called ahead of the tracer's own pre-hook (sizes as declared), after behind
    its post-hook (sizes as resized)."""
    global _observer
    previous, _observer = _observer, observer
    try:
        yield observer
    finally:
        _observer = previous


def trace_model(target, options: Options, is_user_file: Callable[[str], bool],
                book: Optional[SiteBook] = None, train: int = 1) -> Trace:
    """Trace ``target`` (class, factory or instance) on ``options.inputs``. The
    pass in train mode runs with the batch ``train`` times as large in a trace
    on CPU (verification's, draft.py), and not at all with ``train`` 0."""
    if isinstance(target, nn.Module):
        unwrap(target)
        book = book or SiteBook()
        book.bind_tensors(target)
        return _Tracer(target, options, book, "cpu", is_user_file, train).run()
    try:
        with recording_sites(is_user_file) as meta_book, no_init():
            model = build(target, options, "meta")
        meta_book.bind_tensors(model)
    except ModelRaised:
        # Some models read tensor values while they are built (RegNet's
        # .tolist()): build those on CPU, as the user would.
        with recording_sites(is_user_file) as cpu_book:
            model = build(target, options, "cpu")
        cpu_book.bind_tensors(model)
        return _Tracer(model, options, cpu_book, "cpu", is_user_file, train).run()
    size = nbytes(model)
    if size <= CPU_TRACE_BYTES and not has_lazy(model):
        materialize(model)
        try:
            with threads(1):  # tiny ops: one thread is faster, and steady under load
                return _Tracer(model, options, meta_book, "cpu", is_user_file, train,
                               budget=CPU_TRACE_MACS).run()
        except OverBudget:  # cheaper on meta (cost.py): built again there
            with recording_sites(is_user_file) as meta_book, no_init():
                model = build(target, options, "meta")
            meta_book.bind_tensors(model)
    try:
        if has_lazy(model):  # Lazy* layers take their size from a real first input
            raise ModelRaised("it has Lazy* layers")
        return _Tracer(model, options, meta_book, "meta", is_user_file, train).run()
    except ModelRaised as on_meta:
        limit = options.max_memory or default_max_memory()
        need = size + sum(input_bytes(spec) for spec in options.inputs)
        if need > limit:
            raise TooBig(
                f"the model does not run on the meta device ({on_meta}); a CPU trace "
                f"would need {size_text(need)} of memory, over the {size_text(limit)} limit "
                f"({option('max-memory')})"
            ) from on_meta
    with recording_sites(is_user_file) as cpu_book:
        model = build(target, options, "cpu")
    cpu_book.bind_tensors(model)
    return _Tracer(model, options, cpu_book, "cpu", is_user_file, train).run()


def _check_forward(model: nn.Module, args, kwargs) -> None:
    """Fail clearly when the model has no forward or the inputs do not fit it."""
    name = type(model).__name__
    if type(model).forward is nn.Module.forward:
        raise ModelRaised(f"{name} has no forward method")
    try:
        sig = inspect.signature(model.forward)
    except (TypeError, ValueError):
        return
    try:
        sig.bind(*args, **kwargs)
    except TypeError as e:
        params = sig.parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        unknown = [k for k in kwargs if k not in params or params[k].kind is params[k].POSITIONAL_ONLY]
        if unknown and not takes_any:
            known = ", ".join(n for n, p in params.items()
                              if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
            raise BadUsage(
                f"{option('input', unknown[0] + '=...')}: {name}.forward takes no argument "
                f"{unknown[0]!r}"
                + (f" (it takes: {known})" if known else "")
            ) from None
        given = len(args) + len(kwargs)
        raise BadUsage(
            f"{name}.forward{sig} does not accept the {given} {option('input')} "
            f"tensor{'s' if given != 1 else ''} given: {e}"
        ) from None


class _Tracer(Provenance):
    """One model, one device: run forward passes until nothing changes."""

    def __init__(self, model: nn.Module, options: Options, book: SiteBook, device: str,
                 is_user_file: Callable[[str], bool], train: int = 1,
                 budget: Optional[int] = None):
        self.model = model
        # Multiply-adds the first pass may run before the trace stops (cost.py).
        self.budget, self.spent = budget, 0
        # The batch of the train pass, as a multiple of the input's; 0: no train
        # pass. On meta a pass costs seconds: there it keeps the input's batch.
        self.train = train if device != "meta" or train == 0 else 1
        self.scale = 1  # the batch of the pass running, as a multiple of the input's
        self.train_doubled: Tuple[Tuple[str, str], ...] = ()
        self.is_user_file = is_user_file
        self.guess = ""  # set once a layer had to be resized by a guess
        self.options = options
        self.book = book
        self.device = device
        self.paths = {id(m): n for n, m in model.named_modules(remove_duplicate=False)}
        self.mismatches: List[Mismatch] = []
        self.seen: Dict[int, Tuple[nn.Module, Dict[str, int]]] = {}
        self.recent = collections.deque(maxlen=32)  # shapes of recent outputs
        self.lines: Dict[str, List[str]] = {}  # source lines, for '# dimfix: ignore'
        self.skipped: Dict[int, bool] = {}
        self.views = ViewChecker(is_user_file, self.recent.append,
                                 lambda site: ignored(site, self.lines))
        # Which head-like layer produced which output, without keeping every
        # output alive (about 95 MB of activations on a ResNet-152).
        self.produced: Dict[int, Tuple[nn.Module, weakref.ref]] = {}
        # Which layer argument sized each output seen (weakly): see Mismatch.producer.
        self.made: Dict[int, Tuple[weakref.ref, Tuple[str, str]]] = {}
        # A permuted or transposed copy of a tensor some layer made, with the
        # width that layer put out (its last dimension): see _watching_reorder.
        self.reordered: Dict[int, Tuple[weakref.ref, Tuple[str, str], int]] = {}
        self.makers = collections.deque(maxlen=32)  # (shape, maker) of recent outputs
        self.heads: List[nn.Module] = []
        # id of a cat's output -> (its weak ref, parts, blocks, sources): see Mismatch
        self.cats: Dict[int, Tuple[weakref.ref, Tuple[int, ...], Tuple[int, ...],
                                   Tuple[str, ...]]] = {}
        # Outputs of bidirectional RNNs: their last dimension is two directions
        # (the RNN's layer path with it).
        self.directions: Dict[int, Tuple[weakref.ref, int, str]] = {}
        self.inputs: set = set()  # ids of the sample inputs, until a layer reads one
        # Layers that override a family's forward, or hold weights of their own,
        # as probed, by (id, arg): (module, arg, declared, needed)
        self.probed: Dict[Tuple[int, str], Tuple[nn.Module, str, int, int]] = {}
        # Layers with weights of their own: the argument their output's last
        # dimension shows (a custom head, for --num-classes); and the input
        # shapes each ran with as declared (asked once per shape).
        self.out_args: Dict[int, Tuple[str, int]] = {}
        self.fitting: set = set()
        # The modules whose forward is running, with their arguments, innermost
        # last: when the forward raises, the last one raised in its own code.
        self.running: List[Tuple[nn.Module, tuple]] = []
        self.kwargs: dict = {}  # the keyword inputs of the model's forward
        self.picked = ""  # which of several outputs holds the classes, when by default
        # Which layer with an out size made each output's width, through layers
        # that keep the shape (weakly); the operands of an op that raised; the
        # (layer, argument, size) the trace already asked for after one.
        self.widths: Dict[int, Tuple[weakref.ref, nn.Module, str]] = {}
        # (id of a layer, argument) -> what made the tensor its check read, at
        # its first call, right or wrong: see Construction.producer.
        self.fed: Dict[Tuple[int, str], Tuple[str, ...]] = {}
        self.operands = Operands()
        self.blamed: set = set()
        self.blamed_sites: set = set()  # (site key, argument) of the layers blamed
        # Tensors sized in __init__ that the trace resized (tables.py), by
        # (layer, argument): (Resized, declared, required) for _constructions.
        self.tables: Dict[Tuple[str, str], tuple] = {}
        self.observer = _observer

    def run(self) -> Trace:
        if self.observer is not None:
            self.observer.start(self)
        self.model.eval()
        # Layers are resized as the pass goes, so one pass finds every input
        # mismatch. Another is needed only when the head was resized after it,
        # to see what follows the head; verify traces the new source anyway.
        passes, rebuilds = 0, 0
        while passes < MAX_PASSES:
            try:
                output = self._forward()
            except ModelRaised as e:
                if not self.guess and ((rebuilds < MAX_REBUILDS and (
                        self._own_parameters() or self._own_tables(e)))
                        or (len(self.blamed) < MAX_BLAMES and self._blame(e))):
                    rebuilds += 1
                    for _, first in self.seen.values():
                        first.clear()  # sizes seen before the change are no second call
                    continue  # that module now fits: the forward goes further
                if not self.mismatches or self.guess:
                    raise
                # Raised after layers were found wrong: fix those, then trace again.
                trace = Trace(tuple(self.mismatches), self._constructions(), self.device,
                              stopped=e.problem(), makers=self._makers())
                raise Stopped(e, trace) from e
            passes += 1
            self.budget = None  # the first pass decided: the trace stays where it is
            if not self._check_classes(output):
                break
        shape = tuple(int(d) for d in output.shape) if isinstance(output, torch.Tensor) else ()
        notes = self._train_pass() if self.train else ()
        return Trace(tuple(self.mismatches), self._constructions(), self.device, notes, shape,
                     makers=self._makers(), train_doubled=self.train_doubled)

    def _train_pass(self) -> Tuple[Note, ...]:
        """One more pass in train mode: branches taken only in training (an
        auxiliary head, ``if self.training: ...``) must fit too. The hooks
        resize what they see before each layer runs, so what the model raises
        after them is not a declared size (BatchNorm at batch 1, say). At a
        larger batch (``self.train``) it is also verification's check that no
        size in a train-only branch depends on the batch."""
        self.model.train()
        self.scale, found = self.train, len(self.mismatches)
        try:
            self._forward()
        except ModelRaised as e:
            return (Note(f"in train mode: {e.message} (not a declared layer size; eval mode "
                         "traced clean)", e.where),)
        finally:
            self.model.eval()
            self.scale = 1
            if self.train > 1:
                self.train_doubled = tuple((m.layer_path, m.arg)
                                           for m in self.mismatches[found:])
        return ()

    # -- one forward pass -----------------------------------------------------

    def _forward(self):
        args, kwargs = self._inputs()
        _check_forward(self.model, args, kwargs)
        self.recent.clear()
        self.running.clear()
        self.produced.clear()
        self.made.clear()
        self.reordered.clear()
        self.makers.clear()
        self.widths.clear()
        self.heads.clear()
        for a in args:
            self.recent.append(tuple(a.shape))
        self.inputs = {id(a) for a in [*args, *kwargs.values()]}
        self.kwargs = kwargs
        batch = next((int(a.shape[0]) for a in [*args, *kwargs.values()] if a.dim() >= 2), None)
        observer = self.observer
        hooks = [nn.modules.module.register_module_forward_pre_hook(observer.before)] if observer else []
        hooks += [
            nn.modules.module.register_module_forward_pre_hook(self._pre_hook),
            nn.modules.module.register_module_forward_hook(self._post_hook),
        ]
        if observer is not None:
            hooks.append(nn.modules.module.register_module_forward_hook(observer.after))
        found = len(self.views.found)
        try:
            # The operands' wrappers go on first: views.py's must be the one user
            # code calls, as it reads its caller's frame.
            with torch.no_grad(), torch.device(self.device), self.operands.watching(), \
                    self.views.watching(batch), self._watching_cat(), self._watching_functional(), \
                    self._watching_reorder():
                output = self.model(*args, **kwargs)
        except DimfixError:
            raise
        except Exception as e:
            where, func = user_frame(e)
            raise ModelRaised(f"{func}forward raised {what(e)}", where) from e
        finally:
            for h in hooks:
                h.remove()
        self.mismatches.extend(m for m, _ in self.views.found[found:])
        if self.model.training:
            return None  # train mode's outputs (GoogLeNet's aux heads) are not the classes
        if self.options.num_classes is not None and self.options.output is None:
            _require_output(output)
            self.picked = _first_of(output)
        return _pick_output(output, self.options.output)

    def _inputs(self):
        args, kwargs = [], {}
        for spec in self.options.inputs:
            dtype = getattr(torch, spec.dtype)
            make = torch.empty if self.device == "meta" else torch.zeros
            t = make(spec.batch_times(self.scale).shape, dtype=dtype, device=self.device)
            if spec.name:
                kwargs[spec.name] = t
            else:
                args.append(t)
        return args, kwargs

    def _pre_hook(self, module, args):
        if self.budget is not None:
            self.spent += macs(module, args)
            if self.spent > self.budget:
                raise OverBudget
        self.running.append((module, args))
        if isinstance(module, (nn.Embedding, nn.EmbeddingBag)) and args:
            self._check_ids(module, args[0])
        family = family_of(module)
        if family is None:
            family = overridden_family(module)
            if family is not None:
                self._probe(module, family, args)
            return
        as_given = bool(self.inputs and args and id(args[0]) in self.inputs)
        if as_given:
            self._check_batched(module, args[0])
        first = self.seen.setdefault(id(module), (module, {}))[1]
        changes, before = {}, {}
        for check in family.checks:
            observed = check.observe(module, args)
            if observed is None:
                continue
            first.setdefault(check.arg, observed)
            if (id(module), check.arg) not in self.fed and check.input < len(args):
                self.fed[(id(module), check.arg)] = self._maker(args[check.input], observed)
            declared = check.declared(module)
            if observed != declared:
                changes[check.arg], before[check.arg] = observed, declared
        if not changes:
            return
        for arg in all_args(family):
            before.setdefault(arg, declared_size(family, module, arg))
        changed, note = family.resize(module, changes, self._rebuild)
        x = args[0]
        factors = self._factors(x) if family.name == "Linear" else ()
        merged = self.views.merged(x)  # a reshape's merge, for a layer that reads the last dim
        reads = {c.arg: args[c.input] for c in family.checks if c.input < len(args)}
        guess = self.guess
        if note and not guess:
            # The live layer was resized by a guess (one head, one group): sizes
            # after it follow that guess, not the file, and are not fixed.
            self.guess = f"it comes after {self._path(module)}, which cannot be fixed"
        for arg, value in changed.items():
            arg_note = note or guess
            if arg in first and first[arg] != value:
                arg_note = f"it is called with {first[arg]} and with {value}"
            first_check = arg == family.checks[0].arg
            tensor = reads.get(arg, x)
            if first_check and not factors and tensor is x and x.dim() > 2 \
                    and value == x.shape[-1] == math.prod(merged):
                factors = merged
            self._record(module, family, arg, before[arg], value,
                         _arrives(tensor, factors if first_check else ()),
                         factors if first_check else (), arg_note, *self._parts(tensor, value),
                         producer=self._maker(tensor, value),
                         axes=tuple(int(d) for d in tensor.shape[1:]),
                         **self._layout(module, tensor, before[arg], value,
                                        as_given and tensor is x))

    def _layout(self, module, tensor, declared, observed, given: bool) -> dict:
        """``channels_last`` (and ``channels_last_from``) of the mismatch of a conv
        fed ``tensor``: the model's input as ``given``, or the output of a layer
        that put the declared width on its last axis (an Embedding before a
        Conv1d whose author forgot ``x.transpose(1, 2)``)."""
        if given:
            return {"channels_last": _channels_last(module, tensor, declared, observed)}
        made = self._last_axis_maker(tensor, declared)
        if not made:
            return {}
        return {"channels_last": _channels_last(module, tensor, declared, observed, made=True),
                "channels_last_from": made}

    def _check_ids(self, module, x) -> None:
        """Token ids given as floats (``--input 4x20`` for an ``nn.Embedding``):
        torch's own message names no option; the dtype prefix is the fix."""
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            return
        spec = next((s for s in self.options.inputs
                     if tuple(s.shape) == tuple(x.shape) and s.dtype.startswith(("float", "bfloat"))),
                    None)
        if spec is None:
            return
        wanted = "long:" + "x".join(map(str, spec.shape))
        if spec.name:
            spec, wanted = f"{spec.name}={spec}", f"{spec.name}={wanted}"
        raise BadUsage(
            f"{option('input', spec)} gives {self._path(module)} ({type(module).__name__}) "
            f"floats, but it takes token ids: use {option('input', wanted)}")

    def _check_batched(self, module, x) -> None:
        """A conv fed the sample input without its batch dimension: the user most
        likely forgot it (``3x32x32``), and every size after would be wrong."""
        self.inputs.clear()  # the first layer that reads the input decides
        kernel = getattr(module, "kernel_size", None)
        if self.options.unbatched or not isinstance(kernel, tuple) or x.dim() != len(kernel) + 1:
            return
        spec = next((s for s in self.options.inputs if tuple(s.shape) == tuple(x.shape)), None)
        shape = "x".join(map(str, x.shape))
        raise BadUsage(
            f"{option('input', spec or shape)} looks unbatched to {self._path(module)} "
            f"({type(module).__name__}); did you mean 1x{shape}? (pass {option('unbatched')} "
            "if not)")

    def _probe(self, module, family, args) -> None:
        """A subclass that overrides forward: ask it which size it needs (probe.py)."""
        if family is WEIGHTED:
            return self._probe_weights(module, args)
        found = probe(module, family, args, self.book.inits(module), self._fresh)
        if found is None:
            return
        path = self._path(module)
        self.probed.setdefault((id(module), found.arg),
                               (module, found.arg, found.declared, found.declared))
        if found.runs or not found.working:
            return  # fits; or fits no size: its own error will say why
        size = found.working[0]
        note = ""
        if len(found.working) > 1:
            sizes = " or ".join(map(str, found.working))
            note = f"its own forward runs with {found.arg} {sizes}; dimfix will not guess"
            self.guess = self.guess or f"it comes after {path}, which cannot be fixed"
        self.probed[(id(module), found.arg)] = (module, found.arg, found.declared, size)
        self._take(module, found.fresh)
        x = args[0]
        if self._ignored(module):
            return
        self.mismatches.append(Mismatch(
            path, family.name, type(module).__name__, found.arg, found.declared, size,
            f"input arrives as {_dims(x.shape)}; its own forward runs only with {size}",
            self.book.get(module), _params(type(module)), note=note))

    def _probe_weights(self, module, args) -> None:
        """A layer with weights of its own (a GCN layer, a noisy linear layer):
        ask it which of its size arguments the tensors it was given need
        (probe.probe_weights); resize it, as a family layer is, and record it."""
        shapes = (id(module), tuple(tuple(a.shape) for a in args if isinstance(a, torch.Tensor)))
        if shapes in self.fitting:
            return
        found = probe_weights(module, args, self.book.inits(module), self._fresh)
        if found is None:
            return
        for arg, declared in found.sizes:
            self.probed.setdefault((id(module), arg), (module, arg, declared, declared))
        if found.runs:
            self.fitting.add(shapes)
        if found.runs or not found.working:
            return  # fits; or fits no size: its own error will say why
        path = self._path(module)
        arg, size = found.working[0]
        note = ""
        if len(found.working) > 1:
            shown = " or ".join(f"{a} {v}" for a, v in found.working)
            note = f"its own forward runs with {shown}; dimfix will not guess"
            self.guess = self.guess or f"it comes after {path}, which cannot be fixed"
        declared = dict(found.sizes)[arg]
        self.probed[(id(module), arg)] = (module, arg, declared, size)
        self._take(module, found.fresh)
        if self._ignored(module):
            return
        x = next((a for a in args if isinstance(a, torch.Tensor) and size in a.shape[1:]), args[0])
        factors = self._factors(x)
        self.mismatches.append(Mismatch(
            path, WEIGHTED.name, type(module).__name__, arg, declared, size,
            f"{_arrives(x, factors)}; its own forward runs only with {size}",
            self.book.get(module), _params(type(module)), factors=factors, note=note,
            producer=self._maker(x, size)))

    def _own_parameters(self) -> bool:
        """The forward raised in the code of the innermost module running, which
        holds parameters of its own sized by a constructor argument (ViT's
        ``Encoder(seq_length, ...)`` and its ``pos_embedding``, a block's
        ``layer_scale``): rebuild it with that argument set to each dimension
        of the tensor it was given, and if exactly one rebuild runs its own
        forward, that is the size it needs. It replaces the live module and
        the pass starts again. Returns whether one was found."""
        if not self.running:
            return False
        module, args = self.running[-1]
        own = list(module.parameters(recurse=False))
        inits = self.book.inits(module)
        if family_of(module) is not None or not own or not inits or not args \
                or not isinstance(args[0], torch.Tensor) \
                or any(key[0] == id(module) for key in self.probed):
            return False
        dims = {int(d) for p in own for d in p.shape if d > 1}
        x = args[0]
        sizes = sorted({int(d) for d in x.shape[1:]})
        found = []
        for arg, value in inits[-1][1].items():  # as the user's call names them
            if type(value) is not int or value not in dims:
                continue
            for size in sizes:
                if size == value:
                    continue
                try:
                    fresh = self._fresh(module, {arg: size})
                except Exception:  # this size cannot even be built
                    continue
                if runs(fresh, args):
                    found.append((arg, value, size, fresh))
        if len(found) != 1:
            return False
        arg, declared, size, fresh = found[0]
        self.probed[(id(module), arg)] = (module, arg, declared, size)
        self._transplant(module, fresh)
        if self._ignored(module):
            return True
        self.mismatches.append(Mismatch(
            self._path(module), "Parameter", type(module).__name__, arg, declared, size,
            f"input arrives as {_dims(x.shape)}; its own forward runs only with {size}",
            self.book.get(module), _params(type(module))))
        return True

    def _own_tables(self, error: ModelRaised) -> bool:
        """The forward raised where a tensor sized in ``__init__`` (a position
        table) was used: find it (tables.py), record it against the factory
        call that sized it, and go on with it resized."""
        from dimfix.tables import resize_table

        running = [(m, a, self.kwargs if m is self.model else {}) for m, a in self.running]
        hit = resize_table(running, self.book, error)
        if hit is None:
            return False
        made, dims = hit.origin
        path = self._path(hit.module)
        layer = hit.name if path == "<model>" else f"{path}.{hit.name}"
        kind = "Parameter" if hit.name in hit.module._parameters else \
            "buffer" if hit.name in hit.module._buffers else "tensor"
        declared, required = made.sizes, list(made.sizes)
        required[dims[hit.dim]] = hit.size
        if ignored(made.site, self.lines):
            return True  # resized to go on; sized on purpose
        self.tables[(layer, hit.arg)] = (made, kind, declared, tuple(required))
        whole = made.params == ("size",)  # the shape as one tuple: its elements change
        self.mismatches.append(Mismatch(
            layer, "Tensor", kind, hit.arg, declared if whole else hit.declared,
            tuple(required) if whole else hit.size,
            f"{type(hit.module).__name__}.forward runs only with {hit.size}: {hit.message}",
            made.site, made.params))
        return True

    def _fresh(self, module: nn.Module, changes) -> nn.Module:
        """A new layer of ``module``'s class, built with its recorded arguments
        and ``changes``, on its device."""
        for code, params in reversed(self.book.inits(module)):  # outermost first
            if all(k in params for k in changes):
                break
        else:
            raise ModelRaised(
                f"cannot resize {self._path(module)}: its constructor arguments were not recorded"
            )
        init = next(
            k.__dict__["__init__"]
            for k in type(module).__mro__
            if getattr(k.__dict__.get("__init__"), "__code__", None) is code
        )
        fresh = type(module).__new__(type(module))
        tensor = next(iter(module.parameters()), None)
        device = tensor.device if tensor is not None else torch.device(self.device)
        quiet = no_init() if device.type == "meta" else contextlib.nullcontext()
        with torch.device(device), quiet:
            init(fresh, **{**params, **changes})
        fresh.train(module.training)
        return fresh

    def _rebuild(self, module: nn.Module, changes) -> None:
        """Call the layer's own __init__ again with ``changes``; take its state."""
        self._take(module, self._fresh(module, changes))

    def _take(self, module: nn.Module, fresh: nn.Module) -> None:
        training = module.training
        module.__dict__.clear()
        module.__dict__.update(fresh.__dict__)
        module.train(training)
        path = self.paths.get(id(module), "")
        for name, child in module.named_modules(prefix=path):
            self.paths.setdefault(id(child), name)

    def _transplant(self, module: nn.Module, fresh: nn.Module) -> None:
        """``module`` and each layer in it take the state of the layer at the
        same place in ``fresh``, built the same way; the objects stay, since
        the trace knows them by identity (where each was built, what it was
        fed). A rebuild of another shape replaces the layers outright."""
        old = dict(module.named_modules(remove_duplicate=False))
        new = dict(fresh.named_modules(remove_duplicate=False))
        if old.keys() != new.keys() or any(type(old[k]) is not type(new[k]) for k in old):
            return self._take(module, fresh)
        training = module.training
        for name, layer in old.items():
            kept = layer._modules
            layer.__dict__.clear()
            layer.__dict__.update(new[name].__dict__)
            layer._modules = kept
        module.train(training)

    def _post_hook(self, module, args, output):
        for i in range(len(self.running) - 1, -1, -1):
            if self.running[i][0] is module:
                del self.running[i:]  # and any a try/except inside it left behind
                break
        if isinstance(module, nn.RNNBase) and module.bidirectional and isinstance(output, tuple) \
                and output and isinstance(output[0], torch.Tensor):
            # and its base: ``out[:, -1, :]`` is a view of it (of batch_first's too)
            for t in (output[0], output[0]._base):
                if t is not None:
                    self.directions[id(t)] = (weakref.ref(t), 2, self._path(module))
        if isinstance(output, torch.Tensor):
            family = family_of(module)
            out = self._out_arg(module, output) if family is None else None
            self._remember_maker(module, family, args, output, out)
            if isinstance(module, nn.Flatten) and args and isinstance(args[0], torch.Tensor):
                self.recent.append(tuple(args[0].shape))  # what it flattened, pooled or not
            self.recent.append(tuple(output.shape))
            if (family is not None and family.out_arg) or out:
                self.produced[id(output)] = (module, weakref.ref(output))
                self.heads.append(module)

    def _out_arg(self, module, output) -> Optional[str]:
        """The size argument of a layer with weights of its own that its output's
        last dimension shows, if one alone does (``out_features``)."""
        if id(module) in self.out_args:
            return self.out_args[id(module)][0]
        sizes = [(arg, declared) for (key, arg), (_, _, declared, required) in self.probed.items()
                 if key == id(module) and declared == required]
        if not sizes or output.dim() == 0:
            return None
        hits = [(arg, d) for arg, d in sizes if d == output.shape[-1]]
        if len(hits) != 1:
            return None
        self.out_args[id(module)] = hits[0]
        return hits[0][0]

    def _blame(self, error: ModelRaised) -> bool:
        """An elementwise op raised in the code of the innermost module running
        (``out += identity``): if exactly one of its operands was made by a
        layer of that module (not handed to it), with the width where they
        disagree, that layer is asked for the other's size, and the pass goes
        on (blame.py)."""
        last = self.operands.last
        if last is None or not self.running:
            return False
        module, args = self.running[-1]
        symbol, first, other = last
        if symbol in ("view", "reshape"):
            found = demanded(tuple(int(d) for d in first.shape), other)
            if found is None:
                return False
            dim, size = found
            dims, sizes, tensors = dim - first.dim(), (size,), (first,)
            symbol = f".{symbol}{other}"
        else:
            found = differing(first, other)
            if found is None:
                return False
            dims, sizes, tensors = found[0], found[2:0:-1], (first, other)
            given = {size for t, size in zip(tensors, found[1:]) if any(t is a for a in args)}
            if self._resized_for(module, given):
                return False
        blamed = []
        for tensor, want in zip(tensors, sizes):
            if any(tensor is a for a in args):
                continue  # what the module was given (a residual's identity)
            maker = self._width_maker(tensor, self._path(module), dims)
            if maker is not None:
                blamed.append((maker, want))
        if len(blamed) > 1:
            # Both made here (a shortcut conv and the block's last conv): the one
            # built by a call already found wrong, in another block, if only one.
            again = [b for b in blamed if (self._site_key(b[0][0]), b[0][1]) in self.blamed_sites]
            blamed = again
        if len(blamed) != 1:
            return False
        (layer, arg), want = blamed[0]
        self.blamed_sites.add((self._site_key(layer), arg))
        if (id(layer), arg, want) in self.blamed or self._ignored(layer):
            return False  # asked once already: it did not help
        self.blamed.add((id(layer), arg, want))
        family = family_of(layer)
        why = (f"`{symbol}` in {type(module).__name__}.forward needs {want}: "
               f"{first_line(error)}")
        if family is not None:
            declared = family.declared_out(layer)
            note = family.resize_out(layer, want)
            self._record(layer, family, arg, declared, want, why, (), note)
            return True
        # A layer with weights of its own, or an embedding (its width is what
        # it makes: ``torch.mul(self.label_emb(labels), noise)``).
        _, declared = self.out_args.get(id(layer), (arg, getattr(layer, arg, None)))
        self._rebuild(layer, {arg: want})
        self.out_args[id(layer)] = (arg, want)
        self.probed[(id(layer), arg)] = (layer, arg, declared, want)
        self._record(layer, WEIGHTED, arg, declared, want, why, (), "")
        return True

    def _resized_for(self, module, widths) -> bool:
        """Was a layer of ``module`` already found wrong for the width of the
        operand ``module`` was given? Then that width is what an earlier wrong
        layer put out, and the op's error follows from it: the pass stops, and
        the next round (after that layer's fix) sees whether anything is left."""
        path = self._path(module)
        inside = (lambda p: True) if path == "<model>" else (lambda p: p.startswith(path + "."))
        return any(m.cause is Cause.INPUT and m.observed in widths and inside(m.layer_path)
                   for m in self.mismatches)

    def _site_key(self, module) -> tuple:
        """The constructor call in the source (not the chain: a block built by
        ``_make_layer`` for another stage is the same call)."""
        site = self.book.get(module)
        return site.key[0] if site is not None else (id(module),)

    def _check_classes(self, output) -> bool:
        """Resize the head when --num-classes disagrees; True if it did."""
        want = self.options.num_classes
        if want is None or not isinstance(output, torch.Tensor) or output.dim() == 0:
            return False
        head = self._head(output)
        if head is None:
            if output.shape[-1] == want:
                return False
            raise ModelRaised(
                f"the output has shape {_dims(output.shape)}, and no Linear or Conv "
                f"layer produces its classes, so {option('num-classes', want)} cannot be applied"
            )
        module, family = head
        if family is None:  # a layer with weights of its own: rebuilt with the size
            arg, declared = self.out_args[id(module)]
            if declared == want:
                return False
            self._rebuild(module, {arg: want})
            self.out_args[id(module)] = (arg, want)
            self.probed[(id(module), arg)] = (module, arg, declared, want)
            self._record(module, WEIGHTED, arg, declared, want, self._classes(want), (),
                         "", cause=Cause.NUM_CLASSES)
            return True
        declared = family.declared_out(module)
        if declared == want:
            return False
        note = family.resize_out(module, want)
        self._record(module, family, family.out_arg, declared, want,
                     self._classes(want), (), note, cause=Cause.NUM_CLASSES)
        return True

    def _classes(self, want: int) -> str:
        """Why a head changes: ``--num-classes 20``, and which output it is."""
        said = option("num-classes", want)
        return f"{said}, on {self.picked}" if self.picked else said

    def _head(self, output) -> Optional[Tuple[nn.Module, Optional[Family]]]:
        """The layer that produced the classes, and its family (None for a layer
        with weights of its own, whose out argument ``out_args`` holds)."""
        hit = self.produced.get(id(output))
        if hit is not None and hit[1]() is output:
            return hit[0], family_of(hit[0])
        # The output went through an op after the head (softmax, view, ...):
        # take the last layer whose output size matches the class dimension.
        for module in reversed(self.heads):
            family = family_of(module)
            if family is None:
                if self.out_args[id(module)][1] == output.shape[-1]:
                    return module, None
                continue
            dim = family.out_dim if family.out_dim < 0 else min(family.out_dim, output.dim() - 1)
            if family.declared_out(module) == output.shape[dim]:
                return module, family
        return None

    # -- results ------------------------------------------------------------------

    def _ignored(self, module) -> bool:
        """Its constructor call carries ``# dimfix: ignore``: sized on purpose.
        The trace resizes it to go on, and records nothing of it."""
        if id(module) not in self.skipped:
            self.skipped[id(module)] = ignored(self.book.get(module), self.lines)
        return self.skipped[id(module)]

    def _record(self, module, family, arg, declared, observed, why, factors, note, parts=(),
                blocks=(), sources=(), producer=(), cause=Cause.INPUT, channels_last="",
                channels_last_from="", axes=()):
        if self._ignored(module):
            return
        path = self._path(module)
        prior = next((i for i, m in enumerate(self.mismatches)
                      if m.layer_path == path and m.arg == arg), None)
        if prior is not None and self.blamed:
            # A pass after a blamed layer changed its out size (blame.py): a layer
            # after it that an earlier pass resized to the wrong width is put back.
            first = self.mismatches.pop(prior)
            if first.declared == observed:
                return
            declared = first.declared
        self.mismatches.append(
            Mismatch(
                layer_path=self._path(module),
                family=family.name,
                kind=type(module).__name__,
                arg=arg,
                declared=declared,
                observed=observed,
                why=why,
                site=self.book.get(module),
                params=_params(type(module)),
                factors=factors,
                note=note,
                parts=parts,
                blocks=blocks,
                sources=sources,
                producer=producer,
                cause=cause,
                axes=axes,
                channels_last=channels_last if channels_last else "",
                channels_last_from=channels_last_from if channels_last else "",
            )
        )

    def _path(self, module) -> str:
        path = self.paths.get(id(module))
        if path is None:
            return f"<{type(module).__name__} not registered in the model>"
        return path or "<model>"

    def _makers(self) -> Tuple[Construction, ...]:
        """The size argument of each layer of SIZED_BY with a site (no need:
        where it is written names what the layer makes)."""
        out = []
        for path, module in self.model.named_modules():
            site = self.book.get(module)
            arg = SIZED_BY.get(type(module))
            if site is not None and arg is not None:
                out.append(Construction(path, int(getattr(module, arg)), None, site, arg,
                                        type(module).__name__, _params(type(module))))
        return tuple(out)

    def _constructions(self) -> Tuple[Construction, ...]:
        """Every size argument of every family layer with a site, and its need."""
        fixed = {(x.layer_path, x.arg): x for x in self.mismatches}
        out = []
        for path, module in self.model.named_modules():
            site = self.book.get(module)
            family = family_of(module)
            if site is None or family is None:
                continue
            ran = id(module) in self.seen and not self._ignored(module)
            for arg in all_args(family):
                hit = fixed.get((path, arg))
                if hit is not None:
                    declared, required = hit.declared, hit.observed
                else:
                    declared = declared_size(family, module, arg)
                    required = declared if ran else None
                out.append(
                    Construction(path, declared, required, site, arg,
                                 type(module).__name__, _params(type(module)),
                                 self.fed.get((id(module), arg), ()))
                )
        for layer, _ in self.tables:
            made, kind, declared, required = self.tables[(layer, _)]
            if made.params == ("size",):
                out.append(Construction(layer, declared, required, made.site, "size", kind,
                                        made.params))
                continue
            out.extend(Construction(layer, d, r, made.site, arg, kind, made.params)
                       for arg, d, r in zip(made.params, declared, required))
        for module, arg, declared, required in self.probed.values():
            site = self.book.get(module)
            if site is not None:
                out.append(Construction(self._path(module), declared, required, site, arg,
                                        type(module).__name__, _params(type(module))))
        return tuple(out) + tuple(self.views.constructions)


def _require_output(output) -> None:
    """--num-classes on a model returning a dict of several tensors, none of them
    "logits", names which holds the classes: keys say what each is, and the
    first is no convention (``{"boxes": ..., "scores": ...}``)."""
    if isinstance(output, dict):
        keys = [k for k, v in output.items() if isinstance(v, torch.Tensor)]
        if len(keys) > 1 and "logits" not in keys:
            raise BadUsage("the model returns several tensors (keys: "
                           f"{', '.join(map(str, keys))}); name the one holding the classes "
                           f"with {option('output', 'KEY')}")


def _first_of(output) -> str:
    """How the classes were picked from a tuple of several tensors by default
    (its first: ``return logits, hidden``), for the reason line; else ""."""
    if not isinstance(output, (list, tuple)):
        return ""
    tensors = [i for i, v in enumerate(output) if isinstance(v, torch.Tensor)]
    if len(tensors) < 2:
        return ""
    return (f"output {tensors[0]} of the {len(tensors)} tensors forward returns "
            f"({option('output', 'INDEX')} names another)")


def _pick_output(output, name: Optional[str] = None):
    """The tensor holding the classes: ``name`` (a dict key or tuple index) if
    given; else the output itself, a dict's "logits" or its first tensor, or a
    tuple's first tensor."""
    if name is not None:
        try:
            if isinstance(output, dict):
                picked = output[name]
            elif isinstance(output, (list, tuple)):
                picked = output[int(name)]
            else:
                raise BadUsage(f"{option('output', name)}: the model returns a single "
                               f"{type(output).__name__}")
        except (KeyError, IndexError, ValueError):
            keys = list(output) if isinstance(output, dict) else list(range(len(output)))
            raise BadUsage(f"{option('output', name)}: the model's output has no such entry "
                           f"(it has: {', '.join(map(str, keys))})") from None
        if not isinstance(picked, torch.Tensor):
            raise BadUsage(f"{option('output', name)} is a {type(picked).__name__}, not a tensor")
        return picked
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict):
        if isinstance(output.get("logits"), torch.Tensor):
            return output["logits"]
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        for item in output:
            if isinstance(item, torch.Tensor):
                return item
    return None


_PARAMS: Dict[type, Tuple[str, ...]] = {}

# Layers outside the families whose output's last dimension one argument sets:
# what they make names a width (the producer of what arrives), never checked.
def _params(kind: type) -> Tuple[str, ...]:
    """The constructor's parameter names in order; '*' marks a *args."""
    if kind not in _PARAMS:
        names: Tuple[str, ...] = ()
        # nn.LSTM(*args, **kwargs) forwards to RNNBase(mode, input_size, ...):
        # the first __init__ up the chain that names its parameters tells.
        for klass in kind.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None:
                continue
            try:
                params = list(inspect.signature(init).parameters.values())[1:]
            except (TypeError, ValueError):
                break
            names = tuple(
                "*" if p.kind is p.VAR_POSITIONAL else "**" if p.kind is p.VAR_KEYWORD else p.name
                for p in params
            )
            if klass is nn.modules.rnn.RNNBase:
                names = names[1:]  # "mode" is supplied by LSTM/GRU/RNN themselves
            if set(names) - {"*", "**"}:
                break
        _PARAMS[kind] = names
    return _PARAMS[kind]


def _channels_last(module, x, declared, observed, made: bool = False) -> str:
    """The permute that puts the last axis of ``x`` at axis 1, when a conv
    declares that axis's size and is fed axis 1's: channels last (``8x500x12``
    to ``Conv1d(12, ...)``: ``x.permute(0, 2, 1)``; ``2x32x32x3`` to
    ``Conv2d(3, ...)``); else "". For the input as given, axis 1 must (with two
    sides or more) also be another side; for a tensor a layer ``made`` with its
    width last, that layer says where the channels are."""
    kernel = getattr(module, "kernel_size", None)
    if not isinstance(kernel, tuple) or x.dim() != len(kernel) + 2:
        return ""
    if int(x.shape[-1]) != declared or int(x.shape[1]) != observed or declared == observed:
        return ""
    if not made and x.dim() > 3 and observed not in [int(d) for d in x.shape[2:-1]]:
        return ""  # 2x3x32x32 to Conv2d(32): 3 reads as channels, not as a side of 32x32
    order = (0, x.dim() - 1, *range(1, x.dim() - 1))
    return f"x.permute({', '.join(map(str, order))})"


def _arrives(x, factors) -> str:
    if factors and x.dim() == 2:  # (a reshape's merge into a last dimension goes unsaid)
        return f"input arrives as {_dims((x.shape[0], *factors))} flattened"
    return f"input arrives as {_dims(x.shape)}"


def _dims(shape) -> str:
    return "x".join(str(int(s)) for s in shape)
