"""Request handlers, one module per resource provider. Each handler takes a
:class:`~prepost.simulator.http.RequestContext` (with the state lock held) and returns a
response or raises :class:`~prepost.simulator.errors.ArmError`."""
