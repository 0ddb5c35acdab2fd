"""``blendgate eval``: offline A/B runs over prompt sets, and judge agreement with human labels.

* ``datasets``: prompt sets (JSONL, AlpacaEval, MT-bench) and labelled pair sets (HHH-alignment,
  Auto-J pairwise, MT-bench human judgements), read in place from the shared data directory.
* ``offline``: answer every prompt with every model (answers cached in the store, so an
  interrupted run resumes), judge each model against each baseline, summarise.
* ``agreement``: a judge's agreement with human labels, in the PairRM model card's layout.
* ``report``: a self-contained HTML report with inline PNG plots.
"""
