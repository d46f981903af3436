# modelcar's own image, run as CI pipelines run it. Sourced by e2e/run.sh once its registry
# (127.0.0.1:$REG_PORT) and containerd are up; uses its helpers (check, pass, fail, ctr_, ...).
#
#   - `make image` builds the image with modelcar's library (a static glibc binary on the
#     busybox base of scripts/offline-base.sh, with the CA bundle), twice: same digest;
#   - the binary is static, resolves `localhost` and trusts a CA through the image's
#     /etc/ssl/certs/ca-certificates.crt (a TLS registry started here);
#   - under containerd (`ctr run`, the image's own user 1001:0) with a model directory, a base
#     and a registry auth file mounted, it builds and pushes a model to the local registry;
#     skopeo and `modelcar verify` check what arrived;
#   - the README's GitHub Actions steps, read from the README, run as the runner runs them.

section "7. modelcar's own image (make image), run under containerd"

TI=$W/tool-image
mkdir -p "$TI/out" "$TI/auth" "$TI/tls"
TOOL_REF=$REG/modelcar:e2e
"$REPO/scripts/offline-base.sh" "$TI/base" >"$LOGS/tool-base.log" 2>&1 ||
  fail "scripts/offline-base.sh (base of modelcar's image)" "$LOGS/tool-base.log"
chmod -R a+rX "$TI/base" # umoci writes 0600 files; the container's user 1001 reads the layout
tool_make() { # STORE: make image into STORE; prints REF@DIGEST
  MODELCAR_STORE=$1 make -C "$REPO" --no-print-directory image TOOL_IMAGE="$TOOL_REF" \
    TOOL_BASE="oci:$TI/base:busybox" TOOL_EPOCH=1700000000 2>>"$LOGS/tool-make.log" | tail -n 1
}
first=$(tool_make "$TI/store1")
second=$(tool_make "$TI/store2")
TOOL_DIGEST=${first#*@}
check "make image builds $TOOL_REF (${TOOL_DIGEST:0:19}...)" "$LOGS/tool-make.log" \
  test "${first%@*}" = "$TOOL_REF" -a "${TOOL_DIGEST:0:7}" = "sha256:"
check "make image twice, into two stores, gives the same digest (reproducible)" "$LOGS/tool-make.log" \
  test -n "$first" -a "$first" = "$second"

STATIC=${CARGO_TARGET_DIR:-$REPO/target}/x86_64-unknown-linux-gnu/release/modelcar
ldd "$STATIC" >"$LOGS/tool-ldd.log" 2>&1
check "the image's modelcar is statically linked (ldd: $(head -n 1 "$LOGS/tool-ldd.log" | tr -s '\t ' ' '))" \
  "$LOGS/tool-ldd.log" grep -Eq 'not a dynamic executable|statically linked' "$LOGS/tool-ldd.log"

"$MC" --store "$TI/store1" push "$TOOL_REF" >"$LOGS/tool-push.log" 2>&1
check "modelcar push $TOOL_REF" "$LOGS/tool-push.log" grep -q "@$TOOL_DIGEST" "$LOGS/tool-push.log"
skopeo inspect --tls-verify=false --config "docker://$TOOL_REF" >"$TI/config.json" 2>>"$LOGS/tool-push.log"
check "its config: no ENTRYPOINT (CI steps run their own commands), user 1001:0, modelcar on PATH" "$TI/config.json" \
  python3 -c "import json,sys; c=json.load(open(sys.argv[1]))['config']; \
assert not c.get('Entrypoint') and c['User']=='1001:0' and any(e.startswith('PATH=/usr/local/bin') for e in c['Env'])" \
  "$TI/config.json"
ctr_ images pull --plain-http --snapshotter "$SNAP" "$TOOL_REF" >"$LOGS/tool-ctr.log" 2>&1 ||
  fail "ctr images pull --plain-http $TOOL_REF" "$LOGS/tool-ctr.log"

tool_run() { # NAME MOUNTS... -- CMD...: ctr run the image (host network: /etc/hosts and resolv.conf)
  local name=$1 mounts=()
  shift
  while [ "$1" != -- ]; do mounts+=(--mount "$1"); shift; done
  shift
  timeout 300 ctr --address "$CTD/containerd.sock" --namespace "$CTR_NS" run --rm --net-host \
    --snapshotter "$SNAP" "${mounts[@]}" --env REGISTRY_AUTH_FILE=/run/secrets/registry/auth.json \
    "$TOOL_REF" "e2e-$RUN_ID-tool-$name" "$@"
}
ro() { printf 'type=bind,src=%s,dst=%s,options=rbind:ro' "$1" "$2"; }

tool_run files -- sh -c 'ls -l /usr/local/bin/modelcar /etc/ssl/certs/ca-certificates.crt && modelcar --version' \
  >"$LOGS/tool-files.log" 2>&1
check "in the image: /usr/local/bin/modelcar r-xr-xr-x, the CA bundle r--r--r--, modelcar runs" "$LOGS/tool-files.log" \
  sh -c "grep -q '^-r-xr-xr-x .* /usr/local/bin/modelcar$' '$LOGS/tool-files.log' &&
    grep -q '^-r--r--r-- .* /etc/ssl/certs/ca-certificates.crt$' '$LOGS/tool-files.log' &&
    grep -q '^modelcar ' '$LOGS/tool-files.log'"

# The pipeline step: model and base from volumes, credentials from an auth file (as a Secret
# mounts it), the pushed digest written to a result file. `localhost` is resolved by the
# static binary from the /etc/hosts containerd mounts.
printf '{"auths":{"localhost:%s":{"auth":"%s"}}}\n' "$REG_PORT" "$(printf 'ci:not-checked' | base64)" >"$TI/auth/auth.json"
chmod 0644 "$TI/auth/auth.json"
chmod 0777 "$TI/out"
FROM_IMAGE=localhost:$REG_PORT/e2e/from-image:v1
tool_run push \
  "$(ro "$REPO/models/mlserver/sklearn" /workspace/model)" \
  "$(ro "$TI/base" /workspace/base)" \
  "$(ro "$TI/auth" /run/secrets/registry)" \
  "type=bind,src=$TI/out,dst=/workspace/out,options=rbind:rw" -- \
  modelcar build --models /workspace/model --format sklearn --tag "$FROM_IMAGE" \
  --base oci:/workspace/base:busybox --push --digestfile /workspace/out/digest >"$LOGS/tool-build.log" 2>&1
rc=$?
pushed=$(cat "$TI/out/digest" 2>/dev/null)
check "in the image (user 1001:0): modelcar build --push $FROM_IMAGE, digest written to the result file" \
  "$LOGS/tool-build.log" test "$rc" = 0 -a "${pushed:0:7}" = "sha256:"
there=sha256:$(skopeo inspect --tls-verify=false --raw "docker://$FROM_IMAGE" 2>>"$LOGS/tool-build.log" | sha256sum | cut -d' ' -f1)
check "skopeo reads $FROM_IMAGE with the digest the container wrote" "$LOGS/tool-build.log" test "$there" = "$pushed"
"$MC" --store "$TI/verify-store" verify "$FROM_IMAGE" >"$LOGS/tool-verify.log" 2>&1
check "modelcar verify $FROM_IMAGE passes" "$LOGS/tool-verify.log" test $? = 0

# The GitHub Actions steps of the README (section CI), read from it and run as the runner runs
# them: the checkout is a workspace holding a model directory; a `run` step runs with bash as the
# runner's UID 1001 in the workspace, with the secret it uses; a `docker://` step runs the image
# under containerd with `args` as the command, the step's env, the workspace mounted at
# /github/workspace as its working directory, as the image's user. Only two things differ from
# GitHub: quay.io is this registry, and BASE_IMAGE names the busybox base (the default base,
# UBI from registry.access.redhat.com, cannot be pulled here).
GH=$TI/github
mkdir -p "$GH/steps" "$GH/workspace" "$GH/home"
cp -r "$REPO/models/mlserver/sklearn" "$GH/workspace/model"
chown -R 1001:1001 "$GH/workspace" "$GH/home"
GH_SECRET=$(printf '{"auths":{"localhost:%s":{"auth":"%s"}}}' "$REG_PORT" "$(printf 'ci:not-checked' | base64)")
SECRET_REGISTRY_AUTH_JSON=$GH_SECRET "${TOOLS[@]}" github-steps "$REPO/README.md" "$GH/steps" >"$LOGS/github-steps.log" 2>&1
rc=$?
chmod -R a+rX "$GH/steps"
check "the README's GitHub Actions steps: $(tr '\n' ';' <"$LOGS/github-steps.log")" "$LOGS/github-steps.log" test "$rc" = 0
# The image the README's step names is the one `make push-image` pushes.
made_as=$(env -u REGISTRY -u VERSION make -C "$REPO" --no-print-directory -n image 2>/dev/null | sed -n 's/.* --tag \([^ ]*\) .*/\1/p' | head -n 1)
gh_docker_ran=0
for kind_file in $(ls "$GH/steps"/*.kind 2>/dev/null | sort -V); do
  n=$(basename "$kind_file" .kind)
  kind=$(cat "$kind_file")
  mapfile -d '' step_env <"$GH/steps/$n.env"
  log=$LOGS/github-step-$n.log
  case $kind in
  checkout) ;; # the workspace made above
  run)
    (cd "$GH/workspace" && setpriv --reuid=1001 --regid=1001 --clear-groups \
      env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$GH/home" CI=true GITHUB_WORKSPACE="$GH/workspace" \
      "${step_env[@]}" bash --noprofile --norc -eo pipefail "$GH/steps/$n.script") >"$log" 2>&1
    check "README step $n (run, as UID 1001 on the runner)" "$log" test $? = 0
    ;;
  docker)
    image=$(cat "$GH/steps/$n.image")
    check "README step $n uses the image make push-image pushes ($image)" "" test "$image" = "$made_as"
    mapfile -d '' step_args <"$GH/steps/$n.args"
    step_args=("${step_args[@]//quay.io\//localhost:$REG_PORT/}")
    for i in "${!step_args[@]}"; do
      case ${step_args[$i]} in
      --tag) gh_tag=${step_args[$((i + 1))]} ;;
      --digestfile) gh_digestfile=${step_args[$((i + 1))]} ;;
      esac
    done
    env_args=()
    for e in "${step_env[@]}" HOME=/github/home CI=true GITHUB_WORKSPACE=/github/workspace \
      BASE_IMAGE=oci:/github/base:busybox; do env_args+=(--env "$e"); done
    timeout 300 ctr --address "$CTD/containerd.sock" --namespace "$CTR_NS" run --rm --net-host \
      --snapshotter "$SNAP" --cwd /github/workspace "${env_args[@]}" \
      --mount "type=bind,src=$GH/workspace,dst=/github/workspace,options=rbind:rw" \
      --mount "type=bind,src=$GH/home,dst=/github/home,options=rbind:rw" \
      --mount "$(ro "$TI/base" /github/base)" \
      "$TOOL_REF" "e2e-$RUN_ID-github-$n" "${step_args[@]}" >"$log" 2>&1
    rc=$?
    check "README step $n (docker://, in the image under containerd): ${step_args[*]}" "$log" test "$rc" = 0
    gh_docker_ran=1
    ;;
  esac
done
check "the README's run step wrote the secret where its docker step reads it" "" \
  test "$(cat "$GH/workspace/.auth.json" 2>/dev/null)" = "$GH_SECRET"
gh_pushed=$(cat "$GH/workspace/${gh_digestfile:-?}" 2>/dev/null)
gh_there=sha256:$(skopeo inspect --tls-verify=false --raw "docker://${gh_tag:-?}" 2>>"$LOGS/github-steps.log" | sha256sum | cut -d' ' -f1)
check "the README's step pushed ${gh_tag:-?} and wrote its digest to ./${gh_digestfile:-?}" "$LOGS/github-steps.log" \
  test "$gh_docker_ran" = 1 -a "${gh_pushed:0:7}" = "sha256:" -a "$gh_there" = "$gh_pushed"

# TLS with the image's CA bundle: a registry whose certificate a private CA signed.
if command -v openssl >/dev/null; then
  (cd "$TI/tls" &&
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=e2e-ca -keyout ca.key -out ca.crt \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign &&
    openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr &&
    printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >ext &&
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile ext -out server.crt) \
    >"$LOGS/tool-tls.log" 2>&1
  TLS_PORT=$("${TOOLS[@]}" free-ports 1)
  cat >"$TI/tls/config.yml" <<YML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $TI/tls/data
http:
  addr: 127.0.0.1:$TLS_PORT
  tls:
    certificate: $TI/tls/server.crt
    key: $TI/tls/server.key
YML
  start_group "$LOGS/tool-tls-registry.log" docker-registry serve "$TI/tls/config.yml"
  for _ in $(seq 100); do
    curl -sf --cacert "$TI/tls/ca.crt" "https://localhost:$TLS_PORT/v2/" >/dev/null 2>&1 && break
    sleep 0.1
  done
  mkdir -p "$TI/tls/trust" && cp "$TI/tls/ca.crt" "$TI/tls/trust/" # only the CA: a key there means a client cert
  skopeo copy --quiet --src-tls-verify=false --dest-cert-dir "$TI/tls/trust" "docker://${REF[sklearn]}" \
    "docker://localhost:$TLS_PORT/e2e/tls:v1" >>"$LOGS/tool-tls.log" 2>&1
  cp "$TI/tls/ca.crt" "$TI/tls/bundle.crt"
  chmod 0644 "$TI/tls/bundle.crt"
  tool_run tls-trusted "$(ro "$TI/tls/bundle.crt" /etc/ssl/certs/ca-certificates.crt)" -- \
    modelcar verify "localhost:$TLS_PORT/e2e/tls:v1" >"$LOGS/tool-tls-trusted.log" 2>&1
  check "in the image: TLS to a registry whose CA is in /etc/ssl/certs/ca-certificates.crt (rustls, native roots)" \
    "$LOGS/tool-tls-trusted.log" test $? = 0
  tool_run tls-untrusted -- modelcar verify "localhost:$TLS_PORT/e2e/tls:v1" >"$LOGS/tool-tls-untrusted.log" 2>&1
  check "in the image: the same registry is refused when its CA is not in the bundle" \
    "$LOGS/tool-tls-untrusted.log" grep -q 'signed by a CA this machine does not trust' "$LOGS/tool-tls-untrusted.log"
else
  note "openssl missing: the TLS checks of modelcar's image are skipped"
fi
