"""A validating admission webhook on 127.0.0.1 that runs a callback the first time it is asked
about a ConfigMap update in one namespace, then allows the update: a deterministic way to change
another object between two writes of the command under test.

It serves with the testbed API server's own certificate (SAN 127.0.0.1, signed by the testbed CA,
which is the webhook's ``caBundle``).
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.k8s.testbed import Testbed

WEBHOOKS = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"


class RaceHook:
    def __init__(self, bed: Testbed, namespace: str, on_first: Callable[[], None]) -> None:
        self.bed, self.ns, self.on_first = bed, namespace, on_first
        self.calls = 0
        self.armed = False
        self.fired = False
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hook.calls += 1
                if hook.armed and not hook.fired:
                    hook.fired = True
                    hook.on_first()
                body = json.dumps(
                    {
                        "apiVersion": "admission.k8s.io/v1",
                        "kind": "AdmissionReview",
                        "response": {"uid": review["request"]["uid"], "allowed": True},
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        pki = bed.workdir / "pki"
        ctx.load_cert_chain(pki / "serving.crt", pki / "serving.key")
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.name = f"race-{namespace}"

    def __enter__(self) -> RaceHook:
        self.thread.start()
        port = self.server.server_address[1]
        self.bed.must(
            "POST",
            WEBHOOKS,
            {
                "metadata": {"name": self.name},
                "webhooks": [
                    {
                        "name": "race.pysentry.test",
                        "clientConfig": {
                            "url": f"https://127.0.0.1:{port}/",
                            "caBundle": base64.b64encode(self.bed.ca_pem).decode(),
                        },
                        "rules": [
                            {
                                "apiGroups": [""],
                                "apiVersions": ["v1"],
                                "operations": ["UPDATE"],
                                "resources": ["configmaps"],
                            }
                        ],
                        "namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": self.ns}
                        },
                        "sideEffects": "None",
                        "admissionReviewVersions": ["v1"],
                        "failurePolicy": "Fail",
                        "timeoutSeconds": 10,
                    }
                ],
            },
        )
        deadline = time.monotonic() + 20
        while self.calls == 0:  # the API server takes the new webhook on after a moment
            assert time.monotonic() < deadline, "the webhook was never called"
            self.bed.must(
                "PATCH",
                f"/api/v1/namespaces/{self.ns}/configmaps/dapr-trust-bundle",
                {"metadata": {"annotations": {"probe": str(time.monotonic())}}},
                content_type="application/merge-patch+json",
            )
            time.sleep(0.1)
        self.armed = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.bed.request("DELETE", f"{WEBHOOKS}/{self.name}")
        self.server.shutdown()
        self.server.server_close()
