#!/usr/bin/env bash
# Builds the Debian package: release binary (stripped), systemd unit, example
# config as a conffile in /etc/sentinel-vip/, man page, shell completions.
# Prints the .deb's path, size and contents.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || cargo install --locked cargo-deb
cargo build --release --locked --bin sentinel-vip
mkdir -p target/assets
target/release/sentinel-vip man | gzip -9n > target/assets/sentinel-vip.1.gz
target/release/sentinel-vip completions bash > target/assets/sentinel-vip.bash
target/release/sentinel-vip completions zsh > target/assets/_sentinel-vip
target/release/sentinel-vip completions fish > target/assets/sentinel-vip.fish
deb=$(cargo deb --no-build --no-strip 2>/dev/null | tail -1)
echo "built $deb ($(du -h "$deb" | cut -f1))"
dpkg-deb --info "$deb" | sed -n '/Package:/,$p'
dpkg-deb --contents "$deb"
