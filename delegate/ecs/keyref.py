"""Keys kept in AWS Secrets Manager or SSM Parameter Store, named by the task instead of sent with it.

`infrastructure.credentialsRef` is `secretsmanager:<name or ARN>`, `ssm:<parameter name>`, or the
secret's or parameter's ARN. Its value is JSON with `accessKeyId` and `secretAccessKey` (and
optionally `sessionToken`; the PascalCase names AWS prints are accepted too). The delegate reads it
with its own role (the default chain), registers the keys as secrets for the log filter, and never
puts the value in a message: errors name the reference only.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from delegate import log
from delegate.ecs.credentials import Keys
from delegate.errors import AwsPermanentError, TaskError


class Caller(Protocol):
    """delegate.ecs.aws.Aws acting with the delegate's own role (not imported: aws imports us)."""

    async def call(self, service: str, operation: str, /, **params: Any) -> dict[str, Any]: ...


def kind(ref: str) -> tuple[str, str]:
    """('secretsmanager' | 'ssm', id) of a reference; ValueError naming the forms otherwise."""
    if ref.startswith("secretsmanager:"):
        return "secretsmanager", ref.split(":", 1)[1]
    if ref.startswith("ssm:"):
        return "ssm", ref.split(":", 1)[1]
    if ref.startswith("arn:") and ":secretsmanager:" in ref:
        return "secretsmanager", ref
    if ref.startswith("arn:") and ":ssm:" in ref and ":parameter/" in ref:
        return "ssm", "/" + ref.split(":parameter/", 1)[1]
    raise ValueError("give secretsmanager:NAME, ssm:/PARAMETER, or the secret's or parameter's ARN")


def _pick(doc: dict[str, Any], *names: str) -> str | None:
    for name in names:
        if isinstance(doc.get(name), str) and doc[name]:
            return str(doc[name])
    return None


async def resolve(aws: Caller, ref: str) -> Keys:
    service, ident = kind(ref)
    try:
        if service == "secretsmanager":
            answer = await aws.call("secretsmanager", "get_secret_value", SecretId=ident)
            text = answer.get("SecretString")
        else:
            answer = await aws.call("ssm", "get_parameter", Name=ident, WithDecryption=True)
            text = (answer.get("Parameter") or {}).get("Value")
    except AwsPermanentError as exc:
        raise AwsPermanentError(f"credentialsRef {ref}: cannot read it with the delegate's own role: "
                                f"{exc}", exc.code, exc.operation) from None
    try:
        doc = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise TaskError(f"credentialsRef {ref}: its value is not a JSON object with accessKeyId and "
                        "secretAccessKey")
    key_id = _pick(doc, "accessKeyId", "AccessKeyId", "aws_access_key_id")
    secret = _pick(doc, "secretAccessKey", "SecretAccessKey", "aws_secret_access_key")
    token = _pick(doc, "sessionToken", "SessionToken", "aws_session_token")
    if key_id is None or secret is None:
        raise TaskError(f"credentialsRef {ref}: the JSON object needs accessKeyId and secretAccessKey")
    for value in (key_id, secret, token):
        log.register_secret(value)
    return Keys(key_id, secret, token)
