"""The send guard in the real ARM pipeline: the Compute adapter's requests, through azure-core and
the rate-control policy, to the simulator. A refused look sends nothing; a retry is looked at again."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from prepost.simulator import Estate, Operation, PowerState, SimulatorServer
from shared.adapters.arm.clients import ArmClients
from shared.adapters.arm.compute import ArmCompute
from shared.ports.send_guard import guarded
from shared.settings import ArmAuth

pytestmark = pytest.mark.integration


class Refused(Exception):
    pass


class Looks:
    def __init__(self, *answers: bool) -> None:
        self.answers = list(answers)
        self.count = 0

    def __call__(self) -> None:
        self.count += 1
        if not self.answers.pop(0):
            raise Refused("fence closed")


@pytest.fixture
def server() -> Iterator[SimulatorServer]:
    with SimulatorServer(Estate.generate(machines=4, subscriptions=1, arc_servers=0, seed=3)) as running:
        yield running


@pytest.fixture
def compute(server: SimulatorServer) -> ArmCompute:
    return ArmCompute(ArmClients(server.url, ArmAuth.SIMULATOR))


def test_a_refused_look_sends_no_start_while_reads_go_unlooked(server, compute):
    vm = next(v for v in server.estate.vms if v.power_state is PowerState.DEALLOCATED)
    looks = Looks(False)

    with guarded(looks), pytest.raises(Refused):
        assert compute.get_vm(vm.id) is not None
        compute.begin_start_vm(vm.id)

    assert looks.count == 1
    assert server.state.count(Operation.VM_START.value, vm.id) == 0
    assert server.state.power_state(vm.id) is PowerState.DEALLOCATED


def test_the_sdk_s_retry_of_a_start_is_looked_at_again_and_stopped(server, compute):
    vm = next(v for v in server.estate.vms if v.power_state is PowerState.DEALLOCATED)
    server.fail_next(Operation.VM_START.value, times=1, status=500)
    looks = Looks(True, False)  # the fence closes during the retry's backoff

    with guarded(looks), pytest.raises(Refused):
        compute.begin_start_vm(vm.id)

    assert looks.count == 2
    starts = [r for r in server.state.requests() if r.operation == Operation.VM_START.value]
    assert len(starts) == 1  # the first, answered 500; the retry never left
    assert server.state.count(Operation.VM_START.value, vm.id) == 0
