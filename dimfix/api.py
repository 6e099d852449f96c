"""The library API: what the CLI, tests and editor integrations call.

``fix_file`` reads a file and returns a FileFix without writing anything;
``write_result`` writes a verified result, every file of it or none.

This process never imports the user's code: a ``FixSession`` (session.py)
hands out the steps of a fix — draft each model, verify the new texts — and
the driver (driver.py) runs each in a child process forked from this one.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Optional, Sequence, Tuple, Union

from dimfix.errors import Audience, BadUsage, DimfixError, option, speaking_to
from dimfix.records import Edit, InputSpec, Options, Unfixable
from dimfix.session import FileFix, FixSession, ModelFix, Status
from dimfix.source import SourceFile, display_path, write_files
from dimfix.steps import Limits


def session_for(job, observe: bool = False) -> FixSession:
    """The session that fixes ``job``'s models (discover.Job)."""
    return FixSession(job.path, job.models, job.source, job.problems, observe)


def fix_file(path: str, inputs: Union[Iterable[Union[str, InputSpec]], Options] = (), *,
             name: Optional[str] = None, num_classes: Optional[int] = None,
             init: Union[Mapping[str, object], Iterable[str]] = (), output: Optional[str] = None,
             unbatched: bool = False, sets: Union[Mapping[str, object], Iterable[str]] = (),
             exec_module: bool = False, format: bool = True, timeout: Optional[float] = None,
             max_memory: Union[int, str, None] = None, text: Optional[str] = None) -> FileFix:
    """Fix the models of ``path`` as the CLI would; nothing is written.

    ``path`` may be ``"file.py::Name"``, or name the model with ``name``; with
    neither, the one model the file declares (a ``# dimfix:`` pragma or
    [tool.dimfix]) or, given ``inputs``, the one nn.Module subclass it defines.
    ``inputs``, ``init`` and ``sets`` take the CLI's strings (``"1x3x32x32"``,
    ``"long:2x12"``, ``"num_classes=10"``) or parsed values; ``inputs`` may
    also be an ``Options``, which then says everything. ``text`` fixes an
    editor's buffer for ``path`` instead of the file on disk.

    Raises DimfixError (exit code 2 in the CLI) for bad input and for a model
    that cannot be traced or fixed (its ``kind``, ``where`` and ``message``
    say why); the result's ``edits`` are verified, ``unfixable`` lists what
    was found but cannot be edited.
    """
    from dimfix.config import ModelSpec
    from dimfix.discover import discover, discover_source
    from dimfix.driver import run
    from dimfix.source import decode_source
    from dimfix.target import parse_init, parse_input, parse_size

    with speaking_to(Audience.API):
        if isinstance(inputs, Options):  # fix_file(path, Options("Net", ["1x3x32x32"]))
            given = inputs
            name = name or given.name
            inputs, init, num_classes, output = (given.inputs, given.init, given.num_classes,
                                                 given.output)
            unbatched, sets, exec_module = given.unbatched, given.sets, given.exec_module
            format, max_memory = given.format, max_memory or given.max_memory
        if name is None and "::" in path:
            path, _, name = path.rpartition("::")
        if not isinstance(init, Mapping):
            init = parse_init(init)
        if not isinstance(sets, Mapping):
            sets = parse_init(sets, "set")
        if isinstance(max_memory, str):
            max_memory = parse_size(max_memory)
        if num_classes is not None and num_classes < 1:
            raise BadUsage(f"{option('num-classes')} must be at least 1, got {num_classes}")
        spec = ModelSpec("", "", inputs=tuple(i if isinstance(i, InputSpec) else parse_input(i)
                                              for i in inputs),
                         init=dict(init), num_classes=num_classes, output=output)
        if text is not None:
            source = decode_source(path, text.encode("utf-8"))
            job, config = discover_source(source, [name] if name else [], spec, format)
        else:
            jobs, config = discover([f"{path}::{name}" if name else path], spec, (), format)
            if not jobs:
                raise BadUsage(f"{display_path(path)}: no model found; name one, or give "
                               f"{option('input')} for the one model class it defines")
            job = jobs[0]
        models = tuple(_options(o, unbatched, sets, exec_module, max_memory) for o in job.models)
        for options in models:
            check_inputs(options)
        for model, why in job.problems:
            raise BadUsage(f"{model}: {why}")
        if timeout is None:
            timeout = (config.timeout if config else None) or 60.0
        session = FixSession(job.path, models, job.source)
        fix = run(session, Limits(timeout, max_memory))
        for failed in fix.failed:
            raise failed.problem.error()
        return fix


def _options(options: Options, unbatched: bool, sets, exec_module: bool,
             max_memory: Optional[int]) -> Options:
    from dataclasses import replace

    return replace(options, unbatched=unbatched or options.unbatched, sets=dict(sets),
                   exec_module=exec_module, max_memory=max_memory or options.max_memory)


def check_inputs(options: Options) -> None:
    """Refuse inputs that alone would need more memory than allowed."""
    from dimfix.target import default_max_memory, input_bytes, size_text

    limit = options.max_memory or default_max_memory()
    need = sum(input_bytes(spec) for spec in options.inputs)
    if need > limit:
        shapes = " ".join(option("input", s) for s in options.inputs)
        raise BadUsage(f"{shapes}: the input alone needs {size_text(need)}, over the "
                       f"{size_text(limit)} limit ({option('max-memory')})")


def write_result(result: FileFix) -> Tuple[str, ...]:
    """Write every changed file of a verified ``result``, or none: the paths written."""
    return write_changes(result.changes)


def write_changes(changes: Sequence[Tuple[SourceFile, str]]) -> Tuple[str, ...]:
    """Write (file as read, new text) pairs as one transaction: what both
    ``write_result`` and the CLI write through. The paths written, as shown."""
    if not changes:
        return ()
    write_files([(source, source.encode(text)) for source, text in changes])
    return tuple(display_path(source.path) for source, _ in changes)


__all__ = ["DimfixError", "Edit", "FileFix", "FixSession", "ModelFix", "Options", "Status",
           "Unfixable", "check_inputs", "fix_file", "session_for", "write_changes",
           "write_result"]
