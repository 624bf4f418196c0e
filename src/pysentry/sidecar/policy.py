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

import dataclasses
import logging
from collections.abc import Callable
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


class CalleePolicy:
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

    def admit(self, caller: SpiffeId | None, request: InvokeRequest) -> InvokeRequest:
        """The request as the app must receive it, or :class:`Refused`."""
        try:
            method = canonical_method(request.method)
        except InvalidMethod as err:
            raise Refused(INVALID_ARGUMENT, str(err)) from err
        if self._acl is not None:
            self._authorize(caller, method, request.verb)
        request = dataclasses.replace(request, method=method)
        return self._stamp(caller, request)

    def _authorize(self, caller: SpiffeId | None, method: str, verb: str) -> None:
        assert self._acl is not None
        decision = self._acl.evaluate(caller, method, verb)
        if self._on_decision is not None:
            self._on_decision(caller, decision)
        if not decision.allowed:
            log.debug(
                "access denied: caller=%s operation=%s verb=%s reason=%s",
                caller,
                method,
                verb,
                decision.reason,
            )
            raise Refused(PERMISSION_DENIED, decision.reason)

    def _stamp(self, caller: SpiffeId | None, request: InvokeRequest) -> InvokeRequest:
        if caller is None:
            return request
        ns, app = caller.namespace, caller.app_id
        if not ns or not app:
            raise Refused(PERMISSION_DENIED, f"malformed SPIFFE ID: {caller}")
        # The caller's sidecar names the callee; only the caller identity is ours to vouch for.
        callee = next((v for k, v in request.headers if k == CALLEE_APP_ID), self._app_id)
        headers = replace_identity(request.headers, app, ns, callee)
        return dataclasses.replace(request, headers=headers)
