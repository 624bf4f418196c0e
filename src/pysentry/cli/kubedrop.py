"""``dapr mtls drop-old-roots -k``: the roots the issuer does not use leave the cluster's bundle.

The Secret ``dapr-trust-bundle`` of ``daprsystem``'s namespace is read and checked exactly as a
credentials directory is (:func:`pysentry.cli.droproots.plan_drop`); the new ``ca.crt`` goes
into the ConfigMap and the Secret with the same writer as ``renew-certificate -k``
(:mod:`pysentry.cli.kubebundle`): RBAC checked first, ``resourceVersion`` preconditions, a
stopped write explained.
"""

from __future__ import annotations

import asyncio

from pysentry.cli.backend import Credentials
from pysentry.cli.cluster import connect, control_plane_namespace
from pysentry.cli.console import CliError
from pysentry.cli.droproots import Drop, plan_drop, report_drop
from pysentry.cli.kubebundle import Progress, bundle_permissions, require, write_bundle
from pysentry.cli.trustbundle import CA_KEY, TRUST_BUNDLE, trust_bundle
from pysentry.credentials import CA_FILENAME, ISSUER_CERT_FILENAME, ISSUER_KEY_FILENAME

NAMES = (CA_FILENAME, ISSUER_CERT_FILENAME, ISSUER_KEY_FILENAME)


async def _drop() -> Drop | None:
    async with await connect() as kube:
        namespace = await control_plane_namespace(kube)
        bundle = await trust_bundle(kube, namespace)
        where = f"Secret {f'{namespace}/{TRUST_BUNDLE}'!r}"
        missing = [name for name in NAMES if name not in bundle.secret]
        if missing:
            raise CliError(
                f"cannot drop old roots: the {where} has no {', '.join(map(repr, missing))}; "
                "Sentry fills it at its first start, or run 'dapr mtls renew-certificate -k'"
            )
        data = Credentials(*(bundle.secret[name] for name in NAMES))
        plan = plan_drop(data, {name: bundle.label(name) for name in NAMES}, where)
        if plan is None:
            return None
        await require(kube, bundle_permissions(namespace))
        await write_bundle(kube, bundle, {CA_KEY: plan.ca_pem}, Progress())
        return plan


def drop_in_cluster() -> None:
    plan = asyncio.run(_drop())
    if plan is not None:
        report_drop(plan)
