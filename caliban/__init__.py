"""Caliban: run a research code directory in Docker, locally or on Google Cloud."""

__version__ = "1.0.0.dev0"
