"""Live contract tests against a real Service Bus namespace or the official emulator."""
