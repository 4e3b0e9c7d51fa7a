"""Trigger adapters: decode what the trigger delivers, call a handler, let the host settle."""
