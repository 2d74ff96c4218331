#!/usr/bin/env bash
# The protocol buffers compiler that the build of the etcd-client crate runs (through the PROTOC
# environment variable) to generate the etcd client's gRPC code. Fetched from Maven Central
# into a cache folder outside the repository, once: protoc itself, and the well-known types
# (google/protobuf/*.proto, which the etcd protos import) from the protobuf-java jar, laid out
# in include/ next to the binary, where protoc finds them without any -I.
#
#   bash scripts/protoc.sh   print the absolute path of a protoc binary, for
#                            export PROTOC="$(bash scripts/protoc.sh)"
#
# Environment:
#   PROTOC        a protoc of your own (a path, or a name on PATH): printed as it is, nothing is
#                 fetched. It must find the well-known types itself (Debian: apt-get install
#                 protobuf-compiler libprotobuf-dev, then PROTOC=/usr/bin/protoc).
#   FERRIS_CACHE  the cache folder (default ~/.cache/ferris-streams); protoc goes to
#                 $FERRIS_CACHE/protoc-VERSION/protoc
# Only Linux on x86_64 has a prebuilt protoc here; elsewhere set PROTOC.
# Messages go to stderr; stdout carries only the path, for $(...).
set -euo pipefail

VERSION=4.33.2 # protoc reports it as "libprotoc 33.2"
MAVEN=https://repo1.maven.org/maven2/com/google/protobuf
PROTOC_URL="$MAVEN/protoc/$VERSION/protoc-$VERSION-linux-x86_64.exe"
PROTOC_SHA256=0e3f0ae2a73bc27682baa8981bc18312bab1b2f90c804d528c6ee1f600247189
JAR_URL="$MAVEN/protobuf-java/$VERSION/protobuf-java-$VERSION.jar"
JAR_SHA256=c5b582aa127fb62c5fc3077329d522dfb7930b4e9a625c08760b681b2ba5aab7

abs() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac; }
CACHE="$(abs "${FERRIS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ferris-streams}")"
DIR="$CACHE/protoc-$VERSION"

say() { printf 'protoc.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# A protoc of the caller's own.
if [[ -n "${PROTOC:-}" ]]; then
  path="$(command -v -- "$PROTOC" 2>/dev/null || true)"
  [[ -n "$path" ]] && path="$(abs "$path")"
  [[ -n "$path" && -f "$path" && -x "$path" ]] ||
    die "PROTOC=$PROTOC is not an executable; unset it to fetch protoc $VERSION, or point it to a protoc"
  printf '%s\n' "$path"
  exit 0
fi

# Whether the folder $1 holds a complete install.
complete() {
  [[ -x "$1/protoc" && -f "$1/include/google/protobuf/descriptor.proto" ]]
}

# Downloads $1 to the file $2 and checks that its SHA-256 is $3.
download() {
  local url="$1" file="$2" sha256="$3" got
  curl -fsSL --retry 3 -o "$file" "$url" || die "could not download $url"
  got="$(sha256sum "$file" | cut -d' ' -f1)"
  [[ "$got" == "$sha256" ]] || die "$url has SHA-256 $got, not $sha256"
}

if ! complete "$DIR"; then
  case "$(uname -s)/$(uname -m)" in
    Linux/x86_64) ;;
    *)
      die "no prebuilt protoc for $(uname -s)/$(uname -m) here: install protobuf-compiler" \
        "(Debian: apt-get install protobuf-compiler libprotobuf-dev; macOS: brew install protobuf)" \
        "and set PROTOC to it (e.g. export PROTOC=/usr/bin/protoc)"
      ;;
  esac
  command -v curl >/dev/null 2>&1 || die "curl not found (Debian: apt-get install curl)"
  mkdir -p "$CACHE"
  # Two runs at once fetch once.
  exec 9>"$CACHE/protoc.lock"
  if command -v flock >/dev/null 2>&1; then
    flock -w 300 9 || die "another protoc.sh holds $CACHE/protoc.lock"
  fi
fi
if ! complete "$DIR"; then
  say "fetching protoc $VERSION from Maven Central into $DIR (once)"
  tmp="$DIR.tmp"
  rm -rf "$tmp"
  mkdir -p "$tmp/include"
  download "$PROTOC_URL" "$tmp/protoc" "$PROTOC_SHA256"
  chmod +x "$tmp/protoc"
  # The well-known types: the protobuf-java jar carries their .proto files.
  download "$JAR_URL" "$tmp/protobuf-java.jar" "$JAR_SHA256"
  if command -v unzip >/dev/null 2>&1; then
    unzip -q "$tmp/protobuf-java.jar" 'google/protobuf/*.proto' -d "$tmp/include" ||
      die "could not unpack the well-known types from $JAR_URL"
  else
    python3 - "$tmp/protobuf-java.jar" "$tmp/include" <<'EOF' ||
import sys, zipfile
jar = zipfile.ZipFile(sys.argv[1])
names = [n for n in jar.namelist() if n.startswith("google/protobuf/") and n.endswith(".proto")]
jar.extractall(sys.argv[2], names)
EOF
      die "could not unpack the well-known types from $JAR_URL (needs unzip or python3)"
  fi
  rm -f "$tmp/protobuf-java.jar"
  [[ -f "$tmp/include/google/protobuf/descriptor.proto" ]] ||
    die "$JAR_URL holds no google/protobuf/descriptor.proto"
  out="$("$tmp/protoc" --version 2>&1)" || die "the fetched protoc does not run: $out"
  [[ "$out" == "libprotoc ${VERSION#*.}" ]] ||
    die "the fetched protoc reports '$out', not 'libprotoc ${VERSION#*.}'"
  rm -rf "$DIR"
  mv "$tmp" "$DIR"
  say "installed $out"
fi
printf '%s\n' "$DIR/protoc"
