#!/usr/bin/env python3
"""A Tally webhook receiver with only Python's standard library.

    TALLY_WEBHOOK_SECRET=whsec_... python3 examples/webhook_receiver.py [PORT] [EVENTS_FILE]

It verifies each delivery's signature (HMAC-SHA256 over "<t>.<body>", as Stripe does), refuses
a timestamp more than five minutes from its clock (a replay), drops events it has already
processed (delivery is at least once), and appends each new event to EVENTS_FILE as a line of
JSON, keeping its position (the newest seq) in EVENTS_FILE + ".seq". The test suite runs it
against `tally serve` (crates/tally-cli/tests/events.rs).
"""

import hashlib
import hmac
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

SECRET = os.environ["TALLY_WEBHOOK_SECRET"].encode()
PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
EVENTS = sys.argv[2] if len(sys.argv) > 2 else "events.jsonl"
TOLERANCE_SECONDS = 300


def last_seen():
    try:
        with open(EVENTS + ".seq") as f:
            return int(f.read())
    except FileNotFoundError:
        return 0


def process(event):
    # A real consumer updates its own data here, in the same transaction as its position.
    with open(EVENTS, "a") as f:
        f.write(json.dumps(event) + "\n")


def remember(seq):
    with open(EVENTS + ".seq.tmp", "w") as f:
        f.write(str(seq))
    os.replace(EVENTS + ".seq.tmp", EVENTS + ".seq")


def verified(headers, body):
    fields = [part.split("=", 1) for part in headers.get("Tally-Signature", "").split(",") if "=" in part]
    t = next((v for k, v in fields if k == "t"), None)
    if t is None or not t.isdigit():
        return False
    signed = hmac.new(SECRET, t.encode() + b"." + body, hashlib.sha256).hexdigest()
    matches = any(k == "v1" and hmac.compare_digest(v, signed) for k, v in fields)
    return matches and abs(time.time() - int(t)) <= TOLERANCE_SECONDS


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if not verified(self.headers, body):
            self.send_response(400)
            self.end_headers()
            return
        event = json.loads(body)
        if event["seq"] > last_seen():
            process(event)
            remember(event["seq"])
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    # One request at a time: Tally sends an endpoint's deliveries one after another anyway.
    server = HTTPServer(("127.0.0.1", PORT), Receiver)
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()
