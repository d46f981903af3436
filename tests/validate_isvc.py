#!/usr/bin/env python3
"""Validate KServe manifests (YAML on standard input) the way a cluster would.

    validate_isvc.py [--crd CRD_YAML ...] [--runtime SERVING_RUNTIME_YAML ...] < manifests.yaml

- Every document must be an InferenceService (serving.kserve.io/v1beta1) or an
  LLMInferenceService (serving.kserve.io/v1alpha1 or v1alpha2), valid against the openAPIV3Schema
  of that version in its CRD. As `kubectl apply` does by default (strict field validation), fields
  the schema does not declare are errors, except below x-kubernetes-preserve-unknown-fields.
- metadata.name must be a DNS-1035 label, as KServe's webhook requires.
- InferenceService: when spec.predictor.model.runtime names one of the serving runtimes given,
  the model format (and version, if given) must be one the runtime supports and the protocol
  version one it speaks. With no runtime named, one of the runtimes must be one KServe would
  select: the format with autoSelect, the protocol (v1 when unset) spoken, single-node.
- LLMInferenceService: spec.model.uri must use a scheme KServe reads models from.

Defaults: both CRDs and every runtime in tests/fixtures/kserve (KServe's own files, copied).
Exits 0 and prints one `ok:` line per document, or exits 1 with the errors on standard error.
Needs PyYAML and jsonschema (pip install pyyaml jsonschema, or python3-yaml python3-jsonschema).
"""

import argparse
import glob
import hashlib
import json
import os
import re
import sys
import tempfile

import jsonschema
import yaml

# libyaml's loader when PyYAML has it: the CRDs are 2 MB, which the pure-Python one takes seconds on.
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "kserve")
DEFAULT_CRDS = [os.path.join(FIXTURES, "serving.kserve.io_inferenceservices.yaml"),
                os.path.join(FIXTURES, "serving.kserve.io_llminferenceservices.yaml")]
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# The schemes of LLMInferenceService spec.model.uri (KServe's LLM storage handling).
LLM_URI = re.compile(r"^(oci|oci\+native|hf|s3|gs|pvc|https?)://.+")


def crd_schemas(crd_path):
    """{(apiVersion, kind): openAPIV3Schema} of a CRD, cached as JSON in the temporary directory
    (keyed by the CRD's hash): parsing 2 MB of YAML takes about a second each time."""
    with open(crd_path, "rb") as f:
        raw = f.read()
    cache = os.path.join(tempfile.gettempdir(),
                         f"validate-kserve-{hashlib.sha256(raw).hexdigest()[:16]}.json")
    try:
        with open(cache) as f:
            return {tuple(k.split("|")): v for k, v in json.load(f).items()}
    except (OSError, ValueError):
        pass
    crd = yaml.load(raw, Loader=LOADER)
    if not isinstance(crd, dict) or crd.get("kind") != "CustomResourceDefinition":
        sys.exit(f"{crd_path}: not a CustomResourceDefinition")
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    schemas = {f"{group}/{v['name']}|{kind}": v["schema"]["openAPIV3Schema"]
               for v in crd["spec"]["versions"] if v.get("served", True)}
    try:
        with tempfile.NamedTemporaryFile("w", dir=os.path.dirname(cache), delete=False) as f:
            json.dump(schemas, f)
        os.replace(f.name, cache)
    except OSError:
        pass
    return {tuple(k.split("|")): v for k, v in schemas.items()}


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


def selectable(spec, fmt, protocol):
    """Whether KServe would auto-select this runtime for the format and protocol."""
    if spec.get("disabled") or spec.get("multiModel") or "workerSpec" in spec:
        return False
    labels = set()
    for f in spec.get("supportedModelFormats", []):
        if f.get("autoSelect"):
            labels.add(f["name"].lower())
            if "version" in f:
                labels.add(f"{f['name']}:{f['version']}".lower())
    want = fmt.get("name", "")
    if "version" in fmt:
        want += f":{fmt['version']}"
    protocols = spec.get("protocolVersions") or ["v1"]
    return want.lower() in labels and protocol in protocols


def check_runtime(model, runtimes):
    errors = []
    name = model.get("runtime")
    fmt = model.get("modelFormat") or {}
    pv = model.get("protocolVersion")
    if name is None:
        protocol = pv or "v1"
        if not any(selectable(s, fmt, protocol) for s in runtimes.values()):
            errors.append(f"no runtime given auto-selects modelFormat {fmt.get('name')!r} with "
                          f"with protocol {protocol} (spec.predictor.model.runtime is unset)")
        return errors
    if name not in runtimes:
        return errors
    spec = runtimes[name]
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
    if pv is not None and protocols and pv not in protocols:
        errors.append(f"spec.predictor.model.protocolVersion {pv!r} is not spoken by runtime "
                      f"{name} (it speaks: {', '.join(protocols)})")
    return errors


def check(doc, validators, runtimes):
    if not isinstance(doc, dict):
        return ["the document is not a mapping"]
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key not in validators:
        known = ", ".join(f"{k} {v}" for v, k in sorted(validators))
        return [f"apiVersion {key[0]!r} kind {key[1]!r} is not one of: {known}"]
    errors = []
    for e in sorted(validators[key].iter_errors(doc), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(p) for p in e.absolute_path) or "(top)"
        errors.append(f"{where}: {e.message}")
    name = (doc.get("metadata") or {}).get("name")
    if not isinstance(name, str) or len(name) > 63 or not DNS_1035.match(name):
        errors.append(f"metadata.name {name!r} is not a DNS-1035 label")
    spec = doc.get("spec") or {}
    if key[1] == "InferenceService":
        model = (spec.get("predictor") or {}).get("model")
        if isinstance(model, dict):
            errors.extend(check_runtime(model, runtimes))
    elif key[1] == "LLMInferenceService":
        uri = (spec.get("model") or {}).get("uri")
        if isinstance(uri, str) and not LLM_URI.match(uri):
            errors.append(f"spec.model.uri {uri!r} has no scheme KServe reads LLMs from")
    return errors


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crd", action="append", default=None,
                        help="a CustomResourceDefinition YAML (default: both KServe CRDs of "
                             "tests/fixtures/kserve); may be repeated")
    parser.add_argument("--runtime", action="append", default=None,
                        help="a (Cluster)ServingRuntime YAML (default: every runtime of "
                             "tests/fixtures/kserve/runtimes); may be repeated")
    args = parser.parse_args()

    validators = {}
    for crd in args.crd or DEFAULT_CRDS:
        for key, schema in crd_schemas(crd).items():
            validators[key] = jsonschema.Draft4Validator(strict(schema))
    runtime_files = args.runtime
    if runtime_files is None:
        runtime_files = sorted(glob.glob(os.path.join(FIXTURES, "runtimes", "*.yaml")))
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
        errors = check(doc, validators, runtimes)
        label = f"document {i + 1}"
        if isinstance(doc, dict):
            label = f"{doc.get('kind')} {(doc.get('metadata') or {}).get('name')}"
        if errors:
            failed = True
            for e in errors:
                print(f"error: {label}: {e}", file=sys.stderr)
        else:
            print(f"ok: {label}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
