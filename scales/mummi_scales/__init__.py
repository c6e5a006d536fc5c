"""Scale plugins for mummi-like, in two subpackages that never import each other's modules.

* :mod:`mummi_scales.generic`: scales that know no science domain: ``command``
  (an argv executable) and ``function`` (a Python ``module:function``) over a
  Maestro-style parameter space, and ``chain-md``, an OpenMM bead-spring chain
  that streams H5MD and is the multiscale loop's worked example.
* :mod:`mummi_scales.drug_discovery`: the reference campaign's stages (docking,
  active docking with the ML1 surrogate, complex MD, MM/GBSA, alchemical free
  energies) and the libraries they share (data, receptors, complexes).

Both register under the ``mummi_like.scales`` entry-point group exactly as a
user's own scale package would, and use only the public API of :mod:`mummi_like`.
"""
