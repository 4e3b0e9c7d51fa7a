"""Typed models: events, resource ids, runs, tasks and work messages."""
