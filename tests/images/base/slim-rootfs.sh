#!/bin/sh
# Slim a freshly debootstrapped Debian rootfs in place (run on the host, as root).
# Usage: slim-rootfs.sh ROOTFS_DIR MIRROR_URL SUITE
set -eu
root=$1
mirror=$2
suite=$3
[ -x "$root/usr/bin/dpkg" ] || { echo "slim-rootfs.sh: $root does not look like a Debian rootfs" >&2; exit 1; }

# Keep future packages from installing docs, man pages and translations.
mkdir -p "$root/etc/dpkg/dpkg.cfg.d"
cat > "$root/etc/dpkg/dpkg.cfg.d/01-mlstack-slim" <<'CFG'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
path-exclude=/usr/share/lintian/*
path-exclude=/usr/share/linda/*
CFG

# apt: no recommends/suggests, no translations, drop downloaded .debs after install.
mkdir -p "$root/etc/apt/apt.conf.d"
cat > "$root/etc/apt/apt.conf.d/01-mlstack-slim" <<'CFG'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
Acquire::GzipIndexes "true";
Acquire::CompressionTypes::Order:: "gz";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CFG

# Same mirror the host uses; no other host is named anywhere.
cat > "$root/etc/apt/sources.list" <<SRC
deb $mirror $suite main
deb $mirror $suite-updates main
SRC

# No service may start inside an image build.
cat > "$root/usr/sbin/policy-rc.d" <<'RC'
#!/bin/sh
exit 101
RC
chmod 0755 "$root/usr/sbin/policy-rc.d"

# Remove what the excludes above would have kept out.
find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
rm -rf "$root/usr/share/man/"* "$root/usr/share/info/"* "$root/usr/share/lintian/"* "$root/usr/share/linda/"*
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} + 2>/dev/null || true

# Empty caches, lists and logs; docker provides resolv.conf/hosts/hostname.
rm -rf "$root/var/lib/apt/lists/"* "$root/var/cache/apt/"*.bin "$root/var/cache/apt/archives/"*.deb \
       "$root/var/cache/debconf/"*-old "$root/var/lib/dpkg/"*-old "$root/var/log/"*.log \
       "$root/var/log/apt/"* "$root/debootstrap"
mkdir -p "$root/var/lib/apt/lists/partial"
: > "$root/etc/resolv.conf"
: > "$root/etc/machine-id" 2>/dev/null || true
echo localhost > "$root/etc/hostname"
