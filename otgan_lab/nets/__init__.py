"""Architectures only: no losses, no training logic."""
