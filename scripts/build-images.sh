#!/usr/bin/env bash
# Builds the project's images -- busybox, nginx, echo (see images/README.md)
# -- as OCI archives named docker.io/library/<name>:latest, from Debian
# packages and the project's own binaries, without any registry. Each image
# is rebuilt only when its inputs change (files under images/, Debian
# package versions, the binaries, the image builder's source).
#
#   scripts/build-images.sh            # prints the directory of the archives
#
# RKUBE_BIN_DIR names a directory holding already built rkube-runtime and
# rkube-echo (the node tests pass theirs); otherwise cargo builds them.
#
# Cache: $RKUBE_IMAGE_CACHE (default /var/cache/rkube/images): debs/ (the
# downloaded packages), work/ (layer trees), out/ (<name>.tar + .inputs).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
CACHE="${RKUBE_IMAGE_CACHE:-/var/cache/rkube/images}"
OUT="$CACHE/out"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
mkdir -p "$CACHE/debs" "$CACHE/work" "$OUT"
# One build at a time per cache (tests may ask concurrently).
exec 9>"$CACHE/.lock"
flock 9

if [ -n "${RKUBE_BIN_DIR:-}" ]; then
  BIN="$RKUBE_BIN_DIR"
else
  cargo build -q -p rkube-runtime --bins >&2
  BIN="$CARGO_TARGET_DIR/debug"
fi
BUILDER_SRC="$(cat runtime/src/images/builder.rs runtime/src/images/archive.rs | sha256sum | cut -c1-16)"

hash_of() { sha256sum | cut -c1-16; }

# A directory's content (names, modes, owners, bytes) as one hash.
tree_hash() {
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$1" -cf - . | hash_of
}

# Downloads (once) the candidate version of each package; prints the .deb
# paths. Stale or missing package lists are refreshed once.
UPDATED=""
refresh_lists() {
  if [ -z "$UPDATED" ]; then
    apt-get update -qq >&2 || true
    UPDATED=1
    return 0
  fi
  return 1
}
debs() {
  local p v f
  for p in "$@"; do
    while :; do
      v="$(apt-cache policy "$p" | awk '/Candidate:/ {print $2}')"
      if [ -n "$v" ] && [ "$v" != "(none)" ]; then
        f="$(ls "$CACHE/debs/${p}_${v//:/%3a}_"*.deb 2>/dev/null | head -1 || true)"
        [ -n "$f" ] && break
        if (cd "$CACHE/debs" && apt-get download -q -o APT::Sandbox::User=root "$p=$v" >&2); then
          f="$(ls "$CACHE/debs/${p}_${v//:/%3a}_"*.deb | head -1)"
          break
        fi
      fi
      if ! refresh_lists; then
        echo "build-images: cannot download Debian package $p (version ${v:-unknown})" >&2
        exit 1
      fi
    done
    echo "$f"
  done
}

# image NAME KEY BUILD-IMAGE-ARGS...: builds unless out/NAME.tar was built
# from the same KEY.
image() {
  local name="$1" key="$2"
  shift 2
  if [ -f "$OUT/$name.tar" ] && [ "$(cat "$OUT/$name.inputs" 2>/dev/null)" = "$key" ]; then
    echo "build-images: $name is up to date" >&2
    return
  fi
  "$BIN/rkube-runtime" build-image --name "$name" --out "$OUT/$name.tar" "$@" >&2
  echo "$key" >"$OUT/$name.inputs"
}

PATH_ENV="PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# --- the base layer: busybox --------------------------------------------
busybox_deb="$(debs busybox-static)"
base_key="$(printf '%s %s %s' "$(basename "$busybox_deb")" "$(tree_hash images/busybox/rootfs)" "$BUILDER_SRC" | hash_of)"
BASE="$CACHE/work/base-$base_key"
if [ ! -d "$BASE" ]; then
  rm -rf "$CACHE"/work/base-* "$CACHE/work/tmp"
  mkdir -p "$CACHE/work/tmp"
  dpkg -x "$busybox_deb" "$CACHE/work/tmp/busybox"
  mkdir -p "$BASE"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,run,home,proc,sys,dev,var/log,var/tmp}
  cp "$CACHE/work/tmp/busybox/bin/busybox" "$BASE/bin/busybox"
  for applet in $("$BASE/bin/busybox" --list-full); do
    [ "$applet" = "bin/busybox" ] || ln -sf /bin/busybox "$BASE/$applet"
  done
  cp -a images/busybox/rootfs/. "$BASE/"
  chmod 1777 "$BASE/tmp" "$BASE/var/tmp"
  chmod 700 "$BASE/root"
  rm -rf "$CACHE/work/tmp"
fi
image busybox "$base_key" --layer "$BASE" --env "$PATH_ENV" --cmd sh

# --- nginx: Debian's nginx and its libraries ------------------------------
nginx_list="$(debs $(grep -v '^#' images/nginx/packages))"
mapfile -t nginx_debs <<<"$nginx_list"
nginx_key="$(printf '%s\n' "$base_key" "${nginx_debs[@]##*/}" | hash_of)"
NGINX="$CACHE/work/nginx-$nginx_key"
if [ ! -d "$NGINX" ]; then
  rm -rf "$CACHE"/work/nginx-*
  mkdir -p "$NGINX.tmp"
  for deb in "${nginx_debs[@]}"; do dpkg -x "$deb" "$NGINX.tmp"; done
  rm -rf "$NGINX.tmp"/usr/share/{doc,man,lintian,locale,bug}
  # What nginx-common's postinst does.
  ln -sf /etc/nginx/sites-available/default "$NGINX.tmp/etc/nginx/sites-enabled/default"
  mkdir -p "$NGINX.tmp/var/www/html" "$NGINX.tmp/run" "$NGINX.tmp/etc/nginx/modules-enabled"
  cp "$NGINX.tmp/usr/share/nginx/html/index.html" "$NGINX.tmp/var/www/html/index.nginx-debian.html"
  # Container logs are stdout and stderr.
  ln -sf /dev/stdout "$NGINX.tmp/var/log/nginx/access.log"
  ln -sf /dev/stderr "$NGINX.tmp/var/log/nginx/error.log"
  # Every library nginx links must resolve inside the layer.
  if ! chroot "$NGINX.tmp" /usr/sbin/nginx -v 2>/dev/null; then
    chroot "$NGINX.tmp" /usr/sbin/nginx -v || true
    echo "build-images: nginx does not run from its own layer" >&2
    exit 1
  fi
  mv "$NGINX.tmp" "$NGINX"
fi
image nginx "$nginx_key" --layer "$BASE" --layer "$NGINX" --env "$PATH_ENV" \
  --cmd=nginx --cmd=-g '--cmd=daemon off;' --expose 80/tcp --stop-signal SIGQUIT

# --- echo: rkube-echo and the libraries it links --------------------------
echo_key="$(printf '%s %s' "$base_key" "$(sha256sum <"$BIN/rkube-echo")" | hash_of)"
ECHO="$CACHE/work/echo-$echo_key"
if [ ! -d "$ECHO" ]; then
  rm -rf "$CACHE"/work/echo-*
  mkdir -p "$ECHO.tmp/usr/local/bin"
  cp "$BIN/rkube-echo" "$ECHO.tmp/usr/local/bin/rkube-echo"
  for lib in $(ldd "$BIN/rkube-echo" | grep -o '/[^ ]*'); do
    mkdir -p "$ECHO.tmp$(dirname "$lib")"
    cp -L "$lib" "$ECHO.tmp$lib"
  done
  chroot "$ECHO.tmp" /usr/local/bin/rkube-echo --help >/dev/null
  mv "$ECHO.tmp" "$ECHO"
fi
image echo "$echo_key" --layer "$BASE" --layer "$ECHO" --env "$PATH_ENV" \
  --entrypoint /usr/local/bin/rkube-echo --expose 8080/tcp

echo "$OUT"
