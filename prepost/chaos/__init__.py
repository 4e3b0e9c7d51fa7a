"""The chaos drill: faults, instances, disorder and invariants around real maintenance windows."""
