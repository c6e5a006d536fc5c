"""A template plugin package for mummi-like: copy it, rename it, replace the physics.

- :mod:`~mummi_plugin_example.double_well`: the simulation a task runs (numpy
  Brownian dynamics in a double well), streaming H5MD through
  :class:`mummi_like.H5MDWriter`;
- :mod:`~mummi_plugin_example.scales`: the ``double-well-coarse`` scale, which
  explores, and the ``double-well-fine`` scale, which continues promoted frames;
- :mod:`~mummi_plugin_example.selector`: the ``near-barrier`` selector, which
  chooses the frames to promote.

They are registered as entry points in ``pyproject.toml`` and import nothing
of mummi-like but its public API, ``from mummi_like import ...``.
"""
