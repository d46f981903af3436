#!/usr/bin/env python3
"""Validate InferenceService YAML (read from standard input) the way a cluster would.

    validate_isvc.py CRD_YAML [--runtime SERVING_RUNTIME_YAML ...] < isvc.yaml

- Every document must be a serving.kserve.io/v1beta1 InferenceService valid against the
  openAPIV3Schema of the CRD's v1beta1 version. As `kubectl apply` does by default (strict field
  validation), fields the schema does not declare are errors, except below
  x-kubernetes-preserve-unknown-fields.
- metadata.name must be a DNS-1035 label, as KServe's webhook requires.
- When spec.predictor.model.runtime names one of the serving runtimes given (default: the
  kserve-mlserver.yaml next to the CRD), the model format (and version, if given) must be one the
  runtime supports, and the protocol version one it speaks.

Exits 0 and prints one `ok:` line per document, or exits 1 with the errors on standard error.
Needs PyYAML and jsonschema (pip install pyyaml jsonschema, or python3-yaml python3-jsonschema).
"""

import argparse
import hashlib
import json
import os
import re
import sys
import tempfile

import jsonschema
import yaml

# libyaml's loader when PyYAML has it: the CRD is 2 MB, which the pure-Python one takes seconds on.
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
API_VERSION = "serving.kserve.io/v1beta1"
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def crd_schema(crd_path):
    """The v1beta1 openAPIV3Schema of the CRD, cached as JSON in the temporary directory (keyed
    by the CRD's hash): parsing the 2 MB of YAML takes about a second each time."""
    with open(crd_path, "rb") as f:
        raw = f.read()
    cache = os.path.join(tempfile.gettempdir(),
                         f"validate-isvc-{hashlib.sha256(raw).hexdigest()[:16]}.json")
    try:
        with open(cache) as f:
            return json.load(f)
    except (OSError, ValueError):
        pass
    crd = yaml.load(raw, Loader=LOADER)
    if crd.get("kind") != "CustomResourceDefinition":
        sys.exit(f"{crd_path}: not a CustomResourceDefinition")
    for version in crd["spec"]["versions"]:
        if version["name"] == "v1beta1":
            schema = version["schema"]["openAPIV3Schema"]
            break
    else:
        sys.exit(f"{crd_path}: no v1beta1 version")
    try:
        with tempfile.NamedTemporaryFile("w", dir=os.path.dirname(cache), delete=False) as f:
            json.dump(schema, f)
        os.replace(f.name, cache)
    except OSError:
        pass
    return schema


def strict(schema):
    """Forbid undeclared fields, as strict field validation does."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) if k in ("items", "anyOf", "allOf", "oneOf", "not") else v
           for k, v in schema.items()}
    if "properties" in schema:
        out["properties"] = {k: strict(v) for k, v in schema["properties"].items()}
        if ("additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
    elif isinstance(schema.get("additionalProperties"), dict):
        out["additionalProperties"] = strict(schema["additionalProperties"])
    return out


def load_runtimes(paths):
    runtimes = {}
    for path in paths:
        with open(path) as f:
            for doc in yaml.load_all(f, Loader=LOADER):
                if doc and doc.get("kind") in ("ServingRuntime", "ClusterServingRuntime"):
                    runtimes[doc["metadata"]["name"]] = doc["spec"]
    return runtimes


def check_runtime(model, runtimes):
    errors = []
    name = model.get("runtime")
    if name is None or name not in runtimes:
        return errors
    spec = runtimes[name]
    fmt = model.get("modelFormat") or {}
    supported = spec.get("supportedModelFormats", [])
    names = sorted({f["name"] for f in supported})
    if fmt.get("name") not in names:
        errors.append(f"spec.predictor.model.modelFormat.name {fmt.get('name')!r} is not "
                      f"supported by runtime {name} (supported: {', '.join(names)})")
    elif "version" in fmt:
        versions = sorted({str(f.get("version")) for f in supported
                           if f["name"] == fmt["name"] and "version" in f})
        if versions and str(fmt["version"]) not in versions:
            errors.append(f"spec.predictor.model.modelFormat.version {fmt['version']!r} of "
                          f"{fmt['name']} is not supported by runtime {name} "
                          f"(supported: {', '.join(versions)})")
    protocols = spec.get("protocolVersions")
    pv = model.get("protocolVersion")
    if pv is not None and protocols and pv not in protocols:
        errors.append(f"spec.predictor.model.protocolVersion {pv!r} is not spoken by runtime "
                      f"{name} (it speaks: {', '.join(protocols)})")
    return errors


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("crd", help="the InferenceService CustomResourceDefinition YAML")
    parser.add_argument("--runtime", action="append", default=None,
                        help="a (Cluster)ServingRuntime YAML (default: kserve-mlserver.yaml "
                             "next to the CRD); may be repeated")
    args = parser.parse_args()

    schema = strict(crd_schema(args.crd))
    validator = jsonschema.Draft4Validator(schema)
    runtime_files = args.runtime
    if runtime_files is None:
        default = os.path.join(os.path.dirname(os.path.abspath(args.crd)), "kserve-mlserver.yaml")
        runtime_files = [default] if os.path.exists(default) else []
    runtimes = load_runtimes(runtime_files)

    try:
        docs = [d for d in yaml.load_all(sys.stdin, Loader=LOADER) if d is not None]
    except yaml.YAMLError as e:
        print(f"error: standard input is not YAML: {e}", file=sys.stderr)
        return 1
    if not docs:
        print("error: no YAML document on standard input", file=sys.stderr)
        return 1

    failed = False
    for i, doc in enumerate(docs):
        errors = []
        if not isinstance(doc, dict):
            errors.append("the document is not a mapping")
        else:
            if doc.get("apiVersion") != API_VERSION:
                errors.append(f"apiVersion is {doc.get('apiVersion')!r}, not {API_VERSION}")
            if doc.get("kind") != "InferenceService":
                errors.append(f"kind is {doc.get('kind')!r}, not InferenceService")
            for e in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
                where = ".".join(str(p) for p in e.absolute_path) or "(top)"
                errors.append(f"{where}: {e.message}")
            name = (doc.get("metadata") or {}).get("name")
            if not isinstance(name, str) or len(name) > 63 or not DNS_1035.match(name):
                errors.append(f"metadata.name {name!r} is not a DNS-1035 label")
            model = (((doc.get("spec") or {}).get("predictor") or {}).get("model"))
            if isinstance(model, dict):
                errors.extend(check_runtime(model, runtimes))
        label = f"document {i + 1}"
        if isinstance(doc, dict):
            label = f"InferenceService {(doc.get('metadata') or {}).get('name')}"
        if errors:
            failed = True
            for e in errors:
                print(f"error: {label}: {e}", file=sys.stderr)
        else:
            print(f"ok: {label}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
