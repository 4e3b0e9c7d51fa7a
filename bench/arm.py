"""ARM adapter overhead: ``ArmCompute.get_vm`` against the raw SDK call it wraps.

Both sides read the same VM with its instance view from the simulator, one call after another.
The adapter adds the client factory's lookup, its retry policy and bearer policy, the error
translation (``or_none``) and the conversion of the SDK model into the port's
``VirtualMachine``; the baseline is ``ComputeManagementClient.virtual_machines.get(...,
expand="instanceView")`` on a plain client. The simulator's budgets are unlimited here so that
neither side meets a 429 nor is paced by the app's rate control: this measures the code, not
the budget (the rate control's own cost per call is in it).
"""

from __future__ import annotations

from bench.measure import Result, Row, Timing, alternate, median, spread, timed_cpu
from bench.stack import raw_credential, raw_mgmt_options, simulator_process

NAME = "arm"
TITLE = "ARM adapter: ArmCompute.get_vm vs raw ComputeManagementClient.virtual_machines.get"


def run(*, quick: bool) -> Result:
    from prepost.simulator import Estate, SimulatorConfig, ThrottleConfig
    from prepost.simulator.throttling import BucketConfig

    calls = 100 if quick else 200
    rounds = 3 if quick else 5
    estate = Estate.generate(machines=20, subscriptions=1, arc_servers=0)
    # Budgets too large to matter: with throttling merely disabled the simulator still reports
    # its buckets running down, and the app's rate control (rightly) paces to them.
    unlimited = BucketConfig(10**9, 10**9)
    config = SimulatorConfig(
        throttling=ThrottleConfig(enabled=False, reads=unlimited, writes=unlimited, deletes=unlimited)
    )
    with simulator_process(estate, config) as url:
        return _measure(url, estate, calls, rounds)


def _measure(url: str, estate, calls: int, rounds: int) -> Result:
    from azure.mgmt.compute import ComputeManagementClient

    from shared.adapters.arm.clients import ArmClients
    from shared.adapters.arm.compute import ArmCompute
    from shared.adapters.arm.rate_control import Bucket, OperationClass, RateControl
    from shared.settings import ArmAuth

    vms = estate.vms
    # The rate control paces to Azure's 25 reads/s whatever the server reports: told of budgets
    # too large to matter, it still decides on every call, which is the cost measured here.
    unlimited = {kind: Bucket(10**9, 10**9) for kind in OperationClass}
    adapter = ArmCompute(ArmClients(url, ArmAuth.SIMULATOR, rate=RateControl(buckets=unlimited)))
    raw = {
        subscription: ComputeManagementClient(raw_credential(), subscription, **raw_mgmt_options(url))
        for subscription in estate.subscription_ids
    }

    def through_adapter(count: int) -> None:
        for index in range(count):
            adapter.get_vm(vms[index % len(vms)].id)

    def direct(count: int) -> None:
        for index in range(count):
            vm = vms[index % len(vms)]
            raw[vm.subscription_id].virtual_machines.get(vm.resource_group, vm.name, expand="instanceView")

    through_adapter(10)
    direct(10)

    def pipeline_round(_: int) -> Timing:
        return timed_cpu(lambda: through_adapter(calls))[1]

    def baseline_round(_: int) -> Timing:
        return timed_cpu(lambda: direct(calls))[1]

    pipeline_timings, baseline_timings = alternate(pipeline_round, baseline_round, rounds)
    for client in raw.values():
        client.close()

    pipeline_ms = [1000 * timing.wall / calls for timing in pipeline_timings]
    baseline_ms = [1000 * timing.wall / calls for timing in baseline_timings]
    pipeline_cpu = [1000 * timing.cpu / calls for timing in pipeline_timings]
    baseline_cpu = [1000 * timing.cpu / calls for timing in baseline_timings]
    rows = [
        Row.cost(
            "get_vm latency",
            "ms/call",
            median(pipeline_ms),
            median(baseline_ms),
            f"{calls} sequential calls x {rounds} rounds",
        ),
        Row.cost(
            "CPU per call",
            "ms/call",
            median(pipeline_cpu),
            median(baseline_cpu),
            "this process only; the simulator runs apart",
        ),
    ]
    details = {
        "calls_per_round": calls,
        "rounds": rounds,
        "ms_per_call": {"pipeline": spread(pipeline_ms), "baseline": spread(baseline_ms)},
        "cpu_ms_per_call": {"pipeline": spread(pipeline_cpu), "baseline": spread(baseline_cpu)},
    }
    return Result(NAME, TITLE, rows, details)
