"""What the settings say to a person: one message naming every bad variable (secrets never quoted),
and the report of variables set but not used (the real spec's extras, likely misspellings).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping

from pydantic import ValidationError

NO_TOKEN = "DELEGATE_TOKEN (or ACCOUNT_SECRET) is required: 32 hex characters"  # noqa: S105
#: fields whose values never appear in a message, not even when they are wrong
SECRET_FIELDS = {"delegate_token", "account_secret", "proxy_password", "https_proxy"}



def env_name(field: str) -> str:
    if field == "hostname":
        return "DELEGATE_HOSTNAME"
    return field.upper()


#: variables of the real ECS task spec (or the real delegate's images) that this delegate does not
#: use: listed once at start, so that nobody wonders why setting one changes nothing. The NextGen
#: scope variables are among them: scopes are not supported yet (docs/protocol.md).
UNUSED_REAL_VARIABLES = (
    "USE_CDN", "CDN_URL", "JRE_VERSION", "USE_STORAGE_PROXY", "HELM_DESIRED_VERSION", "HELM_PATH",
    "HELM3_PATH", "KUSTOMIZE_PATH", "KUBECTL_PATH", "OC_PATH", "GO_TEMPLATE_PATH", "SCM_VERSION",
    "INSTALL_CLIENT_TOOLS_IN_BACKGROUND", "CLIENT_TOOLS_DOWNLOAD_DISABLED",
    "LOG_STREAMING_SERVICE_URL", "VERSION_CHECK_DISABLED", "REMOTE_WATCHER_URL_CDN",
    "GRPC_SERVICE_ENABLED", "GRPC_SERVICE_CONNECTOR_PORT", "MANAGER_TARGET", "MANAGER_AUTHORITY",
    "PROXY_MANAGER", "JAVA_OPTS", "DYNAMIC_REQUEST_HANDLING", "UPDATE_PERPETUAL_TASK", "NEXT_GEN",
    "DELEGATE_ORG_IDENTIFIER", "DELEGATE_PROJECT_IDENTIFIER",
)
#: prefixes of this delegate's own variables: an unknown name with one is probably misspelt
_OWN_PREFIXES = ("DELEGATE_", "POLL_", "ACCOUNT_", "MANAGER_", "PROXY_")


def unused_and_unknown(environ: Mapping[str, str], names: set[str]
                       ) -> tuple[list[str], list[tuple[str, str]]]:
    """(unused variables of the real spec that are set, [(unknown name, closest of `names`)])."""
    known = names | {"HOSTNAME", "DEPLOY_MODE"}
    ignored = sorted(n for n in environ if n in UNUSED_REAL_VARIABLES)
    unknown = []
    for name in sorted(environ):
        upper = name.upper()
        if upper in known or upper in UNUSED_REAL_VARIABLES or not upper.startswith(_OWN_PREFIXES):
            continue
        guess = difflib.get_close_matches(upper, sorted(known), n=1, cutoff=0.75)
        unknown.append((name, guess[0] if guess else ""))
    return ignored, unknown


def describe(exc: ValidationError, *, missing_token: bool = False) -> str:
    """One message naming every bad variable, the form it expects and, unless it is a secret,
    the value it was given. A missing token is named even when other fields failed first (its
    rule is model-level, which pydantic runs only once every field is valid)."""
    problems: list[str] = []
    for error in exc.errors(include_url=False):
        loc = [str(part) for part in error.get("loc", ())]
        field = loc[0] if loc else ""
        msg = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        if error.get("type") == "missing":
            msg = "is required but not set"
        elif error.get("type") == "bool_parsing":
            msg = "expected true or false"
        quotable = field and field not in SECRET_FIELDS and isinstance(error.get("input"), str)
        if error.get("type") != "missing" and quotable:
            shown = re.sub(r"(://)[^/@\s]*@", r"\1***@", str(error["input"]))  # no credentials
            msg = f"{msg} (got {shown[:60]!r})"
        if not field:  # model-level rule
            if msg not in problems:
                problems.append(msg)
            continue
        problems.append(f"{env_name(field)}: {msg}")
    if missing_token and NO_TOKEN not in problems:
        problems.append(NO_TOKEN)
    return "invalid delegate configuration: " + "; ".join(problems)
