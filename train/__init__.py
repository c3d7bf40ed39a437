"""Training side of gvd: corpora, speaker-disjoint splits, Keras models, evaluation and reports.

Needs the ``[train]`` extra. Features come from :mod:`edge.pipeline`, the same code the runtime runs.
"""
