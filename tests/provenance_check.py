"""Independent checks of modelcar's provenance output, for tests/provenance_cosign.rs.

No cosign binary is installable on these machines and Debian's skopeo is built without sigstore,
so cosign's formats are checked here by a second implementation written from cosign's
specifications (specs/SIGNATURE_SPEC.md and the key format of go-securesystemslib's `encrypted`
package that cosign uses), with Python's `cryptography` and PyNaCl, and the CycloneDX BOM with
`cyclonedx-python-lib`'s JSON schema validator. Nothing here shares code with modelcar.

Commands:
  make-key PREFIX PASSPHRASE [CURVE]  write PREFIX.key (cosign's encrypted format) and PREFIX.pub;
                                      CURVE P-256 (the default, as cosign generate-key-pair), P-384
                                      or P-521 (as cosign import-key-pair keeps such keys)
  open-key KEY PASSPHRASE PUB         decrypt KEY and check that its public key is PUB
  signatures REGISTRY REPO DIGEST PUB...
                                      print JSON: for each layer of REPO:sha256-<hex>.sig, which
                                      of the public keys verify it and what the payload says
  tamper REGISTRY REPO DIGEST         replace the first signed payload of the .sig manifest by one
                                      naming another repository, keeping its signature
  add-referrer REGISTRY REPO DIGEST ARTIFACT_TYPE
                                      push an artifact referring to DIGEST (its manifest's media
                                      type and size from the registry) and list it under the
                                      referrers tag schema, as another tool would; print its digest
  validate-bom FILE                   validate against the CycloneDX 1.6 JSON schema
"""

import base64
import hashlib
import json
import os
import sys
import urllib.error
import urllib.request

import nacl.secret
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

PEM_LABEL = "ENCRYPTED SIGSTORE PRIVATE KEY"


def b64(data):
    return base64.b64encode(data).decode()


def pem(label, der):
    body = base64.b64encode(der).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN %s-----\n%s\n-----END %s-----\n" % (label, "\n".join(lines), label)


def unpem(text):
    lines = [l.strip() for l in text.strip().splitlines()]
    assert lines[0].startswith("-----BEGIN "), lines[0]
    return lines[0][len("-----BEGIN ") : -5], base64.b64decode("".join(lines[1:-1]))


CURVES = {"P-256": ec.SECP256R1, "P-384": ec.SECP384R1, "P-521": ec.SECP521R1}


def make_key(prefix, passphrase, curve="P-256"):
    key = ec.generate_private_key(CURVES[curve]())
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    salt, nonce = os.urandom(32), os.urandom(24)
    secret = hashlib.scrypt(passphrase.encode(), salt=salt, n=32768, r=8, p=1, dklen=32, maxmem=128 << 20)
    sealed = nacl.secret.SecretBox(secret).encrypt(der, nonce).ciphertext
    doc = {
        "kdf": {"name": "scrypt", "params": {"N": 32768, "r": 8, "p": 1}, "salt": b64(salt)},
        "cipher": {"name": "nacl/secretbox", "nonce": b64(nonce)},
        "ciphertext": b64(sealed),
    }
    with open(prefix + ".key", "w") as f:
        f.write(pem(PEM_LABEL, json.dumps(doc).encode()))
    with open(prefix + ".pub", "wb") as f:
        f.write(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )


def open_key(path, passphrase, pub):
    label, body = unpem(open(path).read())
    assert label == PEM_LABEL, label
    doc = json.loads(body)
    assert doc["kdf"]["name"] == "scrypt" and doc["cipher"]["name"] == "nacl/secretbox", doc
    params = doc["kdf"]["params"]
    secret = hashlib.scrypt(
        passphrase.encode(),
        salt=base64.b64decode(doc["kdf"]["salt"]),
        n=params["N"],
        r=params["r"],
        p=params["p"],
        dklen=32,
        maxmem=128 << 20,
    )
    der = nacl.secret.SecretBox(secret).decrypt(
        base64.b64decode(doc["ciphertext"]), base64.b64decode(doc["cipher"]["nonce"])
    )
    key = serialization.load_der_private_key(der, password=None)
    assert isinstance(key.curve, ec.SECP256R1), key.curve
    mine = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    theirs = serialization.load_pem_public_key(open(pub, "rb").read()).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert mine == theirs, "the private key is not the pair of the public key"
    print("ok")


def get(url, accept=None):
    req = urllib.request.Request(url)
    if accept:
        req.add_header("Accept", accept)
    with urllib.request.urlopen(req) as r:
        return r.read()


def put(url, body, content_type):
    req = urllib.request.Request(url, data=body, method="PUT")
    req.add_header("Content-Type", content_type)
    with urllib.request.urlopen(req) as r:
        return r


def upload(base, repo, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    req = urllib.request.Request("%s/v2/%s/blobs/uploads/" % (base, repo), data=b"", method="POST")
    with urllib.request.urlopen(req) as r:
        location = r.headers["Location"]
    if location.startswith("/"):
        location = base + location
    sep = "&" if "?" in location else "?"
    put(location + sep + "digest=" + digest, data, "application/octet-stream")
    return digest


def sig_manifest(base, repo, digest):
    tag = digest.replace(":", "-") + ".sig"
    raw = get("%s/v2/%s/manifests/%s" % (base, repo, tag), "application/vnd.oci.image.manifest.v1+json")
    return tag, json.loads(raw)


def signatures(registry, repo, digest, pubs):
    base = "http://" + registry
    _, manifest = sig_manifest(base, repo, digest)
    keys = [serialization.load_pem_public_key(open(p, "rb").read()) for p in pubs]
    out = []
    for layer in manifest["layers"]:
        payload = get("%s/v2/%s/blobs/%s" % (base, repo, layer["digest"]))
        assert "sha256:" + hashlib.sha256(payload).hexdigest() == layer["digest"], "payload digest"
        assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json", layer
        sig = base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
        verified_by = []
        for path, key in zip(pubs, keys):
            try:
                key.verify(sig, payload, ec.ECDSA(hashes.SHA256()))
                verified_by.append(path)
            except InvalidSignature:
                pass
        doc = json.loads(payload)
        out.append(
            {
                "verified_by": verified_by,
                "docker_manifest_digest": doc["critical"]["image"]["docker-manifest-digest"],
                "docker_reference": doc["critical"]["identity"]["docker-reference"],
                "type": doc["critical"]["type"],
            }
        )
    print(json.dumps(out))


def tamper(registry, repo, digest):
    base = "http://" + registry
    tag, manifest = sig_manifest(base, repo, digest)
    layer = manifest["layers"][0]
    doc = json.loads(get("%s/v2/%s/blobs/%s" % (base, repo, layer["digest"])))
    doc["critical"]["identity"]["docker-reference"] = registry + "/somewhere/else"
    forged = json.dumps(doc).encode()
    layer["digest"] = upload(base, repo, forged)
    layer["size"] = len(forged)
    put("%s/v2/%s/manifests/%s" % (base, repo, tag), json.dumps(manifest).encode(), manifest["mediaType"])
    print("ok")


def add_referrer(registry, repo, digest, artifact_type):
    base = "http://" + registry
    req = urllib.request.Request("%s/v2/%s/manifests/%s" % (base, repo, digest), method="HEAD")
    req.add_header("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json")
    with urllib.request.urlopen(req) as r:
        subject = {
            "mediaType": r.headers["Content-Type"],
            "digest": digest,
            "size": int(r.headers["Content-Length"]),
        }
    data = b'{"note": "made by another tool"}'
    empty = upload(base, repo, b"{}")
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": artifact_type,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": artifact_type, "digest": upload(base, repo, data), "size": len(data)}],
        "subject": subject,
    }
    body = json.dumps(manifest).encode()
    mdigest = "sha256:" + hashlib.sha256(body).hexdigest()
    put("%s/v2/%s/manifests/%s" % (base, repo, mdigest), body, manifest["mediaType"])
    tag = digest.replace(":", "-")
    try:
        index = json.loads(get("%s/v2/%s/manifests/%s" % (base, repo, tag), "application/vnd.oci.image.index.v1+json"))
    except urllib.error.HTTPError as e:
        assert e.code == 404, e
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}
    index["manifests"].append(
        {"mediaType": manifest["mediaType"], "digest": mdigest, "size": len(body), "artifactType": artifact_type}
    )
    put("%s/v2/%s/manifests/%s" % (base, repo, tag), json.dumps(index).encode(), index["mediaType"])
    print(mdigest)


def validate_bom(path):
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    errors = JsonStrictValidator(SchemaVersion.V1_6).validate_str(open(path).read())
    if errors is not None:
        print("invalid: %s" % (errors,))
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "make-key":
        make_key(*args)
    elif cmd == "open-key":
        open_key(*args)
    elif cmd == "signatures":
        signatures(args[0], args[1], args[2], args[3:])
    elif cmd == "tamper":
        tamper(*args)
    elif cmd == "add-referrer":
        add_referrer(*args)
    elif cmd == "validate-bom":
        validate_bom(*args)
    else:
        sys.exit("unknown command " + cmd)
