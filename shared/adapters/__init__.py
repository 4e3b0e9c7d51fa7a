"""Azure adapters of the ports in :mod:`shared.ports`, one module per technology.

Nothing here creates a client at import time: the Azure SDK modules are imported, and the
clients built, on first use, so importing ``function_app`` stays cheap on a cold start.
"""
