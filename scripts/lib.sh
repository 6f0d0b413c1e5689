# shellcheck shell=bash
# Shared helpers for scripts/*. Sourced, not run.

export TENCRYPT_CACHE=${TENCRYPT_CACHE:-/var/cache/tencrypt}
export PATH="$TENCRYPT_CACHE/bin:/usr/local/go/bin:$PATH"

step() { printf '==> %s\n' "$*" >&2; }
die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

need_root() {
	[ "$(id -u)" = 0 ] || die "this needs root (network namespaces, nftables, FUSE, package installs): run it with sudo"
}

go_version_wanted() { sed -n 's/^go //p' go.mod; }

# install_go_tool MODULE/PATH VERSION builds a tool once per version into
# $TENCRYPT_CACHE/bin.
install_go_tool() {
	local pkg=$1 version=$2 name stamp
	name=$(basename "$pkg")
	stamp="$TENCRYPT_CACHE/bin/.$name-$version"
	if [ -x "$TENCRYPT_CACHE/bin/$name" ] && [ -e "$stamp" ]; then
		return 0
	fi
	step "building $name $version (once per machine)"
	mkdir -p "$TENCRYPT_CACHE/bin"
	GOBIN="$TENCRYPT_CACHE/bin" go install "$pkg@$version" || die "could not build $pkg@$version"
	touch "$stamp"
}
