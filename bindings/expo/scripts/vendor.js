#!/usr/bin/env node
// Copies the Swift and Kotlin bindings (and the C header and the built native libraries, where
// they exist) into ios/vendor/ and android/vendor/, which the podspec and build.gradle build
// from: an app installs this package from npm, where ../swift and ../kotlin are not there.
// Runs before `npm pack` (prepack); run it by hand to build the module from this repository.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const here = path.resolve(__dirname, '..');
const bindings = path.resolve(here, '..');
const root = path.resolve(bindings, '..');

function copy(from, to, { optional = false } = {}) {
  if (!fs.existsSync(from)) {
    if (optional) return console.error(`vendor: ${path.relative(root, from)} not built, skipped`);
    throw new Error(`vendor: ${from} is missing`);
  }
  fs.rmSync(to, { recursive: true, force: true });
  fs.mkdirSync(path.dirname(to), { recursive: true });
  // dereference: the Swift C target's header is a link to include/triplite.h.
  fs.cpSync(from, to, { recursive: true, dereference: true });
  console.error(`vendor: ${path.relative(root, from)} -> ${path.relative(here, to)}`);
}

copy(path.join(bindings, 'swift/Sources/Triplite'), path.join(here, 'ios/vendor/Triplite'));
copy(path.join(bindings, 'swift/Sources/CTriplite'), path.join(here, 'ios/vendor/CTriplite'));
copy(path.join(root, 'include/triplite.h'), path.join(here, 'ios/vendor/CTriplite/include/triplite.h'));
copy(path.join(bindings, 'swift/TripliteFFI.xcframework'), path.join(here, 'ios/vendor/TripliteFFI.xcframework'), { optional: true });
copy(path.join(bindings, 'kotlin/src/main/kotlin'), path.join(here, 'android/vendor/kotlin'));
copy(path.join(bindings, 'kotlin/android/src/main/jniLibs'), path.join(here, 'android/vendor/jniLibs'), { optional: true });
