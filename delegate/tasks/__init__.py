"""Tasks: the registry of task types, the runner that takes offers from the manager and runs them,
the result spool, and log shipping. Task types plug in with `registry.task_type(...)`."""
