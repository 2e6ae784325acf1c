"""ECS deployments: the executors the manager sends (rolling, canary, blue/green, run task, rollback)
and the ECS capability check. `tasks.py` registers the task types without importing boto3; the
modules that talk to AWS are imported on first use. Inputs and results: docs/ecs-tasks.md."""
