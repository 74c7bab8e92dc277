#!/bin/sh
# bootsrv: make hv1.lab.example a kvm hypervisor of the pool (profile debian12-kvm-hypervisor).
# Runs inside the installed system at the end of the install (preseed late_command, kickstart
# %post), then calls back to bootsrv. A failure stops the install before its reboot, so a
# half-made hypervisor never comes back to PXE in a loop.
set -eu
BOOT_MAC=52:54:00:12:34:56

# -- root logs in with the site's keys only -------------------------------------------------------
mkdir -p /root/.ssh
chmod 700 /root/.ssh
cat > /root/.ssh/authorized_keys <<'KEYS'
ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGIHy3/qh0Nhe7FlUPIQHwiek4VBu3eaGKq33zd9OiQl placeholder-replace-me@lab.example
KEYS
chmod 600 /root/.ssh/authorized_keys

# -- NICs renamed by MAC to the same names on every hypervisor ------------------------------------
# The boot NIC is fe0; the other site NICs take the remaining physical NICs (those with a
# `device` link in sysfs) in name order, which follows PCI order for predictable names.
others=""
for dev in /sys/class/net/*/device; do
  [ -e "$dev" ] || continue
  dev=${dev%/device}
  addr=$(cat "$dev/address")
  [ "$addr" = "$BOOT_MAC" ] || others="$others $addr"
done
set -- $others
mac_fe0=$BOOT_MAC
mac_be0=${1:-}
[ $# -gt 0 ] && shift

# systemd .link files (systemd.link(5)): matched by MAC, Type=ether so the bridge that takes the
# NIC's MAC below is not renamed too; Alias= shows the role in `ip link`.
mkdir -p /etc/systemd/network
link() {
  if [ -z "$3" ]; then
    echo "bootsrv: no NIC left to name $1 ($2); it stays unnamed" >&2
    return 0
  fi
  cat > "/etc/systemd/network/10-bootsrv-$1.link" <<LINK
[Match]
MACAddress=$3
Type=ether

[Link]
Name=$1
Alias=$2
LINK
}
link fe0 Public "$mac_fe0"
link be0 Backend "$mac_be0"

# -- guest bridges ----------------------------------------------------------------------------------
# Each site NIC is the only port of bridge br<nic>, which carries the host's address and the guests;
# the bridge keeps the NIC's MAC so DHCP and the lease store see the same client.
cat > /etc/network/interfaces <<'IFACES'
# Written by bootsrv (profile debian12-kvm-hypervisor).
source /etc/network/interfaces.d/*

auto lo
iface lo inet loopback
IFACES
if [ -n "$mac_fe0" ]; then
  cat >> /etc/network/interfaces <<IFACES

# Public (public)
allow-hotplug fe0
iface fe0 inet manual
auto brfe0
iface brfe0 inet static
    address 192.0.2.11/24
    gateway 192.0.2.1
    dns-nameservers 192.0.2.1
    bridge_ports fe0
    bridge_hw $mac_fe0
    bridge_stp off
    bridge_fd 0
IFACES
fi
if [ -n "$mac_be0" ]; then
  cat >> /etc/network/interfaces <<IFACES

# Backend (backend)
allow-hotplug be0
iface be0 inet manual
auto brbe0
iface brbe0 inet static
    address 10.1.0.11/24
    bridge_ports be0
    bridge_hw $mac_be0
    bridge_stp off
    bridge_fd 0
IFACES
fi

# -- libvirt: one network per site network, bridged, defined the same on every hypervisor --------
# Guests attach to these by name ([guests] attach = "network" in bootsrv's config), so a domain
# defined on one hypervisor finds its networks on any other: the condition for live migration.
# libvirt reads persistent network definitions from this directory when its network driver starts.
mkdir -p /etc/libvirt/qemu/networks/autostart
cat > /etc/libvirt/qemu/networks/public.xml <<'NETXML'
<network>
  <name>public</name>
  <forward mode='bridge'/>
  <bridge name='brfe0'/>
</network>
NETXML
ln -sf ../public.xml /etc/libvirt/qemu/networks/autostart/public.xml
cat > /etc/libvirt/qemu/networks/backend.xml <<'NETXML'
<network>
  <name>backend</name>
  <forward mode='bridge'/>
  <bridge name='brbe0'/>
</network>
NETXML
ln -sf ../backend.xml /etc/libvirt/qemu/networks/autostart/backend.xml

# -- live migration -------------------------------------------------------------------------------
# Transport: ssh. bootsrv.virt connects to qemu+ssh://root@hv1.lab.example/system as root with a site key; libvirtd
# listens on no TCP port (no tcp/tls listener to secure). The migration data itself goes from the
# source hypervisor straight to this one's migration ports (QEMU: 49152-49215, qemu.conf
# migration_port_min/max) on the address bootsrv passes (the Backend network).
systemctl enable libvirtd.service ssh.service

# -- no desktop -----------------------------------------------------------------------------------
systemctl set-default multi-user.target
for unit in avahi-daemon.service avahi-daemon.socket cups.service cups-browsed.service ModemManager.service bluetooth.service; do
  systemctl mask "$unit" >/dev/null 2>&1 || true
done

# -- serial console and hypervisor boot -----------------------------------------------------------
mkdir -p /etc/default/grub.d
# Sourced before Debian's xen.cfg (name order), which reads these variables.
cat > /etc/default/grub.d/bootsrv.cfg <<'GRUBCFG'
GRUB_TERMINAL="console serial"
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200 --word=8 --parity=no --stop=1"
GRUB_CMDLINE_LINUX_DEFAULT="console=tty0 console=ttyS0,115200n8"
GRUBCFG
update-grub
# The .link files must be in the initramfs too, so the names hold from the first udev run.
update-initramfs -u -k all

# -- enrollment: the last step ---------------------------------------------------------------------
cat > /root/bootsrv-enroll.sh <<'ENROLL'
#!/bin/sh
# bootsrv enrollment callback for 52:54:00:12:34:56: gathers this machine's facts and POSTs them once.
# Generated by bootsrv.machines.enrollment.callback_script; runs under dash or busybox sh, with curl or wget.
set -eu
URL=http://192.0.2.1:8080/api/enroll
TOKEN=GoldenToken_0123456789abcdefghijklmnopqrstu
MAC=52:54:00:12:34:56
NAME=hv1.lab.example
HYPERVISOR=kvm
LIBVIRT_URI=qemu+ssh://root@hv1.lab.example/system
SYS=${BOOTSRV_SYSFS:-/sys}
PROC=${BOOTSRV_PROCFS:-/proc}

cpus=$(grep -c '^processor' "$PROC/cpuinfo")
memory_mib=$(( $(awk '/^MemTotal:/ {print $2}' "$PROC/meminfo") / 1024 ))

# NICs by kernel name with their MAC. A bridge or bond repeats a member's MAC and bootsrv refuses
# duplicates, so physical NICs (those with a `device` link in sysfs) come first and each MAC is
# listed once.
nics="" seen=""
for dev in "$SYS"/class/net/*/device "$SYS"/class/net/*; do
  dev=${dev%/device}
  name=${dev##*/}
  [ "$name" = lo ] && continue
  [ "$name" = "*" ] && continue
  [ -r "$dev/address" ] || continue
  addr=$(cat "$dev/address")
  case "$addr" in ??:??:??:??:??:??) ;; *) continue ;; esac
  case "$addr" in 00:00:00:00:00:00) continue ;; esac
  case " $seen " in *" $addr "*) continue ;; esac
  seen="$seen $addr"
  nics="$nics${nics:+,}{\"name\":\"$name\",\"mac\":\"$addr\"}"
done

# Whole disks (sysfs sizes are 512-byte sectors whatever the logical block size).
disks=""
for dev in "$SYS"/block/*; do
  name=${dev##*/}
  case "$name" in loop*|ram*|zram*|sr*|fd*|dm-*|md*|nbd*) continue ;; esac
  disks="$disks${disks:+,}{\"name\":\"$name\",\"size_bytes\":$(( $(cat "$dev/size") * 512 ))}"
done

body="{\"token\":\"$TOKEN\",\"mac\":\"$MAC\",\"facts\":{\"hostname\":\"$NAME\",\"cpus\":$cpus,\
\"memory_mib\":$memory_mib,\"nics\":[$nics],\"disks\":[$disks],\"hypervisor\":\"$HYPERVISOR\",\
\"libvirt_uri\":\"$LIBVIRT_URI\"}}"

echo "bootsrv: enrolling $MAC as $NAME ($cpus cpus, $memory_mib MiB) at $URL"
if command -v curl >/dev/null 2>&1; then
  curl -sS --fail-with-body --retry 5 --retry-connrefused -H 'Content-Type: application/json' --data "$body" "$URL"
else
  wget -q -O - --header 'Content-Type: application/json' --post-data "$body" "$URL"
fi
echo
ENROLL
sh /root/bootsrv-enroll.sh
rm -f /root/bootsrv-enroll.sh
