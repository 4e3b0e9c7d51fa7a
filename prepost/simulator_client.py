"""Reading the simulator's inspection API (``/_sim/...``) into plain values."""

from __future__ import annotations

from typing import Any

# Longer than the management clients' read timeout, so an injected timeout is a real one.
TIMEOUT_HOLD_SECONDS = 65


def fault_config(rates: dict[str, float], *, seed: int = 7) -> dict[str, Any]:
    """Fault rates for every operation, as ``POST /_sim/faults`` takes them."""
    if not rates:
        return {"seed": seed, "operations": {}, "rules": []}
    return {
        "seed": seed,
        "operations": {
            "*": {
                "throttle": rates.get("429", 0.0),
                "error": rates.get("500", 0.0),
                "timeout": rates.get("timeout", 0.0),
                "retryAfter": 1,
                "timeoutSeconds": TIMEOUT_HOLD_SECONDS,
            }
        },
        "rules": [],
    }


def _items(body: Any) -> list[dict[str, Any]]:
    return list(body.get("value", [])) if isinstance(body, dict) else list(body or [])


def power_states(vms: Any) -> dict[str, str]:
    return {vm["id"].lower(): vm["powerState"] for vm in _items(vms)}


def operation_counts(vms: Any) -> dict[str, dict[str, int]]:
    return {
        vm["id"].lower(): {"start": int(vm.get("startCount", 0)), "deallocate": int(vm.get("deallocateCount", 0))}
        for vm in _items(vms)
    }


def snapshots_of(body: Any) -> list[dict[str, Any]]:
    return [
        {
            "id": item["id"],
            "sourceDiskId": item.get("sourceResourceId", ""),
            "provisioningState": item.get("provisioningState"),
            "tags": item.get("tags", {}),
            "putCount": item.get("putCount", 1),
        }
        for item in _items(body)
    ]


def rules_of(body: Any) -> list[dict[str, Any]]:
    return _items(body)
