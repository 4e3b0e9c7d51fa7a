"""Tests of the local development tooling (Azurite process manager)."""
