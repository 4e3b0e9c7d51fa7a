"""Local development helpers: running the Azure Storage emulator (Azurite) for tests and demos."""
