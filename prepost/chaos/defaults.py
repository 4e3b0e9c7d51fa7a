"""The drill's default fault plans (kept apart so ``prepost --help`` imports nothing heavy)."""

DEFAULT_STORAGE_FAULTS = "*=500:0.02,503:0.02,reset:0.01,lost:0.01,timeout:0.002;latency=5;timeout_seconds=1"
"""A few percent of every storage call fails (500, 503, reset before forwarding, response lost
after forwarding, held then dropped), and every call waits up to 5 ms more. The proxies' grammar
is in :mod:`prepost.chaos.proxy_faults`."""

DEFAULT_ARM_FAULTS = "429=0.03,500=0.02,timeout=0.005"
"""The simulator's random faults on every management call (``KIND=RATE``, as ``prepost demo --faults``)."""
