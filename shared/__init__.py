"""Models, use cases, ports and Azure adapters shared by every function of prepost."""
