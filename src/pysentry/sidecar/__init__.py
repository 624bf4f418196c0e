"""daprd: the sidecar.

Layout (edge to core):

* :mod:`.options`          flags and env vars, Dapr's spelling (the parser: :mod:`.flags`)
* :mod:`.http_api`         the app-facing HTTP API (``/v1.0/invoke``; healthz and metadata:
  :mod:`.http_metadata`)
* :mod:`.direct`           direct messaging: resolve the target, stamp caller metadata, call it
* :mod:`.internal_client`  dial other sidecars (mTLS + peer ID check), connection reuse
* :mod:`.internal_server`  ``ServiceInvocation`` server (CallLocal, CallLocalStream)
* :mod:`.invoker`          ``RemoteInvoker``: one call to a peer, whatever the transport
* :mod:`.fastpath_protocol`, :mod:`.fastpath_server`, :mod:`.fastpath_callee`,
  :mod:`.fastpath_connection`, :mod:`.fastpath_client`  ``pysentry-invoke/2`` between pysentry
  sidecars (ALPN on the mTLS port)
* :mod:`.messages`         protobuf <-> :mod:`.invocation` dataclasses (the gRPC edge)
* :mod:`.mtls`             mTLS wiring on top of ``pysentry.security``
* :mod:`.app_channel`      pooled HTTP client to the app (dialled by :mod:`.app_dial`)
* :mod:`.resolver`         SQLite name resolution (Dapr's ``sqlite`` resolver shape)
* :mod:`.metrics`          ``dapr_runtime_*`` metrics on the metrics port
* :mod:`.main`             the ``daprd`` entry point
* :mod:`.runtime`          ``run()``: the pieces wired on the event loop, until SIGTERM/SIGINT
"""
