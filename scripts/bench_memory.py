"""Peak memory of `imagelake serve` under the uploads that cost the most memory.

Usage: bench_memory.py BINARY [CASE ...]. Each case starts the server on a free port over a
temporary data dir with default settings, uploads all of its files at once, waits until every
upload is settled (processed or failed; a refused upload counts as settled), and reads the
server's peak resident set (VmHWM). Cases:

  photos       16 distinct 20 MP JPEGs of noise (about 22 MB each, so they do not compress)
  deep-png     4 distinct 100 MP 16-bit RGBA PNGs (about 0.8 MB each; 800 MB of samples each)
  interlaced   4 distinct 100 MP 16-bit RGBA Adam7-interlaced PNGs
  gif-frames   8 GIFs of 35 bytes: a 1x1 screen with one 10000x10000 frame
  progressive  4 distinct 100 MP progressive JPEGs with 4:2:0 chroma (coefficients: 300 MB each)
  mixed        all of the above at once

Without CASE, every case runs in turn. Prints one line a case, and the settings' bound.
"""
import io
import json
import os
import random
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zlib

from PIL import Image

ADMIN = "bench-memory-admin"
MiB = 1 << 20


def noise_photo(seed):
    rng = random.Random(seed)
    im = Image.frombytes("RGB", (5000, 4000), rng.randbytes(5000 * 4000 * 3))
    out = io.BytesIO()
    im.save(out, "JPEG", quality=94)
    return out.getvalue()


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def deep_png(seed, side=10000, interlaced=False):
    """A side x side 16-bit RGBA PNG of one colour (per seed), written row by row."""
    pixel = struct.pack(">4H", 1000 + seed, 2000, 3000, 65535)
    deflate = zlib.compressobj(6)
    idat = []
    passes = ADAM7 if interlaced else [(0, 0, 1, 1)]
    for x0, y0, dx, dy in passes:
        if x0 >= side or y0 >= side:
            continue
        row = b"\0" + pixel * len(range(x0, side, dx))
        for _ in range(y0, side, dy):
            idat.append(deflate.compress(row))
    idat.append(deflate.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 16, 6, 0, 0, 1 if interlaced else 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(idat)) + chunk(b"IEND", b"")


def gif_frame_bomb(side=10000):
    """A 1x1 screen whose only frame declares side x side, with a few bytes of image data."""
    return (b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + bytes([0, 0, 0, 255, 255, 255])
            + b"\x2c" + struct.pack("<HHHHB", 0, 0, side, side, 0)
            + bytes([2, 2, 0x4C, 0x01, 0, 0x3B]))


def progressive_jpeg(seed, side=10000):
    im = Image.new("RGB", (side, side), (seed * 40 % 256, 120, 200))
    out = io.BytesIO()
    im.save(out, "JPEG", quality=90, progressive=True, subsampling=2)
    return out.getvalue()


CASES = {
    "photos": lambda: [noise_photo(i) for i in range(16)],
    "deep-png": lambda: [deep_png(i) for i in range(4)],
    "interlaced": lambda: [deep_png(i, interlaced=True) for i in range(4)],
    "gif-frames": lambda: [gif_frame_bomb(10000 - i) for i in range(8)],
    "progressive": lambda: [progressive_jpeg(i) for i in range(4)],
}
CASES["mixed"] = lambda: [f for name in ["photos", "deep-png", "gif-frames", "progressive"] for f in CASES[name]()]


def call(method, url, token, body=None, json_body=None):
    data = json.dumps(json_body).encode() if json_body is not None else body
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if json_body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def run(binary, files):
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
        _, customer = call("POST", f"{base}/v1/customers", ADMIN, json_body={"name": "m", "email": "m@example.test"})
        key = customer["api_key"]
        answers, started = [], time.time()

        def upload(body):
            answers.append(call("POST", f"{base}/v1/images", key, body=body))

        threads = [threading.Thread(target=upload, args=(f,)) for f in files]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        outcomes = {}
        for status, body in answers:
            if status not in (200, 201):
                outcome = f"{status} {body['error']['code']}"
            else:
                while True:
                    _, record = call("GET", f"{base}/v1/images/{body['id']}", key)
                    if record["status"] not in ("received", "pending_upload"):
                        break
                    time.sleep(0.05)
                outcome = record["status"] + (f" {record['error']['code']}" if "error" in record else "")
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        elapsed = time.time() - started
        with open(f"/proc/{server.pid}/status") as f:
            peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))
        server.terminate()
        server.wait(timeout=60)
    return peak * 1024, elapsed, outcomes


def main():
    binary, cases = sys.argv[1], sys.argv[2:] or list(CASES)
    for name in cases:
        files = CASES[name]()
        size = sum(len(f) for f in files)
        peak, elapsed, outcomes = run(binary, files)
        settled = ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items()))
        print(f"{name}: {len(files)} files, {size / 1e6:.1f} MB at once; {settled}; "
              f"settled in {elapsed:.1f} s; peak RSS {peak / MiB:.0f} MiB", flush=True)
    workers = os.cpu_count()
    bound = 256 * MiB + workers * 50 * MiB + 512 * MiB
    print(f"bound with default settings and {workers} workers: max_inflight_upload_bytes (256 MiB) + "
          f"workers x max_body_bytes ({workers} x 50 MiB) + max_decode_bytes (512 MiB) + the process "
          f"= {bound / MiB:.0f} MiB + the process")


if __name__ == "__main__":
    main()
