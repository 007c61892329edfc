#!/usr/bin/env bash
# Cross-builds libtriplite.so for each Android ABI into the Android module's jniLibs/, where
# JNA finds it on a device (`android/` is the Gradle module that publishes the AAR: the same
# Kotlin sources as the JVM library, plus these libraries).
#
# Needs the Android NDK (ANDROID_NDK_HOME), `cargo install cargo-ndk`, and the Rust targets
# (`rustup target add aarch64-linux-android armv7-linux-androideabi x86_64-linux-android`).
# It cannot run on the machine this repository is tested on (no Android NDK there), so it is
# not part of CI: the JVM build and tests (`mvn verify`) are.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
: "${ANDROID_NDK_HOME:?set ANDROID_NDK_HOME to the Android NDK}"
command -v cargo-ndk >/dev/null || { echo "cargo-ndk is missing: cargo install cargo-ndk" >&2; exit 1; }
cd "$root"
# The client build (no server network stack), small: see the `mobile` profile in Cargo.toml.
RUSTFLAGS="-C link-arg=-Wl,--icf=all" cargo ndk \
  -t arm64-v8a -t armeabi-v7a -t x86_64 \
  -o "$here/android/src/main/jniLibs" \
  build --profile mobile --lib --no-default-features --features client
ls -l "$here"/android/src/main/jniLibs/*/libtriplite.so
