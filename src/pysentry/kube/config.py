"""Where the Kubernetes connection comes from, in controller-runtime's order (as Dapr):

1. ``--kubeconfig`` when given on the command line;
2. ``$KUBECONFIG`` (the first file of a ``:``-separated list);
3. in-cluster: ``$KUBERNETES_SERVICE_HOST``/``_PORT`` with the Pod's service-account token
   (``/var/run/secrets/kubernetes.io/serviceaccount``), re-read as the kubelet rotates it;
4. ``~/.kube/config``.

The loading itself (contexts, exec plugins, embedded certificates) is ``kubernetes_asyncio``'s.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml
from kubernetes_asyncio.client import Configuration
from kubernetes_asyncio.config import ConfigException
from kubernetes_asyncio.config.incluster_config import InClusterConfigLoader
from kubernetes_asyncio.config.kube_config import load_kube_config

from pysentry.errors import ConfigError

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
IN_CLUSTER_ENV = "KUBERNETES_SERVICE_HOST"


@dataclass(frozen=True, slots=True)
class KubeConfigSource:
    """A loaded connection: ``configuration`` for the client, ``source`` for log lines."""

    configuration: Configuration
    source: str


def in_cluster(env: Mapping[str, str]) -> bool:
    return bool(env.get(IN_CLUSTER_ENV))


async def load_kube_configuration(
    kubeconfig: str | None,
    *,
    env: Mapping[str, str] | None = None,
    service_account_dir: Path = SERVICE_ACCOUNT_DIR,
) -> KubeConfigSource:
    """Load the connection settings (no request is made); :class:`ConfigError` names the fix."""
    env = os.environ if env is None else env
    explicit = kubeconfig or (env.get("KUBECONFIG", "").split(os.pathsep)[0] or None)
    if explicit is not None:
        return await _from_file(Path(explicit).expanduser())
    if in_cluster(env):
        configuration = Configuration()
        loader = InClusterConfigLoader(
            token_filename=str(service_account_dir / "token"),
            cert_filename=str(service_account_dir / "ca.crt"),
            environ=dict(env),
        )
        try:
            loader.load_and_set(configuration)
        except ConfigException as err:
            raise ConfigError(
                f"in-cluster Kubernetes config: {err}; mount the service-account token "
                f"({str(service_account_dir)!r}) or pass --kubeconfig"
            ) from err
        return KubeConfigSource(configuration, f"in-cluster service account ({configuration.host})")
    home = Path(env["HOME"]) if env.get("HOME") else None
    if home is not None and (home / ".kube" / "config").is_file():
        return await _from_file(home / ".kube" / "config")
    raise ConfigError(
        "no Kubernetes configuration: pass --kubeconfig or set KUBECONFIG, or run inside a "
        f"cluster ({IN_CLUSTER_ENV} is not set)"
    )


async def _from_file(path: Path) -> KubeConfigSource:
    if not path.is_file():
        raise ConfigError(
            f"kubeconfig {str(path)!r}: no such file; pass --kubeconfig or KUBECONFIG"
        )
    configuration = Configuration()
    try:
        await load_kube_config(
            config_file=str(path), client_configuration=configuration, persist_config=False
        )
    except yaml.YAMLError as err:  # its text may quote the file (tokens): the cause has the place
        raise ConfigError(f"kubeconfig {str(path)!r}: not valid YAML") from err
    except (ConfigException, OSError, ValueError) as err:
        raise ConfigError(f"kubeconfig {str(path)!r}: {err}") from err
    return KubeConfigSource(configuration, f"kubeconfig {str(path)!r} ({configuration.host})")
