"""The reference drug-discovery campaign (IMPECCABLE's ML1 -> S1 -> S2 -> S3) as a pipeline plugin.

The stages are scale and selector plugins of their own packages; this package
adds what belongs to the campaign as a whole:

* :mod:`.ranking`, the last stage: one task merges every stage's estimate into
  the ranked table of ligands and measures the enrichment of known ligands;
* :mod:`.policy`, the ``drug-discovery`` pipeline plugin: the scheduling policy
  of the campaign and the report's campaign-level science (the funnel through
  the stages, the ranking, the enrichment);
* ``configs/demo.yaml`` (what README's first command runs on 2 cores) and
  ``configs/production.yaml`` (the same campaign at scale on Flux).
"""
