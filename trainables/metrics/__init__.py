"""Pure metric functions of tensors (no I/O, no Ray, no MLflow) and the one table of metric keys."""
