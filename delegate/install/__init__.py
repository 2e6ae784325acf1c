"""Installing the delegate on ECS: the task spec download, the IAM policy, `harness-delegate install-ecs`.

Pure Python shared by the manager's "Install Delegate > ECS Task Spec" download (devstack, or any
manager) and the one-command installer; nothing here runs inside a delegate.
"""
