"""The local stack: a manager that speaks the agent API's JSON dialect, and a local AWS (moto) whose
ECS behaves like ECS. Only for running, testing and benchmarking the delegate on one machine.

`devstack` may import `delegate` (to share the wire models and the token format); `delegate` and
`watcher` never import `devstack`.
"""
