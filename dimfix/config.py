"""Where models are declared: ``[tool.dimfix]`` in pyproject.toml, and
``# dimfix:`` pragmas on the line above a class or factory.

```toml
[tool.dimfix]
input = ["1x3x32x32"]            # defaults for every model
num-classes = 10
exclude = ["legacy/*"]

[[tool.dimfix.models]]
target = "models/resnet.py::resnet18"   # relative to this pyproject.toml
input = ["1x3x224x224"]
init = { num_classes = 10 }
```

```python
# dimfix: input=1x3x32x32 num-classes=10 init.width=64
class Net(nn.Module): ...
```
"""

from __future__ import annotations

import ast
import os
import re
import sys
from dataclasses import dataclass, field, replace
from typing import Dict, List, Mapping, Optional, Tuple

from dimfix.errors import BadUsage
from dimfix.records import InputSpec
from dimfix.target import parse_init, parse_input, parse_seconds, parse_size, parse_target

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MODEL_KEYS = {"target", "input", "init", "num-classes", "output", "max-memory"}
DEFAULT_KEYS = (MODEL_KEYS - {"target"}) | {"models", "exclude", "timeout", "jobs"}
PRAGMA = re.compile(r"^\s*#\s*dimfix:(.*)$")
DEFINITION = re.compile(r"^(?:async\s+)?(?:class|def)\s+([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True)
class ModelSpec:
    """What is known of one model before it is traced; any field may be unset."""

    path: str  # absolute
    name: str
    inputs: Tuple[InputSpec, ...] = ()
    init: Mapping[str, object] = field(default_factory=dict)
    num_classes: Optional[int] = None
    output: Optional[str] = None
    max_memory: Optional[str] = None

    def over(self, base: "ModelSpec") -> "ModelSpec":
        """This spec, with unset fields taken from ``base``."""
        return replace(
            self,
            inputs=self.inputs or base.inputs,
            init={**base.init, **self.init},
            num_classes=self.num_classes if self.num_classes is not None else base.num_classes,
            output=self.output if self.output is not None else base.output,
            max_memory=self.max_memory or base.max_memory,
        )


@dataclass(frozen=True)
class Config:
    """[tool.dimfix] of one pyproject.toml."""

    root: str  # the folder holding pyproject.toml
    defaults: ModelSpec
    models: Tuple[ModelSpec, ...] = ()
    exclude: Tuple[str, ...] = ()
    timeout: Optional[float] = None
    jobs: Optional[int] = None


def find_config(path: str) -> Optional[Config]:
    """The [tool.dimfix] config of the nearest pyproject.toml above ``path``
    (stopping at a .git folder), or None."""
    folder = os.path.abspath(path if os.path.isdir(path) else os.path.dirname(path) or ".")
    while True:
        candidate = os.path.join(folder, "pyproject.toml")
        if os.path.isfile(candidate):
            config = load_config(candidate)
            if config is not None:
                return config
        if os.path.exists(os.path.join(folder, ".git")):
            return None
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def explicit_config(pyproject: str) -> Config:
    """``--config PATH``: that file's [tool.dimfix] (empty if it has none), not
    the nearest one."""
    if not os.path.isfile(pyproject):
        raise BadUsage(f"--config {pyproject}: no such file")
    root = os.path.dirname(os.path.abspath(pyproject))
    return load_config(pyproject) or Config(root, ModelSpec("", ""))


def load_config(pyproject: str) -> Optional[Config]:
    try:
        with open(pyproject, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise BadUsage(f"{pyproject}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise BadUsage(f"{pyproject}: invalid TOML: {e}") from None
    table = data.get("tool", {}).get("dimfix")
    if table is None:
        return None
    where = f"{pyproject}: [tool.dimfix]"
    if not isinstance(table, dict):
        raise BadUsage(f"{where} must be a table")
    _known(table, DEFAULT_KEYS, where)
    root = os.path.dirname(os.path.abspath(pyproject))
    defaults = _spec(table, root, "", "", where)
    models = []
    entries = table.get("models", [])
    if not isinstance(entries, list):
        raise BadUsage(f"{where}: 'models' must be an array of tables ([[tool.dimfix.models]])")
    for i, entry in enumerate(entries):
        at = f"{pyproject}: [[tool.dimfix.models]] #{i + 1}"
        if not isinstance(entry, dict):
            raise BadUsage(f"{at} must be a table")
        _known(entry, MODEL_KEYS, at)
        if "target" not in entry:
            raise BadUsage(f"{at}: 'target' is missing (e.g. target = \"models/net.py::Net\")")
        path, name = _parse(lambda: parse_target(str(entry["target"])), at, "target")
        models.append(_spec(entry, root, os.path.join(root, path), name, at))
    exclude = table.get("exclude", [])
    if not isinstance(exclude, list) or not all(isinstance(e, str) for e in exclude):
        raise BadUsage(f"{where}: 'exclude' must be a list of glob patterns")
    timeout = table.get("timeout")
    if timeout is not None:
        timeout = _limit(lambda: parse_seconds(timeout, "timeout"), where)
    jobs = table.get("jobs")
    if jobs is not None and (type(jobs) is not int or jobs < 1):
        raise BadUsage(f"{where}: 'jobs' must be a whole number of at least 1")
    return Config(root, defaults, tuple(models), tuple(exclude), timeout, jobs)


def pragma_models(path: str, text: str) -> List[ModelSpec]:
    """Models marked by ``# dimfix: ...`` on the line above ``class``/``def``."""
    found = []
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        match = PRAGMA.match(line)
        if not match:
            continue
        name = _definition_after(lines, number)
        where = f"{path}:{number}"
        if name is None:
            raise BadUsage(f"{where}: a '# dimfix:' pragma must stand right above a class or def")
        found.append(_pragma(match.group(1), os.path.abspath(path), name, where))
    return found


# -- helpers ----------------------------------------------------------------------------------


def _definition_after(lines: List[str], number: int) -> Optional[str]:
    for line in lines[number:]:
        stripped = line.strip()
        if stripped.startswith("@") or stripped.startswith("#"):
            continue  # decorators and comments may sit between
        if line[:1].isspace():
            return None  # only top-level classes and functions are models
        match = DEFINITION.match(stripped)
        return match.group(1) if match else None
    return None


def _pragma(body: str, path: str, name: str, where: str) -> ModelSpec:
    entry: Dict[str, object] = {}
    init: Dict[str, object] = {}
    for item in body.split():
        key, eq, value = item.partition("=")
        if not eq or not value:
            raise BadUsage(f"{where}: pragma item {item!r} must be KEY=VALUE")
        if key.startswith("init."):
            init.update(_parse(lambda: parse_init([f"{key[5:]}={value}"]), where, key))
        elif key == "input":
            entry["input"] = value.split(",")
        elif key in MODEL_KEYS - {"target", "input", "init"}:
            entry[key] = value
        else:
            known = ", ".join(sorted(MODEL_KEYS - {"target", "init"}) + ["init.NAME"])
            raise BadUsage(f"{where}: unknown pragma key {key!r} (known: {known})")
    if "num-classes" in entry:
        entry["num-classes"] = _parse(lambda: int(entry["num-classes"]), where, "num-classes")
    spec = _spec(entry, os.path.dirname(path), path, name, where)
    return replace(spec, init={**spec.init, **init})


def _spec(entry: Mapping[str, object], root: str, path: str, name: str, where: str) -> ModelSpec:
    inputs = entry.get("input", [])
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list):
        raise BadUsage(f"{where}: 'input' must be a list of shapes, e.g. [\"1x3x32x32\"]")
    parsed = tuple(_parse(lambda s=s: parse_input(str(s)), where, "input") for s in inputs)
    init = entry.get("init", {})
    if not isinstance(init, dict):
        raise BadUsage(f"{where}: 'init' must be a table, e.g. init = {{ num_classes = 10 }}")
    for key, value in init.items():
        try:
            ast.literal_eval(repr(value))
        except (ValueError, SyntaxError):
            raise BadUsage(f"{where}: init.{key} must be a literal") from None
    num_classes = entry.get("num-classes")
    if num_classes is not None and (type(num_classes) is not int or num_classes < 1):
        raise BadUsage(f"{where}: 'num-classes' must be a whole number of at least 1")
    output = entry.get("output")
    max_memory = entry.get("max-memory")
    if max_memory is not None:  # checked here, where the file and line are known
        _limit(lambda: parse_size(str(max_memory), "max-memory"), where)
    return ModelSpec(path, name, parsed, dict(init), num_classes,
                     str(output) if output is not None else None,
                     str(max_memory) if max_memory is not None else None)


def _known(table: Mapping[str, object], keys, where: str) -> None:
    for key in table:
        if key not in keys:
            raise BadUsage(f"{where}: unknown key {key!r} (known: {', '.join(sorted(keys))})")


def _limit(fn, where: str):
    """A limit's own message (``timeout nan: must be ...``), named where it is written."""
    try:
        return fn()
    except BadUsage as e:
        raise BadUsage(f"{where}: {e}") from None


def _parse(fn, where: str, key: str):
    try:
        return fn()
    except BadUsage as e:
        raise BadUsage(f"{where}: {key}: {e}") from None
    except ValueError as e:
        raise BadUsage(f"{where}: {key}: {e}") from None
