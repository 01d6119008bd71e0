"""Peak memory of `imagelake serve` while N clients upload ~20 MB photos at the same time.

Usage: bench_memory.py BINARY [CLIENTS]. Generates the photos (noise, so they do not compress
below 20 MB), starts the server on a free port over a temporary data dir, uploads every photo at
once, waits until all are processed, and reads the server's peak resident set (VmHWM)."""
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from PIL import Image

ADMIN = "bench-memory-admin"


def photo(seed):
    rng = random.Random(seed)
    im = Image.frombytes("RGB", (5000, 4000), rng.randbytes(5000 * 4000 * 3))
    out = io.BytesIO()
    im.save(out, "JPEG", quality=94)
    return out.getvalue()


def call(method, url, token, body=None, json_body=None):
    data = json.dumps(json_body).encode() if json_body is not None else body
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if json_body is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def main():
    binary, clients = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 16
    photos = [photo(i) for i in range(clients)]
    with tempfile.TemporaryDirectory() as data:
        env = dict(os.environ, IMAGELAKE_ADMIN_TOKEN=ADMIN, IMAGELAKE_RATE_BURST="100000")
        server = subprocess.Popen(
            [binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", data, "--log-format", "json"],
            env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        addr = None
        for line in server.stderr:
            try:
                addr = json.loads(line).get("fields", {}).get("addr")
            except json.JSONDecodeError:
                continue
            if addr:
                break
        threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()
        base = f"http://{addr}"
        key = call("POST", f"{base}/v1/customers", ADMIN, json_body={"name": "m", "email": "m@example.test"})["api_key"]
        ids, started = [], time.time()

        def upload(body):
            ids.append(call("POST", f"{base}/v1/images", key, body=body)["id"])

        threads = [threading.Thread(target=upload, args=(p,)) for p in photos]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for image_id in ids:
            while call("GET", f"{base}/v1/images/{image_id}", key)["status"] == "received":
                time.sleep(0.05)
        elapsed = time.time() - started
        with open(f"/proc/{server.pid}/status") as f:
            peak = next(int(l.split()[1]) for l in f if l.startswith("VmHWM"))
        server.terminate()
        server.wait(timeout=60)
    size = sum(len(p) for p in photos) / len(photos) / 1e6
    print(f"{clients} concurrent uploads of {size:.1f} MB photos (20 MP): all processed in {elapsed:.1f} s; "
          f"server peak RSS {peak / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
