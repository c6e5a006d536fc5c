"""Learned promotion policies (selectors) for mummi-like, registered as ``mummi_like.selectors`` plugins.

This folder is a source root shaped exactly like a user's own plugin package.
The selector interface and its implementations arrive with the multiscale loop.
"""
