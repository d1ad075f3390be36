"""Models: the registry of named models and loading them into modules."""
