"""Kubernetes API plumbing shared by Sentry, the injector and the CLI.

- :mod:`pysentry.kube.config`: where the connection comes from (``--kubeconfig``, ``KUBECONFIG``,
  the in-cluster service account, ``~/.kube/config``), loaded with ``kubernetes_asyncio``;
- :mod:`pysentry.kube.client`: a small typed JSON client on aiohttp, with the API server's errors
  translated once (:class:`~pysentry.kube.client.KubeApiError`);
- :mod:`pysentry.kube.watch`: watch streams and a list+watch object cache (an informer).

Layering: nothing here imports ``sentry``, ``sidecar`` or ``cli``.
"""
