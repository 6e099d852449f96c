"""One ranked search over candidate edits (issue 23).

For each group of mismatches (one call site, one argument) the generators
(``literals``, ``names``, ``structure``) propose every edit of their kind;
``assess`` checks each one symbolically against every traced construction
the touched expressions reach and returns its Facts; ``cost`` turns a
candidate and its facts into one number (the weights, and the fixture that
justifies each, are in that module); ``rank`` sorts them and names a tie.
``plan.plan_edits`` assembles the groups' choices into a few alternatives in
cost order, which the driver verifies by a real re-trace, cheapest first.
"""
