"""A plugin module whose import fails, as one with a missing dependency does."""

import mummi_spec_fixtures_missing_dependency  # noqa: F401

class BrokenScale:
    """Never reached."""
