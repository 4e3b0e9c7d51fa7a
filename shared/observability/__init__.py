"""What prepost tells operators: log dimensions, metrics per run, and OpenTelemetry export.

Everything here is standard library at import; OpenTelemetry is imported only when
``PREPOST_TELEMETRY=on`` and an Application Insights connection string are both set.
"""
