"""moto's ELBv2 listener rules and CloudWatch alarms, as the native strategies use them.

Traffic moves as on ECS: the forward action of the production (and test) listener rule is rewritten
with weights for the two target groups. Alarms are read from moto's CloudWatch, so a client that
calls `set_alarm_state(StateValue="ALARM")` during a deployment makes it roll back.
"""

from __future__ import annotations

from typing import Any

from moto.cloudwatch.models import cloudwatch_backends
from moto.elbv2.models import elbv2_backends


def _rule(backend: Any, rule_arn: str) -> Any:
    elbv2 = elbv2_backends[backend.account_id][backend.region_name]
    for balancer in list(elbv2.load_balancers.values()):
        for listener in list(balancer.listeners.values()):
            rule = listener.rules.get(rule_arn)
            if rule is not None:
                return rule
            if getattr(listener, "arn", None) == rule_arn:
                return listener  # a listener ARN given as the rule: its default action
    return None


def _forward(rule: Any) -> Any:
    actions = getattr(rule, "actions", None) or getattr(rule, "default_actions", None) or []
    return next((a for a in actions if getattr(a, "type", None) == "forward"), None)


def set_weights(backend: Any, rule_arn: str | None, weights: dict[str, int]) -> bool:
    """Forward the rule to the target groups with these weights (those at 0 stay listed, as ECS
    leaves them). False when the rule or its forward action is not there."""
    if not rule_arn:
        return False
    rule = _rule(backend, rule_arn)
    action = _forward(rule) if rule is not None else None
    if action is None:
        return False
    groups = [{"TargetGroupArn": arn, "Weight": int(weight)} for arn, weight in weights.items()]
    config = action.data.setdefault("ForwardConfig", {})
    config["TargetGroups"] = groups
    config.setdefault("TargetGroupStickinessConfig", {"Enabled": False})
    action.data.pop("TargetGroupArn", None)
    action.__dict__.pop("TargetGroupArn", None)
    action.__dict__["ForwardConfig"] = config
    return True


def weights(backend: Any, rule_arn: str | None) -> dict[str, int]:
    rule = _rule(backend, rule_arn) if rule_arn else None
    action = _forward(rule) if rule is not None else None
    if action is None:
        return {}
    if action.data.get("TargetGroupArn"):
        return {str(action.data["TargetGroupArn"]): 1}
    return {str(g["TargetGroupArn"]): int(g.get("Weight", 1))
            for g in (action.data.get("ForwardConfig") or {}).get("TargetGroups") or []}


def alarms_in_alarm(backend: Any, names: list[str]) -> list[str]:
    """Which of these CloudWatch alarms are in ALARM now (unknown names are not)."""
    cloudwatch = cloudwatch_backends[backend.account_id][backend.region_name]
    return [n for n in names if getattr(cloudwatch.alarms.get(n), "state_value", None) == "ALARM"]
