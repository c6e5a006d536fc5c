"""Generic scale plugins that run a user's program or function without writing code.

``command`` runs an argv executable and ``function`` calls a Python
``module:function``, each once per point of a Maestro-style parameter space
(:mod:`mummi_scales.parameters`). They register under the ``mummi_like.scales``
entry-point group exactly as a user's own scale package would, and use only the
public API of :mod:`mummi_like`.
"""
