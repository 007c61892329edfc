// The Android library (AAR) for publishing: the binding's Kotlin sources and, in jniLibs/,
// the libraries build-android.sh cross-builds. Not built in this repository's CI (no Android
// SDK there); the same sources are built and tested on the JVM by `mvn verify` in ../.
plugins {
    id("com.android.library") version "8.7.3"
    id("org.jetbrains.kotlin.android") version "2.1.0"
    `maven-publish`
}

android {
    namespace = "dev.triplite"
    compileSdk = 35
    defaultConfig { minSdk = 24 }
    sourceSets["main"].java.srcDirs("../src/main/kotlin")
    sourceSets["main"].jniLibs.srcDirs("src/main/jniLibs")
    publishing { singleVariant("release") }
}

dependencies {
    implementation("net.java.dev.jna:jna:5.19.1@aar")
    implementation("org.jetbrains.kotlinx:kotlinx-coroutines-android:1.11.0")
    implementation("org.jetbrains.kotlinx:kotlinx-serialization-json:1.12.0")
}

publishing {
    publications {
        register<MavenPublication>("release") {
            groupId = "dev.triplite"
            artifactId = "triplite-android"
            version = "0.1.0"
            afterEvaluate { from(components["release"]) }
        }
    }
}
