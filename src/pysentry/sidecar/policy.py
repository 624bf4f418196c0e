"""The callee's policy for an incoming invocation, independent of the transport that carried it.

For every call that reaches this sidecar from another one (internal gRPC ``CallLocal`` /
``CallLocalStream`` today, any other transport tomorrow), :meth:`CalleePolicy.admit`:

1. canonicalizes the method with :func:`pysentry.config.method.canonical_method`, whatever the
   caller did (a Go daprd sends the raw method string): the result is the string the ACL decides
   on **and** the path the app receives;
2. applies access control to the caller's verified SPIFFE ID;
3. stamps the caller identity headers (``dapr-caller-app-id``, ``dapr-caller-namespace``) from
   that ID, discarding whatever the caller sent.

A refusal is a :class:`Refused` carrying the gRPC status name and Dapr's message; the transport
maps it to its own error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

from pysentry.config.method import canonical_method
from pysentry.errors import InvalidMethod, PysentryError
from pysentry.sidecar.invocation import CALLEE_APP_ID, InvokeRequest, replace_identity
from pysentry.spiffe import SpiffeId

log = logging.getLogger(__name__)

INVALID_ARGUMENT = "INVALID_ARGUMENT"
PERMISSION_DENIED = "PERMISSION_DENIED"


class Refused(PysentryError):
    """The call is refused before it reaches the app. ``code`` is a gRPC status name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Decision(Protocol):
    @property
    def allowed(self) -> bool: ...
    @property
    def reason(self) -> str: ...
    @property
    def policy(self) -> str: ...


#: Told each access-control decision with the caller it was made for (the ACL metrics).
DecisionHook = Callable[[SpiffeId | None, Decision], None]


class AccessPolicy(Protocol):
    """``pysentry.config.acl.AccessControlList`` as seen by the callee."""

    def evaluate(self, caller: SpiffeId | None, operation: str, verb: str) -> Decision: ...


#: Admissions remembered per policy (caller, method, verb); past this the memo starts over,
#: so that callers sending ever new method names cannot grow it without bound.
MEMO_MAX = 4096

#: What :meth:`CalleePolicy.admit` learned about one (caller, method, verb): the canonical
#: method, the ACL decision (None without an ACL), and the caller's (app-id, namespace) to
#: stamp (None without mTLS; a str is the refusal message for a malformed SPIFFE ID).
_Admission = tuple[str, Decision | None, tuple[str, str] | str | None]


class CalleePolicy:
    """The ACL is fixed for the policy's lifetime (a new configuration builds a new policy), so
    each (caller, method, verb) is decided once and remembered; the decision hook and the
    denial log still run on every call."""

    def __init__(
        self,
        *,
        app_id: str,
        acl: AccessPolicy | None = None,
        on_decision: DecisionHook | None = None,
    ) -> None:
        self._app_id = app_id
        self._acl = acl
        self._on_decision = on_decision
        self._memo: dict[tuple[SpiffeId | None, str, str], _Admission] = {}

    def admit(self, caller: SpiffeId | None, request: InvokeRequest) -> InvokeRequest:
        """The request as the app must receive it, or :class:`Refused`."""
        key = (caller, request.method, request.verb)
        found = self._memo.get(key)
        if found is None:
            found = self._learn(caller, request.method, request.verb)
            if len(self._memo) >= MEMO_MAX:
                self._memo.clear()
            self._memo[key] = found
        method, decision, ident = found
        if decision is not None:
            if self._on_decision is not None:
                self._on_decision(caller, decision)
            if not decision.allowed:
                log.debug(
                    "access denied: caller=%s operation=%s verb=%s reason=%s",
                    caller,
                    method,
                    request.verb,
                    decision.reason,
                )
                raise Refused(PERMISSION_DENIED, decision.reason)
        if ident is None:
            return request if method == request.method else replace(request, method=method)
        if isinstance(ident, str):
            raise Refused(PERMISSION_DENIED, ident)
        # The caller's sidecar names the callee; only the caller identity is ours to vouch for.
        callee = self._app_id
        for k, v in request.headers:
            if k == CALLEE_APP_ID:
                callee = v
                break
        return InvokeRequest(
            method,
            request.verb,
            request.query,
            request.content_type,
            replace_identity(request.headers, ident[0], ident[1], callee),
            request.body,
        )

    def _learn(self, caller: SpiffeId | None, method: str, verb: str) -> _Admission:
        try:
            canonical = canonical_method(method)
        except InvalidMethod as err:
            raise Refused(INVALID_ARGUMENT, str(err)) from err
        decision = None if self._acl is None else self._acl.evaluate(caller, canonical, verb)
        ident: tuple[str, str] | str | None = None
        if caller is not None:
            ns, app = caller.namespace, caller.app_id
            ident = (app, ns) if ns and app else f"malformed SPIFFE ID: {caller}"
        return canonical, decision, ident
