# The Expo module's iOS side: TripliteModule.swift over the Swift binding, whose library is
# TripliteFFI.xcframework (bindings/swift/build-xcframework.sh). The binding is copied into
# vendor/ by `npm run vendor` (run before `npm pack`). Not built here: no Xcode or Swift
# toolchain on the machine this repository is tested on.
Pod::Spec.new do |s|
  s.name           = 'TripliteExpo'
  s.version        = '0.1.0'
  s.summary        = 'triplite for Expo: an offline-first database that syncs with a triplite or Triplit server'
  s.license        = { :type => 'MIT OR Apache-2.0' }
  s.author         = 'triplite'
  s.homepage       = 'https://github.com/triplite/triplite'
  s.platforms      = { :ios => '15.1' }
  s.swift_version  = '5.9'
  s.source         = { :path => '.' }
  s.static_framework = true

  s.dependency 'ExpoModulesCore'

  # The Swift binding's sources and its C module, compiled into this pod.
  s.source_files = '*.swift', 'vendor/Triplite/*.swift', 'vendor/CTriplite/**/*.{h,c}'
  s.preserve_paths = 'vendor/CTriplite/include/module.modulemap'
  s.vendored_frameworks = 'vendor/TripliteFFI.xcframework'
  s.pod_target_xcconfig = {
    'SWIFT_INCLUDE_PATHS' => '$(PODS_TARGET_SRCROOT)/vendor/CTriplite/include',
    'DEFINES_MODULE' => 'YES'
  }
end
