#!/usr/bin/env bash
# Builds the Debian package with dpkg-deb from a staging tree (packaging/debian/
# holds the control template and the maintainer scripts): the binary, the systemd
# unit, the example config as the conffile /etc/sentinel-vip/config.yaml, the man
# page, shell completions and docs.
#   scripts/package.sh           release binary (stripped by the release profile), xz
#   scripts/package.sh --debug   debug binary, fast gzip: what CI's package test installs
# Prints the contents, then "built PATH (SIZE)" as the last line.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
case "${1:-}" in
  --debug) profile=debug ;;
  "") ;;
  *) echo "usage: scripts/package.sh [--debug]" >&2; exit 2 ;;
esac
target=${CARGO_TARGET_DIR:-target}
if [ "$profile" = release ]; then
  cargo build --release --locked --bin sentinel-vip
  compress=(-Zxz)
else
  cargo build --locked --bin sentinel-vip
  compress=(-Zgzip -z1)
fi
bin=$target/$profile/sentinel-vip

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
arch=$(dpkg --print-architecture)
out=$target/debian/$profile
stage=$out/sentinel-vip_${version}_$arch
rm -rf "$stage"
mkdir -p "$stage/DEBIAN"

# put SRC DEST MODE: DEST is a path inside the package.
put() { install -D -m "$3" "$1" "$stage/$2"; }
put "$bin" usr/bin/sentinel-vip 0755
put systemd/sentinel-vip.service usr/lib/systemd/system/sentinel-vip.service 0644
# Group-readable by the service's group: postinst sets root:sentinel-vip.
put config.example.yaml etc/sentinel-vip/config.yaml 0640
doc=usr/share/doc/sentinel-vip
put config.example.yaml $doc/config.example.yaml 0644
put docs/iam-policy.json $doc/iam-policy.json 0644
put README.md $doc/README.md 0644
put packaging/debian/copyright $doc/copyright 0644
mkdir -p "$stage/usr/share/man/man1" "$stage/usr/share/bash-completion/completions" \
  "$stage/usr/share/zsh/vendor-completions" "$stage/usr/share/fish/vendor_completions.d"
"$bin" man | gzip -9n > "$stage/usr/share/man/man1/sentinel-vip.1.gz"
"$bin" completions bash > "$stage/usr/share/bash-completion/completions/sentinel-vip"
"$bin" completions zsh > "$stage/usr/share/zsh/vendor-completions/_sentinel-vip"
"$bin" completions fish > "$stage/usr/share/fish/vendor_completions.d/sentinel-vip.fish"
chmod 0644 "$stage"/usr/share/man/man1/* "$stage"/usr/share/*/*completion*/*

for s in postinst prerm postrm; do put packaging/debian/$s DEBIAN/$s 0755; done
echo /etc/sentinel-vip/config.yaml > "$stage/DEBIAN/conffiles"

# Depends: the shared libraries the binary links (libc6, libgcc-s1), at the
# versions its symbols need, as dpkg-shlibdeps (dpkg-dev) works them out; without
# dpkg-dev, libc6 at the newest GLIBC_ symbol version the binary uses.
if command -v dpkg-shlibdeps >/dev/null; then
  tmp=$(mktemp -d)
  mkdir "$tmp/debian"
  printf 'Source: sentinel-vip\n\nPackage: sentinel-vip\nArchitecture: any\n' > "$tmp/debian/control"
  abs_bin=$(realpath "$bin")
  depends=$(cd "$tmp" && dpkg-shlibdeps -O "$abs_bin" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
  rm -rf "$tmp"
else
  glibc=$(grep -ao 'GLIBC_2\.[0-9.]*' "$bin" | sed 's/GLIBC_//' | sort -uV | tail -n1)
  depends="libc6 (>= $glibc)"
fi
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
  -e "s/@DEPENDS@/$depends/" packaging/debian/control.in > "$stage/DEBIAN/control"

deb=$out/sentinel-vip_${version}_$arch.deb
dpkg-deb --root-owner-group "${compress[@]}" --build "$stage" "$deb" >/dev/null
dpkg-deb --info "$deb" | sed -n '/Package:/,$p'
dpkg-deb --contents "$deb"
echo "built $deb ($(du -h "$deb" | cut -f1))"
