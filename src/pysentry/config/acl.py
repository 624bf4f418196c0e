"""Access-control policies (``spec.accessControl``): parse, trie, evaluate, as Dapr does.

``AccessControlList.from_spec(spec, http=True)`` follows ``pkg/acl/acl.go``
``ParseAccessControlSpec``; the operation trie is a literal port of ``pkg/config/acl_trie.go``
(prefix semantics: a policy for ``/op1`` also covers ``/op1/x/y``); ``.evaluate(caller, operation,
verb)`` follows ``isOperationAllowedByAccessControlPolicy`` and returns a :class:`Decision` whose
``reason`` on denial is Dapr's PermissionDenied text.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from pysentry.config.configuration import AccessControlSpec
from pysentry.config.method import normalize_method
from pysentry.config.trie import OperationAction, OperationTrie
from pysentry.errors import ConfigError, InvalidMethod
from pysentry.spiffe import SpiffeId

log = logging.getLogger(__name__)

ALLOW = "allow"
DENY = "deny"
DEFAULT_TRUST_DOMAIN = "public"
POLICY_APP = "app"
POLICY_GLOBAL = "global"
# common.v1.HTTPExtension.Verb names; policies match on these exact (upper-case) names or "*".
HTTP_VERBS = frozenset(
    {"NONE", "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)


@dataclass(frozen=True, slots=True)
class AppPolicy:
    app_id: str
    default_action: str
    trust_domain: str
    namespace: str
    operations: OperationTrie


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of :meth:`AccessControlList.evaluate`. ``reason`` is "" when allowed, else
    Dapr's message; ``policy`` is ``"app"``/``"global"`` (which level decided, for metrics)."""

    allowed: bool
    reason: str
    policy: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessControlList:
    """Parsed ``spec.accessControl`` for one app (the callee). ``configured`` is False when there
    is no ACL at all (Dapr's nil list): then every call is allowed, whoever the caller is.
    ``trust_domain`` is this app's own trust domain (default ``public``)."""

    configured: bool
    default_action: str
    trust_domain: str
    policies: Mapping[str, AppPolicy]
    http: bool

    @classmethod
    def from_spec(cls, spec: AccessControlSpec | None, *, http: bool = True) -> AccessControlList:
        """Parse like ``ParseAccessControlSpec``. ``http`` is True when the app protocol is HTTP
        (operation names are then lower-cased). No spec, or an empty one, allows everything."""
        if spec is None or (
            spec.trust_domain == "" and spec.default_action == "" and not spec.policies
        ):
            log.debug("No Access control policy specified")
            return cls(
                configured=False,
                default_action=ALLOW,
                trust_domain=DEFAULT_TRUST_DOMAIN,
                policies={},
                http=http,
            )
        default_action = spec.default_action.lower()
        if default_action == "":
            if spec.policies is None or len(spec.policies) > 0:
                log.warning(
                    "No global default action has been specified. Setting default global action "
                    "as Deny"
                )
                default_action = DENY
            else:
                default_action = ALLOW
        missing_td: list[str] = []
        missing_ns: list[str] = []
        missing_app = False
        policies: dict[str, AppPolicy] = {}
        for app in spec.policies or ():
            invalid = False
            if app.app_id == "":
                missing_app = True
            if app.trust_domain == "":
                missing_td.append(app.app_id)
                invalid = True
            if app.namespace == "":
                missing_ns.append(app.app_id)
                invalid = True
            if invalid or missing_app:
                continue
            trie = OperationTrie()
            for op in app.operations:
                name = op.name if op.name.startswith("/") else "/" + op.name
                if http:
                    name = name.lower()
                for verb in op.http_verb:
                    if verb != "*" and verb not in HTTP_VERBS:
                        log.warning(
                            "access control policy for app %r: httpVerb %r never matches; "
                            "use upper-case names such as 'GET' or '*'",
                            app.app_id,
                            verb,
                        )
                verbs = {verb: op.action for verb in op.http_verb}
                trie.insert(name, OperationAction(name, verbs, op.action))
            policies[f"{app.app_id}||{app.namespace}"] = AppPolicy(
                app.app_id, app.default_action, app.trust_domain, app.namespace, trie
            )
        if missing_td or missing_ns or missing_app:
            raise ConfigError(
                "invalid access control spec. missing trustdomain for apps: "
                f"{_go_list(missing_td)}, missing namespace for apps: {_go_list(missing_ns)}, "
                "missing app name on at least one of the app policies: "
                f"{'true' if missing_app else 'false'}"
            )
        return cls(
            configured=True,
            default_action=default_action,
            trust_domain=spec.trust_domain or DEFAULT_TRUST_DOMAIN,
            policies=policies,
            http=http,
        )

    def evaluate(self, caller: SpiffeId | None, operation: str, verb: str = "NONE") -> Decision:
        """Decide a call from ``caller`` (None when mTLS is off) to ``operation`` with HTTP verb
        ``verb`` (a ``common.v1.HTTPExtension.Verb`` name; "" or "NONE" for none)."""
        if not self.configured:
            return Decision(True, "")
        verb = verb.upper() or "NONE"
        if caller is not None and (caller.namespace is None or caller.app_id is None):
            return Decision(False, f"malformed SPIFFE ID: {caller}", POLICY_GLOBAL)
        try:
            operation = normalize_method(operation)
        except InvalidMethod as err:
            return Decision(False, str(err), POLICY_GLOBAL)
        allowed, policy = self._decide(caller, operation, verb)
        if allowed:
            return Decision(True, "", policy)
        who = str(caller) if caller is not None else ""
        return Decision(
            False,
            f"access control policy has denied access to id: {who} operation: {operation} "
            f"verb: {verb}",
            policy,
        )

    def _decide(self, caller: SpiffeId | None, operation: str, verb: str) -> tuple[bool, str]:
        action = self.default_action
        if caller is None:
            return _allowed(action), POLICY_GLOBAL
        app = self.policies.get(f"{caller.app_id}||{caller.namespace}")
        if app is None or app.trust_domain != caller.trust_domain.name:
            return _allowed(action), POLICY_GLOBAL
        if app.namespace != caller.namespace:
            return _allowed(action), POLICY_GLOBAL
        policy = POLICY_GLOBAL
        if app.default_action != "":
            action = app.default_action
            policy = POLICY_APP
        if not operation.startswith("/"):
            operation = "/" + operation
        if self.http:
            operation = operation.lower()
        found = app.operations.search(operation)
        if found is not None:
            if self.http:
                if verb != "NONE":
                    if verb in found.verb_action:
                        action = found.verb_action[verb]
                    elif "*" in found.verb_action:
                        action = found.verb_action["*"]
                else:
                    action = app.default_action
            else:
                action = found.operation_action
        return _allowed(action), policy


def _allowed(action: str) -> bool:
    return action.lower() == ALLOW


def _go_list(items: list[str]) -> str:
    """Go's ``%v`` of a ``[]string``: ``[a b]``."""
    return "[" + " ".join(items) + "]"
