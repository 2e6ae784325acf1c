"""The ECS delegate: registers with a manager, stays connected, runs the tasks it is given."""

__version__ = "1.0.0"
