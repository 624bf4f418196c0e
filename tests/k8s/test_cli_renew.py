"""``dapr mtls renew-certificate -k`` and ``dapr mtls drop-old-roots -k`` against a real API
server (issue 11 §4): Dapr's three paths, ``--valid-until``, the old root kept until
``drop-old-roots -k``, ``--restart`` and its timeout, a running Sentry that signs with the new
issuer, and bad inputs that write nothing.

The CLI runs as a subprocess with ``KUBECONFIG`` set. It finds the control plane cluster-wide
(the one ``daprsystem``), so this module has its own API server, and every test removes its
``daprsystem`` again (:class:`Plane`).

There is no controller-manager in the testbed, so nothing rolls out a restarted Deployment. In
the ``--restart`` test :class:`tests.k8s.rollout.RolloutStandIn` plays the Deployment and
StatefulSet controllers: when it sees a new ``restartedAt`` in an object's Pod template, it
writes the status a finished rollout has (``observedGeneration`` = ``generation``, every
replica updated and ready). Without it, the timeout test sees the rollout never finish.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from pysentry.cli.console import INFO, rfc1123
from pysentry.pki.bundle import CaBundle
from pysentry.pki.keys import KeyAlgorithm, dump_private_key, generate_key, same_public_key
from pysentry.pki.pem import load_certificates
from pysentry.testing import TestCA
from tests.k8s.build import build_testbed
from tests.k8s.clirun import dapr_batch, private_testbed
from tests.k8s.cluster import (
    BUNDLE,
    sentry_rbac,
    write_kubeconfig,
)
from tests.k8s.racehook import RaceHook
from tests.k8s.renewplane import (
    Plane,
    freeze_secret,
    reader_kubeconfig,
    secret_data,
)
from tests.k8s.rollout import RolloutStandIn
from tests.k8s.sentry import KubeLauncher
from tests.k8s.test_trust_bundle import chains_to, sign_as_pod, wait_for
from tests.k8s.testbed import Testbed, free_port

SUCCESS = "✅  Certificate rotation is successful! Your new certificate is valid through "

bed = private_testbed("cli-renew-bed")


@pytest.fixture
def plane(bed: Testbed, tmp_path: Path) -> Iterator[Plane]:
    p = Plane(bed, tmp_path)
    try:
        yield p
    finally:
        p.remove_system_config()


def roots(pem: bytes) -> tuple[x509.Certificate, ...]:
    return load_certificates(pem)


def loads(items: dict[str, bytes]) -> CaBundle:
    return CaBundle.from_pem(
        items["ca.crt"], items["issuer.crt"], items["issuer.key"], now=datetime.now(UTC)
    )


def test_fresh_keeps_the_old_root_until_drop_old_roots(plane: Plane) -> None:
    old = TestCA.create("cluster.local")
    plane.install(secret_data(old))
    result = plane.run("mtls", "renew-certificate", "-k", "--valid-until", "20")
    assert result.returncode == 0, result
    new = plane.secret()
    bundle = loads(new)
    root = bundle.trust_anchors[0]
    assert result.lines == [
        "⌛  Starting certificate rotation",
        INFO + "generating fresh certificates",
        INFO + "Updating certifcates in your Kubernetes cluster",
        INFO + f"Dapr control plane version 1.16.0 detected in namespace {plane.ns}",
        SUCCESS + rfc1123(root.not_valid_after_utc),
        *result.lines[5:],
    ]
    assert "The root key changed" in result.stdout
    assert "dapr mtls drop-old-roots -k" in result.stdout
    want = datetime.now(UTC) + timedelta(days=20)
    assert abs(root.not_valid_after_utc - want) < timedelta(minutes=2)
    assert [r.serial_number for r in bundle.trust_anchors] == [
        root.serial_number,
        old.root_cert.serial_number,
    ]
    assert plane.configmap_ca() == new["ca.crt"]
    bundle.issuer_cert.verify_directly_issued_by(root)
    assert b"BEGIN PRIVATE KEY" in new["issuer.key"]
    assert (
        plane.labels("secrets")
        == plane.labels("configmaps")
        == {"app.kubernetes.io/managed-by": "Helm"}
    )

    dropped = plane.run("mtls", "drop-old-roots", "-k")
    assert dropped.returncode == 0, dropped
    assert "Dropped" in dropped.stdout and "✅  ca.crt now holds 1 root(s)" in dropped.stdout
    after = plane.secret()
    assert roots(after["ca.crt"]) == (root,)
    assert plane.configmap_ca() == after["ca.crt"]
    assert {k: after[k] for k in ("issuer.crt", "issuer.key")} == {
        k: new[k] for k in ("issuer.crt", "issuer.key")
    }
    versions = plane.versions()
    again = plane.run("mtls", "drop-old-roots", "-k")
    assert again.returncode == 0, again
    assert (
        INFO + f"Nothing to drop: every root in ca.crt of Secret '{plane.ns}/{BUNDLE}' signs the "
        "current issuer"
    ) in again.stdout
    assert plane.versions() == versions


def test_private_key_reissues_the_same_root(plane: Plane, tmp_path: Path) -> None:
    key_file = tmp_path / "root.key"
    key = ec.generate_private_key(ec.SECP256R1())
    key_file.write_bytes(dump_private_key(key))
    plane.install(workloads=False)  # an empty Secret (Sentry never ran), no Deployments
    first = plane.run("mtls", "renew-certificate", "-k", "--private-key", str(key_file))
    assert first.returncode == 0, first
    assert first.lines[1] == INFO + "Using password file to generate root certificate"
    assert first.lines[3] == INFO + (
        f"Dapr control plane detected in namespace {plane.ns} (version unknown: no "
        "dapr-operator or dapr-sentry Deployment)"
    )
    before = loads(plane.secret()).trust_anchors
    assert len(before) == 1 and same_public_key(before[0].public_key(), key.public_key())
    # allowedClockSkew of daprsystem (15m) backdates the certificates, as Dapr
    assert abs(
        before[0].not_valid_before_utc - (datetime.now(UTC) - timedelta(minutes=15))
    ) < timedelta(minutes=2)
    second = plane.run(
        "mtls", "renew-cert", "-k", "--private-key", str(key_file), "--valid-until", "3"
    )
    assert second.returncode == 0, second
    assert "The root key is unchanged" in second.stdout
    items = plane.secret()
    after = loads(items).trust_anchors
    assert len(after) == 1 and after[0].subject == before[0].subject
    assert same_public_key(after[0].public_key(), key.public_key())
    assert after[0].serial_number != before[0].serial_number
    assert plane.configmap_ca() == items["ca.crt"]


def test_provided_certificates_reach_a_running_sentry(
    bed: Testbed, plane: Plane, tmp_path: Path
) -> None:
    old, mine = TestCA.create("cluster.local"), TestCA.create("cluster.local")
    plane.install(secret_data(old))
    sentry_rbac(bed, plane.ns)
    launcher = KubeLauncher(bed, tmp_path)
    try:
        sentry = launcher(plane.ns)
        files = tmp_path / "mine"
        files.mkdir()
        mine.write_credentials(files)
        result = plane.run(
            "mtls",
            "renew-certificate",
            "-k",
            "--ca-root-certificate",
            str(files / "ca.crt"),
            "--issuer-private-key",
            str(files / "issuer.key"),
            "--issuer-public-certificate",
            str(files / "issuer.crt"),
            "--valid-until",
            "5",  # ignored on this path, as Dapr
        )
        assert result.returncode == 0, result
        assert result.lines[1] == INFO + "Using provided certificates"
        assert SUCCESS + rfc1123(mine.root_cert.not_valid_after_utc) in result.stdout
        items = plane.secret()
        assert items["issuer.crt"] == secret_data(mine)["issuer.crt"]
        assert roots(items["ca.crt"]) == (mine.root_cert, old.root_cert)
        sentry.wait_for_log("Issuer credentials changed; reloading", timeout=15)
        wait_for(lambda: plane.configmap_ca() == items["ca.crt"])
        chain = _sign(bed, plane.ns, sentry, items["ca.crt"])
        assert chains_to(chain, items)  # the leaf is signed by the provided issuer
    finally:
        launcher.stop_all()


def _sign(bed: Testbed, ns: str, sentry: Any, anchors: bytes) -> tuple[x509.Certificate, ...]:
    import asyncio

    return asyncio.run(sign_as_pod(bed, ns, sentry, anchors))


def test_restart_rolls_out_the_control_plane(plane: Plane) -> None:
    plane.install(secret_data(TestCA.create("cluster.local")))
    plane.add_workload("statefulsets", "dapr-placement-server")
    with RolloutStandIn(plane.bed, plane.ns) as controller:
        result = plane.run("mtls", "renew-certificate", "-k", "--restart", "--timeout", "30")
    assert result.returncode == 0, result
    for name in (
        "deploy/dapr-sentry",
        "deploy/dapr-sidecar-injector",
        "deploy/dapr-operator",
        "statefulsets/dapr-placement-server",
    ):
        assert INFO + f"Restarting {name}.." in result.lines
    assert f"⚠  deploy/dapr-operator does not exist in namespace {plane.ns!r}: skipped" in (
        result.lines
    )
    assert result.lines[-1] == "✅  All control plane services have restarted successfully!"
    assert sorted(controller.finished) == [  # each rolled out once
        "deployments/dapr-sentry",
        "deployments/dapr-sidecar-injector",
        "statefulsets/dapr-placement-server",
    ]
    deploy = plane.bed.must("GET", f"/apis/apps/v1/namespaces/{plane.ns}/deployments/dapr-sentry")
    stamp = deploy["spec"]["template"]["metadata"]["annotations"][
        "kubectl.kubernetes.io/restartedAt"
    ]
    at = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs(at - datetime.now(UTC)) < timedelta(minutes=2)


def test_restart_that_never_finishes_times_out(plane: Plane) -> None:
    """No stand-in: the rollout is never observed, so ``--timeout 2`` ends the wait."""
    plane.install(secret_data(TestCA.create("cluster.local")))
    before = plane.versions()
    result = plane.run("mtls", "renew-certificate", "-k", "--restart", "--timeout", "2")
    assert result.returncode == 1, result
    assert any(line.startswith(SUCCESS) for line in result.lines)  # the renewal itself is done
    assert plane.versions() != before
    assert "All control plane services" not in result.stdout
    assert result.stderr.startswith(
        "error: the certificates were renewed, but restarting the control plane failed:"
    )
    assert (
        "error in checking status for deployment deploy/dapr-sentry. Error is its rollout did "
        "not finish within 2s (--timeout): waiting for the rollout to be observed by its "
        "controller"
    ) in result.stderr


def test_a_refused_secret_write_leaves_a_safe_state(plane: Plane) -> None:
    """The ConfigMap is written first and trusts the old and the new root, so a Secret write
    that fails leaves Sentry's current issuer trusted; the error says so and how to go on."""
    old = TestCA.create("cluster.local")
    plane.install(secret_data(old))
    binding = freeze_secret(plane)
    secret_before = plane.secret()
    result = plane.run("mtls", "renew-certificate", "-k")
    assert result.returncode == 1, result
    assert plane.secret() == secret_before
    cm_roots = roots(plane.configmap_ca())
    assert len(cm_roots) == 2 and cm_roots[1] == old.root_cert
    ns = plane.ns
    assert result.stderr.startswith(
        f"error: certificate rotation failed: the ConfigMap '{ns}/{BUNDLE}' has the new "
        f"ca.crt, but writing the Secret '{ns}/{BUNDLE}' stopped: "
    ), result.stderr
    assert "frozen" in result.stderr
    assert "That write was refused, so the Secret still holds the previous root" in result.stderr
    assert "Sentry keeps signing as before" in result.stderr
    assert "run the command again" in result.stderr and "to undo, copy" in result.stderr
    assert not any(line.startswith(SUCCESS) for line in result.lines)
    # The undo the message gives, run as printed (kubectl of the testbed's version).
    undo = [line for line in result.stderr.splitlines() if line.startswith("    kubectl ")]
    assert len(undo) == 1, result.stderr
    env = {**os.environ, "KUBECONFIG": str(plane.bed.kubeconfig)}
    env["PATH"] = f"{build_testbed().kubectl.parent}{os.pathsep}{env['PATH']}"
    done = subprocess.run(
        ["bash", "-c", undo[0].strip()],
        cwd=plane.tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert plane.configmap_ca() == secret_before["ca.crt"]
    assert plane.labels("configmaps") == {"app.kubernetes.io/managed-by": "Helm"}

    plane.bed.must("DELETE", binding)
    wait_for(
        lambda: (
            not plane.bed.request(
                "PATCH",
                f"{plane.api}/secrets/{BUNDLE}",
                {"metadata": {"annotations": {"probe": "2"}}},
                content_type="application/merge-patch+json",
            )[0]
            >= 400
        ),
        timeout=20,
    )
    again = plane.run("mtls", "renew-certificate", "-k")
    assert again.returncode == 0, again
    items = plane.secret()
    assert plane.configmap_ca() == items["ca.crt"]
    assert roots(items["ca.crt"])[1:] == (old.root_cert,)  # the first attempt's root is gone


def test_a_secret_changed_meanwhile_sets_the_configmap_back(plane: Plane) -> None:
    """Someone changes the Secret between the command's two writes (a webhook on the
    ConfigMap's update does it, deterministically): the Secret's write is a 409, and the
    ConfigMap goes back to the Secret's ca.crt, so it never trusts less than what signs."""
    old = TestCA.create("cluster.local")
    plane.install(secret_data(old))

    def touch_secret() -> None:
        plane.bed.must(
            "PATCH",
            f"{plane.api}/secrets/{BUNDLE}",
            {"metadata": {"annotations": {"touched": "by someone else"}}},
            content_type="application/merge-patch+json",
        )

    with RaceHook(plane.bed, plane.ns, touch_secret) as hook:
        result = plane.run("mtls", "renew-certificate", "-k")
    assert hook.fired
    assert result.returncode == 1, result
    assert (
        f"the Secret '{plane.ns}/{BUNDLE}' was changed by someone else after this command read "
        f"it (HTTP 409): the rotation stopped, and the ConfigMap '{plane.ns}/{BUNDLE}' was set "
        "back to the Secret's current ca.crt"
    ) in result.stderr
    assert plane.secret() == secret_data(old)
    assert plane.configmap_ca() == secret_data(old)["ca.crt"]


def test_bad_inputs_write_nothing(plane: Plane, tmp_path: Path) -> None:
    current, other = TestCA.create("cluster.local"), TestCA.create("cluster.local")
    plane.install(secret_data(current))
    versions = plane.versions()
    good, mixed, expired = tmp_path / "good", tmp_path / "mixed", tmp_path / "expired"
    for directory, ca in (
        (good, other),
        (mixed, other),
        (
            expired,
            TestCA.create(
                "cluster.local", now=datetime.now(UTC) - timedelta(days=9), ttl=timedelta(days=2)
            ),
        ),
    ):
        directory.mkdir()
        ca.write_credentials(directory)
    (mixed / "issuer.key").write_bytes(secret_data(current)["issuer.key"])  # not its key
    (mixed / "other-root.crt").write_bytes(secret_data(current)["ca.crt"])  # not its root
    damaged = tmp_path / "damaged.crt"
    damaged.write_bytes(secret_data(other)["ca.crt"][:-40])
    ed_key, not_pem = tmp_path / "ed.key", tmp_path / "not-pem.key"
    ed_key.write_bytes(dump_private_key(generate_key(KeyAlgorithm.ED25519)))
    not_pem.write_text("not a key\n")

    def provided(directory: Path, **swap: Path) -> tuple[str, ...]:
        files = {
            "--ca-root-certificate": directory / "ca.crt",
            "--issuer-private-key": directory / "issuer.key",
            "--issuer-public-certificate": directory / "issuer.crt",
        }
        files.update({f"--{k.replace('_', '-')}": v for k, v in swap.items()})
        return tuple(x for flag, path in files.items() for x in (flag, str(path)))

    renew = ("mtls", "renew-certificate", "-k")
    cases: list[tuple[tuple[str, ...], str]] = [
        (
            (*renew, "--ca-root-certificate", str(good / "ca.crt")),
            '"ca-root-certificate", "issuer-private-key" and "issuer-public-certificate" are '
            "not present",
        ),
        ((*renew, *provided(good, ca_root_certificate=damaged)), "--ca-root-certificate '"),
        (
            (*renew, *provided(good, ca_root_certificate=tmp_path / "missing.crt")),
            "missing.crt': file does not exist",
        ),
        ((*renew, *provided(mixed)), "issuer key does not match issuer certificate"),
        (
            (*renew, *provided(good, ca_root_certificate=mixed / "other-root.crt")),
            "issuer chain does not belong to trust anchors",
        ),
        ((*renew, *provided(expired)), "expired"),
        ((*renew, "--private-key", str(ed_key)), "the key is Ed25519, not ECDSA"),
        ((*renew, "--private-key", str(not_pem)), "not PEM-encoded"),
        ((*renew, "--image-variant", "mariner"), "found image variant '' is not same as"),
        ((*renew, "--image-variant", "alpine"), "image variant alpine is not supported"),
    ]
    down = tmp_path / "down.kubeconfig"
    write_kubeconfig(plane.bed, down, "t")
    down.write_text(down.read_text().replace(plane.bed.url, f"https://127.0.0.1:{free_port()}"))
    reader = reader_kubeconfig(plane, tmp_path)
    silent = socket.create_server(("127.0.0.1", 0))  # accepts connections, never answers
    hung = tmp_path / "hung.kubeconfig"
    write_kubeconfig(plane.bed, hung, "t")
    port = silent.getsockname()[1]
    hung.write_text(hung.read_text().replace(plane.bed.url, f"https://127.0.0.1:{port}"))
    calls = [(args, plane.bed.kubeconfig) for args, _ in cases]
    calls += [(renew, reader), (renew, down), (("mtls", "drop-old-roots", "-k"), down)]
    calls += [((*renew, "--timeout", "1"), hung), ((*renew, "--restart"), reader)]
    expects = [expected for _, expected in cases]
    expects += [
        f"may not patch secrets '{BUNDLE}' in namespace '{plane.ns}'; bind it",
        "cannot reach the Kubernetes API server",
        "cannot reach the Kubernetes API server",
        "timed out after 1s (--timeout); nothing was changed",
        f"; nor patch deployments.apps 'dapr-sentry' in namespace '{plane.ns}'; nor patch",
    ]
    with silent:
        results = dapr_batch(plane.home, calls)
    for (args, _), expected, result in zip(calls, expects, results, strict=True):
        assert result.returncode == 1, (args, result)
        assert expected in result.stderr, (args, result.stderr)
        if args[1] == "renew-certificate":
            assert result.stderr.startswith("error: certificate rotation failed: "), result
            assert "nothing was changed" in result.stderr, result.stderr
        assert "BEGIN" not in result.stderr
    assert "; nor get statefulsets.apps 'dapr-placement-server' in" in results[-1].stderr
    assert plane.versions() == versions

    # A damaged ca.crt in the Secret: named, and neither command rewrites it.
    damaged_items = {**secret_data(current), "ca.crt": secret_data(current)["ca.crt"][:-60]}
    secret = plane.bed.must("GET", f"{plane.api}/secrets/{BUNDLE}")
    secret["data"] = {k: base64.b64encode(v).decode() for k, v in damaged_items.items()}
    plane.bed.must("PUT", f"{plane.api}/secrets/{BUNDLE}", secret)
    versions = plane.versions()
    for result in plane.run_all([renew, ("mtls", "drop-old-roots", "-k")]):
        assert result.returncode == 1, result
        assert f"ca.crt of Secret '{plane.ns}/{BUNDLE}': PEM block" in result.stderr, result
    assert plane.versions() == versions

    plane.bed.must("DELETE", f"{plane.api}/secrets/{BUNDLE}")
    result = plane.run(*renew)
    assert result.returncode == 1
    assert f"could not find trust chain secret named {BUNDLE} in namespace {plane.ns}" in (
        result.stderr
    )
    plane.remove_system_config()
    result = plane.run(*renew)
    assert result.returncode == 1 and "system configuration not found" in result.stderr
    cm = plane.bed.must("GET", f"{plane.api}/configmaps/{BUNDLE}")
    assert cm["metadata"]["resourceVersion"] == versions[1]
