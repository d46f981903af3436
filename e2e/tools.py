#!/usr/bin/env python3
"""Small JSON helpers for e2e/run.sh (standard library, and PyYAML for github-steps, which
scripts/test-deps.sh installs).

    tools.py free-ports N                      N free TCP ports on 127.0.0.1, one a line
    tools.py image-exec CONFIG.json OUTDIR     from an OCI image config: OUTDIR/entrypoint (NUL-
                                               separated), OUTDIR/env (NUL-separated), OUTDIR/cwd
    tools.py failed-checks REPORT.json         the names of the failed checks of `modelcar verify
                                               --json`, sorted, space-separated
    tools.py finding REPORT.json CHECK SEV     exit 0 when the report has a finding CHECK with
                                               severity SEV (pass, warn, fail); print its message
    tools.py github-steps README OUTDIR        the GitHub Actions steps of the README's block between
                                               `<!-- github-actions` and `<!-- /github-actions -->`,
                                               as files to run them by: OUTDIR/N.kind (checkout,
                                               run or docker), N.env (NUL-separated NAME=VALUE),
                                               N.script (run) or N.image and N.args (docker,
                                               NUL-separated); `${{ secrets.NAME }}` is the value
                                               of $SECRET_NAME. One step per line on stdout.
"""

import json
import os
import re
import shlex
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


def github_steps(readme, outdir):
    import yaml

    text = open(readme).read()
    start = text.index("<!-- github-actions")
    end = text.index("<!-- /github-actions -->")
    block = re.search(r"```yaml\n(.*?)```", text[start:end], re.S)
    if not block:
        raise SystemExit("github-steps: no ```yaml block between the github-actions markers")
    steps = yaml.safe_load(block.group(1))["steps"]

    def expand(value):
        def secret(m):
            name = "SECRET_" + m.group(1)
            if name not in os.environ:
                raise SystemExit(f"github-steps: the step uses secrets.{m.group(1)}; set ${name}")
            return os.environ[name]

        value = re.sub(r"\$\{\{\s*secrets\.([A-Za-z0-9_]+)\s*\}\}", secret, str(value))
        if "${{" in value:
            raise SystemExit(f"github-steps: an expression this test cannot evaluate: {value}")
        return value

    def write(name, items):
        with open(os.path.join(outdir, name), "wb") as f:
            f.write(b"".join(i.encode() + b"\0" for i in items))

    for n, step in enumerate(steps):
        env = [f"{k}={expand(v)}" for k, v in (step.get("env") or {}).items()]
        write(f"{n}.env", env)
        uses = step.get("uses", "")
        if uses.startswith("actions/checkout@"):
            kind = "checkout"
        elif "run" in step:
            kind = "run"
            with open(os.path.join(outdir, f"{n}.script"), "w") as f:
                f.write(expand(step["run"]))
        elif uses.startswith("docker://"):
            kind = "docker"
            with open(os.path.join(outdir, f"{n}.image"), "w") as f:
                f.write(uses[len("docker://"):])
            # The runner splits `args` as a shell would, without running a shell.
            write(f"{n}.args", shlex.split(expand((step.get("with") or {}).get("args", ""))))
        else:
            raise SystemExit(f"github-steps: step {n} ({step.get('name', uses)}) is of a kind this test does not run")
        with open(os.path.join(outdir, f"{n}.kind"), "w") as f:
            f.write(kind)
        print(f"{n} {kind} {step.get('name', uses)}")


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
    elif cmd == "github-steps":
        github_steps(*args)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
