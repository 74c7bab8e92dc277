"""Test VMs for the lab: a small kernel + busybox initramfs built from Debian packages, and qemu
(TCG, no KVM) on a lab segment's tap with BIOS (SeaBIOS + iPXE ROM) or UEFI (OVMF) firmware.

Used by integration tests and the demo to PXE-boot real firmware against bootsrv. Everything is
built at run time from installed Debian packages (linux-image-amd64, busybox-static, qemu-system-x86,
ipxe-qemu, ovmf); nothing binary is kept in git.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from bootsrv.lab.netns import Segment

BUSYBOX = Path("/bin/busybox")
SGABIOS = Path("/usr/share/qemu/sgabios.bin")
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
# Debian's kernel has virtio, virtio-pci, virtio-net and virtio-blk as modules.
NIC_MODULES = ("virtio_pci", "virtio_net", "virtio_blk", "e1000")


def kernel_release() -> str:
    releases = sorted(p.name for p in Path("/lib/modules").iterdir() if (Path("/boot") / f"vmlinuz-{p.name}").exists())
    if not releases:
        raise FileNotFoundError("no /boot/vmlinuz-* with modules: install linux-image-amd64")
    return releases[-1]


def kernel_path() -> Path:
    return Path("/boot") / f"vmlinuz-{kernel_release()}"


def module_closure(names: tuple[str, ...], release: str) -> list[Path]:
    """Module files for `names` and their dependencies, dependencies first (from modules.dep)."""
    base = Path("/lib/modules") / release
    deps: dict[str, list[str]] = {}
    for line in (base / "modules.dep").read_text().splitlines():
        mod, _, rest = line.partition(":")
        deps[Path(mod).name.split(".ko")[0].replace("-", "_")] = [mod, *rest.split()]
    by_path = {entry[0]: entry for entry in deps.values()}
    ordered: list[str] = []

    def visit(path: str) -> None:
        if path in ordered:
            return
        for dep in by_path.get(path, [path])[1:]:
            visit(dep)
        ordered.append(path)

    for name in names:
        if name not in deps:
            raise KeyError(f"kernel module {name} not found in {base}/modules.dep")
        visit(deps[name][0])
    return [base / p for p in ordered]


def _cpio_newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A newc cpio archive (the initramfs format, Documentation/driver-api/early-userspace)."""
    out = io.BytesIO()
    ino = 1
    for name, mode, data in [*entries, ("TRAILER!!!", 0, b"")]:
        encoded = name.encode() + b"\0"
        header = "070701" + "".join(f"{v:08X}" for v in (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0))
        out.write(header.encode() + encoded)
        out.write(b"\0" * (-(110 + len(encoded)) % 4))
        out.write(data)
        out.write(b"\0" * (-len(data) % 4))
        ino += 1
    return out.getvalue()


def build_initramfs(
    dest: Path, init: str, files: dict[str, bytes] | None = None, modules: tuple[str, ...] = NIC_MODULES
) -> Path:
    """A gzip'd initramfs: busybox, `init` as /init (a busybox sh script), NIC/disk modules in
    /modules (loaded in dependency order by /bin/load-modules), and any extra `files`."""
    release = kernel_release()
    mods = module_closure(modules, release)
    dirs = ["bin", "dev", "proc", "sys", "tmp", "etc", "modules", "mnt", "var", "run"]
    entries: list[tuple[str, int, bytes]] = [(d, stat.S_IFDIR | 0o755, b"") for d in dirs]
    entries.append(("bin/busybox", stat.S_IFREG | 0o755, BUSYBOX.read_bytes()))
    entries.append(("bin/sh", stat.S_IFLNK | 0o777, b"busybox"))
    loader = "#!/bin/sh\n" + "".join(f"insmod /modules/{m.name} 2>/dev/null\n" for m in mods)
    entries.append(("bin/load-modules", stat.S_IFREG | 0o755, loader.encode()))
    for m in mods:
        entries.append((f"modules/{m.name}", stat.S_IFREG | 0o644, m.read_bytes()))
    entries.append(("init", stat.S_IFREG | 0o755, init.encode()))
    for name, data in (files or {}).items():
        entries.append((name.lstrip("/"), stat.S_IFREG | 0o755, data))
    dest.write_bytes(gzip.compress(_cpio_newc(entries), compresslevel=1))
    return dest


# The start of every test init: busybox applets, pseudo filesystems, drivers, serial console.
INIT_PRELUDE = """#!/bin/sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
/bin/load-modules
arg() { for kv in $(cat /proc/cmdline); do case "$kv" in "$1"=*) echo "${kv#*=}";; esac; done; }
# The VM's first NIC (on the lab's tap): the guest kernel names it, so it is looked up, not assumed.
vm_nic() { for d in /sys/class/net/*; do [ -e "$d/device" ] && { echo "${d##*/}"; return 0; }; done; return 1; }
# DHCP on NIC $1 with busybox udhcpc: address and default route set, "DHCP-GOT <ip> <hostname>" printed.
dhcp_up() {
  cat > /tmp/dhcp.sh <<'EOS'
#!/bin/sh
case "$1" in
  bound|renew) ip addr flush dev "$interface"; ip addr add "$ip/${mask:-24}" dev "$interface"
               [ -n "$router" ] && ip route replace default via "${router%% *}"
               echo "DHCP-GOT $ip $hostname" ;;
esac
EOS
  chmod +x /tmp/dhcp.sh
  ip link set "$1" up
  udhcpc -i "$1" -q -f -n -t 10 -s /tmp/dhcp.sh
}
"""


@dataclass
class Vm:
    """A qemu VM on a lab segment. Start with `start()`; its serial console goes to `console`."""

    segment: Segment
    name: str
    workdir: Path
    mac: str
    firmware: str = "bios"  # "bios" (SeaBIOS + iPXE option ROM) or "uefi" (OVMF)
    memory_mib: int = 512
    disk: Path | None = None
    kernel: Path | None = None  # direct kernel boot instead of PXE (for testing the initramfs)
    initrd: Path | None = None
    append: str = ""
    nic: str = "virtio-net-pci"
    # False: no iPXE option ROM on the NIC, so UEFI boots by OVMF's own PXE (TFTP, like most
    # server firmware) instead of qemu's iPXE ROM (which goes straight to HTTP).
    option_rom: bool = True
    proc: subprocess.Popen | None = field(default=None, init=False)

    @property
    def console(self) -> Path:
        return self.workdir / f"{self.name}.console"

    def argv(self, tap: str) -> list[str]:
        argv = [
            "qemu-system-x86_64",
            "-name",
            self.name,
            "-accel",
            "tcg",
            "-m",
            str(self.memory_mib),
            "-display",
            "none",
            "-monitor",
            "none",
            "-no-user-config",
            "-nodefaults",
            "-serial",
            f"file:{self.console}",
            "-netdev",
            f"tap,id=n0,ifname={tap},script=no,downscript=no",
            "-device",
            f"{self.nic},netdev=n0,mac={self.mac}" + ("" if self.option_rom else ",romfile="),
        ]
        if self.firmware == "bios" and SGABIOS.exists():
            # SGABIOS copies SeaBIOS's and iPXE's text screen to the serial port, so a test can
            # read what the firmware did ("Nothing to boot", "Booting from Hard Disk...").
            argv += ["-device", "sga"]
        if self.firmware == "uefi":
            vars_copy = self.workdir / f"{self.name}.vars.fd"
            if not vars_copy.exists():
                shutil.copyfile(OVMF_VARS, vars_copy)
            argv += [
                "-drive",
                f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
                "-drive",
                f"if=pflash,format=raw,file={vars_copy}",
            ]
        if self.disk is not None:
            argv += ["-drive", f"file={self.disk},format=raw,if=virtio"]
        if self.kernel is not None:
            argv += ["-kernel", str(self.kernel), "-append", self.append]
            if self.initrd is not None:
                argv += ["-initrd", str(self.initrd)]
        else:
            # Network first; with a disk, fall back to it (a local boot after "exit" in iPXE).
            argv += ["-boot", "order=nc" if self.disk is not None else "order=n"]
        return argv

    def start(self) -> Vm:
        tap = self.segment.tap()
        self.console.write_bytes(b"")
        log = open(self.workdir / f"{self.name}.qemu.log", "wb")
        self.proc = subprocess.Popen(
            self.segment.cmd(self.argv(tap)), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.segment.lab.processes.append(self.proc)
        return self

    def output(self) -> str:
        return self.console.read_bytes().decode("utf-8", "replace")

    def wait_for(self, marker: str, timeout: float = 120, count: int = 1) -> str:
        """Wait until the serial console shows `marker` (`count` times: e.g. once per boot);
        returns the console text."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.output()
            if text.count(marker) >= count:
                return text
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"qemu {self.name} exited {self.proc.returncode} before {marker!r}:\n"
                    f"{(self.workdir / f'{self.name}.qemu.log').read_text()}\n{text[-3000:]}"
                )
            time.sleep(0.25)
        raise TimeoutError(
            f"{self.name}: {marker!r} seen {self.output().count(marker)} of {count} time(s) "
            f"after {timeout:.0f} s:\n{self.output()[-3000:]}"
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(timeout=10)


def blank_disk(path: Path, size_mib: int = 16) -> Path:
    with open(path, "wb") as f:
        f.truncate(size_mib * 1024 * 1024)
    return path
