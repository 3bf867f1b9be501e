#!/usr/bin/env bash
# Builds the C library in release mode and installs it for C/C++ programs:
#   PREFIX/include/skinlesion.h
#   PREFIX/lib/libskinlesion.so, PREFIX/lib/libskinlesion.a
#   PREFIX/lib/pkgconfig/skinlesion.pc (shared), skinlesion-static.pc (static + libtorch)
# libskinlesion.so finds libtorch through an rpath into this checkout's .venv, so keep that
# venv where it is (or rebuild after moving it).
#
#   bash scripts/install-c-library.sh [PREFIX]     (default: /usr/local)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
prefix=${1:-/usr/local}
cd "$root"
bash scripts/setup.sh
cargo build --release -p skinlesion-ffi
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release

mkdir -p "$prefix/include" "$prefix/lib/pkgconfig"
cp skinlesion-ffi/include/skinlesion.h "$prefix/include/"
cp "$target/libskinlesion.so" "$target/libskinlesion.a" "$prefix/lib/"
for pc in skinlesion.pc skinlesion-static.pc; do
  sed -e "s|^libdir=.*|libdir=$prefix/lib|" -e "s|^includedir=.*|includedir=$prefix/include|" \
    "$target/$pc" > "$prefix/lib/pkgconfig/$pc"
done
echo "installed skinlesion into $prefix; compile with:"
echo "  cc app.c \$(PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config --cflags --libs skinlesion)"
