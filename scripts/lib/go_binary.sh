# What the scripts that build a test server from the Go module proxy (etcd.sh,
# kube-apiserver.sh) share: finding Go, and building the binary of a checked-in wrapper module
# once into a cache folder. Sourced after lib/service.sh, not run.
#
# The script sets before sourcing: MODULE (the wrapper module's folder: go.mod, go.sum,
# main.go) and CACHE (the cache folder).

# The oldest Go that builds the module (its go line).
min_go() { sed -n 's/^go //p' "$MODULE/go.mod"; }

go_binary() {
  if command -v go >/dev/null 2>&1; then
    command -v go
  elif [[ -x /usr/local/go/bin/go ]]; then
    echo /usr/local/go/bin/go
  else
    die "go not found (needs Go $(min_go) or newer: https://go.dev/dl)"
  fi
}

# Builds the module's binary NAME at VERSION with the link flags LDFLAGS into
# $CACHE/NAME-VERSION/NAME the first time (a no-op after that: a marker names the hash of the
# module and the flags, so a change builds again), waiting at most LOCK_WAIT seconds for
# another build of it; HOW_LONG goes in the message. Prints the binary's path.
build_go_binary() {
  local name="$1" version="$2" ldflags="$3" lock_wait="$4" how_long="$5"
  local bin="$CACHE/$name-$version" marker
  marker="$(cd "$MODULE" && { cat go.mod go.sum main.go; echo "$ldflags"; } | sha256sum | cut -c1-16)"
  marker="$bin/built-$marker"
  if [[ ! -e "$marker" || ! -x "$bin/$name" ]]; then
    mkdir -p "$CACHE"
    # Two runs at once build once. Closed again below: nothing started later inherits it.
    exec 8>"$CACHE/$name.lock"
    if command -v flock >/dev/null 2>&1; then
      flock -w "$lock_wait" 8 || die "another build holds $CACHE/$name.lock"
    fi
  fi
  if [[ ! -e "$marker" || ! -x "$bin/$name" ]]; then
    local go tmp start
    go="$(go_binary)"
    tmp="$bin.tmp"
    say "building $name $version with $("$go" version | cut -d' ' -f3) into $bin (once: $how_long)"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    start=$SECONDS
    # Only this module's go.mod and go.sum decide the versions (-mod=readonly checks every
    # download against go.sum); no workspace, no toolchain switch, no C compiler.
    (cd "$MODULE" && GOTOOLCHAIN=local GOWORK=off GOFLAGS="-mod=readonly -buildvcs=false" \
      CGO_ENABLED=0 "$go" build -trimpath -ldflags "$ldflags" -o "$tmp/$name" .) >&2 ||
      die "could not build $name $version (go build in $MODULE; it needs Go $(min_go) or newer)"
    "$tmp/$name" --version >/dev/null 2>&1 || die "the $name built in $tmp does not run"
    touch "$tmp/$(basename "$marker")"
    rm -rf "$bin"
    mv "$tmp" "$bin"
    say "built $name $version in $((SECONDS - start)) s ($(du -h "$bin/$name" | cut -f1))"
  fi
  exec 8>&-
  printf '%s\n' "$bin/$name"
}
