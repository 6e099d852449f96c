"""The search (issue 23): each weight of dimfix/search/cost.py decides the
fixture its comment names, -v lists the candidates weighed, and the driver
verifies alternatives in cost order."""

import shlex

import pytest

from conftest import FIXTURES, copy_case

# (weight, fixture, the candidate it puts first, a value of the weight that does not)
WEIGHTS = [
    ("NAMED", "scope_param_name", "`64` -> `n_mels`", 0.0),
    ("SWAP", "origin_kwargs_dict_built", "`100` -> `96`", 0.0),
    ("DROP", "input_size_plus_10", "`input_size + 10` -> `input_size`", 9.0),
    ("STRUCTURE", "origin_shared_constant_one_wrong", "`HIDDEN` -> `HIDDEN * 2`", 5.0),
    ("FORM", "family_two_input_fusion", "`64 + 16` -> `32 + 16`", 0.0),
    ("PATCH", "head_shared_class_constant", "`10` -> `100`", 1.0),
    ("UNCERTAIN", "probe_own_parameter", "`patch_size` -> `seq_length`", 0.0),
    ("AGREES", "origin_dcgan_img_size", "`28` -> `32`", 0.0),
    ("IDENTITY", "cuda_if_available", "`dim * 2` -> `dim`", 0.0),
    ("ODD", "scope_global_dcgan_nc", "`ngpu` -> `nc`", 0.0),
    ("RENAMED", "scope_reads_other_name", "`max_len` -> `embedding_dim`", 0.0),
    ("RENAMED", "scope_name_of_maker_embedding", "`seq_len` -> `emb_dim`", 0.0),
    ("NAME_FOR_LITERAL", "scope_config_field", "`768` -> `config.hidden_size`", 2.5),
    ("MAKER", "swap_maker_expression_over_name", "`d_v` -> `n_head * d_v`", -0.2),
    ("AGREES", "literal_sum_term_agrees", "`128 + 32` -> `128 + 64`", 0.0),
    ("AGREES", "structure_cat_term_default", "`5` -> `4`", 0.0),
    ("EXPONENT", "table_vit_image_size", "`32` -> `64`", 0.0),
    ("COUNTS", "table_vit_image_size", "`32` -> `64`", 0.0),
    ("AGREES", "origin_config_dict_entry", "`96` -> `64`", 0.0),
    ("LAYOUT", "layout_channels_last", None, 0.0),
    ("OUTVOTED", "producer_tutorial_pasted_block", "`32` -> `64`", 0.0),
]


def _fix(case, tmp_path):
    """fix_file on a copy of fixtures/<case>, with the case's CLI arguments."""
    from dimfix.api import fix_file

    words = shlex.split((FIXTURES / case / "args").read_text())
    target, rest = words[0], words[1:]
    given = lambda flag: [rest[i + 1] for i, w in enumerate(rest) if w == flag]  # noqa: E731
    options = {"init": given("--init")}
    if given("--num-classes"):
        options["num_classes"] = int(given("--num-classes")[0])
    folder = copy_case(case, tmp_path)
    path, name = target.split("::")
    return fix_file(str(folder / path), given("--input"), name=name, **options)


def _first(case, tmp_path):
    """The cheapest candidate weighed for the case's first fix, or None when
    the weight makes refusing cheaper than every candidate."""
    result = _fix(case, tmp_path)
    return result.edits[0].weighed[0].code if result.edits else None


_AS_SET = {}  # case -> its first candidate with every weight as set


def _first_as_set(case, tmp_path):
    """``_first`` with the weights untouched, run once per case in this process
    (EXPONENT and COUNTS both decide table_vit_image_size)."""
    if case not in _AS_SET:
        _AS_SET[case] = _first(case, tmp_path)
    return _AS_SET[case]


@pytest.mark.parametrize("weight, case, first, other", WEIGHTS, ids=[w[0] for w in WEIGHTS])
def test_each_weight_decides_its_case(weight, case, first, other, tmp_path, monkeypatch):
    import dimfix.search.cost as cost

    assert _first_as_set(case, tmp_path / "as set") == first
    monkeypatch.setattr(cost, weight, other)
    assert _first(case, tmp_path / "changed") != first


def test_verbose_lists_the_weighed_candidates_cheapest_first(tmp_path, cli):
    folder = copy_case("origin_shared_constant_one_wrong", tmp_path)
    run = cli(shlex.split((folder / "args").read_text()) + ["-v", "--dry-run"], folder)
    assert run.code == 0, run
    notes = [line for line in run.stderr.splitlines() if "weighed for head in_features" in line]
    assert len(notes) == 1, run.stderr
    shown = notes[0].split("weighed for head in_features: ", 1)[1].split("; ")
    assert shown[0].startswith("`HIDDEN` -> `HIDDEN * 2` 1.5 (fixes 1")
    costs = [float(s.split("` ", 2)[-1].split(" ")[0]) for s in shown]
    assert costs == sorted(costs) and len(costs) >= 2


def test_an_edit_names_its_cost_and_the_new_text_of_the_node_it_edits(tmp_path):
    result = _fix("pooling_product", tmp_path)
    edit = result.edits[0]
    # Only the factors changed, yet the replacement shows the whole new product.
    assert (edit.old_code, edit.new_code) == ("64 * 14 * 14", "64 * 16 * 16")
    assert edit.cost == edit.weighed[0].cost
    assert edit.weighed[0].code == "`64 * 14 * 14` -> `64 * 16 * 16`"


def test_a_default_that_does_not_verify_gives_way_to_the_next_alternative(tmp_path):
    # The default 8 -> 48 fits the layer, but resizes every width derived from
    # it: verification refuses it, and the next alternative (the literal at
    # the call) holds.
    result = _fix("verify_guard_divisor", tmp_path)
    assert [e.new_code for e in result.edits] == ["48"]
    assert result.edits[0].weighed[0].code == "`8` -> `48`"


def test_the_draft_offers_one_alternative_when_the_cheapest_is_certain_else_several(tmp_path):
    from dimfix.draft import draft_step
    from dimfix.isolate import run_isolated
    from dimfix.records import Options
    from dimfix.steps import Limits

    folder = copy_case("three_wrong_layers", tmp_path)
    path = str(folder / "broken.py")
    draft = run_isolated(draft_step, (path, {path: (folder / "broken.py").read_text()},
                                      Options("SmallConvNet", ["2x3x32x32"])), Limits(120)).draft
    assert len(draft.alternatives) == 1 and len(draft.edits) == 3

    # NUM_CLASSES = 100 only verification can judge: the literal at the call
    # follows as the next alternative.
    folder = copy_case("head_shared_class_constant", tmp_path)
    path = str(folder / "broken.py")
    draft = run_isolated(draft_step, (path, {path: (folder / "broken.py").read_text()},
                                      Options("Student", ["2x3x32x32"], num_classes=100)),
                         Limits(120)).draft
    costs = [a.cost for a in draft.alternatives]
    assert len(costs) > 1 and costs == sorted(costs)
    assert [a.edits[0].new_code for a in draft.alternatives[:2]] == ["100", "100"]
    assert [a.edits[0].old_code for a in draft.alternatives[:2]] == ["10", "NUM_CLASSES"]
