"""Learned promotion policies (selectors) for mummi-like, registered as ``mummi_like.selectors`` plugins.

This folder is a source root shaped exactly like a user's own plugin package:
``novelty`` (MuMMI's DynIm: farthest-point novelty in feature space) and
``cvae-outliers`` (DeepDriveMD: a convolutional VAE on contact maps, local
outlier factor in its latent space).
"""
