"""daprd's log scopes: Dapr v1.16's ``logger.NewLogger("...")`` name for each of our loggers.

Each Python logger (and its children) logs under the scope of the Dapr package doing the same
job, so a filter on ``scope=dapr.runtime.security`` or ``dapr.runtime.direct_messaging`` finds
the same lines as with Go's daprd. Loggers not listed log as ``dapr.runtime``.
"""

from __future__ import annotations

from collections.abc import Mapping

RUNTIME = "dapr.runtime"

SCOPES: Mapping[str, str] = {
    "pysentry.sidecar": RUNTIME,  # cmd/daprd/app, pkg/runtime
    "pysentry.sidecar.http_api": "dapr.runtime.http",  # pkg/api/http
    "pysentry.sidecar.grpc_api": "dapr.runtime.grpc.api",  # pkg/api/grpc (API server)
    "pysentry.sidecar.internal_server": "dapr.runtime.grpc.internal",  # the internal server
    "pysentry.sidecar.direct": "dapr.runtime.direct_messaging",  # pkg/messaging
    "pysentry.sidecar.internal_client": "dapr.runtime.direct_messaging",
    "pysentry.sidecar.fastpath_client": "dapr.runtime.direct_messaging",
    "pysentry.sidecar.fastpath_server": "dapr.runtime.grpc.internal",
    "pysentry.sidecar.grpc_proxy": "dapr.runtime.direct_messaging",  # messaging/grpc_proxy.go
    "pysentry.sidecar.relay": "dapr.runtime.direct_messaging",  # split out of grpc_proxy
    "pysentry.sidecar.app_channel": "dapr.runtime.channels",  # pkg/runtime/channels
    "pysentry.sidecar.grpc_app_channel": "dapr.runtime.channels",
    "pysentry.sidecar.mtls": "dapr.runtime.security",  # pkg/security, kit crypto/spiffe
    "pysentry.security": "dapr.runtime.security",
    "pysentry.sidecar.policy": "dapr.acl",  # pkg/acl
    "pysentry.config.acl": "dapr.acl",
    "pysentry.sidecar.resolver": "dapr.contrib",  # components-contrib name resolution
    "pysentry.nameresolution": "dapr.contrib",
    "pysentry.sidecar.metrics": "dapr.runtime.diagnostics",  # pkg/diagnostics
}
