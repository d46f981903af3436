#!/usr/bin/env python3
"""Open Inference Protocol (KServe V2) client for the e2e test: standard library only.

    v2client.py wait  --port P --model NAME [--pid PID] [--timeout S]
        Wait until GET /v2/models/NAME/ready answers 200. Exit 0 when ready; 3 when the server
        process PID exited first or the timeout passed (the model did not load).
    v2client.py infer --port P --model NAME --expect classes|proba
        POST iris rows 0, 50 and 100 as one FP64 [3, 4] tensor to /v2/models/NAME/infer and check
        that the predicted classes are 0, 1, 2 (`classes`: the output holds the labels; `proba`:
        it holds [3, 3] class probabilities, argmax per row). Exit 0 on success, 1 otherwise.
"""

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request

# Rows 0, 50 and 100 of scikit-learn's iris data set: setosa, versicolor, virginica.
ROWS = [
    [5.1, 3.5, 1.4, 0.2],
    [7.0, 3.2, 4.7, 1.4],
    [6.3, 3.3, 6.0, 2.5],
]
EXPECTED = [0, 1, 2]


def url(port, path):
    return f"http://127.0.0.1:{port}{path}"


def alive(pid):
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of someone else still answers kill(0); look at its state.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait(args):
    deadline = time.monotonic() + args.timeout
    path = f"/v2/models/{args.model}/ready"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url(args.port, path), timeout=2) as r:
                if r.status == 200:
                    print(f"model {args.model} ready")
                    return 0
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        if not alive(args.pid):
            print(f"server process {args.pid} exited before model {args.model} was ready")
            return 3
        time.sleep(0.5)
    print(f"model {args.model} not ready after {args.timeout}s")
    return 3


def infer(args):
    body = {
        "inputs": [
            {
                "name": "input-0",
                "shape": [len(ROWS), 4],
                "datatype": "FP64",
                "data": [x for row in ROWS for x in row],
            }
        ]
    }
    req = urllib.request.Request(
        url(args.port, f"/v2/models/{args.model}/infer"),
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            answer = json.load(r)
    except urllib.error.HTTPError as e:
        print(f"HTTP {e.code}: {e.read().decode(errors='replace')}")
        return 1
    except (urllib.error.URLError, OSError) as e:
        print(f"request failed: {e}")
        return 1
    outputs = answer.get("outputs") or []
    if not outputs:
        print(f"no outputs in {answer}")
        return 1
    out = outputs[0]
    shape, data = out.get("shape"), out.get("data")
    if args.expect == "classes":
        got = [int(x) for x in data] if data else None
        ok = got == EXPECTED and shape in ([3], [3, 1])
    else:
        ok = shape == [3, 3] and data is not None and len(data) == 9
        got = None
        if ok:
            rows = [data[i * 3:(i + 1) * 3] for i in range(3)]
            got = [max(range(3), key=row.__getitem__) for row in rows]
            ok = got == EXPECTED
    print(f"output {out.get('name')} {out.get('datatype')} shape {shape} data {data} -> classes {got}")
    return 0 if ok else 1


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("wait")
    w.add_argument("--port", type=int, required=True)
    w.add_argument("--model", required=True)
    w.add_argument("--pid", type=int)
    w.add_argument("--timeout", type=float, default=120)
    i = sub.add_parser("infer")
    i.add_argument("--port", type=int, required=True)
    i.add_argument("--model", required=True)
    i.add_argument("--expect", choices=["classes", "proba"], required=True)
    args = p.parse_args()
    return wait(args) if args.cmd == "wait" else infer(args)


if __name__ == "__main__":
    sys.exit(main())
