"""Sinks: encode outputs with their metadata and write them atomically."""
