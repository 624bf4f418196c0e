"""``dapr mtls`` (status), ``dapr mtls expiry`` and ``dapr mtls export``.

Self-hosted, they work on the credentials directory ``~/.dapr/certs`` unless
``--issuer-credentials DIR`` says otherwise; ``-k`` asks the Kubernetes cluster of the current
kubeconfig (:mod:`pysentry.cli.kubemtls`). Dapr's ``expiry`` and ``export`` take no ``-k`` and
always go to Kubernetes; here :func:`use_kubernetes` picks: ``-k`` is Kubernetes,
``--issuer-credentials`` self-hosted, and without either the default credentials directory wins
when it has a ``ca.crt``, else the cluster when a kubeconfig is configured. Output strings are
Dapr's; errors exit non-zero.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Annotated

import typer
from cryptography import x509

from pysentry.cli import console
from pysentry.cli.backend import SelfHostedCredentials, self_hosted
from pysentry.cli.certexpiry import expiry_warning_for
from pysentry.cli.configfile import read_mtls
from pysentry.cli.console import CliError
from pysentry.cli.export import export
from pysentry.cli.home import DaprHome
from pysentry.cli.pemfile import certificates
from pysentry.clock import system_clock
from pysentry.credentials import CA_FILENAME

CredentialsOption = Annotated[
    Path | None,
    typer.Option(
        "--issuer-credentials",
        help="Directory with ca.crt, issuer.crt and issuer.key (default: $HOME/.dapr/certs).",
    ),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Dapr configuration file (default: $HOME/.dapr/config.yaml)."
    ),
]
KubernetesOption = Annotated[
    bool,
    typer.Option(
        "--kubernetes",
        "-k",
        help="Kubernetes mode (not supported by this command: it works on local processes).",
    ),
]
ClusterOption = Annotated[
    bool,
    typer.Option(
        "--kubernetes",
        "-k",
        help="Use the Kubernetes cluster of the current kubeconfig (KUBECONFIG, ~/.kube/config).",
    ),
]

mtls_app = typer.Typer(
    help="Check if mTLS is enabled; inspect, export and renew the CA credentials.",
    invoke_without_command=True,
    no_args_is_help=False,
)


def kubemtls() -> ModuleType:
    """The Kubernetes side, imported when used: its client libraries take a second to load."""
    from pysentry.cli import kubemtls as module

    return module


def refuse_kubernetes(kubernetes: bool) -> None:
    if kubernetes:
        raise CliError(
            "Kubernetes mode (-k) is not supported by `dapr run` and `dapr stop`: they start "
            "and stop local processes; deploy apps to Kubernetes with their own manifests "
            "(the sidecar injector adds daprd), or drop -k"
        )


def credentials_of(ctx: typer.Context, directory: Path | None) -> SelfHostedCredentials:
    home: DaprHome = ctx.find_root().obj
    return self_hosted(directory, home.certs_dir)


def use_kubernetes(ctx: typer.Context, kubernetes: bool, issuer_credentials: Path | None) -> bool:
    """Where ``expiry``/``export`` read: ``-k`` the cluster, ``--issuer-credentials`` that
    directory; neither: ``~/.dapr/certs`` when it has a ``ca.crt``, else the cluster when a
    kubeconfig is configured, else ``~/.dapr/certs`` (whose error says what is missing)."""
    if kubernetes and issuer_credentials is not None:
        raise CliError(
            "-k (the cluster's trust bundle) and --issuer-credentials (a local directory) "
            "exclude each other; pass one of them",
            exit_code=2,
        )
    if kubernetes or issuer_credentials is not None:
        return kubernetes
    if credentials_of(ctx, None).has(CA_FILENAME):
        return False
    from pysentry.cli.cluster import kubeconfig_path

    return kubeconfig_path() is not None


def first_root(anchors_pem: bytes, label: str) -> x509.Certificate:
    """The first certificate of ``ca.crt``, as Dapr's ``Expiry()`` reads it (the file must be
    whole: a damaged block anywhere is an error)."""
    return certificates(anchors_pem, label)[0]


@mtls_app.callback()
def mtls_status(
    ctx: typer.Context,
    config: ConfigOption = None,
    kubernetes: ClusterOption = False,
) -> None:
    """Check if mTLS is enabled (the self-hosted configuration file, or with -k the cluster)."""
    if ctx.invoked_subcommand is not None:
        return
    if kubernetes:
        kubemtls().run(kubemtls().mtls_status())
        return
    home: DaprHome = ctx.find_root().obj
    path = (config or home.config_file).expanduser().absolute()
    settings = read_mtls(path, required=True)
    state = "enabled" if settings.enabled else "disabled"
    print(f"Mutual TLS is {state} in your self-hosted configuration {path}")
    warn_if_root_expires(credentials_of(ctx, None))


@mtls_app.command("expiry")
def expiry_command(
    ctx: typer.Context,
    issuer_credentials: CredentialsOption = None,
    kubernetes: ClusterOption = False,
) -> None:
    """Checks the expiry of the root certificate."""
    if use_kubernetes(ctx, kubernetes, issuer_credentials):
        kubemtls().run(kubemtls().expiry())
        return
    creds = credentials_of(ctx, issuer_credentials)
    root = first_root(creds.read_anchors(), creds.label(CA_FILENAME))
    not_after = root.not_valid_after_utc
    hours = console.hours_until(not_after, system_clock())
    print(f"Root certificate expires in {hours} hours. Expiry date: {console.go_time(not_after)}")


@mtls_app.command("export")
def export_command(
    ctx: typer.Context,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="The output directory path to save the certs")
    ] = Path("."),
    issuer_credentials: CredentialsOption = None,
    kubernetes: ClusterOption = False,
) -> None:
    """Export the root CA, issuer cert and key (of the credentials directory or the cluster)."""
    target = out.expanduser().absolute()
    if use_kubernetes(ctx, kubernetes, issuer_credentials):
        kubemtls().run(kubemtls().export(target))
        return
    creds = credentials_of(ctx, issuer_credentials)
    try:
        replaced = export(creds, target)
    except CliError as err:
        raise CliError(f"error exporting trust chain certs: {err}") from err
    if replaced:
        console.info(f"Replaced the existing {', '.join(replaced)} in {target}")
    console.success(f"Trust certs successfully exported to {target}")
    warn_if_root_expires(creds)


SELF_HOSTED_WHERE = "Dapr root certificate of your self-hosted installation"


def expiry_warning(anchors: tuple[x509.Certificate, ...], now: datetime) -> str | None:
    """Dapr's ``CheckForCertExpiry`` text (A.6) for the earliest-expiring root, or None."""
    if not anchors:
        return None
    not_after = min(cert.not_valid_after_utc for cert in anchors)
    return expiry_warning_for(not_after, now, SELF_HOSTED_WHERE)


def warn_if_root_expires(creds: SelfHostedCredentials) -> None:
    """PostRun check of Dapr's CLI: silent without a ``ca.crt``, as Dapr. A damaged or unreadable
    one is a warning naming it (Dapr's lenient read would check the roots around the damage)."""
    if not creds.has(CA_FILENAME):
        return
    try:
        anchors = certificates(creds.read_anchors(), creds.label(CA_FILENAME))
    except CliError as err:
        console.warning(f"cannot check the root certificate's expiry: {err}")
        return
    text = expiry_warning(anchors, system_clock())
    if text is not None:
        console.warning(text)
