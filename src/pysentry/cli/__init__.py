"""The ``dapr`` command: self-hosted ``init``, ``run``, ``list``/``status`` and the ``mtls`` tools.

Entry point :func:`pysentry.cli.main.main`. Commands that touch CA credentials go through a
:class:`pysentry.cli.backend.CredentialsBackend`, so a Kubernetes backend (``-k``) can be
added later.
"""
