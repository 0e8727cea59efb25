#!/usr/bin/env sh
# Builds cogmill's deflate addon (deflate.c over Debian's libdeflate, the library GDAL's libtiff links) into
# build/Release/cogmill_deflate.node. Needs a C compiler and libdeflate-dev; Node's own headers (include/node,
# shipped with every Node.js binary distribution) give the N-API declarations. Without it cogmill deflates with
# node:zlib (src/render/deflate.ts), so a failed build is reported and is not an error.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
node_bin="$(command -v node)"
include="$(dirname "$(dirname "$(readlink -f "$node_bin")")")/include/node"
cc="${CC:-cc}"
if [ ! -f "$include/node_api.h" ] || ! command -v "$cc" >/dev/null 2>&1 || [ ! -f /usr/include/libdeflate.h ]; then
  echo "cogmill deflate addon not built (needs $include/node_api.h, a C compiler and libdeflate-dev); node:zlib will be used" >&2
  exit 0
fi
mkdir -p "$here/build/Release"
"$cc" -O3 -Wall -fPIC -shared -I"$include" "$here/deflate.c" -ldeflate -o "$here/build/Release/cogmill_deflate.node.tmp"
mv "$here/build/Release/cogmill_deflate.node.tmp" "$here/build/Release/cogmill_deflate.node"
echo "built $here/build/Release/cogmill_deflate.node"
