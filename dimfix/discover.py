"""From what the user named (``PATH::NAME``, files, folders) to jobs: one per
file, listing the models in it and the options each is traced with."""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from dataclasses import dataclass, replace
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from dimfix.config import Config, ModelSpec, find_config, pragma_models
from dimfix.errors import BadSource, BadUsage, Position, option
from dimfix.records import Options
from dimfix.source import SourceFile, decode_source, display_path
from dimfix.target import parse_size

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
SKIP_DIRS = {"__pycache__", "node_modules", "site-packages", "build", "dist"}


@dataclass(frozen=True)
class Job:
    """One file and the models to fix in it, in order."""

    path: str  # absolute
    models: Tuple[Options, ...]
    problems: Tuple[Tuple[str, str], ...] = ()  # (model name, why it cannot run)
    source: Optional[SourceFile] = None  # the text to fix when not the file's (stdin)
    # (model name, where its input was given) for inputs not given on the
    # command line: "its '# dimfix:' pragma", "[tool.dimfix] in pyproject.toml".
    inputs_from: Tuple[Tuple[str, str], ...] = ()

    @property
    def display(self) -> str:
        return display_path(self.path)


def discover(targets: Sequence[str], cli: ModelSpec, exclude: Sequence[str] = (),
             fmt: bool = True, force_exclude: bool = False,
             config: Optional[Config] = None) -> Tuple[List[Job], Optional[Config]]:
    """Jobs for ``targets``, files and models in sorted order; ``cli`` holds what
    flags set, over config and pragmas. ``force_exclude`` applies the exclude
    patterns to files named explicitly too (as pre-commit names them)."""
    found: Dict[str, Dict[str, ModelSpec]] = {}
    declared: set = set()  # (path, name) a pragma or [[tool.dimfix.models]] declares
    given: Dict[Tuple[str, str], str] = {}  # where a declaration gave the input
    named: set = set()  # (path, name) named PATH::NAME on the command line
    for target in targets:
        path, sep, name = target.rpartition("::")
        if not sep or os.path.exists(target):
            path, name = target, ""
        if name and (not _NAME.match(name) or name.endswith(".py")):
            raise BadUsage(f"target {target!r}: {name!r} is not a Python name; write "
                           "PATH::NAME, e.g. model.py::Net")
        if not os.path.exists(path):
            raise BadSource(f"{path}: no such file or folder" + _one_colon(target))
        config = config or find_config(path)
        if name:
            if os.path.isdir(path):
                raise BadSource(f"{path}: is a directory, not a Python file")
            spec = _declared(path, name, config, given) or ModelSpec(os.path.abspath(path), name)
            found.setdefault(spec.path, {})[name] = spec
            named.add((spec.path, name))
            continue
        patterns = tuple(exclude) + (config.exclude if config else ())
        for file in _python_files(path, patterns, config, force_exclude):
            specs = _models_in(file, config, given)
            if not specs and cli.inputs and os.path.isfile(path):
                specs = [_only_model(file)]  # --input for a file without a pragma
            for spec in specs:
                found.setdefault(spec.path, {}).setdefault(spec.name, spec)
    declared = set(given)
    jobs = []
    for path, specs in sorted(found.items()):
        models, problems, inputs_from = [], [], []
        for spec in sorted(specs.values(), key=lambda s: s.name):
            spec, where = _resolve(spec, cli, config, (path, spec.name) in declared,
                                   given.get((path, spec.name), ""), (path, spec.name) in named)
            if not spec.inputs:
                problems.append((spec.name, _no_input(config)))
                continue
            models.append(_options(spec, fmt))
            if where:
                inputs_from.append((spec.name, where))
        jobs.append(Job(path, tuple(models), tuple(problems), inputs_from=tuple(inputs_from)))
    return jobs, config


def _one_colon(target: str) -> str:
    """A hint for ``net.py:Net``, a model named with one colon."""
    path, sep, name = target.rpartition(":")
    if sep and os.path.isfile(path) and _NAME.match(name):
        return f"; to name a model write PATH::NAME: {path}::{name}"
    return ""


def _resolve(spec: ModelSpec, cli: ModelSpec, config: Optional[Config], declared: bool,
             given: str, named: bool) -> Tuple[ModelSpec, str]:
    """``spec`` with the config's defaults (for a model a pragma or the config
    declares: a model named only on the command line gets none but its memory
    limit) and the flags over them; and where its input came from, when not
    from the command line: from the config's default, or from a declaration
    of a model named PATH::NAME (a file's or folder's models are run for
    their declarations: saying so for each would be noise)."""
    where = ""
    if config is not None:
        defaults = config.defaults if declared else ModelSpec(
            "", "", max_memory=config.defaults.max_memory)
        if not spec.inputs and defaults.inputs:
            where = f"[tool.dimfix] input in {display_path(os.path.join(config.root, 'pyproject.toml'))}"
        spec = spec.over(defaults)
    if spec.inputs and not where and named:
        where = given
    return _override(spec, cli), "" if cli.inputs else where


def _no_input(config: Optional[Config]) -> str:
    return (f"no sample input: give {option('input', 'SHAPE')}, or input= in its "
            "'# dimfix:' pragma or [tool.dimfix]" + default_unused(config))


def default_unused(config: Optional[Config]) -> str:
    """Why the config's default input was not used, if it has one: it is for
    the models it or a pragma declares (an MNIST net named on the command line
    must not be traced, and rewritten, for the project's 3-channel images)."""
    if config is None or not config.defaults.inputs:
        return ""
    shown = ",".join(map(str, config.defaults.inputs))
    toml = display_path(os.path.join(config.root, "pyproject.toml"))
    return (f" (input = {shown} in {toml} is a default only for the models a '# dimfix:' "
            "pragma or [[tool.dimfix.models]] declares)")


def discover_source(source: SourceFile, names: Sequence[str], cli: ModelSpec,
                    fmt: bool = True, config: Optional[Config] = None
                    ) -> Tuple[Job, Optional[Config]]:
    """The job for text given on stdin as the file ``source.path``: the models
    named, else those its pragmas (or the config) declare."""
    config = config or find_config(source.path)
    path = os.path.abspath(source.path)
    given: Dict[Tuple[str, str], str] = {}
    declared = {s.name: s for s in _configured(path, config, given)}
    for spec in _pragmas(source.path, source.text, given):
        declared[spec.name] = spec.over(declared[spec.name]) if spec.name in declared else spec
    specs = [declared.get(n, ModelSpec(path, n)) for n in names] if names else list(declared.values())
    if not specs and cli.inputs:
        specs = [_only_model(source.path, source.text)]
    models, problems, inputs_from = [], [], []
    for spec in specs:
        spec, where = _resolve(spec, cli, config, spec.name in declared,
                               given.get((path, spec.name), ""), spec.name in names)
        if spec.inputs:
            models.append(_options(spec, fmt))
            if where:
                inputs_from.append((spec.name, where))
        else:
            problems.append((spec.name, _no_input(config)))
    return Job(path, tuple(models), tuple(problems), source, tuple(inputs_from)), config


def _override(spec: ModelSpec, cli: ModelSpec) -> ModelSpec:
    """Flags given on the command line win over config and pragmas."""
    return replace(cli.over(spec), path=spec.path, name=spec.name)


def _options(spec: ModelSpec, fmt: bool) -> Options:
    return Options(
        name=spec.name,
        inputs=spec.inputs,
        init=dict(spec.init),
        num_classes=spec.num_classes,
        max_memory=parse_size(spec.max_memory) if spec.max_memory else None,
        format=fmt,
        output=spec.output,
    )


def _declared(path: str, name: str, config: Optional[Config],
              given: Dict[Tuple[str, str], str]) -> Optional[ModelSpec]:
    """What the pragma or the config say of ``path::name``, if anything."""
    for spec in _models_in(os.path.abspath(path), config, given):
        if spec.name == name:
            return spec
    return None


def _configured(path: str, config: Optional[Config],
                given: Dict[Tuple[str, str], str]) -> List[ModelSpec]:
    """The [[tool.dimfix.models]] entries for the file at ``path``."""
    found = [s for s in (config.models if config else ()) if os.path.abspath(s.path) == path]
    for spec in found:
        given.setdefault((path, spec.name), "")  # declared, input or not
        if spec.inputs:
            toml = display_path(os.path.join(config.root, "pyproject.toml"))
            given[(path, spec.name)] = f"[[tool.dimfix.models]] in {toml}"
    return found


def _pragmas(path: str, text: str, given: Dict[Tuple[str, str], str]) -> List[ModelSpec]:
    """The models ``# dimfix:`` pragmas in ``text`` declare."""
    found = pragma_models(display_path(path), text)
    for spec in found:
        key = (os.path.abspath(path), spec.name)
        given.setdefault(key, "")
        if spec.inputs:
            given[key] = "its '# dimfix:' pragma"
    return found


def _models_in(path: str, config: Optional[Config],
               given: Optional[Dict[Tuple[str, str], str]] = None) -> List[ModelSpec]:
    path = os.path.abspath(path)
    given = {} if given is None else given
    specs: Dict[str, ModelSpec] = {s.name: s for s in _configured(path, config, given)}
    if not _is_regular(path):
        return list(specs.values())
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError:
        return list(specs.values())
    if b"dimfix:" in raw:
        text = raw.decode("utf-8", errors="replace")
        if path.endswith(".ipynb"):  # pragmas sit in the code cells' script
            text = decode_source(path, raw).text
        for spec in _pragmas(path, text, given):
            # A pragma sits next to the code: it wins over the config table.
            specs[spec.name] = spec.over(specs[spec.name]) if spec.name in specs else spec
    return list(specs.values())


def _only_model(path: str, text: Optional[str] = None) -> ModelSpec:
    """The one model class ``path`` defines, read from its syntax (never imported)."""
    from dimfix.candidates import model_classes

    if text is None:
        with open(path, "rb") as f:
            raw = f.read()
        # A notebook's models are in its code cells' script, not in its JSON.
        text = decode_source(path, raw).text if path.endswith(".ipynb") \
            else raw.decode("utf-8", errors="replace")
    shown = display_path(path)
    try:
        names = model_classes(text)
    except SyntaxError as e:
        raise BadSource(f"cannot parse: {e.msg}",
                        Position(os.path.abspath(path), e.lineno or 0, e.offset or 0)) from None
    if len(names) == 1:
        return ModelSpec(os.path.abspath(path), names[0])
    if names:
        raise BadUsage(f"{shown}: {option('input')} given but no model named; it defines "
                       f"{', '.join(names)}: name one as {shown}::NAME")
    raise BadUsage(f"{shown}: no nn.Module subclass found; name the model as "
                   f"{shown}::NAME (a class, factory or instance)")


def _python_files(path: str, patterns: Sequence[str], config: Optional[Config],
                  force_exclude: bool = False) -> Iterator[str]:
    if os.path.isfile(path):
        root = config.root if config else os.getcwd()
        if not (force_exclude and _excluded(path, patterns, root)):
            yield os.path.abspath(path)
        return
    root = config.root if config else os.path.abspath(path)
    for folder, dirs, files in os.walk(path):
        dirs[:] = sorted(
            d for d in dirs
            if not d.startswith(".") and d not in SKIP_DIRS
            and not os.path.exists(os.path.join(folder, d, "pyvenv.cfg"))
            and not _excluded(os.path.join(folder, d), patterns, root)
        )
        for name in sorted(files):
            full = os.path.abspath(os.path.join(folder, name))
            if name.endswith((".py", ".ipynb")) and not _excluded(full, patterns, root) \
                    and _is_regular(full):
                yield full


def _is_regular(path: str) -> bool:
    """A FIFO would block a read forever and a device never ends: skip them."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _excluded(path: str, patterns: Sequence[str], root: str) -> bool:
    """A pattern matches the path relative to the current folder (as typed),
    to ``root`` (the config's folder, else the target folder), or the name."""
    full = os.path.abspath(path)
    names = {os.path.relpath(full, root), os.path.relpath(full), os.path.basename(full)}
    return any(fnmatch.fnmatch(n, p) for n in names for p in patterns)
