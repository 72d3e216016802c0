"""The compose stack's stand-in for a pager: prints every Alertmanager webhook notification.

Alertmanager posts JSON to /page (critical), /ticket (warning) and /heartbeat (the always-firing
ResilienceWatchdog); each alert becomes one log line. GET answers 200 (the compose healthcheck).
Replace the receivers in deploy/alertmanager/alertmanager.yml to notify real people.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # the healthcheck
        self.send_response(200)
        self.end_headers()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            alerts = json.loads(body).get("alerts", [])
        except ValueError:
            alerts = []
        for alert in alerts:
            labels = alert.get("labels", {})
            annotations = alert.get("annotations", {})
            print(
                f"[{self.path.strip('/')}] {alert.get('status', '?').upper()} "
                f"{labels.get('alertname')} severity={labels.get('severity')} "
                f"{labels.get('resilience_service')}/{labels.get('resilience_endpoint')}: "
                f"{annotations.get('summary')} runbook: {annotations.get('runbook_url')}",
                flush=True,
            )
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # quiet: the alerts are the log
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9095
    print(f"alert-sink listening on :{port}", flush=True)
    HTTPServer(("0.0.0.0", port), Handler).serve_forever()
