#!/usr/bin/env python3
"""A fake Kubernetes API server for kxlb's list/watch tests (Python 3 stdlib only).

Serves HTTPS on 127.0.0.1 (a free port, printed as "PORT <n>" on stdout) with a test PKI it creates
in --dir with the openssl CLI: ca.crt, server.crt (IP:127.0.0.1, IP:::1, DNS:localhost), client.crt
and client.key (signed by the CA, for mutual TLS) and other-ca.crt (an unrelated CA).

Faithful to what a list/watch client relies on: one global resourceVersion counter, paginated lists
(limit + continue, snapshots, expired continue tokens answer 410), watches from a resourceVersion
as chunked line-delimited JSON events with bookmarks, 410 for compacted resourceVersions (as an
ERROR event like the real apiserver, or as HTTP 410), bearer tokens or client certificates.

The test drives it with GET /_control?c=<url-encoded JSON> (or POST /_control with a JSON body):
  {"cmd": "put", "path": P, "object": {...}}            create or replace (ADDED / MODIFIED)
  {"cmd": "put_many", "items": [{"path": P, "object": {...}}, ...]}  several puts (bulk loading)
  {"cmd": "delete", "path": P, "namespace": N, "name": X}
  {"cmd": "bookmark"}                                     a BOOKMARK to every active watch
  {"cmd": "compact"}                                      older resourceVersions and continue tokens -> 410
  {"cmd": "gone_watches"}                                 an ERROR 410 event to every active watch
  {"cmd": "drop_watches"}                                 close active watch connections abruptly
  {"cmd": "stall_watches"}                                active watches go silent (new ones are served)
  {"cmd": "inject", "path": P, "line": "..."}             a raw line to the active watches of P
  {"cmd": "set", "tokens": [...], "client_certs": bool, "gone_mode": "event"|"http",
          "list_delay": {P: seconds}, "max_page": n, "expire_continue": n (the next n continue
          requests answer 410)}
  {"cmd": "requests", "clear": bool}                      the request log
  {"cmd": "watches"}                                      number of active watches per path
"""
import argparse
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OPENSSL_CNF = """
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[v3_server]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,IP:::1,DNS:localhost
[v3_client]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
"""

KINDS = {"/api/v1/services": ("Service", "v1"),
         "/apis/discovery.k8s.io/v1/endpointslices": ("EndpointSlice", "discovery.k8s.io/v1")}


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_pki(d):
    cnf = os.path.join(d, "openssl.cnf")
    with open(cnf, "w") as f:
        f.write(OPENSSL_CNF)
    p = lambda n: os.path.join(d, n)
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", "-config", cnf, "-extensions", "v3_ca", *key, "-days", "2",
                "-subj", "/CN=kxlb-test-" + ca, "-keyout", p(ca + ".key"), "-out", p(ca + ".crt"))
    for leaf, ext in (("server", "v3_server"), ("client", "v3_client")):
        openssl("req", "-new", "-config", cnf, *key, "-subj", "/CN=kxlb-test-" + leaf,
                "-keyout", p(leaf + ".key"), "-out", p(leaf + ".csr"))
        openssl("x509", "-req", "-in", p(leaf + ".csr"), "-CA", p("ca.crt"), "-CAkey", p("ca.key"),
                "-CAcreateserial", "-days", "2", "-extfile", cnf, "-extensions", ext, "-out", p(leaf + ".crt"))


def status(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


class State:
    def __init__(self):
        self.cond = threading.Condition()
        self.rv = 1000
        self.objects = {p: {} for p in KINDS}     # path -> key -> object
        self.history = {p: [] for p in KINDS}     # path -> [(rv, type, object)]
        self.compacted = 0                        # watches from below this rv get 410
        self.continues = {}                       # token -> (snapshot rv, remaining items)
        self.tokens = {"test-token"}
        self.client_certs = True
        self.gone_mode = "event"
        self.list_delay = {}
        self.max_page = 0
        self.expire_continue = 0
        self.requests = []
        self.next_watch = 0
        self.watches = {}                         # watch id -> path
        self.dropped = set()
        self.stalled = set()
        self.gone = set()
        self.bookmarks = {}                       # watch id -> pending bookmark count
        self.injected = {}                        # watch id -> [raw lines]

    def mutate(self, path, kind, obj):
        self.rv += 1
        obj = json.loads(json.dumps(obj))
        obj.setdefault("metadata", {})["resourceVersion"] = str(self.rv)
        self.history[path].append((self.rv, kind, obj))
        self.cond.notify_all()
        return obj

    def control(self, c):
        cmd = c.get("cmd")
        with self.cond:
            if cmd == "put":
                path, obj = c["path"], c["object"]
                m = obj.setdefault("metadata", {})
                key = m.get("namespace", "") + "/" + m["name"]
                old = self.objects[path].get(key)
                m.setdefault("uid", old["metadata"]["uid"] if old else str(uuid.uuid4()))
                kind, api = KINDS[path]
                obj.setdefault("kind", kind)
                obj.setdefault("apiVersion", api)
                obj = self.mutate(path, "MODIFIED" if old else "ADDED", obj)
                self.objects[path][key] = obj
                return {"resourceVersion": obj["metadata"]["resourceVersion"], "uid": m["uid"]}
            if cmd == "put_many":  # self.cond's lock is re-entrant
                for item in c["items"]:
                    self.control({"cmd": "put", "path": item["path"], "object": item["object"]})
                return {"ok": True, "resourceVersion": str(self.rv)}
            if cmd == "delete":
                path = c["path"]
                old = self.objects[path].pop(c.get("namespace", "") + "/" + c["name"], None)
                if old is None:
                    return {"error": "not found"}
                return {"resourceVersion": self.mutate(path, "DELETED", old)["metadata"]["resourceVersion"]}
            if cmd == "bookmark":
                for w in self.watches:
                    self.bookmarks[w] = self.bookmarks.get(w, 0) + 1
            elif cmd == "compact":
                self.compacted = self.rv
                for p in self.history:
                    self.history[p] = []
                self.continues.clear()
            elif cmd == "gone_watches":
                self.gone |= set(self.watches)
            elif cmd == "drop_watches":
                self.dropped |= set(self.watches)
            elif cmd == "stall_watches":
                self.stalled |= set(self.watches)
            elif cmd == "inject":
                for w, p in self.watches.items():
                    if p == c["path"]:
                        self.injected.setdefault(w, []).append(c["line"])
            elif cmd == "set":
                if "tokens" in c:
                    self.tokens = set(c["tokens"])
                for k in ("client_certs", "gone_mode", "list_delay", "max_page", "expire_continue"):
                    if k in c:
                        setattr(self, k, c[k])
            elif cmd == "requests":
                out = list(self.requests)
                if c.get("clear"):
                    self.requests.clear()
                return {"requests": out}
            elif cmd == "watches":
                counts = {}
                for p in self.watches.values():
                    counts[p] = counts.get(p, 0) + 1
                return {"watches": counts}
            else:
                return {"error": "unknown cmd %r" % cmd}
            self.cond.notify_all()
            return {"ok": True}


STATE = State()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        # Like Go's net/http (the real apiserver): no Nagle, so small writes do not wait for delayed ACKs.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request.do_handshake()  # here, not in the accept loop: a failing client blocks no one
        super().setup()

    def log_message(self, *args):
        pass

    def send_json(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def chunk(self, obj):
        line = (obj if isinstance(obj, str) else json.dumps(obj)) + "\n"
        data = line.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if url.path != "/_control":
            return self.send_json(405, status(405, "MethodNotAllowed", "read-only fake"))
        self.send_json(200, STATE.control(json.loads(body)))

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        if url.path == "/_control":
            return self.send_json(200, STATE.control(json.loads(q.get("c", "{}"))))
        auth = self.headers.get("Authorization", "")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
        cert = bool(self.connection.getpeercert())
        with STATE.cond:
            STATE.requests.append({"path": url.path, "query": q, "token": token, "client_cert": cert})
            ok = token in STATE.tokens or (cert and STATE.client_certs)
        if not ok:
            return self.send_json(401, status(401, "Unauthorized", "Unauthorized"))
        if url.path not in KINDS:
            return self.send_json(404, status(404, "NotFound", "the server could not find the requested resource"))
        if q.get("watch") in ("1", "true"):
            return self.watch(url.path, q)
        self.list(url.path, q)

    def list(self, path, q):
        delay = STATE.list_delay.get(path, 0)
        if delay:
            time.sleep(delay)
        kind, api = KINDS[path]
        limit = int(q.get("limit", "0") or "0")
        with STATE.cond:
            if STATE.max_page and (limit == 0 or limit > STATE.max_page):
                limit = STATE.max_page
            token = q.get("continue", "")
            if token:
                if STATE.expire_continue > 0:
                    STATE.expire_continue -= 1
                    STATE.continues.pop(token, None)
                if token not in STATE.continues:
                    return self.send_json(410, status(410, "Expired", "The provided continue parameter is too old"))
                rv, items = STATE.continues.pop(token)
            else:
                rv = STATE.rv
                items = [STATE.objects[path][k] for k in sorted(STATE.objects[path])]
            meta = {"resourceVersion": str(rv)}
            if limit and len(items) > limit:
                items, rest = items[:limit], items[limit:]
                token = uuid.uuid4().hex
                STATE.continues[token] = (rv, rest)
                meta["continue"] = token
            body = {"kind": kind + "List", "apiVersion": api, "metadata": meta, "items": items}
        self.send_json(200, body)

    def watch(self, path, q):
        try:
            since = int(q.get("resourceVersion") or "0")
        except ValueError:
            return self.send_json(400, status(400, "BadRequest", "bad resourceVersion"))
        deadline = time.monotonic() + int(q.get("timeoutSeconds") or "1800")
        with STATE.cond:
            too_old = since < STATE.compacted
            if too_old and STATE.gone_mode == "http":
                return self.send_json(410, status(410, "Expired", "too old resource version: %d (%d)" %
                                                  (since, STATE.compacted)))
            wid = STATE.next_watch
            STATE.next_watch += 1
            STATE.watches[wid] = path
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        kind, api = KINDS[path]
        cursor = since
        try:
            if too_old:
                self.chunk({"type": "ERROR", "object": status(410, "Expired", "too old resource version")})
                return self.end_chunks()
            while True:
                out = []
                with STATE.cond:
                    while True:
                        if wid in STATE.dropped:
                            self.connection.shutdown(socket.SHUT_RDWR)
                            self.close_connection = True
                            return
                        if time.monotonic() >= deadline:
                            break
                        if wid not in STATE.stalled:
                            if wid in STATE.gone:
                                out.append({"type": "ERROR", "object": status(410, "Expired", "too old")})
                            for rv, typ, obj in STATE.history[path]:
                                if rv > cursor:
                                    out.append({"type": typ, "object": obj})
                                    cursor = rv
                            out += STATE.injected.pop(wid, [])
                            for _ in range(STATE.bookmarks.pop(wid, 0)):
                                out.append({"type": "BOOKMARK", "object": {
                                    "kind": kind, "apiVersion": api,
                                    "metadata": {"resourceVersion": str(max(cursor, STATE.rv))}}})
                                cursor = max(cursor, STATE.rv)
                        if out:
                            break
                        STATE.cond.wait(0.05)
                if not out:
                    return self.end_chunks()
                for ev in out:
                    self.chunk(ev)
                if any(isinstance(ev, dict) and ev["type"] == "ERROR" for ev in out):
                    return self.end_chunks()
        except OSError:
            self.close_connection = True
        finally:
            with STATE.cond:
                STATE.watches.pop(wid, None)
                for s in (STATE.dropped, STATE.stalled, STATE.gone):
                    s.discard(wid)

    def end_chunks(self):
        self.wfile.write(b"0\r\n\r\n")


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # TLS failures and dropped clients are part of the tests


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", required=True, help="where the PKI is written")
    args = ap.parse_args()
    make_pki(args.dir)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(args.dir, "server.crt"), os.path.join(args.dir, "server.key"))
    ctx.load_verify_locations(os.path.join(args.dir, "ca.crt"))
    ctx.verify_mode = ssl.CERT_OPTIONAL
    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
    print("PORT %d" % httpd.server_address[1], flush=True)
    httpd.serve_forever(poll_interval=0.1)


if __name__ == "__main__":
    sys.exit(main())
