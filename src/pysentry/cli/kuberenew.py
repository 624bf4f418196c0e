"""``dapr mtls renew-certificate -k``: the new credentials into the cluster, without Helm.

Dapr's CLI runs a ``helm upgrade`` of its chart from the internet chart repository. pysentry
writes the two objects that upgrade re-renders, the Secret and the ConfigMap
``dapr-trust-bundle`` (:mod:`pysentry.cli.kubebundle`), in the namespace of Configuration
``daprsystem``. Everything is read and validated before the first write: the passed files, the
Secret's current ``ca.crt`` (whose roots of other keys stay in the new bundle until
``dapr mtls drop-old-roots -k``), the new bundle as Sentry loads it (with the clock skew of
``daprsystem``'s ``spec.mtls.allowedClockSkew``, 0 when unset, as Dapr), and the kubeconfig
user's RBAC permissions. ``--timeout`` bounds the whole cluster update; ``--restart`` then rolls
out the control plane (:mod:`pysentry.cli.kuberestart`), bounded by ``--timeout`` again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta

from pysentry.cli import console
from pysentry.cli.chainview import describe_root
from pysentry.cli.cluster import api_get, connect, namespace_of, system_config
from pysentry.cli.console import CliError
from pysentry.cli.kubebundle import (
    UNCHANGED,
    Progress,
    bundle_permissions,
    partial_state,
    require,
    write_bundle,
)
from pysentry.cli.kuberestart import restart_control_plane, restart_permissions
from pysentry.cli.renewinputs import RenewInputs, current_anchors, renewal_for
from pysentry.cli.rotation import Renewal
from pysentry.cli.trustbundle import CA_KEY, TRUST_BUNDLE, trust_bundle
from pysentry.clock import system_clock
from pysentry.config.duration import parse_duration
from pysentry.credentials import ISSUER_CERT_FILENAME, ISSUER_KEY_FILENAME
from pysentry.errors import PysentryError
from pysentry.kube.client import JsonObject, KubeApiError, KubeClient
from pysentry.pki.pem import load_certificates

VERSION_FROM = ("dapr-operator", "dapr-sentry")  # Dapr reads the operator's image tag


@dataclass
class _Run:
    """What the update got to: for messages when it stops."""

    progress: Progress = field(default_factory=Progress)
    namespace: str = ""


def clock_skew(config: JsonObject) -> timedelta:
    """``spec.mtls.allowedClockSkew`` of ``daprsystem`` (Go duration; 0 when unset, as Dapr)."""
    value = ((config.get("spec") or {}).get("mtls") or {}).get("allowedClockSkew")
    if value in (None, ""):
        return timedelta(0)
    try:
        return parse_duration(str(value))
    except ValueError as err:
        raise CliError(
            f"Configuration daprsystem in namespace {namespace_of(config)!r}: "
            f"spec.mtls.allowedClockSkew {value!r} is not a duration ({err}); fix it with "
            f"'kubectl -n {namespace_of(config)} edit configurations.dapr.io daprsystem' "
            "(e.g. 15m)"
        ) from err


async def control_plane_version(kube: KubeClient, namespace: str) -> tuple[str | None, str]:
    """The image tag of the operator's (else Sentry's) Deployment, or None and why not (the
    version is only reported and matched with ``--image-variant``: a refused read is no error)."""
    why = f"no {' or '.join(VERSION_FROM)} Deployment"
    for name in VERSION_FROM:
        try:
            deploy = await api_get(
                kube,
                f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
                verb="get",
                resource="deployments.apps",
                namespace=namespace,
            )
        except KubeApiError:  # 404
            continue
        except CliError as err:
            return None, f"{err}"
        containers = ((deploy.get("spec") or {}).get("template") or {}).get("spec") or {}
        for container in containers.get("containers") or []:
            image = str(container.get("image") or "").split("@")[0]
            tail = image.rsplit("/", 1)[-1]
            return (tail.split(":", 1)[1] if ":" in tail else "latest"), ""
    return None, why


def _check_variant(version: str | None, image_variant: str, why: str) -> None:
    if not image_variant:
        return
    if version is None:
        raise CliError(
            f"cannot check --image-variant {image_variant} against the control plane's image "
            f"tag ({why}); drop --image-variant"
        )
    found = version.rsplit("-", 1)[-1] if version.endswith("-mariner") else ""
    if found != image_variant:
        raise CliError(
            f"error in parsing dapr version. found image variant {found!r} is not same as "
            f"provided value {image_variant!r}"
        )


async def _update(
    kube: KubeClient, inputs: RenewInputs, run: _Run, *, restart: bool, image_variant: str
) -> Renewal:
    config = await system_config(kube)
    run.namespace = ns = namespace_of(config)
    skew = clock_skew(config) if inputs.generated else timedelta(0)
    bundle = await trust_bundle(kube, ns)
    current = current_anchors(bundle.secret.get(CA_KEY), bundle.label(CA_KEY))
    renewal = renewal_for(inputs, current, now=system_clock(), skew=skew)
    await require(kube, bundle_permissions(ns) + (restart_permissions(ns) if restart else []))
    console.info("Updating certifcates in your Kubernetes cluster")  # sic, Dapr's text
    version, why = await control_plane_version(kube, ns)
    if version is None:
        console.info(f"Dapr control plane detected in namespace {ns} (version unknown: {why})")
    else:
        console.info(f"Dapr control plane version {version} detected in namespace {ns}")
    _check_variant(version, image_variant, why)
    creds = renewal.credentials
    items = {CA_KEY: creds.ca_pem, ISSUER_CERT_FILENAME: creds.issuer_pem}
    items[ISSUER_KEY_FILENAME] = creds.key_pem
    await write_bundle(kube, bundle, items, run.progress)
    return renewal


def _failed(err: Exception, run: _Run) -> CliError:
    text = f"{err}"
    if UNCHANGED not in text and not run.progress.done and run.progress.current is None:
        text += f"; {UNCHANGED}"
    return CliError(f"certificate rotation failed: {text}")


async def _renew(inputs: RenewInputs, *, timeout_s: int, restart: bool, image_variant: str) -> None:
    run = _Run()
    try:
        kube = await connect()
    except CliError as err:
        raise _failed(err, run) from err
    async with kube:
        try:
            async with asyncio.timeout(timeout_s):
                renewal = await _update(
                    kube, inputs, run, restart=restart, image_variant=image_variant
                )
        except TimeoutError as err:
            why = f"timed out after {timeout_s}s (--timeout)"
            raise CliError(
                "certificate rotation failed: " + partial_state(run.namespace, run.progress, why)
            ) from err
        except (CliError, PysentryError) as err:
            raise _failed(err, run) from err
        console.success(
            "Certificate rotation is successful! Your new certificate is valid through "
            + console.rfc1123(renewal.root.not_valid_after_utc)
        )
        _next_steps(renewal, run.namespace)
        if restart:
            problems = await restart_control_plane(kube, run.namespace, timeout_s=timeout_s)
            if problems:
                raise CliError(
                    "the certificates were renewed, but restarting the control plane failed:\n"
                    + "\n".join(problems)
                )
            console.success("All control plane services have restarted successfully!")


def _next_steps(renewal: Renewal, namespace: str) -> None:
    for root in renewal.expired:
        console.info(f"Left out {describe_root(root, 'expired')}: it no longer verifies anything")
    where = f"Secret and ConfigMap {f'{namespace}/{TRUST_BUNDLE}'!r}"
    if renewal.root_key_changed:
        count = len(load_certificates(renewal.credentials.ca_pem))
        console.warning(
            f"The root key changed. The ca.crt of the {where} now holds {count} root(s), the new "
            "one first, so certificates under the old and the new root both verify wherever "
            "this bundle is loaded. New workload certificates are signed under the new root."
        )
        console.info(
            "Next: sidecars that mount the trust-bundle ConfigMap (pysentry's injector) trust "
            "the new root without a restart; restart every other Dapr-enabled app "
            "('kubectl rollout restart deploy/<app>'): its DAPR_TRUST_ANCHORS was fixed when "
            "its Pod was created."
        )
        console.info(
            "Then, once every sidecar has the new bundle and the old workload certificates have "
            "expired (workloadCertTTL, 24h by default), remove the old root with:\n"
            "    dapr mtls drop-old-roots -k"
        )
    elif not renewal.first:
        console.info(
            "The root key is unchanged: running sidecars keep trusting the new certificates"
        )


def renew_in_cluster(
    inputs: RenewInputs, *, timeout_s: int, restart: bool, image_variant: str
) -> None:
    asyncio.run(_renew(inputs, timeout_s=timeout_s, restart=restart, image_variant=image_variant))
