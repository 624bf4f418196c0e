"""``dapr init`` (self-hosted): create ``~/.dapr`` with ``certs/`` (0700) and a default config.

Unlike Dapr's CLI it downloads nothing and starts no containers: the ``sentry`` and ``daprd``
commands come with this package. Running it again keeps existing files. Dapr's flags are all
accepted: ``--enable-mtls`` writes the configuration with mTLS on (an untouched default
configuration is switched over), ``--ca-root-certificate``/``--issuer-private-key``/
``--issuer-public-certificate`` install those credentials for Sentry (validated as
``dapr mtls renew-certificate`` does); the container and Kubernetes options are named in one
warning. ``-k`` installs pysentry's Helm chart into the current cluster instead
(:mod:`pysentry.cli.kubeinstall`).
"""

from __future__ import annotations

import os
import stat
from typing import Annotated, Any

import typer

from pysentry import __version__
from pysentry.cli import console
from pysentry.cli.backend import self_hosted
from pysentry.cli.console import CliError
from pysentry.cli.home import DEFAULT_CONFIG, DaprHome
from pysentry.clock import system_clock
from pysentry.credentials import StoreState
from pysentry.fileio import ensure_private_dir, write_atomic

MTLS_CONFIG = DEFAULT_CONFIG.replace("    enabled: false\n", "    enabled: true\n")


def _opt(name: str, help_: str, short: str = "") -> object:
    return typer.Option(f"--{name}", *([f"-{short}"] if short else []), help=help_)


def _ignored(**flags: object) -> list[str]:
    """Flags that only mean something for containers or Kubernetes, when set."""
    defaults: dict[str, object] = {
        "slim": False,
        "dev": False,
        "wait": False,
        "timeout": 300,
        "dashboard_version": "latest",
        "namespace": "dapr-system",
        "enable_ha": False,
        "network": "",
        "from_dir": "",
        "image_variant": "",
        "scheduler_volume": "dapr_scheduler",
        "scheduler_override_broadcast_host_port": "",
        "set_values": [],
        "image_registry": "",
        "container_runtime": "docker",
    }
    names = {"set_values": "set"}
    return [
        "--" + names.get(k, k.replace("_", "-"))
        for k, v in flags.items()
        if v not in (None, defaults[k])
    ]


def _config(home: DaprHome, enable_mtls: bool | None) -> None:
    path = home.config_file
    wanted = MTLS_CONFIG if enable_mtls else DEFAULT_CONFIG
    if not path.exists():
        write_atomic(path, wanted.encode(), mode=0o644)
        state = "enabled" if enable_mtls else "disabled"
        console.info(f"Wrote default configuration {path} (mTLS {state})")
        return
    if enable_mtls and path.read_text(errors="replace") == DEFAULT_CONFIG:
        write_atomic(path, MTLS_CONFIG.encode(), mode=0o644)
        console.info(f"Enabled mTLS in the default configuration {path}")
        return
    console.info(f"Kept existing configuration {path}")
    if enable_mtls and "enabled: true" not in path.read_text(errors="replace"):
        console.warning(
            f"--enable-mtls: {path} is yours, so it is kept: set spec.mtls.enabled to true in it"
        )


def _certs(home: DaprHome, ca: str | None, key: str | None, cert: str | None) -> None:
    given = {
        "ca-root-certificate": ca,
        "issuer-private-key": key,
        "issuer-public-certificate": cert,
    }
    for name, value in given.items():
        if value is not None and not value.strip():
            raise CliError(f"non empty value of --{name} must be provided")
    if not any(given.values()):
        return
    if not all(given.values()):
        raise CliError(
            "--ca-root-certificate, --issuer-private-key and --issuer-public-certificate go "
            "together: give all three"
        )
    from pysentry.cli.renew import _provided  # the same checks as renew-certificate

    creds = self_hosted(None, home.certs_dir)
    if creds.state() is not StoreState.NONE:
        raise CliError(
            f"{home.certs_dir} already holds credentials, kept as they are: replace them with "
            "'dapr mtls renew-certificate --ca-root-certificate ... --issuer-private-key ... "
            "--issuer-public-certificate ...'"
        )
    renewal = _provided(creds, str(ca), str(key), str(cert), now=system_clock())
    creds.write(renewal.credentials)
    console.info(f"Installed the provided root and issuer credentials in {home.certs_dir}")


KUBERNETES_SUCCESS = (
    "Success! Dapr has been installed to namespace {}. To verify, run `dapr status -k' in your "
    "terminal. To get started, go here: https://docs.dapr.io/getting-started"
)


def _init_kubernetes(options: dict[str, Any], **container_flags: object) -> None:
    """``dapr init -k``: Dapr's lines around :func:`pysentry.cli.kubeinstall.install`."""
    from pysentry.cli.kubeinstall import HELM_NOTE, InstallOptions, install  # Kubernetes only

    opts = InstallOptions(**options)
    console.info(HELM_NOTE)
    ignored = _ignored(**container_flags)
    if ignored:
        console.warning(
            "These flags apply to Dapr's containers, Redis and Zipkin, not to pysentry's "
            f"Kubernetes install, and are ignored: {', '.join(ignored)}"
        )
    if opts.image_registry:
        console.warning("Flag --image-registry is a preview feature and is subject to change.")
    install(opts)
    console.success(KUBERNETES_SUCCESS.format(opts.namespace))


def init_command(
    ctx: typer.Context,
    kubernetes: Annotated[
        bool, _opt("kubernetes", "Deploy pysentry's control plane to a Kubernetes cluster", "k")
    ] = False,
    slim: Annotated[bool, _opt("slim", "Self-hosted pysentry is always slim", "s")] = False,
    runtime_version: Annotated[
        str, _opt("runtime-version", "Kubernetes: the image tag; self-hosted: must be pysentry's")
    ] = "latest",
    enable_mtls: Annotated[
        bool | None,
        typer.Option(
            "--enable-mtls/--no-enable-mtls",
            help="Enable mTLS (Kubernetes: default true; self-hosted: writes the configuration "
            "with mTLS enabled)",
        ),
    ] = None,
    ca_root_certificate: Annotated[
        str | None, _opt("ca-root-certificate", "The root certificate file")
    ] = None,
    issuer_private_key: Annotated[
        str | None, _opt("issuer-private-key", "The issuer certificate private key")
    ] = None,
    issuer_public_certificate: Annotated[
        str | None, _opt("issuer-public-certificate", "The issuer certificate")
    ] = None,
    dev: Annotated[bool, _opt("dev", "Kubernetes only")] = False,
    wait: Annotated[bool, _opt("wait", "Wait for Kubernetes initialization to complete")] = False,
    timeout: Annotated[
        int, _opt("timeout", "The wait timeout for the Kubernetes installation")
    ] = 300,
    dashboard_version: Annotated[str, _opt("dashboard-version", "Not used")] = "latest",
    namespace: Annotated[
        str, _opt("namespace", "The Kubernetes namespace to install Dapr in", "n")
    ] = "dapr-system",
    enable_ha: Annotated[bool, _opt("enable-ha", "Enable high availability (HA) mode")] = False,
    network: Annotated[str, _opt("network", "Containers only")] = "",
    from_dir: Annotated[str, _opt("from-dir", "Not used")] = "",
    image_variant: Annotated[str, _opt("image-variant", "Containers only")] = "",
    scheduler_volume: Annotated[
        str, _opt("scheduler-volume", "Containers only")
    ] = "dapr_scheduler",
    scheduler_override_broadcast_host_port: Annotated[
        str, _opt("scheduler-override-broadcast-host-port", "Containers only")
    ] = "",
    set_values: Annotated[
        list[str] | None, _opt("set", "Kubernetes: set chart values (key1=val1,key2=val2)")
    ] = None,
    image_registry: Annotated[
        str, _opt("image-registry", "Kubernetes: the image registry (global.registry)")
    ] = "",
    container_runtime: Annotated[str, _opt("container-runtime", "Containers only")] = "docker",
) -> None:
    """Set up $HOME/.dapr (config.yaml, certs/) for self-hosted mode.

    Nothing is downloaded and no containers are started: sentry and daprd ship with this
    package. Existing files are kept, so running it twice is safe.
    """
    home: DaprHome = ctx.obj
    console.pending("Making the jump to hyperspace...")
    if kubernetes:
        options = dict(
            namespace=namespace,
            runtime_version=runtime_version,
            enable_mtls=enable_mtls is not False,  # Dapr's default for -k is true
            enable_ha=enable_ha,
            set_values=tuple(set_values or ()),
            wait=wait,
            timeout_s=timeout,
            image_registry=image_registry,
            ca_root_certificate=ca_root_certificate,
            issuer_private_key=issuer_private_key,
            issuer_public_certificate=issuer_public_certificate,
        )
        _init_kubernetes(
            options,
            slim=slim,
            dev=dev,
            dashboard_version=dashboard_version,
            network=network,
            from_dir=from_dir,
            image_variant=image_variant,
            scheduler_volume=scheduler_volume,
            scheduler_override_broadcast_host_port=scheduler_override_broadcast_host_port,
            container_runtime=container_runtime,
        )
        return
    ignored = _ignored(
        dev=dev,
        wait=wait,
        timeout=timeout,
        dashboard_version=dashboard_version,
        namespace=namespace,
        enable_ha=enable_ha,
        network=network,
        from_dir=from_dir,
        image_variant=image_variant,
        scheduler_volume=scheduler_volume,
        scheduler_override_broadcast_host_port=scheduler_override_broadcast_host_port,
        set_values=set_values or [],
        image_registry=image_registry,
        container_runtime=container_runtime,
    )
    if ignored:
        console.warning(
            "These flags apply to Dapr's containers or Kubernetes, not to pysentry's "
            f"self-hosted init, and are ignored: {', '.join(ignored)}"
        )
    if runtime_version not in ("latest", __version__, f"v{__version__}"):
        console.warning(
            f"--runtime-version {runtime_version} is ignored: pysentry ships daprd {__version__}"
        )
    console.info("Self-hosted mode: nothing to download, sentry and daprd ship with pysentry")
    if slim:
        console.info("--slim: pysentry never starts placement, scheduler, Redis or Zipkin")
    home.root.mkdir(parents=True, exist_ok=True)

    certs = home.certs_dir
    if certs.is_dir():
        mode = stat.S_IMODE(certs.stat().st_mode)
        if mode & 0o077:
            os.chmod(certs, 0o700)
            console.info(f"Kept {certs}; tightened its mode from {mode:04o} to 0700")
        else:
            console.info(f"Kept existing credentials directory {certs}")
    else:
        ensure_private_dir(certs)
        console.info(f"Created credentials directory {certs} (0700)")
    _certs(home, ca_root_certificate, issuer_private_key, issuer_public_certificate)
    _config(home, enable_mtls)

    console.success(
        f"Success! Dapr is initialized in {home.root} (self-hosted). "
        "To get started, go here: https://aka.ms/dapr-getting-started"
    )
    if not enable_mtls:
        console.info(
            "To enable mTLS: run 'dapr init --enable-mtls' (or set spec.mtls.enabled to true in "
            f"{home.config_file}), then run "
            f"'sentry --issuer-credentials {certs} --trust-domain cluster.local'"
        )
    else:
        console.info(
            f"mTLS is enabled: start Sentry with 'sentry --issuer-credentials {certs} "
            "--trust-domain cluster.local', then 'dapr run'"
        )
