"""The campaign spec: a YAML file validated into typed models, with every error at once.

What a campaign file holds, key by key, is :mod:`mummi_like.spec.models`, the
module to read first. The others each do one job of turning the text into a
campaign ready to run:

- :mod:`~mummi_like.spec.resolve`: :func:`load_spec` and :func:`load_spec_text`
  run every step, load the plugins and validate their configs, and return a
  :class:`ResolvedCampaign` or raise one :class:`SpecError` with every problem;
- :mod:`~mummi_like.spec.parsing`: YAML text to data, refusing hostile input
  (nesting, alias bombs, control characters) at its line;
- :mod:`~mummi_like.spec.expansion`: ``${env:NAME}``, the only expansion;
- :mod:`~mummi_like.spec.references`: scale names, ``depends_on``, couplings, cycles;
- :mod:`~mummi_like.spec.pydantic_errors`: pydantic's errors at YAML paths, with hints;
- :mod:`~mummi_like.spec.problems`: located problems, :class:`SpecIssue`, :class:`SpecError`;
- :mod:`~mummi_like.spec.paths`: :func:`inside` and :func:`resolved`, paths that give a reason, not a traceback.

The names below are the ones the rest of mummi-like imports from here.
"""

from mummi_like.spec.expansion import _NUL_HINT
from mummi_like.spec.models import (
    MAX_NAME_LENGTH,
    BackendSpec,
    Budgets,
    CampaignSpec,
    CouplingSpec,
    PolicySpec,
    ScaleSpec,
    StoreSpec,
)
from mummi_like.spec.parsing import MAX_DEPTH, MAX_VALUES
from mummi_like.spec.paths import inside, resolved
from mummi_like.spec.problems import MAX_TEXT, SpecError, SpecIssue, yaml_path
from mummi_like.spec.resolve import ResolvedCampaign, load_spec, load_spec_text

__all__ = [
    "MAX_DEPTH",
    "MAX_NAME_LENGTH",
    "MAX_TEXT",
    "MAX_VALUES",
    "_NUL_HINT",
    "BackendSpec",
    "Budgets",
    "CampaignSpec",
    "CouplingSpec",
    "PolicySpec",
    "ResolvedCampaign",
    "ScaleSpec",
    "SpecError",
    "SpecIssue",
    "StoreSpec",
    "inside",
    "load_spec",
    "load_spec_text",
    "resolved",
    "yaml_path",
]
