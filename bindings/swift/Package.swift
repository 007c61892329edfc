// swift-tools-version:5.9
// The Swift binding. `CTriplite` is a C target whose module map exposes include/triplite.h (its
// header is a link to that file); `Triplite` is the Swift API over it. The library itself is
// TripliteFFI.xcframework — static libraries for iOS devices, the iOS simulator and macOS —
// which build-xcframework.sh builds. Not compiled in this repository's CI (no Swift toolchain
// there): see README.md.
import PackageDescription

let package = Package(
    name: "Triplite",
    platforms: [.iOS(.v15), .macOS(.v12)],
    products: [.library(name: "Triplite", targets: ["Triplite"])],
    targets: [
        .binaryTarget(name: "TripliteFFI", path: "TripliteFFI.xcframework"),
        .target(name: "CTriplite", dependencies: ["TripliteFFI"], path: "Sources/CTriplite"),
        .target(name: "Triplite", dependencies: ["CTriplite"], path: "Sources/Triplite"),
    ]
)
