"""The lab: network namespaces (`netns`), small VMs under qemu (`vm`), libvirtd inside a
namespace (`libvirtd`), lab hypervisors for guests (`guests`) and `bootsrv demo` (`demo`).
Used by the tests, the benchmarks and the demo; no core package imports it."""
