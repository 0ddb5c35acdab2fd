"""Adaptive ensembling: spend the fan-out and the fusion only where they can help.

* ``confidence``: the ranker's margin and the candidates' agreement, and the rule that
  trusts them (``skip_fusion``, a cascade stage's ``accept``);
* ``vote``: majority vote over normalised short answers (``strategy: vote``);
* ``stopping``: fan-out stop rules: early stopping once k candidates agree, and the hedged
  first valid candidate (``early_stop``, ``strategy: hedged``);
* ``ensemble.selection`` runs them: cascade stages, then the ensemble's strategy, and records
  the ``PathReport`` of every answer.
"""
