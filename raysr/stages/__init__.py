"""Job stages: plain callable classes over batches; Ray-free so tests can call them directly."""
