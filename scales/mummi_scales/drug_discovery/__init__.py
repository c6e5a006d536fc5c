"""The reference drug-discovery campaign's scales (IMPECCABLE's ML1 -> S1 -> S2 -> S3) and their libraries.

Stages: :mod:`.docking` (S1, AutoDock Vina), :mod:`.active_docking` (ML1: the
:mod:`.surrogate` steering which molecules are docked), :mod:`.complex_md` (S2,
DeepDriveMD-style MD of the best complexes), :mod:`.mmgbsa` (S3-CG, ESMACS-like
ensembles) and :mod:`.alchemical` (S3-FG). Libraries: :mod:`.data` (the molecule
library, known ligands, prepared targets), :mod:`.receptors` (a receptor prepared
from a crystal structure), :mod:`.complexes` (protein-ligand systems for OpenMM).
"""
