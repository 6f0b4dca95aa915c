#!/bin/bash -e
# pi-gen step, run on the build host with ROOTFS_DIR = the image's root (binfmt_misc runs its
# arm64 programs): install pigpu's arm64 package into the image, provision what can be done
# offline with `pigpu setup --root` (the build host's pigpu: the amd64 or arm64 package), and
# enable the first-boot service that finishes on the Pi. images/build.sh puts the package in
# files/ and the setup flags in files/setup-args.

deb=$(ls files/pigpu_*_arm64.deb)
install -m 644 "$deb" "${ROOTFS_DIR}/tmp/"
on_chroot <<CHROOT
apt-get install -y --no-install-recommends "/tmp/$(basename "$deb")"
rm -f "/tmp/$(basename "$deb")"
CHROOT

# Offline provisioning: 4K kernel selected in config.txt, nouveau blacklisted, device-node rules,
# sources fetched and verified into /var/cache/pigpu, build tools and headers installed (apt in
# the image), the patched source registered with DKMS; the module build and NVIDIA's installer
# are left for the first boot (pigpu-first-boot.service) on an x86-64 build machine.
# on_chroot left the build host's /proc mounted in the image: setup would take the host's kernel
# for the image's running kernel, so the image's pseudo file systems are unmounted first.
for m in dev/pts dev sys proc; do
	if mountpoint -q "${ROOTFS_DIR}/$m"; then umount "${ROOTFS_DIR}/$m"; fi
done
read -r -a setup_args <files/setup-args
pigpu setup --root "${ROOTFS_DIR}" --yes "${setup_args[@]}"

on_chroot <<CHROOT
systemctl enable pigpu-first-boot.service
CHROOT
