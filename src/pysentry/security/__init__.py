"""Identity for any process: the Sentry client, the renewal loop, TLS contexts and trust anchors.

- :mod:`.identity`: :class:`X509Svid` (a chain, its key, its SPIFFE ID, its renewal time).
- :mod:`.anchors`: trust anchor sources (``DAPR_TRUST_ANCHORS``, or a watched file).
- :mod:`.tls`: ``ssl`` contexts for SPIFFE mTLS, post-handshake peer checks; :mod:`.rotation`
  the contexts that follow the current identity and anchors.
- :mod:`.channel`: grpclib channel and server that check the peer's SPIFFE ID per connection.
- :mod:`.sentry_client`: ``SignCertificate`` over TLS with Dapr's retry policy;
  :mod:`.sentry_sign` what the request holds and the response must pass,
  :mod:`.sentry_failure` the errors it ends with.
- :mod:`.sentry_call`, :mod:`.sentry_wire`: that call on h2 and its two messages, without
  grpclib's client or protobuf (daprd's start-up).
- :mod:`.provider`: the initial fetch and the renewal loop at 50% of the lifetime.
- :mod:`.metrics`: daprd's ``dapr_runtime_mtls_*`` counters; :mod:`.events` what the provider
  records, and a stand-in until those counters exist.

Builds on ``pysentry.pki`` (pure); ``sentry``, ``sidecar`` and ``cli`` build on this package.
"""
