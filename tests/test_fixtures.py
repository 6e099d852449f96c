"""Fixtures are the spec: run dimfix on each broken.py (or broken.ipynb) and compare bytes.

Each case's runs are made once and shared by the assertions on them
(``Runs``): the CLI in write mode on one copy, ``--check`` again on the fixed
copy; and on a second copy, one project served by one warm worker as in an
editor or a batch, the runs that must write nothing: the library API, the
language server's check and ``--shapes``, each asserted to leave the case's
files as they were.

The parity tests require the four front ends to find the same edits and the
same refusals. The language server's typed result is the reference (it speaks
to the command line, as the CLI does): the CLI's write run must have written
its texts byte for byte and printed the reason lines that dimfix's own text
report makes of it, in order; the API must find the same fixes, refusals and
failures (it names options its own way, so its reason lines differ), and
``--shapes`` mark them.
``reasons`` (when a case has the file) holds the exact reason lines.

``--check --format json`` runs on a sample of the cases (``_CHECKED``: every
fourth, and each case with an exit code of its own): it is the write run's
pipeline in another mode, and each run of a case is a whole pipeline, a
fifth of the case's time. (``--dry-run`` prints the same JSON document with
another exit code, and ``--check`` in text prints the write run's reason
lines without its diff; both are tested on their own in test_everyday,
test_properties and test_rough_edges.)
"""

import asyncio
import contextlib
import io
import json
import os
import re
import shlex
import shutil
from pathlib import Path

import pytest

from conftest import FIXTURES, Run, cases

pytestmark = pytest.mark.fixtures


def _args(case):
    return shlex.split((FIXTURES / case / "args").read_text())


def _exit(case):
    path = FIXTURES / case / "exit"
    return int(path.read_text()) if path.exists() else 0


def _broken(case):
    """``broken.py``, or ``broken.ipynb`` for a notebook case."""
    return "broken.ipynb" if (FIXTURES / case / "broken.ipynb").exists() else "broken.py"


def _expected(case):
    return (FIXTURES / case / _broken(case).replace("broken", "expected")).read_bytes()


def _pairs(case):
    """(file, its expected bytes) for every file the case's fix edits: broken.py
    (expected.py), and each other project file NAME.py with a NAME.expected."""
    pairs = [(_broken(case), _expected(case))]
    for other in sorted((FIXTURES / case).glob("*.expected")):
        pairs.append((other.stem + ".py", other.read_bytes()))
    return pairs


def _stamp(path):
    st = os.stat(path)
    return path.read_bytes(), st.st_mtime_ns, st.st_mode


def _stamps(folder, case):
    return [_stamp(folder / name) for name, _ in _pairs(case)]


def _exits_on_its_own(case):
    return (FIXTURES / case / "exit").exists()


# The cases --check --format json runs on (see the module's docstring).
_CHECKED = frozenset(cases()[::4]) | {c for c in cases() if _exits_on_its_own(c)}


def _pending(case):
    return any(expected != (FIXTURES / case / name).read_bytes() for name, expected in _pairs(case))


def _reasons(stderr):
    """The reason lines a run printed: ``broken.py:12:32: ...`` (or a cell's)."""
    return [line for line in stderr.splitlines()
            if re.match(r"[\w./-]+\.(py|ipynb:cell \d+):\d+:\d+: ", line)]


class Runs:
    """Every run of one case, made once on first use."""

    def __init__(self, case, root: Path, invoke):
        self.case, self.root, self.invoke = case, root, invoke
        self.args = _args(case)
        self._made = {}

    def _copy(self, name):
        dest = self.root / name / self.case
        shutil.copytree(FIXTURES / self.case, dest, ignore=shutil.ignore_patterns("__pycache__"))
        return dest

    def _once(self, key, make):
        if key not in self._made:
            self._made[key] = make()
        return self._made[key]

    @property
    def write(self):
        def make():
            folder = self._copy("write")
            return folder, self.invoke(self.args, folder)
        return self._once("write", make)

    def _untouched(self, run):
        """``run(folder)`` on the copy that nothing may write: (its result,
        the case's files before, and after)."""
        folder = self._once("readonly", lambda: self._copy("readonly"))
        before = _stamps(folder, self.case)
        result = run(folder)
        return result, before, _stamps(folder, self.case)

    @property
    def check_json(self):
        def make():
            args = self.args + ["--check", "--format", "json"]
            return self._untouched(lambda folder: self.invoke(args, folder))
        return self._once("check", make)

    @property
    def check_fixed(self):
        def make():
            folder, _ = self.write
            before = _stamps(folder, self.case)
            return before, self.invoke(self.args + ["--check"], folder)
        return self._once("check_fixed", make)

    @property
    def shapes(self):
        args = ["--shapes", "--format", "json"] + self.args
        return self._once("shapes", lambda: self._untouched(lambda f: self.invoke(args, f)))

    @property
    def api(self):
        return self._once("api", lambda: self._untouched(lambda f: _api(self.args, f)))

    @property
    def lsp(self):
        return self._once("lsp", lambda: self._untouched(lambda f: _lsp(self.args, f)))


_RUNS = {}


def _invoke(args, cwd):
    """dimfix's click command, in-process, in ``cwd``."""
    from click.testing import CliRunner

    from dimfix.cli import main

    old = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    finally:
        os.chdir(old)
    return Run(result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def runs(request, tmp_path_factory):
    case = request.node.callspec.params["case"]
    if case not in _RUNS:
        _RUNS[case] = Runs(case, tmp_path_factory.mktemp(case), _invoke)
    return _RUNS[case]


def _parametrize(select=lambda c: True):
    # Under xdist a case's tests run on one worker (conftest.scope_of).
    return pytest.mark.parametrize("case", [c for c in cases() if select(c)])


# -- the CLI --------------------------------------------------------------------------------


@_parametrize()
def test_fix_matches_expected(case, runs):
    folder, run = runs.write
    assert run.code == _exit(case), run
    for name, expected in _pairs(case):
        assert (folder / name).read_bytes() == expected, (name, run)
    assert "Traceback" not in run.stderr
    assert (run.stdout != "") == _pending(case), run


@_parametrize(lambda c: (FIXTURES / c / "reasons").exists())
def test_reason_lines_are_exactly_the_expected_ones(case, runs):
    _, run = runs.write
    expected = (FIXTURES / case / "reasons").read_text().splitlines()
    assert _reasons(run.stderr) == expected, run


@_parametrize()
def test_one_reason_line_per_fix(case, runs):
    _, run = runs.write
    before = (FIXTURES / case / _broken(case)).read_text(encoding="utf-8").splitlines()
    after = _expected(case).decode("utf-8").splitlines()
    changed = sum(a != b for a, b in zip(before, after))
    fixes = [line for line in _reasons(run.stderr) if "cannot fix" not in line]
    # One reason line per fixed argument; a changed line may hold several.
    assert len(fixes) >= changed, run
    for line in fixes:
        assert " -> " in line, line


@_parametrize(lambda c: c in _CHECKED)
def test_check_touches_nothing_and_reports_what_the_language_server_finds(case, runs):
    check, before, after = runs.check_json
    assert after == before
    assert check.code == (1 if _pending(case) else _exit(case)), check
    assert json.loads(check.stdout)["exit_code"] == check.code
    checked, _, _ = runs.lsp
    assert _cli_found(check) == checked.found


# A case with nothing to write (clean, or refused) has no fixed copy: its
# second run would be its first run again.
@_parametrize(_pending)
def test_second_run_finds_nothing_to_fix(case, runs):
    before, run = runs.check_fixed
    folder, _ = runs.write
    assert run.code == _exit(case), run
    assert _stamps(folder, case) == before
    assert run.stdout == ""


# -- parity: the CLI, the API, the language server and --shapes agree --------------------------


def _cli_found(check):
    """(fixes, refusals, failures) of the CLI's JSON document."""
    doc = json.loads(check.stdout)
    fixes, refusals, failures = set(), set(), set()
    for model in doc["models"]:
        for f in model["fixes"]:
            fixes.add((model["name"], f["layer"], f["argument"], _plain(f["old"]), _plain(f["new"]),
                       f["replacement"]))
        for c in model["cannot_fix"]:
            refusals.add((model["name"], c["layer"], c["argument"], c["reason"]))
        if model["error"]:
            failures.add((model["name"], model["error"]["kind"]))
    return fixes, refusals, failures


def _found(fix):
    """(fixes, refusals, failures) of a FileFix."""
    from dimfix.report import cannot_fix_line

    fixes, refusals, failures = set(), set(), set()
    for model in fix.models:
        for e in model.edits:
            m = e.mismatch
            fixes.add((model.name, m.layer_path, m.arg, _plain(m.declared), _plain(m.observed),
                       e.new_code))
        for u in model.unfixable:
            refusals.add((model.name, u.mismatch.layer_path, u.mismatch.arg, cannot_fix_line(u)))
        if model.problem is not None:
            failures.add((model.name, model.problem.kind.value))
    return fixes, refusals, failures


def _plain(v):
    return tuple(v) if isinstance(v, (list, tuple)) else v


def _spec(args, folder):
    """The CLI's jobs for ``args`` in ``folder``, as the CLI would build them."""
    from dimfix.cli import main

    ctx = main.make_context("dimfix", list(args))
    p = ctx.params
    from dimfix.cli import _cli_spec, _jobs, _loading

    cli = _cli_spec(p["inputs"], p["num_classes"], p["output"], p["init"], p["max_memory"])
    jobs, _ = _jobs(p["targets"], cli, (), not p["no_format"])
    loading = _loading(p["sets"], p["exec_module"], p["unbatched"])
    return [loading(job) for job in jobs]


def _api(args, folder):
    """The library API on the case, as fix_file's caller would write it."""
    from dimfix.api import fix_file
    from dimfix.errors import DimfixError

    cwd = os.getcwd()
    os.chdir(folder)
    try:
        (job,) = _spec(args, folder)
        found = []
        for options in job.models:
            try:
                fix = fix_file(job.path, options, timeout=60)
            except DimfixError as e:
                found.append((set(), set(), {(options.name, e.kind.value)}))
                continue
            found.append(_found(fix))
        return tuple(set().union(*parts) for parts in zip(*found)) if found else (set(),) * 3
    finally:
        os.chdir(cwd)


class _Checked:
    """The language server's check of a case: its FileFix, and what dimfix's
    text report prints of it in write mode, paths shown from the case's folder."""

    def __init__(self, folder: Path, fix):
        from dimfix.report import Report, problem_line

        self.folder, self.fix, self.found = folder, fix, _found(fix)
        self.problems = [problem_line(m.problem, fix.sources) for m in fix.failed]
        said = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(said):
            Report().add(fix)  # the CLI's report: write mode, text
        self.said = said.getvalue()


def _lsp(args, folder):
    """The language server's check (lsp_check.check) on the case."""
    from dimfix.lsp_check import check
    from dimfix.source import read_source
    from dimfix.steps import Limits

    cwd = os.getcwd()
    os.chdir(folder)
    try:
        (job,) = _spec(args, folder)
        checked = asyncio.run(check(read_source(job.path), job, Limits(60)))
        return _Checked(folder, checked.fix)
    finally:
        os.chdir(cwd)


@_parametrize()
def test_the_cli_writes_and_says_what_the_language_server_finds(case, runs):
    """The write run wrote the texts the language server's check verified,
    byte for byte, printed the reason lines dimfix's report makes of that
    check's result, in order, and failed where it failed, saying why."""
    folder, run = runs.write
    checked, before, after = runs.lsp
    assert after == before
    fix = checked.fix
    changed = {os.path.relpath(source.path, checked.folder): source.encode(text)
               for source, text in fix.changes}
    written = {name: (folder / name).read_bytes() for name, _ in _pairs(case)
               if (folder / name).read_bytes() != (FIXTURES / case / name).read_bytes()}
    assert written == changed, run
    assert _reasons(run.stderr) == _reasons(checked.said), run
    for problem in checked.problems:
        assert problem in run.stderr, run
    assert run.code == (2 if fix.failed else 1 if fix.unfixable else 0), run


@_parametrize()
def test_the_api_finds_what_the_language_server_finds(case, runs):
    found, before, after = runs.api
    checked, _, _ = runs.lsp
    assert found == checked.found
    assert after == before


@_parametrize()
def test_the_shape_table_marks_what_the_language_server_fixes(case, runs):
    checked, _, _ = runs.lsp
    fixes, refusals, failures = checked.found
    shapes, before, after = runs.shapes
    assert after == before
    assert shapes.code == (2 if failures else 1 if fixes or refusals else 0), shapes
    doc = json.loads(shapes.stdout)
    fixed, cannot = set(), set()
    for model in doc["models"]:
        assert model["fixes"] == sum(1 for f in fixes if f[0] == model["name"])
        for row in model["rows"]:
            for c in row["changes"]:
                key = (model["name"], row["layer"], c["argument"])
                if row["status"] == "fixed":
                    fixed.add(key)
                elif row["status"] == "cannot-fix":
                    cannot.add(key)
    # Every row the table calls fixed is a fix the others make (a fix the trace
    # never ran through, a view's size, is listed apart from the rows).
    assert fixed <= {f[:3] for f in fixes}
    assert cannot <= {r[:3] for r in refusals}


def test_every_family_has_a_fixture_that_fixes_it():
    """Adding a family means adding a fixture pair that exercises it."""
    from dimfix.families import FAMILIES

    fixed_sources = [
        (FIXTURES / c / _broken(c)).read_text(encoding="utf-8")
        for c in cases()
        if _expected(c) != (FIXTURES / c / _broken(c)).read_bytes()
    ]
    missing = [
        name
        for name, family in FAMILIES.items()
        if not any(f"nn.{cls.__name__}(" in src for src in fixed_sources for cls in family.classes)
    ]
    assert not missing, f"families without a fixture pair: {missing}"
