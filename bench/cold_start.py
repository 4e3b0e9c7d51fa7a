"""Cold start: what ``import function_app`` costs a fresh worker, against ``import azure.functions``.

Every scale-out pays the import of the app before the first invocation. ``azure.functions``
is the floor: no Python function app can load without it. The ratio says how many times that
floor the app's own import costs, in time and in memory; the list of Azure packages it pulls
in shows whether anything heavy (a management SDK, identity, Service Bus) leaked into import
time.

With ``PREPOST_TRANSPORT=servicebus`` and explicit settlement (the opt-in, set here), the worker
needs the SDK-type binding's classes to index the functions, so that import is measured too:
its extra cost is the price of dead-lettering with a reason.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.measure import ImportProbe, Result, Row, alternate, import_in_fresh_interpreter, median, spread

NAME = "cold-start"
TITLE = "Cold start: import function_app vs import azure.functions (fresh interpreter each)"
ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("azure.mgmt", "azure.identity", "azure.servicebus", "azure.storage", "azure.data")


def run(*, quick: bool) -> Result:
    rounds = 3 if quick else 7
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREPOST_")}
    env.pop("AzureWebJobsStorage", None)

    servicebus_env = {**env, "PREPOST_TRANSPORT": "servicebus", "PREPOST_SERVICEBUS_SETTLEMENT": "explicit"}

    def probe(module: str) -> ImportProbe:
        return import_in_fresh_interpreter([module], cwd=str(ROOT), env=env)

    def probe_servicebus() -> ImportProbe:
        return import_in_fresh_interpreter(["function_app"], cwd=str(ROOT), env=servicebus_env)

    # One unmeasured import each, so both sides start from compiled bytecode (warm cache).
    probe("azure.functions")
    last_app = probe("function_app")
    probe_servicebus()

    app_probes: list[ImportProbe] = []
    base_probes: list[ImportProbe] = []

    def app_round(_: int) -> float:
        app_probes.append(probe("function_app"))
        return app_probes[-1].seconds

    def base_round(_: int) -> float:
        base_probes.append(probe("azure.functions"))
        return base_probes[-1].seconds

    app_times, base_times = alternate(app_round, base_round, rounds)
    servicebus_probes: list[ImportProbe] = []

    def servicebus_round(_: int) -> float:
        servicebus_probes.append(probe_servicebus())
        return servicebus_probes[-1].seconds

    servicebus_times, servicebus_base_times = alternate(servicebus_round, base_round, rounds)
    app_rss = [p.rss_growth_kib / 1024 for p in app_probes]
    base_rss = [p.rss_growth_kib / 1024 for p in base_probes]

    last_app = app_probes[-1] if app_probes else last_app
    packages = azure_packages(last_app.modules)
    beyond = sorted(set(packages) - set(azure_packages(base_probes[-1].modules)))
    heavy = [name for name in packages if name.startswith(HEAVY)]
    mgmt = [name for name in packages if name.startswith("azure.mgmt")]

    rows = [
        Row.cost("import time", "ms", median(app_times) * 1000, median(base_times) * 1000, f"median of {rounds}"),
        Row.cost("RSS growth", "MiB", median(app_rss), median(base_rss), "peak RSS after - before the import"),
        Row.cost(
            "import time, Service Bus",
            "ms",
            median(servicebus_times) * 1000,
            median(servicebus_base_times) * 1000,
            "PREPOST_TRANSPORT=servicebus, explicit settlement (SDK-type binding)",
        ),
        Row.cost(
            "RSS growth, Service Bus",
            "MiB",
            median([p.rss_growth_kib / 1024 for p in servicebus_probes]),
            median(base_rss),
            "",
        ),
    ]
    details = {
        "rounds": rounds,
        "seconds": {"function_app": spread(app_times), "azure.functions": spread(base_times)},
        "rss_growth_mib": {"function_app": spread(app_rss), "azure.functions": spread(base_rss)},
        "rss_peak_mib": {
            "function_app": last_app.rss_peak_kib / 1024,
            "azure.functions": base_probes[-1].rss_peak_kib / 1024,
        },
        "modules_imported": {"function_app": len(last_app.modules), "azure.functions": len(base_probes[-1].modules)},
        "azure_packages": packages,
        "azure_packages_beyond_azure_functions": beyond,
        "heavy_packages_at_import": heavy,
        "azure_mgmt_at_import": mgmt,
        "servicebus_seconds": spread(servicebus_times),
        "servicebus_azure_packages": azure_packages(servicebus_probes[-1].modules),
    }
    result = Result(NAME, TITLE, rows, details)
    result.details["summary"] = f"azure packages: {', '.join(packages)}; " + (
        "no azure.mgmt" if not mgmt else f"azure.mgmt IMPORTED: {', '.join(mgmt)}"
    )
    return result


def azure_packages(modules: list[str]) -> list[str]:
    """The Azure distributions behind a list of module names: ``azure.storage.queue._shared``
    counts as ``azure.storage.queue``, ``azure.functions.decorators`` as ``azure.functions``."""
    found = set()
    for module in modules:
        parts = module.split(".")
        if parts[0] != "azure" or len(parts) < 2:
            continue
        depth = 3 if parts[1] in ("mgmt", "storage", "data", "messaging", "monitor", "keyvault", "ai") else 2
        found.add(".".join(parts[:depth]))
    return sorted(found)
