"""``dimfix PATH::NAME --input SHAPE ...`` and ``dimfix PATH...``: a thin layer
over discovery, the runner and the report."""

from __future__ import annotations

import gc
import os
import signal
import sys
from typing import Optional, Sequence

import click

from dimfix import __version__
from dimfix.errors import BadUsage, DimfixError


STDIN = "<stdin>"  # what a "-::NAME" target is parsed as (click reads "-:" as an option)


class _Command(click.Command):
    def parse_args(self, ctx, args):
        args = [STDIN + a[1:] if a.startswith("-::") else a for a in args]
        return super().parse_args(ctx, args)


@click.command(cls=_Command, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("targets", nargs=-1, metavar="PATH::NAME | PATH...")
@click.option("--input", "inputs", multiple=True, metavar="SHAPE",
              help="Sample input for one forward argument, e.g. 1x3x32x32, long:2x12 "
                   "or image=1x3x224x224. Repeat for each argument.")
@click.option("--num-classes", type=int, metavar="N",
              help="The model's output must have N classes; fix the head if not.")
@click.option("--output", metavar="KEY",
              help="Which output holds the classes when the model returns a dict or "
                   "tuple: a key or an index (default: 'logits', else the first tensor).")
@click.option("--init", "init", multiple=True, metavar="KEY=VALUE",
              help="Keyword for the class or factory; VALUE is a Python literal.")
@click.option("--unbatched", is_flag=True,
              help="The --input shapes have no batch dimension, on purpose.")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE",
              help="A module global that only a statement dimfix skips would set (the file "
                   "does work at import); VALUE is a Python literal.")
@click.option("--exec-module", is_flag=True,
              help="Execute the whole file, as an import would, not its definitions only.")
@click.option("--dry-run", is_flag=True, help="Print the diff; write nothing.")
@click.option("--diff", is_flag=True, help="Same as --dry-run (black's name).")
@click.option("--check", is_flag=True,
              help="Write nothing; exit 1 if a fix is pending (with --diff, print the diff too).")
@click.option("--no-format", is_flag=True, help="Do not run black on the changed lines.")
@click.option("--max-memory", metavar="SIZE",
              help="Memory a CPU trace may use, e.g. 4GiB (default: a quarter of RAM).")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "lines"]), default="text",
              help="text (diff and reasons), json (one document on stdout), or lines "
                   "(path:line:col: DIM00N message, for editors).")
@click.option("--exclude", multiple=True, metavar="GLOB",
              help="Skip files matching GLOB (relative to the current folder, the "
                   "pyproject.toml folder or the target folder, or a file name).")
@click.option("--force-exclude", is_flag=True,
              help="Apply --exclude and [tool.dimfix] exclude to files named explicitly too "
                   "(as pre-commit names them).")
@click.option("--config", "config_path", metavar="PATH",
              help="Read [tool.dimfix] from this pyproject.toml instead of the nearest one.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), metavar="N",
              help="Worker processes for several files (default: number of cores).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              callback=lambda ctx, param, value: _seconds(value),
              help="Give up on a model after this long (default: 60).")
@click.option("--stdin-filename", metavar="PATH",
              help="Read the source from stdin as if it were PATH; write the fixed source "
                   "to stdout. The target '-' (or '-::NAME') reads stdin too.")
@click.option("--color/--no-color", default=None, help="Colour the diff (default: on a tty).")
@click.option("--shapes", is_flag=True,
              help="Print each model's layer table (declared sizes, shapes in and out, "
                   "status); write nothing. --format text or json.")
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks and notes.")
@click.option("-q", "--quiet", is_flag=True,
              help="Print only errors, cannot-fix lines and the diffs --diff asks for.")
@click.version_option(__version__, "--version", prog_name="dimfix")
def main(targets: Sequence[str], inputs, num_classes, output, init, unbatched, sets,
         exec_module, dry_run, diff, check, no_format, max_memory, fmt, exclude, force_exclude,
         config_path, jobs, timeout, stdin_filename, color, shapes, verbose, quiet) -> None:
    """Repair PyTorch layer sizes in source code.

    Traces each model on its sample inputs, rewrites every constructor argument
    whose size disagrees with what arrives, verifies the result by tracing it
    again, and prints a diff. A target is PATH::NAME (an nn.Module subclass or
    factory), or a file or folder whose models are marked with a
    '# dimfix: input=...' pragma or listed in [tool.dimfix] of pyproject.toml.

    Exit codes: 0 nothing to fix or all fixed; 1 fixes pending under --check,
    or a mismatch that cannot be fixed; 2 bad input or a model that fails for
    another reason (nothing is written for it).
    """
    from dimfix.report import Format, Mode, Report

    # Editor mode: stdout gets a whole buffer, the one that came in if nothing
    # else, whatever fails (but --dry-run and --diff print a diff or nothing).
    buffer = _Buffer(bool(stdin_filename) and not (dry_run or diff))
    try:
        targets, stdin_filename = _stdin_target(targets, stdin_filename)
    except DimfixError as e:
        _fail(e, verbose, buffer)
    mode = Mode.CHECK if check else Mode.DRY_RUN if dry_run or diff else Mode.WRITE
    if color is None:
        color = sys.stdout.isatty() and "NO_COLOR" not in os.environ
    single = len(targets) == 1 and "::" in targets[0] and not stdin_filename
    report = Report(mode, Format(fmt), color, verbose, single, quiet=quiet,
                    buffer_on_stdout=bool(stdin_filename), diff=check and (diff or dry_run))

    def limits(config):
        from dimfix.steps import Limits
        from dimfix.target import parse_size

        memory = max_memory or (config.defaults.max_memory if config else None)
        return Limits(timeout or (config.timeout if config else None) or 60.0,
                      parse_size(memory) if memory else None)

    try:
        cli = _cli_spec(inputs, num_classes, output, init, max_memory)
        explicit = _explicit_config(config_path)
        loading = _loading(sets, exec_module, unbatched)
        if shapes and (stdin_filename or fmt == "lines"):
            raise BadUsage("--shapes takes a target (not --stdin-filename) and --format text or json")
        if stdin_filename:
            sys.exit(_stdin(stdin_filename, targets, cli, report, limits, not no_format,
                            explicit, loading, buffer))
        jobs_list, config = _jobs(targets, cli, exclude, not no_format, force_exclude, explicit)
        jobs_list = [loading(job) for job in jobs_list]
        _check_inputs(jobs_list)
    except DimfixError as e:
        _fail(e, verbose, buffer)
    if fmt == "text" and not quiet:
        _say_inputs(jobs_list)
    workers = jobs or (config.jobs if config else None) or os.cpu_count() or 1
    if shapes:
        from dimfix.table import run_shapes

        sys.exit(run_shapes(jobs_list, limits(config), fmt, color, verbose, workers))
    sys.exit(_run(jobs_list, workers, limits(config), report, mode))


def _seconds(value):
    """nan and inf pass click's FloatRange: a time limit is a positive finite number."""
    from dimfix.target import parse_seconds

    try:
        return None if value is None else parse_seconds(value)
    except BadUsage:
        raise click.BadParameter(f"{value} is not a positive finite number of seconds") from None


def _stdin_target(targets, stdin_filename):
    """``-`` (or ``-::NAME``) is stdin, as black reads it: the buffer is traced as
    the file --stdin-filename names, else as stdin.py in the current folder."""
    if stdin_filename and "::" in stdin_filename:
        path, _, name = stdin_filename.rpartition("::")
        raise BadUsage(f"--stdin-filename takes a path; name the model on the target: "
                       f"dimfix -::{name} --stdin-filename {path}")
    dashes = [t for t in targets if t == "-" or t.startswith(STDIN + "::")]
    if not dashes:
        return targets, stdin_filename
    if len(targets) > 1:
        raise BadUsage("'-' (stdin) must be the only target")
    filename = stdin_filename or "stdin.py"
    name = dashes[0].partition("::")[2]
    return ([f"{filename}::{name}"] if name else []), filename


def _explicit_config(path):
    from dimfix.config import explicit_config

    return explicit_config(path) if path else None


def _jobs(targets, cli, exclude, fmt, force_exclude=False, config=None):
    from dimfix.discover import discover

    if not targets:
        raise BadUsage("give a target: PATH::NAME --input SHAPE, or files and folders "
                       "whose models have a '# dimfix:' pragma")
    jobs_list, config = discover(targets, cli, exclude, fmt, force_exclude, config)
    if not jobs_list and all(os.path.isfile(t) for t in targets):
        # Files named one by one (by pre-commit, with --force-exclude) that
        # declare no model: nothing to do, as black and ruff say of files they
        # skip. One file a user names that defines a model means "check this".
        if len(targets) == 1 and not force_exclude:
            _undeclared(targets[0])
        return jobs_list, config
    if not jobs_list:
        where = ", ".join(targets)
        raise BadUsage(f"{where}: no models found; name one as PATH::NAME or mark it with a "
                       "'# dimfix: input=SHAPE' pragma above its class or def")
    if len(targets) == 1 and "::" in targets[0] and len(jobs_list) == 1 and jobs_list[0].problems:
        from dimfix.discover import default_unused

        raise BadUsage("give a sample input with --input SHAPE, e.g. --input 1x3x32x32"
                       + default_unused(config))
    return jobs_list, config


def _undeclared(path):
    """Refuse a lone file that defines nn.Module subclasses but declares none,
    saying how to name one and give its input (nothing to say of a file
    without models, or one that does not parse: its run says why)."""
    from dimfix.candidates import model_classes
    from dimfix.source import display_path

    if not path.endswith(".py"):
        return
    try:
        with open(path, "rb") as f:
            names = model_classes(f.read().decode("utf-8", errors="replace"))
    except (OSError, SyntaxError, ValueError):
        return
    if names:
        shown = display_path(path)
        which = names[0] if len(names) == 1 else "NAME"
        defines = "" if len(names) == 1 else f" (it defines {', '.join(names)})"
        raise BadUsage(f"{shown}: no model declared; name it and give a sample input: "
                       f"dimfix {shown}::{which} --input SHAPE{defines}, or mark it with a "
                       "'# dimfix: input=SHAPE' pragma above its class")


def _run(jobs_list, workers, limits, report, mode) -> int:
    from dimfix.api import session_for, write_changes
    from dimfix.driver import run_many
    from dimfix.report import Format, Mode, file_diff

    total = sum(len(j.models) + len(j.problems) for j in jobs_list)
    progress = _Progress(total if report.fmt is Format.TEXT else 0)
    for fix in run_many([session_for(job) for job in jobs_list], workers, limits):
        progress.clear()
        diff = "".join(file_diff(src, text) for src, text in fix.changes) or None
        if fix.changed and mode is Mode.WRITE:
            try:
                write_changes(fix.changes)
            except DimfixError as e:
                fix = fix.refused(e.problem())
                diff = None
        report.add(fix, diff)
        progress.step(len(fix.models))
    progress.clear()
    return report.finish()


class _Buffer:
    """Editor mode's stdin, read once; ``echo``: what came in goes back out
    when dimfix fails before it wrote a buffer."""

    def __init__(self, echo: bool) -> None:
        self.echo = echo
        self.raw: Optional[bytes] = None

    def read(self) -> bytes:
        if self.raw is None:
            self.raw = sys.stdin.buffer.read()
        return self.raw


def _stdin(filename, targets, cli, report, limits, fmt, config=None, loading=None,
           buffer: Optional[_Buffer] = None) -> int:
    """Editor mode: source on stdin, fixed source on stdout, messages on stderr.

    Whatever happens to the model, stdout gets a whole buffer: the fixed one,
    or the one that came in."""
    from dimfix.api import session_for
    from dimfix.discover import discover_source
    from dimfix.driver import run
    from dimfix.report import Mode, colorize, file_diff
    from dimfix.source import decode_source

    raw = (buffer or _Buffer(False)).read()
    try:
        names = [t.rpartition("::")[2] for t in targets if "::" in t]
        source = decode_source(filename, raw)
        job, config = discover_source(source, names, cli, fmt, config)
        job = loading(job) if loading else job
        _check_inputs([job])
        if report.fmt.value == "text" and not report.quiet:
            _say_inputs([job])
        fix = run(session_for(job), limits(config))
    except BaseException:
        if report.mode is not Mode.DRY_RUN and not report.diff:  # --diff: no diff
            _echo_bytes(raw)
        raise
    fixed = fix.changes[0][1] if fix.changed else None
    if report.mode is Mode.DRY_RUN or report.diff:  # --diff: the diff alone, empty if clean
        if fixed is not None:
            diff = file_diff(source, fixed)
            click.echo(colorize(diff) if report.color else diff, nl=False, color=report.color)
    else:
        _echo_bytes(source.encode(fixed) if fixed is not None and report.mode is Mode.WRITE
                    else raw)
    report.add(fix, None)
    return report.finish()


def _say_inputs(jobs_list) -> None:
    """Where each input came from, when not from --input: a config default
    applied where it was not meant to be is seen before anything is written."""
    for job in jobs_list:
        inputs = {o.name: o.inputs for o in job.models}
        for name, where in job.inputs_from:
            shown = " ".join(map(str, inputs.get(name, ())))
            click.echo(f"{job.display}::{name}: input {shown} from {where}", err=True)


def _echo_bytes(data: bytes) -> None:
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.flush()


def _check_inputs(jobs_list) -> None:
    from dimfix.api import check_inputs

    for job in jobs_list:
        for options in job.models:
            check_inputs(options)


def _loading(sets, exec_module, unbatched=False):
    """--set, --exec-module and --unbatched, applied to every model of a job."""
    from dataclasses import replace

    from dimfix.target import parse_init

    values = parse_init(sets, "set")
    return lambda job: replace(job, models=tuple(
        replace(o, sets=values, exec_module=exec_module, unbatched=unbatched or o.unbatched)
        for o in job.models))


def _cli_spec(inputs, num_classes, output, init, max_memory):
    from dimfix.config import ModelSpec
    from dimfix.target import MAX_DIM, parse_init, parse_input, parse_size

    if num_classes is not None and num_classes < 1:
        raise BadUsage(f"--num-classes must be at least 1, got {num_classes}")
    if num_classes is not None and num_classes > MAX_DIM:
        raise BadUsage(f"--num-classes {num_classes} is too large (at most {MAX_DIM})")
    if max_memory:
        parse_size(max_memory)
    return ModelSpec(
        path="", name="",
        inputs=tuple(parse_input(i) for i in inputs),
        init=parse_init(init),
        num_classes=num_classes,
        output=output,
        max_memory=max_memory,
    )


class _Progress:
    """``[12/44]`` on stderr while a batch runs, only on a terminal."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.shown = total > 3 and sys.stderr.isatty()

    def step(self, n: int) -> None:
        self.done += n
        if self.shown:
            click.echo(f"\r[{self.done}/{self.total}] models", err=True, nl=False)

    def clear(self) -> None:
        if self.shown:
            click.echo("\r\x1b[K", err=True, nl=False)


def _fail(e: DimfixError, verbose: bool, buffer: Optional[_Buffer] = None):
    from dimfix.report import problem_line

    if buffer is not None and buffer.echo and buffer.raw is None:
        _echo_bytes(buffer.read())  # failed before the buffer was read: it goes back
    problem = e.problem()
    if verbose and problem.detail:
        click.echo(problem.detail.rstrip(), err=True)
    click.echo(f"dimfix: error: {problem_line(problem, _notebook_of(problem))}", err=True)
    sys.exit(e.exit_code)


def _notebook_of(problem):
    """{path: the notebook} when the error is placed in one, so that its place is
    said as the cell and the line in it (as the report says it)."""
    where = problem.where
    if where is None or not where.path.endswith(".ipynb"):
        return {}
    from dimfix.source import read_source

    try:
        return {where.path: read_source(where.path)}
    except DimfixError:
        return {}


def run(argv: Optional[Sequence[str]] = None) -> None:
    """Entry point: click's usage errors become one line and exit 2; SIGINT,
    SIGTERM and SIGHUP end the children and say what was written (exit 130,
    143, 129); stdout that closes or fills up is no traceback."""
    from dimfix.worker import become_subreaper, own_torch_cache, start_spare

    # A run is short and builds few cycles; the collector walking torch's
    # objects costs 0.2-0.5 s (bench/latency.py).
    gc.disable()
    for sig in _STOPPING:
        signal.signal(sig, _stopping)
    become_subreaper()  # what a model's process leaves behind comes back to us
    own_torch_cache()
    start_spare()  # a worker that imports torch while the arguments are read
    stdout = _Guarded.install()
    try:
        main.main(args=argv, prog_name="dimfix", standalone_mode=False)
    except SystemExit as e:
        # Nothing is left to do: spare the collector torch's objects at exit
        # (about 0.35 s, measured by bench/latency.py).
        gc.freeze()
        sys.exit(stdout.settle(e.code))
    except click.exceptions.UsageError as e:
        click.echo(f"dimfix: error: {e.format_message()}", err=True)
        sys.exit(2)
    except (_Stopped, click.exceptions.Abort, KeyboardInterrupt) as e:
        from dimfix.driver import WORKERS
        from dimfix.isolate import kill_all
        from dimfix.source import WRITTEN

        kill_all()
        WORKERS.close()
        if WRITTEN:
            click.echo(f"dimfix: interrupted; written before that: {', '.join(WRITTEN)}",
                       err=True)
        else:
            click.echo("dimfix: interrupted; nothing written", err=True)
        sys.exit(128 + e.signum if isinstance(e, _Stopped) else 130)
    finally:
        # The run is over and has said so; a signal now would only put a
        # traceback from torch's exit-time finalizers under the summary.
        for sig in _STOPPING:
            signal.signal(sig, signal.SIG_IGN)


_STOPPING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Stopped(BaseException):
    """A signal that ends the run (Ctrl-C, a kill, a closed terminal), raised
    where the parent is so that children and temp files go. Not a
    KeyboardInterrupt: click would turn that into its own Abort."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stopping(signum, frame):
    raise _Stopped(signum)


class _Guarded:
    """sys.stdout whose failures do not end the run: a closed pipe (``dimfix
    ... | head``) drops what is left to print and changes nothing else; a
    full device or an I/O error is said once, on stderr, and exits 2."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.error: Optional[OSError] = None

    @classmethod
    def install(cls) -> "_Guarded":
        guard = cls(sys.stdout)
        sys.stdout = _GuardedText(guard)
        return guard

    def attempt(self, action, *args):
        if self.error is not None:
            return None
        try:
            return action(*args)
        except OSError as e:
            self.error = e
            # Nothing more reaches the real stdout, not even the interpreter's
            # last flush (which would print a BrokenPipeError at exit).
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, self.stream.fileno())
            except (OSError, ValueError):
                pass
            return None

    def settle(self, code):
        """The exit code, once stdout's fate is known."""
        self.attempt(self.stream.flush)
        if self.error is None or isinstance(self.error, BrokenPipeError):
            return code
        click.echo(f"dimfix: error: cannot write to stdout: {self.error.strerror}", err=True)
        return max(code if isinstance(code, int) else 0, 2)


class _GuardedText:
    """The text stream click and print write through (with its binary buffer)."""

    def __init__(self, guard: _Guarded) -> None:
        self._guard = guard
        self.buffer = _GuardedBinary(guard)

    def write(self, text):
        return self._guard.attempt(self._guard.stream.write, text)

    def flush(self):
        return self._guard.attempt(self._guard.stream.flush)

    def __getattr__(self, name):
        return getattr(self._guard.stream, name)


class _GuardedBinary:
    def __init__(self, guard: _Guarded) -> None:
        self._guard = guard

    def write(self, data):
        return self._guard.attempt(self._guard.stream.buffer.write, data)

    def flush(self):
        return self._guard.attempt(self._guard.stream.buffer.flush)

    def __getattr__(self, name):
        return getattr(self._guard.stream.buffer, name)
