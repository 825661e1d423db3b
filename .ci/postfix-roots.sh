#!/usr/bin/env bash
# postfix-roots.sh - Debian root filesystems holding newer real Postfix releases, for the
# interop tests that run Postfix 3.10 and 3.11 next to the host's 3.7
# (test/helpers/postfix.ts, createPostfixInstance({version: '3.10' | '3.11'})).
#
#   .ci/postfix-roots.sh [SUITE...]      default: trixie sid (Postfix 3.10 and 3.11)
#
# Each suite gets ROOTS/SUITE: debootstrap --variant=minbase, then Debian's postfix,
# postfix-lmdb, postfix-pcre and postfix-cdb packages, installed without starting anything
# (a policy-rc.d that exits 101, debconf's "No configuration"). Its postfix user and its
# postfix/postdrop groups get the HOST's ids, so instance files are shared with the host as
# they are; the host's own Postfix must therefore be installed first. /proc is mounted only
# while apt configures the packages; afterwards nothing of the root stays mounted and its
# programs run under plain chroot(8).
#
# Idempotent: a root whose ready marker (ROOTS/SUITE/.proxymap-root-ready, written last) is
# present and whose check passes is kept. A root left by an earlier helper script with its
# marker .pf-sid-ready is adopted after the same check. Anything else at ROOTS/SUITE is an
# unfinished build and is rebuilt. Builds of one suite are serialized with flock on
# ROOTS/SUITE.lock, so parallel test processes can all call this.
#
# Prints one line per suite on stdout ("postfix-roots: sid: Postfix 3.11.7 ... built in 71 s");
# details go to ROOTS/SUITE.log. Exits non-zero if any suite failed, after saying why on stderr
# with the end of its log. About a minute and ~200 MB per suite; needs network access to the
# Debian mirror. Must run as root; never reads stdin.
#
# Env: PROXYMAP_POSTFIX_ROOTS   where the roots live (default /var/tmp/proxymap-roots)
#      PROXYMAP_DEBIAN_MIRROR   default http://deb.debian.org/debian
#      PROXYMAP_ROOT_TIMEOUT    seconds allowed for one build (default 1800)
set -uo pipefail

ROOTS=${PROXYMAP_POSTFIX_ROOTS:-/var/tmp/proxymap-roots}
MIRROR=${PROXYMAP_DEBIAN_MIRROR:-http://deb.debian.org/debian}
BUILD_TIMEOUT=${PROXYMAP_ROOT_TIMEOUT:-1800}
PACKAGES=(postfix postfix-lmdb postfix-pcre postfix-cdb)
MARKER=.proxymap-root-ready
LEGACY_MARKER=.pf-sid-ready
ROOT_PATH=/usr/sbin:/usr/bin:/sbin:/bin
SBIN=/usr/lib/postfix/sbin
export DEBIAN_FRONTEND=noninteractive

say() { echo "postfix-roots: $*"; }
warn() { echo "postfix-roots: $*" >&2; }

# in_root DIR CMD...: run a program of the root DIR with the root's PATH.
in_root() {
  local dir=$1
  shift
  env -i PATH=$ROOT_PATH LC_ALL=C DEBIAN_FRONTEND=noninteractive chroot "$dir" "$@"
}

host_id() {  # host_id passwd|group NAME FIELD
  getent "$1" "$2" | cut -d: -f"$3"
}

# check_root DIR: is DIR a usable root? Prints its mail_version; on failure prints the reason
# on stderr and returns 1.
check_root() {
  local dir=$1 p status version
  for p in "${PACKAGES[@]}"; do
    status=$(in_root "$dir" dpkg-query -W -f='${Status}' "$p" 2>/dev/null)
    [ "$status" = "install ok installed" ] || { echo "package $p is not installed in $dir ($status)" >&2; return 1; }
  done
  for p in $SBIN/master $SBIN/proxymap $SBIN/postlogd /usr/sbin/postmap /usr/sbin/postconf /usr/sbin/postalias; do
    [ -x "$dir$p" ] || { echo "$p is missing in $dir" >&2; return 1; }
  done
  [ "$(in_root "$dir" id -u postfix 2>/dev/null)" = "$(id -u postfix)" ] \
    || { echo "the uid of postfix in $dir differs from the host's" >&2; return 1; }
  for p in postfix postdrop; do
    [ "$(in_root "$dir" getent group "$p" | cut -d: -f3)" = "$(host_id group "$p" 3)" ] \
      || { echo "the gid of group $p in $dir differs from the host's" >&2; return 1; }
  done
  version=$(in_root "$dir" postconf -dh mail_version 2>/dev/null) && [ -n "$version" ] \
    || { echo "postconf does not run in $dir" >&2; return 1; }
  echo "$version"
}

write_marker() {  # write_marker DIR SUITE VERSION SECONDS HOW
  {
    echo "suite=$2"
    echo "mail_version=$3"
    echo "postfix_uid=$(id -u postfix)"
    echo "postfix_gid=$(host_id group postfix 3)"
    echo "postdrop_gid=$(host_id group postdrop 3)"
    echo "packages=${PACKAGES[*]}"
    echo "mirror=$MIRROR"
    echo "how=$5"
    echo "seconds=$4"
    echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  } > "$1/$MARKER.tmp" && mv "$1/$MARKER.tmp" "$1/$MARKER"
}

# build SUITE: (in a subshell holding the suite's lock) build ROOTS/SUITE.tmp, check it, then
# rename it to ROOTS/SUITE. Exits non-zero on the first failed step.
build() {
  local suite=$1 root=$ROOTS/$1 tmp=$ROOTS/$1.tmp log=$ROOTS/$1.log
  local t0 t1 t2 g version
  fail() { warn "$suite: $*"; exit 1; }
  # (expanded now: the locals are gone when the subshell exits)
  trap "mountpoint -q '$tmp/proc' && umount '$tmp/proc'; :" EXIT
  t0=$SECONDS
  echo "=== $(date -u) building $suite from $MIRROR" >> "$log"
  if ! command -v debootstrap >/dev/null; then
    { apt-get -o DPkg::Lock::Timeout=600 -y -q install debootstrap \
        || { apt-get -o DPkg::Lock::Timeout=600 -q update && apt-get -o DPkg::Lock::Timeout=600 -y -q install debootstrap; }
    } < /dev/null >> "$log" 2>&1 || fail "apt-get install debootstrap failed"
  fi
  mountpoint -q "$tmp/proc" && umount "$tmp/proc"
  rm -rf "$tmp" || fail "cannot remove $tmp"
  timeout "$BUILD_TIMEOUT" debootstrap --variant=minbase --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
    "$suite" "$tmp" "$MIRROR" < /dev/null >> "$log" 2>&1 || fail "debootstrap $suite failed"
  t1=$SECONDS
  printf '#!/bin/sh\n# never start services while packages are installed\nexit 101\n' > "$tmp/usr/sbin/policy-rc.d" \
    && chmod 0755 "$tmp/usr/sbin/policy-rc.d" || fail "cannot write policy-rc.d"
  cp -L /etc/resolv.conf "$tmp/etc/resolv.conf" 2>/dev/null
  echo "postfix postfix/main_mailer_type select No configuration" | in_root "$tmp" debconf-set-selections \
    || fail "debconf-set-selections failed"
  # The host's ids: instance files are then owned alike on both sides.
  for g in postfix postdrop; do
    in_root "$tmp" groupadd --system --gid "$(host_id group "$g" 3)" "$g" >> "$log" 2>&1 \
      || fail "groupadd $g (gid $(host_id group "$g" 3)) failed in the root"
  done
  in_root "$tmp" useradd --system --uid "$(id -u postfix)" --gid postfix --home-dir /var/spool/postfix \
    --shell /usr/sbin/nologin --comment postfix postfix >> "$log" 2>&1 \
    || fail "useradd postfix (uid $(id -u postfix)) failed in the root"
  # postfix's postinst runs systemd-tmpfiles, which needs /proc.
  mount -t proc proc "$tmp/proc" || fail "cannot mount $tmp/proc"
  # sid's Release file may be past its Valid-Until (a stale mirror or clock): then retry
  # without that check; signatures are still verified.
  if ! timeout 600 env -i PATH=$ROOT_PATH chroot "$tmp" apt-get -q update >> "$log" 2>&1; then
    echo "--- apt-get update failed; retrying with Acquire::Check-Valid-Until=false" >> "$log"
    timeout 600 env -i PATH=$ROOT_PATH chroot "$tmp" apt-get -q -o Acquire::Check-Valid-Until=false update >> "$log" 2>&1 \
      || fail "apt-get update failed in the root"
  fi
  timeout "$BUILD_TIMEOUT" env -i PATH=$ROOT_PATH DEBIAN_FRONTEND=noninteractive chroot "$tmp" \
    apt-get -q -y --no-install-recommends install "${PACKAGES[@]}" < /dev/null >> "$log" 2>&1 \
    || fail "apt-get install ${PACKAGES[*]} failed in the root"
  umount "$tmp/proc" || fail "cannot unmount $tmp/proc"
  in_root "$tmp" apt-get clean
  rm -rf "$tmp"/var/lib/apt/lists/*_Packages "$tmp"/var/lib/apt/lists/*_Translation-*
  version=$(check_root "$tmp" 2>> "$log") || fail "the new root fails its check: $(tail -n 1 "$log")"
  rm -rf "$root" && mv "$tmp" "$root" || fail "cannot move $tmp to $root"
  t2=$SECONDS
  write_marker "$root" "$suite" "$version" $((t2 - t0)) built || fail "cannot write $root/$MARKER"
  say "$suite: Postfix $version built in $root in $((t2 - t0)) s (debootstrap $((t1 - t0)) s, packages $((t2 - t1)) s; $(du -sh "$root" | cut -f1))"
}

# ensure SUITE: keep, adopt or build ROOTS/SUITE, holding its lock.
ensure() {
  local suite=$1 root=$ROOTS/$1 version t0=$SECONDS
  (
    flock -w "$BUILD_TIMEOUT" 9 || { warn "$suite: timed out waiting for $ROOTS/$suite.lock"; exit 1; }
    if [ -f "$root/$MARKER" ] && version=$(check_root "$root"); then
      say "$suite: Postfix $version ready in $root (cached, checked in $((SECONDS - t0)) s)"
      exit 0
    fi
    if [ ! -f "$root/$MARKER" ] && [ -f "$root/$LEGACY_MARKER" ] && version=$(check_root "$root" 2>/dev/null); then
      write_marker "$root" "$suite" "$version" 0 "adopted $LEGACY_MARKER" || { warn "$suite: cannot write $root/$MARKER"; exit 1; }
      say "$suite: Postfix $version ready in $root (adopted an existing root, checked in $((SECONDS - t0)) s)"
      exit 0
    fi
    [ -e "$root" ] && warn "$suite: $root is unfinished or fails its check: rebuilding it"
    ( build "$suite" )
  ) 9> "$ROOTS/$suite.lock"
}

main() {
  [ "$(id -u)" = 0 ] || { warn "must run as root"; exit 1; }
  id -u postfix > /dev/null 2>&1 && [ -n "$(host_id group postdrop 3)" ] \
    || { warn "the host's Postfix (user postfix, group postdrop) must be installed first"; exit 1; }
  mkdir -p "$ROOTS" || { warn "cannot create $ROOTS"; exit 1; }
  local suite failed=()
  [ $# -gt 0 ] || set -- trixie sid
  for suite in "$@"; do
    case "$suite" in */*|.*|'') warn "bad suite name: $suite"; exit 2 ;; esac
    if ! ensure "$suite"; then
      failed+=("$suite")
      warn "$suite: FAILED; last lines of $ROOTS/$suite.log:"
      tail -n 15 "$ROOTS/$suite.log" 2>/dev/null | sed 's/^/    /' >&2
    fi
  done
  if [ ${#failed[@]} -gt 0 ]; then
    warn "could not provide the Postfix root(s) for: ${failed[*]} (network access to $MIRROR is needed)"
    exit 1
  fi
}

main "$@" < /dev/null
