"""The two small apps of the quickstart, written to files and started with ``dapr run``.

App B is an HTTP server (``POST /hello``) that reports the caller identity its sidecar verified.
App A waits for its sidecar, calls B through it and prints both identities. Both use only the
standard library and the environment ``dapr run`` gives them (``APP_PORT``, ``DAPR_HTTP_PORT``).
"""

from __future__ import annotations

APP_B = r"""
import json, os, sys, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

def my_identity():
    url = f"http://127.0.0.1:{os.environ['DAPR_HTTP_PORT']}/v1.0/metadata"
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.load(resp).get("mtls", {}).get("spiffeId", "")

class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        caller = self.headers.get("dapr-caller-app-id", "")
        caller_ns = self.headers.get("dapr-caller-namespace", "")
        print(f"received {self.path} from {caller!r} (namespace {caller_ns!r}): {body.decode()}")
        reply = json.dumps({"reply": "hello from appB", "callee_spiffe_id": my_identity(),
                            "caller_app_id": caller, "caller_namespace": caller_ns}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["APP_PORT"])), Handler)
print(f"appB listening on 127.0.0.1:{os.environ['APP_PORT']}")
sys.stdout.flush()
try:
    server.serve_forever()
except KeyboardInterrupt:
    print("appB stopping")
"""

APP_A = r"""
import json, os, sys, time, urllib.error, urllib.request
base = f"http://127.0.0.1:{os.environ['DAPR_HTTP_PORT']}/v1.0"
stop_file = sys.argv[1]
deadline = time.monotonic() + 20
while True:
    try:
        with urllib.request.urlopen(base + "/healthz/outbound", timeout=2) as resp:
            if resp.status == 204:
                break
    except (urllib.error.URLError, OSError):
        pass
    if time.monotonic() > deadline:
        sys.exit("sidecar not ready")
    time.sleep(0.1)
with urllib.request.urlopen(base + "/metadata", timeout=5) as resp:
    me = json.load(resp)["mtls"]["spiffeId"]
request = urllib.request.Request(base + "/invoke/appB/method/hello", data=b'{"greeting":"hi"}',
                                 headers={"Content-Type": "application/json"}, method="POST")
for attempt in range(50):
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            answer = json.load(resp)
        break
    except urllib.error.HTTPError as err:  # appB not registered yet: retry briefly
        last = f"{err.code} {err.read().decode()}"
        time.sleep(0.2)
else:
    sys.exit(f"call failed: {last}")
print(f"called appB through the sidecars: {answer['reply']!r}")
print(f"caller identity (appA's SVID): {me}")
print(f"callee identity (appB's SVID): {answer['callee_spiffe_id']}")
print(f"appB's sidecar verified the caller as app {answer['caller_app_id']!r} "
      f"in namespace {answer['caller_namespace']!r}")
print("DEMO-CALL-OK")
sys.stdout.flush()
deadline = time.monotonic() + 30
while not os.path.exists(stop_file) and time.monotonic() < deadline:
    time.sleep(0.1)
"""
