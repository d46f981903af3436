#!/usr/bin/env python3
"""Small JSON helpers for e2e/run.sh (standard library only).

    tools.py free-ports N                      N free TCP ports on 127.0.0.1, one a line
    tools.py image-exec CONFIG.json OUTDIR     from an OCI image config: OUTDIR/entrypoint (NUL-
                                               separated), OUTDIR/env (NUL-separated), OUTDIR/cwd
    tools.py failed-checks REPORT.json         the names of the failed checks of `modelcar verify
                                               --json`, sorted, space-separated
    tools.py finding REPORT.json CHECK SEV     exit 0 when the report has a finding CHECK with
                                               severity SEV (pass, warn, fail); print its message
"""

import json
import os
import socket
import sys


def free_ports(n):
    socks = []
    for _ in range(int(n)):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    for s in socks:
        print(s.getsockname()[1])
    for s in socks:
        s.close()


def image_exec(config_path, outdir):
    config = json.load(open(config_path)).get("config") or {}
    entrypoint = config.get("Entrypoint") or []
    env = config.get("Env") or ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    with open(os.path.join(outdir, "entrypoint"), "wb") as f:
        f.write(b"".join(a.encode() + b"\0" for a in entrypoint))
    with open(os.path.join(outdir, "env"), "wb") as f:
        f.write(b"".join(e.encode() + b"\0" for e in env))
    with open(os.path.join(outdir, "cwd"), "w") as f:
        f.write(config.get("WorkingDir") or "/")


def findings(report):
    yield from report.get("findings", [])
    for p in report.get("platforms", []):
        yield from p.get("findings", [])
        for m in p.get("modes", []):
            yield from m.get("findings", [])


def failed_checks(path):
    report = json.load(open(path))
    print(" ".join(sorted({f["check"] for f in findings(report) if f["severity"] == "fail"})))


def finding(path, check, severity):
    report = json.load(open(path))
    for f in findings(report):
        if f["check"] == check and f["severity"] == severity:
            print(f["message"])
            return 0
    return 1


def main(argv):
    cmd, args = argv[1], argv[2:]
    if cmd == "free-ports":
        free_ports(*args)
    elif cmd == "image-exec":
        image_exec(*args)
    elif cmd == "failed-checks":
        failed_checks(*args)
    elif cmd == "finding":
        return finding(*args)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
