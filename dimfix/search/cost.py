"""One cost for each candidate edit: the lower, the likelier it is the edit the
author would make. Every weight is justified by the fixture named beside it
(tests/test_search.py checks each one: change a weight and its case fails).

What an edit writes, over what it replaces, sets the base:

    literal over literal       0     the value changed where it is written
    name over literal          NAME_FOR_LITERAL
    name over name             SWAP
    name over arithmetic       DROP  (``input_size + 10`` -> ``input_size``; also
                               factors of 1 dropped: ``512 * 7 * 7`` -> ``512``)
    arithmetic (the trace's)   STRUCTURE
    literal over arithmetic    FORM  (``64 + 16`` -> ``48``: the form is lost)
    literal over a name        PATCH (the symptom patched at the call)

and the facts of the symbolic check (assess.py) add:

    UNCERTAIN  the check cannot settle it (reads it cannot see, shapes that
               follow, right layers that may follow): verification must judge
    NAMED      a literal where a name in scope, or the trace's structure, says it
    AGREES     a factor that already reads as its dimension of the flattened tensor,
               or a divisor that reads as the input's reduction to it (64 // 8 = 8),
               or a term of a sum that reads as its part of the cat (also where
               a term's name is written: the default of ``--noise-dim``)
    IDENTITY   a literal solved to 1 in ``x * 1``, ``x // 1``: arithmetic that means nothing
    EXPONENT   a literal in the exponent of ``**`` over a computed size: it counts
               dimensions (``(image_size // patch_size) ** 2``), never a size
    COUNTS     a literal in the own call of a tensor sized in __init__ (``+ 1``
               for a class token): it counts entries, the configuration sets the size
    ODD        also for a literal that reaches an input size through a name that
               says it counts something else (``ngpu``): the name is the mistake
    RENAMED    a literal that reaches an input size unchanged through a name other
               than the one the layer that made the tensor was sized by, in the
               same run, and that is the size of another axis of that tensor
               (``Conv1d(seq_len, ...)`` fed 4x128x64 by ``Embedding(vocab, emb_dim)``):
               right for its name, the name is the mistake; it costs what swapping it does
    LAYOUT     the model's input arrives with its channels last (its last axis is
               the size declared): a permute is the fix, any width as dear as refusing
    OUTVOTED   the layers the producer of the arriving tensor feeds agree on a width
               it does not put out, and another edit (of its out size) fixes more
               of them: this one makes them follow the producer's mistake
    BLIND      in a trace stopped by an error, a shared value changed that layers
               never reached may need as it is: a last resort before refusing
    DEPTH      per expansion between the layer's argument and the edit
    CHANGE     per unit of |log(new / old)|: the smallest change first
    name_cost  scope.py's prior for a name: RANK per rank, ODD when its name
               says it counts something else (``num_classes``, ``scale_factor``)

Refusing costs REFUSE: a candidate dearer than that is listed (``-v``), never
written. Two candidates of equal cost that both hold are a tie: refused.
"""

from __future__ import annotations

from dimfix.search.candidate import ARITHMETIC, LITERAL, NAME, Candidate, Facts

# scope_param_name: ``Conv1d(64, ...)`` needs 40 and ``n_mels`` holds it: the name
# (0.5) before the literal 40, which a name says (0 + NAMED).
NAME_FOR_LITERAL = 0.5
# origin_kwargs_dict_built: the dict entry where 100 is written (0 + 3 DEPTH) before
# swapping ``head_chs`` for ``num_features`` at the call (1.0).
SWAP = 1.0
# input_size_plus_10: ``input_size + 10`` fed ``input_size`` drops the ``+ 10``; a
# product fed 512x1x1 drops its factors of 1 (``512 * 7 * 7`` -> ``512``, not ``512 * 1 * 1``).
DROP = 0.5
# cat_sum_names, origin_shared_constant_one_wrong: ``embedding_dim + hidden_dim``
# and ``HIDDEN * 2`` (1.5), as torch.cat joined them, before changing a value
# other layers read too (UNCERTAIN 2.0) and before a literal over the name.
STRUCTURE = 1.5
# notebook_magics_outputs-like literal arithmetic: a literal of it solved (0)
# before the whole of it written as one number.
FORM = 3.0
# head_shared_class_constant: ``NUM_CLASSES = 100`` where it is written, for
# verification to judge (2.0 + DEPTH), before ``NUM_CLASSES`` -> ``100`` at the call (4.0).
PATCH = 4.0
# probe_own_parameter: ``patch_size`` -> ``seq_length`` at the call (1.0) before the
# default 8 -> 17 only tracing can judge (2.0).
UNCERTAIN = 2.0
# scope_config_field, structure_textcnn_filter_sizes: ``768`` -> 256 where
# ``config.hidden_size`` holds 256 costs 2.0 more than the name (0.5).
NAMED = 2.0
# origin_dcgan_img_size: in ``128 * ds_size ** 2`` fed 128x2x2, the 128 reads as the
# channels; changing it (5.0) is dearer than the image size only tracing judges.
# origin_config_dict_entry: in ``cfg["image_size"] // 8``, a 64x64 input arrives as
# 8x8: the 8 reads as the pools' reduction; the image size is changed, not the 8.
# structure_cat_term_default: ``noise_dim + num_classes + style_dim`` fed 100, 10
# and 4: the default of --style_dim, not that of --noise_dim (the smaller change).
AGREES = 5.0
# script_dataset_vocab: ``hidden_size * 2`` fed hidden_size drops the ``* 2`` (0.5),
# never writes ``hidden_size * 1`` (as dear as losing the form).
IDENTITY = FORM
# stopped_outer_literal_factor: after an error, ``embed_dim * 3`` -> ``* 2`` at the
# call, not the shared default; origin_dataclass_class_default: the default when
# nothing else fixes the layer (the next trace, then verification, judge it).
BLIND = 3.0
# origin_rebound_or_default: nearest first; small beside every other term.
DEPTH = 0.1
# literal_se_reduction: of two literals that solve it, the one that changes least.
CHANGE = 0.01
# scope_loop_variables: a parameter (rank 0) before a local (rank 3) that holds the same.
RANK = 0.05
# swap_maker_expression: the producing layer's own expression (``n_head * d_v``)
# before any name that holds the same by coincidence (``d_model``), as
# names.holding prefers the producing layer's name.
MAKER = 0.1
# scope.py's odd names (``num_classes`` holding 10 where a width of 10 is needed):
# dearer than a literal over a name, cheaper than refusing. scope_global_dcgan_nc:
# ``ngpu = 1`` -> 3 costs as much, so ``ngpu`` -> ``nc`` (1.3) at the call wins.
ODD = 3.5
# table_vit_image_size: ``(image_size // patch_size) ** 2``: the 2 counts the
# image's dimensions; the image size (2.2: only tracing judges it) goes first.
EXPONENT = 3.0
# table_vit_image_size: ``torch.randn(1, num_patches + 1, dim)`` needs 65 for a
# 64x64 image: the ``+ 1`` of the class token (0.04) is dearer than ``image_size``.
COUNTS = 3.0
# producer_tutorial_pasted_block: ``Conv2d(32, 32)`` pasted, then ``BatchNorm2d(64)`` and
# ``Conv2d(64, 128)``: the conv's out 32 -> 64 (2.0: UNCERTAIN, verification judges what
# follows) before bn2's 64 -> 32 (0.007) and conv3's after it. Below REFUSE less the
# dearest own edit, so the layers' own edits stay the fallback when it does not verify
# (producer_residual_pinned_by_skip).
OUTVOTED = 2.5
# scope_name_of_maker_embedding, scope_reads_other_name: ``nn.Conv1d(seq_len, ...)``
# fed 4x128x64 by ``nn.Embedding(vocab_size, emb_dim)``: ``seq_len`` -> ``emb_dim``
# (1.0) before the default ``seq_len=64`` -> 128 (0.1 + 1.0), which would make the
# sequence's length hold the embedding's width. (origin_kwargs_dict_built: 100 is
# no axis of what arrives; the dict's ``head_chs=100`` -> 96 stays first.)
RENAMED = SWAP
REFUSE = 6.0
# layout_channels_last: an ECG fed as (batch, time, leads) to ``Conv1d(n_leads, ...)``:
# ``n_leads = 12`` -> 500 (0.1) would make the time axis the channels; refused, with
# the permute that puts the leads first.
LAYOUT = REFUSE

def _base(c: Candidate) -> float:
    """What the edit writes, over what it replaces (read at call time: the
    weights are module globals, and tests change them)."""
    if c.drops:
        return DROP
    if c.writes == ARITHMETIC:
        return STRUCTURE
    if c.writes == NAME:
        return {LITERAL: NAME_FOR_LITERAL, NAME: SWAP}.get(c.over, DROP)
    return {LITERAL: 0.0, NAME: PATCH}.get(c.over, FORM)


def cost(c: Candidate, facts: Facts) -> float:
    """The cost of ``c`` given what the symbolic check found."""
    total = _base(c) + c.name_cost
    total += DEPTH * c.depth + CHANGE * min(c.change, 10.0)
    total += AGREES * c.agrees + IDENTITY * c.identity + NAMED * facts.named
    total += ODD * c.through_odd + RENAMED * c.renamed + BLIND * facts.blind
    total += EXPONENT * c.exponent + COUNTS * c.counts + LAYOUT * facts.layout
    total += OUTVOTED * facts.outvoted
    total += UNCERTAIN * (not facts.certain)
    return total


def name_prior(rank: int, odd: bool) -> float:
    """The cost of writing a name of scope.py's ``rank`` (odd: its name says it
    counts something other than a width)."""
    return RANK * rank + ODD * odd


def names_it(c: Candidate) -> bool:
    """Does ``c`` write what says the size (a name of good prior, or the
    trace's structure), so that a literal at the same place is a magic number?"""
    return c.writes != LITERAL and c.name_cost < ODD
