#!/usr/bin/env bash
# Builds the voxgate Java client with the JDK alone (17 or newer): javac + jar.
#
#   clients/java/build.sh [OUT_DIR]      # default: clients/java/build
#
# Produces OUT_DIR/voxgate-client.jar (the classes) and
# OUT_DIR/voxgate-client-sources.jar. Put the jar on your classpath, or copy
# src/main/java/io/voxgate/client into your own source tree instead.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-"$here/build"}
mkdir -p "$out"
out=$(cd "$out" && pwd)

command -v javac >/dev/null 2>&1 || { echo "javac not found: install a JDK 17+ (e.g. apt-get install default-jdk-headless)" >&2; exit 1; }

rm -rf "$out/classes"
mkdir -p "$out/classes"
find "$here/src/main/java" -name '*.java' | sed 's/.*/"&"/' > "$out/sources.txt"
javac --release 17 -encoding UTF-8 -Xlint:all -d "$out/classes" @"$out/sources.txt"

printf 'Automatic-Module-Name: io.voxgate.client\nImplementation-Title: voxgate-client\n' > "$out/MANIFEST.MF"
jar --create --file "$out/voxgate-client.jar" --manifest "$out/MANIFEST.MF" -C "$out/classes" .
jar --create --file "$out/voxgate-client-sources.jar" -C "$here/src/main/java" .
echo "built $out/voxgate-client.jar"
