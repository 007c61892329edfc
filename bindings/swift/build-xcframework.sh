#!/usr/bin/env bash
# Builds TripliteFFI.xcframework: libtriplite.a (the client build, small) for iOS devices, the
# iOS simulator (arm64 + x86_64) and macOS (arm64 + x86_64). Needs macOS with Xcode and the
# Rust targets (rustup target add aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios
# aarch64-apple-darwin x86_64-apple-darwin). It cannot run in this repository's CI (Linux).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
build() { cargo build --profile mobile --lib --no-default-features --features client --target "$1"; }
for target in aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios aarch64-apple-darwin x86_64-apple-darwin; do
  build "$target"
done
out="$root/target/xcframework"
rm -rf "$out" "$here/TripliteFFI.xcframework"
mkdir -p "$out/ios-sim" "$out/macos"
lib() { echo "$root/target/$1/mobile/libtriplite.a"; }
lipo -create "$(lib aarch64-apple-ios-sim)" "$(lib x86_64-apple-ios)" -output "$out/ios-sim/libtriplite.a"
lipo -create "$(lib aarch64-apple-darwin)" "$(lib x86_64-apple-darwin)" -output "$out/macos/libtriplite.a"
xcodebuild -create-xcframework \
  -library "$(lib aarch64-apple-ios)" \
  -library "$out/ios-sim/libtriplite.a" \
  -library "$out/macos/libtriplite.a" \
  -output "$here/TripliteFFI.xcframework"
echo "built $here/TripliteFFI.xcframework"
