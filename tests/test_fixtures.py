"""Fixtures are the spec: run the CLI on each broken.py (or broken.ipynb) and compare bytes."""

import os
import re
import shlex

import pytest

from conftest import FIXTURES, cases, copy_case


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


def _stamp(path):
    st = os.stat(path)
    return path.read_bytes(), st.st_mtime_ns, st.st_mode


def _pairs(case):
    """(file, its expected bytes) for every file the case's fix edits: broken.py
    (expected.py), and each other project file NAME.py with a NAME.expected."""
    pairs = [(_broken(case), _expected(case))]
    for other in sorted((FIXTURES / case).glob("*.expected")):
        pairs.append((other.stem + ".py", other.read_bytes()))
    return pairs


def _stamps(folder, case):
    return [_stamp(folder / name) for name, _ in _pairs(case)]


@pytest.mark.parametrize("case", cases())
def test_fix_matches_expected(case, tmp_path, cli):
    folder = copy_case(case, tmp_path)
    run = cli(_args(case), folder)
    assert run.code == _exit(case), run
    for name, expected in _pairs(case):
        assert (folder / name).read_bytes() == expected, (name, run)
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("case", cases())
def test_second_run_changes_nothing(case, tmp_path, cli):
    folder = copy_case(case, tmp_path)
    for name, expected in _pairs(case):
        (folder / name).write_bytes(expected)
    before = _stamps(folder, case)
    run = cli(_args(case), folder)
    assert run.code == _exit(case), run
    assert _stamps(folder, case) == before
    assert run.stdout == ""


@pytest.mark.parametrize("case", cases())
def test_dry_run_and_check_touch_nothing(case, tmp_path, cli):
    folder = copy_case(case, tmp_path)
    before = _stamps(folder, case)
    pending = any(expected != stamp[0] for (_, expected), stamp in zip(_pairs(case), before))

    dry = cli(_args(case) + ["--dry-run"], folder)
    assert _stamps(folder, case) == before
    assert dry.code == _exit(case), dry
    assert (dry.stdout != "") == pending

    check = cli(_args(case) + ["--check"], folder)
    assert _stamps(folder, case) == before
    assert check.code == (1 if pending else _exit(case)), check
    assert check.stdout == ""


@pytest.mark.parametrize("case", [c for c in cases() if _exit(c) == 0])
def test_check_passes_after_fix(case, tmp_path, cli):
    folder = copy_case(case, tmp_path)
    assert cli(_args(case), folder).code == 0
    assert cli(_args(case) + ["--check"], folder).code == 0


@pytest.mark.parametrize("case", cases())
def test_one_reason_line_per_fix(case, tmp_path, cli):
    folder = copy_case(case, tmp_path)
    run = cli(_args(case) + ["--dry-run"], folder)
    before = (FIXTURES / case / _broken(case)).read_text(encoding="utf-8").splitlines()
    after = _expected(case).decode("utf-8").splitlines()
    changed = sum(a != b for a, b in zip(before, after))
    reasons = [line for line in run.stderr.splitlines()
               if re.match(r"broken\.(py|ipynb:cell \d+):\d+:\d+: ", line)]
    fixes = [line for line in reasons if "cannot fix" not in line]
    # One reason line per fixed argument; a changed line may hold several.
    assert len(fixes) >= changed, run
    for line in fixes:
        assert " -> " in line, line


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
