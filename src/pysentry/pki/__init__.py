"""The pure PKI core: keys, CSRs, PEM, certificate profiles, the CA bundle and SVID verification.

Nothing here does I/O, logs, or touches asyncio/ssl/sockets (a guard test checks the imports).
Modules: ``keys``, ``csr``, ``pem``, ``profiles``, ``chain``, ``bundle``, ``svid``.
"""
