"""CPU of fixture runs, and of the stages inside their children.

Runs dimfix's command in-process on a copy of each fixture, as
tests/test_fixtures.py does, and sums the parent's and the children's CPU
(rusage, user + sys). Inside each child (forked from this process:
DIMFIX_WORKER=0 unless set) the CPU of the main stages is summed with
time.process_time, no profiler (cProfile's per-call cost distorts libcst's walks).

    python bench/fixture_cpu.py MODE[,MODE] CASE...   MODE: write, dry, check, shapes, all
"""
import os, sys, time, shlex, shutil, tempfile, resource, collections, functools, importlib
from pathlib import Path
os.environ.setdefault("DIMFIX_WORKER", "0")
ROOT = Path(__file__).resolve().parent.parent
mode, cases = sys.argv[1], sys.argv[2:]
from dimfix import isolate
isolate.warm(plan=True, meta=True)
WRAP = [("dimfix.locate", "CallIndex.__init__"), ("dimfix.follow.resolver", "_File.__init__"),
        ("dimfix.search.world", "World.__init__"),
        ("dimfix.formatting", "format_edit"), ("dimfix.trace", "trace_model"),
        ("dimfix.draft", "_import"), ("dimfix.draft", "draft_fix"), ("dimfix.draft", "verify_fix"),
        ("dimfix.draft", "_check_doubled_batch"), ("dimfix.plan", "plan_edits"),
        ("dimfix.definitions", "plan_loading"), ("dimfix.draft", "_alternatives"),
        ("dimfix.shapes", "Recorder.table")]
rd, wr = os.pipe()
acc = collections.Counter()
def wrap(modname, qual):
    mod = importlib.import_module(modname)
    owner, name = (mod, qual) if "." not in qual else (getattr(mod, qual.split(".")[0]), qual.split(".")[1])
    f = getattr(owner, name)
    depth = [0]
    @functools.wraps(f)
    def g(*a, **k):
        t = time.process_time(); depth[0] += 1
        try: return f(*a, **k)
        finally:
            depth[0] -= 1
            if depth[0] == 0: acc[qual] += time.process_time() - t
    setattr(owner, name, g)
for m, q in WRAP:
    try: wrap(m, q)
    except AttributeError as e: print("skip", m, q, e)
orig = isolate._child_main
def child_main(fn, args, *rest):
    name = getattr(fn, "__name__", "fn")
    def wrapped(*a):
        t = time.process_time()
        try: return fn(*a)
        finally:
            acc["step:" + name] += time.process_time() - t
            os.write(wr, (repr(dict(acc)) + "\n").encode())
    return orig(wrapped, args, *rest)
isolate._child_main = child_main
from click.testing import CliRunner
from dimfix.cli import main
MODES = {"write": [], "dry": ["--dry-run", "--format", "json"], "check": ["--check"],
         "shapes": ["--shapes", "--format", "json"]}
tmp = Path(tempfile.mkdtemp())
total = collections.Counter()
def ru():
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime, c.ru_utime + c.ru_stime
P = C = 0
for case in cases:
    args = shlex.split((ROOT / "fixtures" / case / "args").read_text())
    for m in (MODES if mode == "all" else mode.split(",")):
        dest = tmp / m / case
        shutil.copytree(ROOT / "fixtures" / case, dest)
        os.chdir(dest)
        p0, c0 = ru()
        r = CliRunner().invoke(main, (args + MODES[m]) if m != "shapes" else MODES[m] + args)
        p1, c1 = ru(); P += p1 - p0; C += c1 - c0
        print(f"{case:40s} {m:6s} exit {r.exit_code} parent {p1-p0:.2f}s children {c1-c0:.2f}s", flush=True)
os.close(wr)
for line in os.fdopen(rd).read().splitlines():
    total.update(eval(line))
print(f"TOTAL parent {P:.2f} children {C:.2f}")
for k, v in total.most_common(): print(f"  {k:30s} {v:6.2f}")
