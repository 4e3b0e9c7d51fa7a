"""Timer trigger: the readiness checks of ``prepost preflight``, daily, results kept."""

from __future__ import annotations

import azure.functions as func

from shared.names import READINESS_FUNCTION, READINESS_SCHEDULE


def blueprint() -> func.Blueprint:
    bp = func.Blueprint()

    @bp.function_name(READINESS_FUNCTION)
    @bp.timer_trigger(arg_name="timer", schedule=READINESS_SCHEDULE, run_on_startup=False, use_monitor=True)
    def readiness_check(timer: func.TimerRequest) -> None:
        from shared.bootstrap import get_container
        from shared.clock import utcnow
        from shared.usecases.readiness import check_on_schedule

        container = get_container()
        settings = container.settings
        # Results, and checks that could not be made, are recorded rather than raised: the
        # next schedule tries again. No configuration listed: nothing to do.
        check_on_schedule(
            settings.readiness_configurations,
            container.readiness_ports,
            container.readiness_records,
            now=utcnow(),
            policy_defaults=settings.policy_defaults,
        )

    return bp
