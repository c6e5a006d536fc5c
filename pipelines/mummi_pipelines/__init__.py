"""Campaigns built from scales, selectors and couplings, registered as ``mummi_like.pipelines`` plugins.

This folder is a source root shaped exactly like a user's own plugin package;
the reference drug-discovery campaign will live here.
"""
