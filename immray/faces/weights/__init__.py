"""Weights converted once from their published sources; see README.md here."""
