"""Scales that know no science domain: ``command``, ``function`` (over :mod:`.parameters`) and ``chain-md``."""
