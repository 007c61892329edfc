import type { TripliteNativeModule } from './native';

/**
 * The Expo module (`ios/`, `android/`), the native side on a phone. Loaded only when a client is
 * made without a `nativeModule`, so Node (which passes `nodeNativeModule`) needs no Expo.
 */
export function expoNativeModule(): TripliteNativeModule {
  const expo = require('expo-modules-core') as { requireNativeModule<T>(name: string): T };
  return expo.requireNativeModule<TripliteNativeModule>('Triplite');
}
