"""The watcher: the container entrypoint that starts, supervises, heals and upgrades the delegate."""

__version__ = "1.0.0"
