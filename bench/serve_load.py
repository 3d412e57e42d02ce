"""The endpoint under a bounded burst and one hostile body: today's uvicorn server vs the standard library's
ThreadingHTTPServer it replaced (the baseline, loaded from git at BASELINE_COMMIT), measured in the same run.

    python bench/serve_load.py                       # tiny random model, 50 connections, 256 MiB hostile body
    python bench/serve_load.py --model demo --connections 100 --hostile-mib 64

Each server runs in its own process (its RSS is its own). Per server it prints: requests/s over the burst,
p50/p99 latency of the answered requests, resets (connections reset, refused or dropped without an answer),
200s and 503s, and the server's RSS before and after one request with ``Content-Length: -1`` followed by
``--hostile-mib`` MiB (the probe of issue 16: the old server read all of it). Then the ratios new/old.

Both servers run torch with ``--torch-threads`` (default 1): on a shared 2-core box, two OpenMP threads per
predict made a 45 ms prediction take 15 s for *either* server (every wake-up of the worker waits for a core),
which measures the neighbours, not the server.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASELINE_COMMIT = "d427c53"  # the last commit serving with http.server (sft/inference/serve.py)


def _baseline_module() -> types.ModuleType:
    src = subprocess.run(["git", "-C", str(REPO), "show", f"{BASELINE_COMMIT}:sft/inference/serve.py"],
                         capture_output=True, text=True, check=True).stdout
    mod = types.ModuleType("baseline_serve")
    sys.modules["baseline_serve"] = mod
    exec(compile(src, "baseline_serve.py", "exec"), mod.__dict__)
    return mod


def run_server(kind: str, model_dir: str, port_file: str) -> None:
    """Child process: load the model, listen on 127.0.0.1, write the port, serve until killed."""
    mod = _baseline_module() if kind == "old" else __import__("sft.inference.serve", fromlist=["x"])
    state = mod.ServerState(model_dir=Path(model_dir))
    srv = mod.make_server(state, "127.0.0.1", 0)
    state.load()
    Path(port_file).write_text(str(srv.server_address[1]))
    srv.serve_forever()


def _feature(i: int) -> bytes:
    return json.dumps({"id": f"b{i}", "name": f"Feature {i}", "description": "Verify the age of users in Utah "
                       "before sign-up and block night notifications for minors.", "context": []}).encode()


def burst(port: int, n: int) -> dict:
    results: list = [None] * n
    start = threading.Barrier(n)

    def client(i: int) -> None:
        start.wait()
        t0 = time.perf_counter()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            conn.request("POST", "/invocations", body=_feature(i), headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            results[i] = (resp.status, time.perf_counter() - t0)
            conn.close()
        except OSError as e:
            results[i] = e

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ok = sorted(lat for r in results if isinstance(r, tuple) and r[0] == 200 for lat in [r[1]])
    pct = (lambda q: ok[min(len(ok) - 1, int(q * len(ok)))] * 1000) if ok else (lambda q: float("nan"))
    return {"rps": len(ok) / wall, "p50_ms": pct(0.50), "p99_ms": pct(0.99), "ok": len(ok),
            "503": sum(isinstance(r, tuple) and r[0] == 503 for r in results),
            "other": sum(isinstance(r, tuple) and r[0] not in (200, 503) for r in results),
            "resets": sum(not isinstance(r, tuple) for r in results)}


def hostile(port: int, mib: int) -> str:
    """Content-Length: -1, then ``mib`` MiB, then a half-close; returns the status line or what happened."""
    piece = b"x" * (1024 * 1024)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=120) as s:
            s.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: -1\r\n\r\n")
            sent = 0
            try:
                for _ in range(mib):
                    s.sendall(piece)
                    sent += 1
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            reply = s.recv(200).split(b"\r\n", 1)[0].decode(errors="replace")
            return f"{reply or 'closed'} after {sent} MiB sent"
    except OSError as e:
        return f"{type(e).__name__} after sending"


def measure(kind: str, model_dir: str, n: int, mib: int, threads: int) -> dict:
    import psutil

    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "port"
        proc = subprocess.Popen([sys.executable, __file__, "--serve", kind, "--model-dir", model_dir,
                                 "--port-file", str(port_file)],
                                env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(threads)})
        try:
            deadline = time.time() + 300
            while not port_file.exists() or not port_file.read_text():
                if proc.poll() is not None or time.time() > deadline:
                    raise SystemExit(f"{kind} server did not start")
                time.sleep(0.2)
            port = int(port_file.read_text())
            ps = psutil.Process(proc.pid)
            burst(port, 4)  # warm-up
            out = burst(port, n)
            out["rss_before_mb"] = ps.memory_info().rss / 2**20
            out["hostile"] = hostile(port, mib)
            time.sleep(1.0)
            out["rss_after_mb"] = ps.memory_info().rss / 2**20
            return out
        finally:
            proc.kill()
            proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model spec (default: the tiny random fixture model)")
    ap.add_argument("--connections", type=int, default=50, help="simultaneous connections in the burst")
    ap.add_argument("--hostile-mib", type=int, default=256, help="MiB sent after Content-Length: -1")
    ap.add_argument("--torch-threads", type=int, default=1, help="OMP_NUM_THREADS of both servers")
    ap.add_argument("--serve", choices=["old", "new"], help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", help=argparse.SUPPRESS)
    ap.add_argument("--port-file", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        run_server(args.serve, args.model_dir, args.port_file)
        return

    from sft.testing import build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model or str(build_tiny_model(Path(tmp) / "tiny"))
        print(f"model={model_dir} connections={args.connections} hostile={args.hostile_mib} MiB")
        res = {kind: measure(kind, model_dir, args.connections, args.hostile_mib, args.torch_threads)
               for kind in ("old", "new")}
    for kind, r in res.items():
        print(f"{kind:>3}: {r['rps']:.1f} req/s  p50 {r['p50_ms']:.0f} ms  p99 {r['p99_ms']:.0f} ms  "
              f"200s {r['ok']}  503s {r['503']}  other {r['other']}  resets {r['resets']}  "
              f"RSS {r['rss_before_mb']:.0f} -> {r['rss_after_mb']:.0f} MB (hostile: {r['hostile']})")
    old, new = res["old"], res["new"]
    grow = {k: res[k]["rss_after_mb"] - res[k]["rss_before_mb"] for k in res}
    print(f"new/old: req/s x{new['rps'] / max(old['rps'], 1e-9):.2f}, p99 x{new['p99_ms'] / old['p99_ms']:.2f}, "
          f"resets {new['resets']} vs {old['resets']}, RSS growth {grow['new']:+.0f} vs {grow['old']:+.0f} MB")


if __name__ == "__main__":
    main()
