"""Use cases: one module a job, each a function of typed input and ports."""
