"""The ``dapr`` CLI's read-only Kubernetes commands against a real API server (issue 11 §4).

``dapr mtls -k``, ``mtls expiry``, ``mtls export``, ``status -k`` and ``list -k`` run as
subprocesses with ``KUBECONFIG`` pointed at the testbed. The lookups they make are cluster-wide
(the ``daprsystem`` Configuration and the control plane's workloads in *any* namespace), so this
module has its own API server: the session's holds the Configurations and Deployments other
modules leave behind, which would make "which ``daprsystem``" and "nothing installed" a matter
of test order. Each test installs what it needs and removes it again.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import stat
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from pysentry.cli.console import go_time, rfc1123
from pysentry.clock import system_clock
from pysentry.testing import TestCA
from tests.k8s.clirun import (
    STATUS_HEADER,
    Call,
    Kubeconfig,
    Result,
    dapr,
    dapr_batch,
    private_testbed,
    workload,
)
from tests.k8s.cluster import BUNDLE, apply_dapr_crds, service_account_token, write_kubeconfig
from tests.k8s.test_trust_bundle import put_secret
from tests.k8s.testbed import Testbed, free_port

CRD = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/configurations.dapr.io"
HELP = (
    "Please see docs.dapr.io for certificate renewal instructions to avoid service interruptions."
)
WARN = "⚠  Dapr root certificate of your Kubernetes cluster"


bed = private_testbed("cli-read-bed", crds=False)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


def dapr_all(home: Path, calls: list[Call], *, kubeconfig: Kubeconfig) -> list[Result]:
    return dapr_batch(home, [(args, kubeconfig) for args in calls])


def secret_data(ca: TestCA, **override: bytes) -> dict[str, bytes]:
    bundle = ca.bundle
    data = {
        "ca.crt": bundle.anchors_pem(),
        "issuer.crt": bundle.issuer_chain_pem(),
        "issuer.key": bundle.issuer_key_pem(),
    }
    data.update(override)
    return data


class ControlPlane:
    """What the chart puts in one namespace, removed again at the end of the test."""

    def __init__(self, bed: Testbed, namespace: str) -> None:
        self.bed, self.ns = bed, namespace
        self.created: list[str] = []
        bed.must("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})

    def add(self, path: str, body: dict[str, Any]) -> Any:
        out = self.bed.must("POST", path, body)
        self.created.append(f"{path}/{body['metadata']['name']}")
        return out

    def install(self, *, enabled: bool = True, secret: dict[str, bytes] | None = None) -> None:
        self.add(
            f"/apis/dapr.io/v1alpha1/namespaces/{self.ns}/configurations",
            {
                "apiVersion": "dapr.io/v1alpha1",
                "kind": "Configuration",
                "metadata": {"name": "daprsystem"},
                "spec": {
                    "mtls": {
                        "enabled": enabled,
                        "workloadCertTTL": "24h",
                        "controlPlaneTrustDomain": "cluster.local",
                        "sentryAddress": f"dapr-sentry.{self.ns}.svc.cluster.local:443",
                    }
                },
            },
        )
        if secret is not None:
            self.secret(secret)

    def secret(self, items: dict[str, bytes]) -> None:
        data = {k: base64.b64encode(v).decode() for k, v in items.items()}
        body = {"metadata": {"name": BUNDLE}, "type": "Opaque", "data": data}
        self.add(f"/api/v1/namespaces/{self.ns}/secrets", body)
        ca = items.get("ca.crt", b"").decode(errors="replace")
        self.add(
            f"/api/v1/namespaces/{self.ns}/configmaps",
            {"metadata": {"name": BUNDLE}, "data": {"ca.crt": ca}},
        )

    def workload(self, kind: str, app: str, image: str, replicas: int, ready: int) -> None:
        path = f"/apis/apps/v1/namespaces/{self.ns}/{kind}"
        obj = self.add(path, workload(app, kind, image, replicas))
        if ready:
            obj["status"] = {"replicas": replicas, "readyReplicas": ready}
            self.bed.must("PUT", f"{path}/{app}/status", obj)

    def remove(self) -> None:
        for path in reversed(self.created):
            status, out = self.bed.request("DELETE", path)
            assert status in (200, 202, 404), f"DELETE {path}: HTTP {status}: {out!r}"


@pytest.fixture
def plane(bed: Testbed) -> Iterator[ControlPlane]:
    apply_dapr_crds(bed)
    cp = ControlPlane(bed, f"cp-{uuid.uuid4().hex[:10]}")
    yield cp
    cp.remove()


def test_nothing_installed(bed: Testbed, home: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    crd_absent = bed.request("GET", CRD)[0] == 404
    calls = [
        ("mtls", "-k"),
        ("mtls", "expiry"),
        ("mtls", "export", "-o", str(out)),
        ("status", "-k"),
    ]
    for step in ("no CRD", "CRD, no daprsystem"):
        if step == "CRD, no daprsystem":
            apply_dapr_crds(bed)
        elif not crd_absent:
            continue
        status, expiry, export, control_plane = dapr_all(home, calls, kubeconfig=bed.kubeconfig)
        assert status == Result(
            1, "", "error: error checking mTLS: system configuration not found\n"
        ), step
        assert expiry == Result(
            1, "", "error: error getting root cert expiry: system configuration not found\n"
        ), step
        assert export == Result(
            1, "", "error: error exporting trust chain certs: system configuration not found\n"
        ), step
        assert not out.exists()
        assert control_plane == Result(
            1, "", "error: No status returned. Is Dapr initialized in your cluster?\n"
        ), step
    assert crd_absent, "the CRD-less case did not run: this module's API server had the CRD"


def test_mtls_status_expiry_and_export(
    bed: Testbed, plane: ControlPlane, home: Path, tmp_path: Path
) -> None:
    ca = TestCA.create("cluster.local", ttl=timedelta(days=365))
    plane.install(secret=secret_data(ca))
    out = tmp_path / "exported" / "certs"
    calls = [
        ("mtls", "-k"),
        ("mtls", "expiry"),
        ("mtls", "expiry", "-k"),
        ("mtls", "export", "-o", str(out)),
    ]
    before = int((ca.root_cert.not_valid_after_utc - system_clock()).total_seconds() / 3600)
    status, *expiries, export = dapr_all(home, calls, kubeconfig=bed.kubeconfig)
    assert status == Result(0, "Mutual TLS is enabled in your Kubernetes cluster \n", "")

    not_after = go_time(ca.root_cert.not_valid_after_utc)
    for r in expiries:
        assert r.returncode == 0 and r.stderr == "", r
        expected = {
            f"Root certificate expires in {h} hours. Expiry date: " for h in (before, before - 1)
        }
        assert r.stdout.removesuffix(not_after + "\n") in expected, r.stdout

    assert export == Result(0, f"✅  Trust certs successfully exported to {out}\n", ""), export
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert stat.S_IMODE(out.parent.stat().st_mode) == 0o700
    for name, content in secret_data(ca).items():
        assert (out / name).read_bytes() == content
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o600

    path = f"/apis/dapr.io/v1alpha1/namespaces/{plane.ns}/configurations/daprsystem"
    patch = {"spec": {"mtls": {"enabled": False}}}
    bed.must("PATCH", path, patch, content_type="application/merge-patch+json")
    # A self-hosted CA in ~/.dapr/certs wins without -k; -k and --issuer-credentials conflict.
    local = TestCA.create("cluster.local", ttl=timedelta(days=100))
    (home / ".dapr" / "certs").mkdir(parents=True)
    local.write_credentials(home / ".dapr" / "certs")
    calls = [
        ("mtls", "--kubernetes"),
        ("mtls", "expiry"),
        ("mtls", "expiry", "-k"),
        ("mtls", "expiry", "-k", "--issuer-credentials", str(tmp_path)),
    ]
    status, local_expiry, cluster_expiry, conflict = dapr_all(
        home, calls, kubeconfig=bed.kubeconfig
    )
    assert status == Result(0, "Mutual TLS is disabled in your Kubernetes cluster \n", "")
    assert local_expiry.stdout.endswith(go_time(local.root_cert.not_valid_after_utc) + "\n")
    assert cluster_expiry.stdout.endswith(not_after + "\n"), cluster_expiry
    assert conflict.returncode == 2 and "exclude each other" in conflict.stderr, conflict


@pytest.mark.parametrize(
    ("left", "text"),
    [
        (timedelta(days=10, hours=1), "expires in 10 days."),
        (timedelta(hours=12), "expires today."),
        (-timedelta(days=2), "has expired."),
    ],
    ids=["10-days", "today", "expired"],
)
def test_expiry_warning(
    bed: Testbed, plane: ControlPlane, home: Path, left: timedelta, text: str
) -> None:
    ttl = timedelta(days=40)
    ca = TestCA.create("cluster.local", now=system_clock() + left - ttl, ttl=ttl)
    plane.install(secret=secret_data(ca))
    r = dapr(home, "mtls", "-k", kubeconfig=bed.kubeconfig)
    assert r.returncode == 0 and r.stderr == "", r
    expiry = rfc1123(ca.root_cert.not_valid_after_utc)
    assert r.stdout == (
        "Mutual TLS is enabled in your Kubernetes cluster \n"
        f"{WARN} {text} Expiry date: {expiry}. \n {HELP}\n"
    )


def _table(stdout: str) -> list[list[str]]:
    """The rows of a printed table, cut at the columns of its header line."""
    lines = stdout.splitlines()
    header = lines[0]
    starts = [m.start() for m in re.finditer(r"\S+(?: \S+)*", header)]  # titles: 2+ spaces apart
    cuts = [*starts, None]
    return [[line[a:b].strip() for a, b in itertools.pairwise(cuts)] for line in lines]


def test_status_and_list(bed: Testbed, plane: ControlPlane, home: Path) -> None:
    ttl = timedelta(days=40)
    ca = TestCA.create(
        "cluster.local", now=system_clock() + timedelta(days=5, hours=1) - ttl, ttl=ttl
    )
    plane.install(secret=secret_data(ca))
    image = "ghcr.io/example/pysentry"
    plane.workload("deployments", "dapr-sentry", f"{image}:0.1.0", replicas=1, ready=1)
    plane.workload("deployments", "dapr-sidecar-injector", f"{image}:0.1.0", replicas=2, ready=1)
    plane.workload("statefulsets", "dapr-scheduler-server", f"{image}:1.16.0-rc.1", 3, ready=0)
    plane.workload("deployments", "not-dapr", f"{image}:9", replicas=1, ready=1)
    app_pod = {
        "metadata": {"name": "app-a", "annotations": {"dapr.io/enabled": "true"}},
        "spec": {
            "containers": [
                {"name": "app", "image": "example.invalid/app:1"},
                {
                    "name": "daprd",
                    "image": f"{image}:0.1.0",
                    "args": ["--mode", "kubernetes", "--app-id", "orders", "--app-port", "3000"],
                },
            ]
        },
    }
    plain_pod = {
        "metadata": {"name": "plain"},
        "spec": {"containers": [{"name": "app", "image": "example.invalid/app:1"}]},
    }
    plane.add(f"/api/v1/namespaces/{plane.ns}/serviceaccounts", {"metadata": {"name": "default"}})
    plane.add(f"/api/v1/namespaces/{plane.ns}/pods", app_pod)
    plane.add(f"/api/v1/namespaces/{plane.ns}/pods", plain_pod)
    calls = [
        ("status", "-k"),
        ("list", "-k", "--namespace", plane.ns),
        ("list", "-k", "-o", "json"),
        ("list", "-k", "--namespace", "nothing-here"),
    ]
    status, table, as_json, empty = dapr_all(home, calls, kubeconfig=bed.kubeconfig)
    warning = (
        f"{WARN} expires in 5 days. Expiry date: {rfc1123(ca.root_cert.not_valid_after_utc)}. "
        f"\n {HELP}\n"
    )

    assert status.returncode == 0 and status.stderr == "", status
    assert status.stdout.endswith(warning), status.stdout
    rows = _table(status.stdout.removesuffix(warning))
    assert rows[0] == STATUS_HEADER
    ns = plane.ns
    assert [r[:6] for r in rows[1:]] == [
        ["dapr-sentry", ns, "True", "Running", "1", "0.1.0"],
        ["dapr-sidecar-injector", ns, "False", "Pending", "2", "0.1.0"],
        ["dapr-scheduler-server", ns, "False", "Pending", "3", "1.16.0-rc.1"],
    ]
    assert all(r[6].endswith("s") and len(r[7]) == len("2026-12-01 10:00.00") for r in rows[1:])

    notice = '⚠  In future releases, this command will only query the "default" namespace'
    assert table.returncode == 0 and table.stderr.startswith(notice), table
    assert table.stdout.endswith(warning)
    rows = _table(table.stdout.removesuffix(warning))
    assert rows[0] == ["NAMESPACE", "APP ID", "APP PORT", "AGE", "CREATED"]
    assert [r[:3] for r in rows[1:]] == [[ns, "orders", "3000"]]
    listed = json.loads(as_json.stdout.removesuffix(warning))
    assert [{k: v for k, v in e.items() if k not in ("age", "created")} for e in listed] == [
        {"namespace": ns, "appId": "orders", "appPort": "3000"}
    ]
    assert set(listed[0]) == {"namespace", "appId", "appPort", "age", "created"}
    assert empty.returncode == 0 and _table(empty.stdout.removesuffix(warning)) == [
        ["NAMESPACE", "APP ID", "APP PORT", "AGE", "CREATED"]
    ]


def _kubeconfig(bed: Testbed, path: Path, **cluster: str) -> Path:
    config = yaml.safe_load(bed.kubeconfig.read_text())
    config["clusters"][0]["cluster"].update(cluster)
    path.write_text(yaml.safe_dump(config))
    return path


def test_bad_inputs_are_clear_errors_and_write_nothing(
    bed: Testbed, plane: ControlPlane, home: Path, tmp_path: Path
) -> None:
    ca = TestCA.create("cluster.local")
    damaged = ca.anchors_pem().replace(b"\n", b"", 3)[:-40]
    plane.install(secret=secret_data(ca, **{"ca.crt": damaged}))
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep").write_text("untouched")
    status, export = ("mtls", "-k"), ("mtls", "export", "-o", str(out))

    garbled = tmp_path / "garbled"
    garbled.write_text("apiVersion: v1\nusers:\n- name: me\n  user: {token: s3cr3t-TOKEN\n")
    not_config = tmp_path / "not-config"
    not_config.write_text("just a string\n")
    plane.add(f"/api/v1/namespaces/{plane.ns}/serviceaccounts", {"metadata": {"name": "nobody"}})
    token = service_account_token(bed, plane.ns, "nobody")
    no_rbac = write_kubeconfig(bed, tmp_path / "no-rbac", token)
    down = _kubeconfig(bed, tmp_path / "down", server=f"https://127.0.0.1:{free_port()}")
    cases = {
        "missing": (
            tmp_path / "missing",
            "kubeconfig '%s' (from KUBECONFIG) does not exist; set KUBECONFIG",
        ),
        "garbled": (garbled, "kubeconfig '%s': not valid YAML ("),
        "not-config": (not_config, "kubeconfig '%s': not a kubeconfig (expected a mapping"),
        "no-rbac": (
            no_rbac,
            "the Kubernetes API server refused to list configurations.dapr.io in all namespaces: "
            "the user of kubeconfig '%s'",
        ),
        "down": (down, "cannot reach the Kubernetes API server 'https://127.0.0.1:"),
    }
    calls: list[tuple[Call, Path | str | None]] = [
        (args, config) for config, _ in cases.values() for args in (status, export)
    ]
    calls += [(args, bed.kubeconfig) for args in [("mtls", "-k"), ("mtls", "expiry"), export]]
    calls += [(args, no_rbac) for args in [("status", "-k"), ("list", "-k")]]
    calls += [(("status", "-k"), down)]
    results = dapr_batch(home, calls)
    for (name, (config, text)), (on_status, on_export) in zip(
        cases.items(), zip(results[0::2], results[1::2], strict=False), strict=False
    ):
        want = text % config if "%s" in text else text
        assert on_status.returncode == 1 and on_status.stdout == "", (name, on_status)
        assert on_status.stderr.startswith("error: error checking mTLS: " + want), (name, on_status)
        assert on_status.stderr.count("\n") == 1, (name, on_status)
        assert on_export.returncode == 1, (name, on_export)
        assert on_export.stderr.startswith("error: error exporting trust chain certs: " + want)
        assert "s3cr3t" not in on_status.stderr + on_export.stderr, name
    assert "lacks the RBAC permission" in results[6].stderr
    assert "system:serviceaccount:" in results[6].stderr

    on_status, on_expiry, on_export, status_no_rbac, list_no_rbac, status_down = results[
        len(cases) * 2 :
    ]
    assert status_no_rbac.returncode == 1 and status_no_rbac.stderr.startswith(
        "error: the Kubernetes API server refused to list deployments.apps in all namespaces: "
    ), status_no_rbac
    assert list_no_rbac.returncode == 1 and (
        "error: the Kubernetes API server refused to list pods in all namespaces: "
        in list_no_rbac.stderr
    ), list_no_rbac
    assert status_down.returncode == 1 and status_down.stderr.startswith(
        "error: cannot reach the Kubernetes API server 'https://127.0.0.1:"
    ), status_down
    label = f"ca.crt of Secret '{plane.ns}/{BUNDLE}'"
    assert on_status.returncode == 0, on_status
    assert on_status.stdout.startswith("Mutual TLS is enabled in your Kubernetes cluster \n")
    assert f"⚠  cannot check the root certificate's expiry: {label}: PEM block #1" in (
        on_status.stdout
    )
    assert on_expiry.returncode == 1 and on_expiry.stdout == "", on_expiry
    assert on_expiry.stderr.startswith(
        f"error: error getting root cert expiry: {label}: PEM block #1 ('CERTIFICATE') "
    ), on_expiry
    assert "renew it with 'dapr mtls renew-certificate -k'" in on_expiry.stderr
    assert on_export.returncode == 1 and on_export.stderr.startswith(
        f"error: error exporting trust chain certs: {label}: PEM block #1 ('CERTIFICATE') "
    ), on_export
    assert on_export.stderr.endswith("; renew it with 'dapr mtls renew-certificate -k'\n")

    # The issuer key of another CA; then a Secret Sentry has not filled yet.
    other = TestCA.create("cluster.local")
    put_secret(bed, plane.ns, secret_data(ca, **{"issuer.key": other.bundle.issuer_key_pem()}))
    (mismatch,) = dapr_batch(home, [(export, bed.kubeconfig)])
    assert mismatch.returncode == 1 and mismatch.stderr.startswith(
        f"error: error exporting trust chain certs: issuer.key of Secret '{plane.ns}/{BUNDLE}': "
        "does not match the issuer certificate in issuer.crt of Secret"
    ), mismatch
    put_secret(bed, plane.ns, {})
    unfilled = dapr_batch(home, [(a, bed.kubeconfig) for a in (status, ("mtls", "expiry"), export)])
    assert unfilled[0] == Result(0, "Mutual TLS is enabled in your Kubernetes cluster \n", "")
    assert unfilled[1] == Result(
        1,
        "",
        "error: error getting root cert expiry: root certificate not loaded yet, please try "
        "again in few minutes\n",
    )
    assert unfilled[2].returncode == 1 and unfilled[2].stderr.startswith(
        f"error: error exporting trust chain certs: Secret '{plane.ns}/{BUNDLE}' has no "
        "'ca.crt' or 'issuer.crt' or 'issuer.key': Sentry has not filled"
    ), unfilled[2]
    assert sorted(p.name for p in out.iterdir()) == ["keep"]
    assert (out / "keep").read_text() == "untouched"
