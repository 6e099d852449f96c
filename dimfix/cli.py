"""``dimfix PATH::NAME --input SHAPE ...``: a thin layer over dimfix.api."""

from __future__ import annotations

import os
import re
import sys
import traceback
from typing import Optional, Sequence

import click

from dimfix import __version__
from dimfix.errors import BadUsage, DimfixError
from dimfix.records import Options
from dimfix.target import parse_init, parse_input, parse_target

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.I)
_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
          "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("target", metavar="PATH::NAME")
@click.option("--input", "inputs", multiple=True, metavar="SHAPE",
              help="Sample input for one forward argument, e.g. 1x3x32x32, long:2x12 "
                   "or image=1x3x224x224. Repeat for each argument.")
@click.option("--num-classes", type=int, metavar="N",
              help="The model's output must have N classes; fix the head if not.")
@click.option("--init", "init", multiple=True, metavar="KEY=VALUE",
              help="Keyword for the class or factory; VALUE is a Python literal.")
@click.option("--dry-run", is_flag=True, help="Print the diff; write nothing.")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if a fix is pending.")
@click.option("--no-format", is_flag=True, help="Do not run black on the changed lines.")
@click.option("--max-memory", metavar="SIZE",
              help="Memory a CPU trace may use, e.g. 4GiB (default: a quarter of RAM).")
@click.option("--color/--no-color", default=None, help="Colour the diff (default: on a tty).")
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks and notes.")
@click.version_option(__version__, "--version", prog_name="dimfix")
def main(target: str, inputs: Sequence[str], num_classes: Optional[int], init: Sequence[str],
         dry_run: bool, check: bool, no_format: bool, max_memory: Optional[str],
         color: Optional[bool], verbose: bool) -> None:
    """Repair PyTorch layer sizes in source code.

    Traces the model NAME (an nn.Module subclass or a factory) in PATH on the
    sample inputs, rewrites every constructor argument whose size disagrees with
    what arrives, verifies the result by tracing it again, and prints a diff.

    Exit codes: 0 nothing to fix or all fixed; 1 fixes pending under --check,
    or a mismatch that cannot be fixed; 2 bad input or a model that fails for
    another reason (nothing is written).
    """
    from dimfix.api import fix_file, write_result
    from dimfix.report import Report, colorize, unified_diff

    report = Report(check=check, dry_run=dry_run)
    try:
        options = _options(target, inputs, num_classes, init, max_memory, not no_format)
        path = parse_target(target)[0]
        result = fix_file(path, options)
    except DimfixError as e:
        _fail(e, verbose)
    report.done(result)
    if verbose:
        click.echo(f"{result.path}: traced on {result.device}", err=True)
        for note in result.notes:
            click.echo(f"{result.path}: note: {note}", err=True)
    if result.changed and not check:
        diff = unified_diff(result)
        use_color = color if color is not None else (sys.stdout.isatty() and "NO_COLOR" not in os.environ)
        click.echo(colorize(diff) if use_color else diff, nl=False)
    for edit in result.edits:
        click.echo(edit.reason, err=True)
    for item in result.unfixable:
        where = f"{item.path}:{item.line}:{item.col}" if item.line else item.path
        click.echo(f"{where}: cannot fix: {item.reason}", err=True)
    if result.changed and not (check or dry_run):
        try:
            write_result(result)
        except DimfixError as e:
            _fail(e, verbose)
    click.echo(report.summary(result.path), err=True)
    sys.exit(report.return_code)


def _options(target, inputs, num_classes, init, max_memory, fmt) -> Options:
    path, name = parse_target(target)
    if not inputs:
        raise BadUsage("give a sample input with --input SHAPE, e.g. --input 1x3x32x32")
    if num_classes is not None and num_classes < 1:
        raise BadUsage(f"--num-classes must be at least 1, got {num_classes}")
    return Options(
        name=name,
        inputs=tuple(parse_input(i) for i in inputs),
        init=parse_init(init),
        num_classes=num_classes,
        max_memory=_parse_size(max_memory) if max_memory else None,
        format=fmt,
    )


def _parse_size(text: str) -> int:
    match = _SIZE.match(text)
    unit = (match.group(2) or "").lower().rstrip("b") if match else None
    if not match or unit not in _UNITS:
        raise BadUsage(f"--max-memory {text!r}: write a size like 4GiB or 512MB")
    return int(float(match.group(1)) * _UNITS[unit])


def _fail(e: DimfixError, verbose: bool):
    if verbose and e.__cause__ is not None:
        traceback.print_exception(e.__cause__, file=sys.stderr)
    click.echo(f"dimfix: error: {e}", err=True)
    sys.exit(e.exit_code)


def run(argv: Optional[Sequence[str]] = None) -> None:
    """Entry point: click's usage errors become one line and exit 2."""
    try:
        main.main(args=argv, prog_name="dimfix", standalone_mode=False)
    except click.exceptions.UsageError as e:
        click.echo(f"dimfix: error: {e.format_message()}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("dimfix: interrupted; nothing written", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("dimfix: interrupted; nothing written", err=True)
        sys.exit(130)
