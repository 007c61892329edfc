/* SwiftPM builds a C target from at least one source file. The functions are in libtriplite
 * (TripliteFFI.xcframework); this target only carries the header's module map. */
