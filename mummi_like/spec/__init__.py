"""The campaign spec: a YAML file validated into typed models, with every error at once.

:mod:`mummi_like.spec.resolve` says how; the names below are the ones the rest of mummi-like imports.
"""

from mummi_like.spec.resolve import (
    _NUL_HINT,
    MAX_DEPTH,
    MAX_NAME_LENGTH,
    MAX_TEXT,
    MAX_VALUES,
    BackendSpec,
    Budgets,
    CampaignSpec,
    CouplingSpec,
    PolicySpec,
    ResolvedCampaign,
    ScaleSpec,
    SpecError,
    SpecIssue,
    StoreSpec,
    inside,
    load_spec,
    load_spec_text,
    resolved,
    yaml_path,
)

__all__ = [
    "_NUL_HINT",
    "MAX_DEPTH",
    "MAX_NAME_LENGTH",
    "MAX_TEXT",
    "MAX_VALUES",
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
