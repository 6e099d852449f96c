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
from dimfix.errors import BadSource, BadUsage, option
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
    for target in targets:
        path, sep, name = target.rpartition("::")
        if not sep or os.path.exists(target):
            path, name = target, ""
        if name and (not _NAME.match(name) or name.endswith(".py")):
            raise BadUsage(f"target {target!r}: {name!r} is not a Python name; write "
                           "PATH::NAME, e.g. model.py::Net")
        if not os.path.exists(path):
            raise BadSource(f"{path}: no such file or folder")
        config = config or find_config(path)
        if name:
            if os.path.isdir(path):
                raise BadSource(f"{path}: is a directory, not a Python file")
            spec = _declared(path, name, config) or ModelSpec(os.path.abspath(path), name)
            found.setdefault(spec.path, {})[name] = spec
            continue
        patterns = tuple(exclude) + (config.exclude if config else ())
        for file in _python_files(path, patterns, config, force_exclude):
            specs = _models_in(file, config)
            if not specs and cli.inputs and os.path.isfile(path):
                specs = [_only_model(file)]  # --input for a file without a pragma
            for spec in specs:
                found.setdefault(spec.path, {}).setdefault(spec.name, spec)
    jobs = []
    for path, specs in sorted(found.items()):
        models, problems = [], []
        for spec in sorted(specs.values(), key=lambda s: s.name):
            if config is not None:
                spec = spec.over(config.defaults)
            spec = _override(spec, cli)
            if not spec.inputs:
                problems.append((spec.name, f"no sample input: give {option('input', 'SHAPE')}, "
                                            "or input= in its '# dimfix:' pragma or "
                                            "[tool.dimfix]"))
                continue
            models.append(_options(spec, fmt))
        jobs.append(Job(path, tuple(models), tuple(problems)))
    return jobs, config


def discover_source(source: SourceFile, names: Sequence[str], cli: ModelSpec,
                    fmt: bool = True, config: Optional[Config] = None
                    ) -> Tuple[Job, Optional[Config]]:
    """The job for text given on stdin as the file ``source.path``: the models
    named, else those its pragmas (or the config) declare."""
    config = config or find_config(source.path)
    path = os.path.abspath(source.path)
    declared = {s.name: s for s in (config.models if config else ()) if s.path == path}
    for spec in pragma_models(source.path, source.text):
        declared[spec.name] = spec.over(declared[spec.name]) if spec.name in declared else spec
    specs = [declared.get(n, ModelSpec(path, n)) for n in names] if names else list(declared.values())
    if not specs and cli.inputs:
        specs = [_only_model(source.path, source.text)]
    models, problems = [], []
    for spec in specs:
        if config is not None:
            spec = spec.over(config.defaults)
        spec = _override(spec, cli)
        if spec.inputs:
            models.append(_options(spec, fmt))
        else:
            problems.append((spec.name, f"no sample input: give {option('input', 'SHAPE')} or "
                                        "a pragma"))
    return Job(path, tuple(models), tuple(problems), source), config


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


def _declared(path: str, name: str, config: Optional[Config]) -> Optional[ModelSpec]:
    """What the pragma or the config say of ``path::name``, if anything."""
    for spec in _models_in(os.path.abspath(path), config):
        if spec.name == name:
            return spec
    return None


def _models_in(path: str, config: Optional[Config]) -> List[ModelSpec]:
    path = os.path.abspath(path)
    specs: Dict[str, ModelSpec] = {}
    if config is not None:
        for spec in config.models:
            if os.path.abspath(spec.path) == path:
                specs[spec.name] = spec
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
        for spec in pragma_models(display_path(path), text):
            # A pragma sits next to the code: it wins over the config table.
            specs[spec.name] = spec.over(specs[spec.name]) if spec.name in specs else spec
    return list(specs.values())


def _only_model(path: str, text: Optional[str] = None) -> ModelSpec:
    """The one model class ``path`` defines, read from its syntax (never imported)."""
    from dimfix.candidates import model_classes

    if text is None:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", errors="replace")
    names = model_classes(text)
    shown = display_path(path)
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
