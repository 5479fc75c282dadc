//! libvirt XML, rendered from the plan by pure functions (snapshot-tested).
//!
//! Choices that are easy to get wrong, and why:
//!
//! - **q35 + UEFI (OVMF) from the image's own bootloader**, as real cloud
//!   images boot. Firmware is autoselected (`<os firmware='efi'>`) so the
//!   distribution's OVMF descriptors pick the files; Secure Boot is turned
//!   off explicitly for unsigned images (plain `firmware='efi'` on q35
//!   picks the Secure Boot build).
//! - **ACPI + APIC**: without ACPI a guest halts on `shutdown` but libvirt
//!   keeps it "running" forever, so graceful shutdown never completes.
//! - **Where the seed CD-ROM sits**: Linux guests get it on virtio-scsi —
//!   under OVMF an IDE CD-ROM is invisible and Debian's cloud kernel has no
//!   SATA (AHCI) driver, and when the guest cannot see the seed cloud-init
//!   silently falls back to no datasource. Windows guests are the opposite
//!   (no virtio drivers in the box): SATA disk and CD-ROM, e1000e NIC.
//!   With `[libvirt] windows_devices = "virtio"` the disk is virtio-blk and
//!   the NIC virtio-net (the base disk was built with the virtio-win
//!   drivers, whose CD the builder gets as a third CD-ROM); CD-ROMs stay
//!   on SATA, where Windows Setup finds its answer file and the drivers
//!   before any driver is loaded.
//! - **Serial console to a file with `append='on'`**: libvirt truncates the
//!   log at every start and restore otherwise, losing the previous boot.
//! - **Deterministic UUIDs** derived from the names: redefining a domain or
//!   network needs its UUID, and the same plan always gives the same XML.
//! - **Metadata** names the cluster, so `destroy` finds a cluster's VMs
//!   even when its state file is gone.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::plan::Os;
use crate::providers::{Firmware, NetworkSpec, VmSpec};
use crate::spec::NetworkMode;

/// XML namespace of our domain metadata.
pub const METADATA_NS: &str = "https://devcluster.dev/xmlns/libvirt/1";

/// The host-dependent part of a domain definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainHost {
    /// `kvm` or `qemu` (software emulation).
    pub domain_type: &'static str,
    /// Storage pool holding the node's disk and seed.
    pub pool: String,
}

/// Escapes text for XML attribute values and text nodes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// A stable UUID (version-4 layout) from a name.
pub fn uuid_for(kind: &str, name: &str) -> String {
    let h = Sha256::digest(format!("devcluster/{kind}/{name}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[0],
        b[1],
        b[2],
        b[3],
        b[4],
        b[5],
        b[6],
        b[7],
        b[8],
        b[9],
        b[10],
        b[11],
        b[12],
        b[13],
        b[14],
        b[15]
    )
}

/// Name of the cluster's libvirt network (and of its storage pool).
pub fn network_name(cluster: &str) -> String {
    format!("devcluster-{cluster}")
}

/// Linux bridge name: at most 15 characters (IFNAMSIZ - 1).
pub fn bridge_name(cluster: &str) -> String {
    format!("dc-{cluster}")
}

/// Volume names inside the cluster's pool.
pub fn disk_volume(node: &str) -> String {
    format!("{node}.qcow2")
}

pub fn seed_volume(node: &str) -> String {
    format!("{node}-seed.iso")
}

/// A builder VM's copy of the installation ISO (deleted with the VM).
pub fn install_volume(node: &str) -> String {
    format!("{node}-install.iso")
}

/// A builder VM's copy of the virtio-win driver ISO (deleted with the VM).
pub fn drivers_volume(node: &str) -> String {
    format!("{node}-drivers.iso")
}

/// The cluster network: our subnet, the host as gateway, DHCP host entries
/// pinning each planned MAC to its IP and name, and DNS names for nodes.
/// `isolated` has no `<forward>`: guests reach only the host and each other.
pub fn network_xml(net: &NetworkSpec) -> String {
    let name = network_name(&net.cluster);
    let mut x = String::new();
    let _ = writeln!(x, "<network>");
    let _ = writeln!(x, "  <name>{}</name>", esc(&name));
    let _ = writeln!(x, "  <uuid>{}</uuid>", uuid_for("network", &name));
    if net.mode == NetworkMode::Nat {
        let _ = writeln!(x, "  <forward mode='nat'/>");
    }
    let _ = writeln!(
        x,
        "  <bridge name='{}' stp='on' delay='0'/>",
        esc(&bridge_name(&net.cluster))
    );
    let _ = writeln!(x, "  <dns>");
    for h in &net.hosts {
        let _ = writeln!(
            x,
            "    <host ip='{}'><hostname>{}</hostname></host>",
            h.ip,
            esc(&h.name)
        );
    }
    let _ = writeln!(x, "  </dns>");
    let _ = writeln!(
        x,
        "  <ip address='{}' netmask='{}'>",
        net.gateway,
        net.subnet.netmask()
    );
    let _ = writeln!(x, "    <dhcp>");
    if let (Some(start), Some(end)) = (net.subnet.nth(100), net.subnet.nth(254)) {
        let _ = writeln!(x, "      <range start='{start}' end='{end}'/>");
    }
    for h in &net.hosts {
        let _ = writeln!(
            x,
            "      <host mac='{}' name='{}' ip='{}'/>",
            esc(&h.mac),
            esc(&h.name),
            h.ip
        );
    }
    let _ = writeln!(x, "    </dhcp>");
    let _ = writeln!(x, "  </ip>");
    x.push_str("</network>\n");
    x
}

/// A directory storage pool at `path`.
pub fn pool_xml(name: &str, path: &str) -> String {
    format!(
        "<pool type='dir'>\n  <name>{}</name>\n  <uuid>{}</uuid>\n  <target>\n    <path>{}</path>\n  </target>\n</pool>\n",
        esc(name),
        uuid_for("pool", name),
        esc(path)
    )
}

/// A qcow2 overlay of `capacity_gib` on the base volume at `backing_path`.
pub fn overlay_volume_xml(name: &str, capacity_gib: u32, backing_path: &str) -> String {
    format!(
        "<volume>\n  <name>{}</name>\n  <capacity unit='GiB'>{capacity_gib}</capacity>\n  <target>\n    <format type='qcow2'/>\n  </target>\n  <backingStore>\n    <path>{}</path>\n    <format type='qcow2'/>\n  </backingStore>\n</volume>\n",
        esc(name),
        esc(backing_path)
    )
}

/// The target device (`vda`) of the disk whose source is volume `volume`
/// in a domain's XML as libvirt returns it (single-quoted attributes).
pub fn disk_target(domain_xml: &str, volume: &str) -> Option<String> {
    let needle = format!("volume='{}'", esc(volume));
    domain_xml.split("<disk ").skip(1).find_map(|rest| {
        let disk = &rest[..rest.find("</disk>")?];
        if !disk.contains(&needle) {
            return None;
        }
        let dev = &disk[disk.find("<target dev='")? + "<target dev='".len()..];
        Some(dev[..dev.find('\'')?].to_string())
    })
}

/// A push-mode backup of the disk `target` (a target device, `vda`) into a new qcow2 file at
/// into a new qcow2 file at `file` (libvirt creates it): a full,
/// standalone copy as the guest saw the disk when the backup began.
pub fn backup_xml(target: &str, file: &str) -> String {
    format!(
        "<domainbackup mode='push'>\n  <disks>\n    <disk name='{}' backup='yes' type='file'>\n      <target file='{}'/>\n      <driver type='qcow2'/>\n    </disk>\n  </disks>\n</domainbackup>\n",
        esc(target),
        esc(file)
    )
}

/// An empty qcow2 disk of `capacity_gib` (a builder's install target).
pub fn blank_volume_xml(name: &str, capacity_gib: u32) -> String {
    format!(
        "<volume>\n  <name>{}</name>\n  <capacity unit='GiB'>{capacity_gib}</capacity>\n  <target>\n    <format type='qcow2'/>\n  </target>\n</volume>\n",
        esc(name)
    )
}

/// A plain volume of `bytes` in `format` (raw for ISOs, qcow2 for bases).
pub fn plain_volume_xml(name: &str, bytes: u64, format: &str) -> String {
    format!(
        "<volume>\n  <name>{}</name>\n  <capacity unit='bytes'>{bytes}</capacity>\n  <target>\n    <format type='{}'/>\n  </target>\n</volume>\n",
        esc(name),
        esc(format)
    )
}

/// The domain of one node.
pub fn domain_xml(vm: &VmSpec, host: &DomainHost) -> String {
    let windows = vm.os == Os::Windows;
    let mut x = String::new();
    let _ = writeln!(x, "<domain type='{}'>", host.domain_type);
    let _ = writeln!(x, "  <name>{}</name>", esc(&vm.name));
    let _ = writeln!(x, "  <uuid>{}</uuid>", uuid_for("domain", &vm.name));
    let _ = writeln!(
        x,
        "  <title>devcluster {}: {}</title>",
        esc(&vm.cluster),
        esc(&vm.name)
    );
    let _ = writeln!(x, "  <metadata>");
    let _ = writeln!(
        x,
        "    <devcluster:node xmlns:devcluster='{METADATA_NS}' cluster='{}' role='{}' os='{}'/>",
        esc(&vm.cluster),
        esc(&vm.role),
        vm.os.as_str()
    );
    let _ = writeln!(x, "  </metadata>");
    let _ = writeln!(x, "  <memory unit='MiB'>{}</memory>", vm.memory_mib);
    let _ = writeln!(x, "  <vcpu>{}</vcpu>", vm.cpus);
    match vm.base.firmware {
        Firmware::Uefi => {
            let _ = writeln!(x, "  <os firmware='efi'>");
            let _ = writeln!(x, "    <type arch='x86_64' machine='q35'>hvm</type>");
            let _ = writeln!(x, "    <firmware>");
            if vm.base.secure_boot {
                let _ = writeln!(x, "      <feature enabled='yes' name='secure-boot'/>");
                let _ = writeln!(x, "      <feature enabled='yes' name='enrolled-keys'/>");
            } else {
                let _ = writeln!(x, "      <feature enabled='no' name='secure-boot'/>");
            }
            let _ = writeln!(x, "    </firmware>");
        }
        Firmware::Bios => {
            let _ = writeln!(x, "  <os>");
            let _ = writeln!(x, "    <type arch='x86_64' machine='q35'>hvm</type>");
        }
    }
    if !windows {
        let _ = writeln!(x, "    <boot dev='hd'/>");
    }
    let _ = writeln!(x, "  </os>");
    let _ = writeln!(x, "  <features>");
    let _ = writeln!(x, "    <acpi/>");
    let _ = writeln!(x, "    <apic/>");
    if vm.base.secure_boot && vm.base.firmware == Firmware::Uefi {
        let _ = writeln!(x, "    <smm state='on'/>");
    }
    if windows {
        // Hyper-V enlightenments: Windows detects them and boots ~20 s
        // faster, idles instead of spinning (osinfo-db, virt-install's
        // Windows defaults). Under software emulation only the ones QEMU
        // emulates itself: vpindex, synic and stimer need KVM ("kernel
        // doesn't allow setting HyperV VP_INDEX").
        let _ = writeln!(x, "    <hyperv mode='custom'>");
        let _ = writeln!(x, "      <relaxed state='on'/>");
        let _ = writeln!(x, "      <vapic state='on'/>");
        let _ = writeln!(x, "      <spinlocks state='on' retries='8191'/>");
        if host.domain_type == "kvm" {
            let _ = writeln!(x, "      <vpindex state='on'/>");
            let _ = writeln!(x, "      <runtime state='on'/>");
            let _ = writeln!(x, "      <synic state='on'/>");
            let _ = writeln!(x, "      <stimer state='on'/>");
            let _ = writeln!(x, "      <frequencies state='on'/>");
        }
        let _ = writeln!(x, "    </hyperv>");
    }
    let _ = writeln!(x, "  </features>");
    if host.domain_type == "kvm" {
        let _ = writeln!(x, "  <cpu mode='host-passthrough' check='none'/>");
    }
    if windows {
        // Windows keeps the RTC in local time; the Hyper-V clock source
        // is what it reads with the enlightenments on.
        let _ = writeln!(x, "  <clock offset='localtime'>");
        let _ = writeln!(x, "    <timer name='rtc' tickpolicy='catchup'/>");
        let _ = writeln!(x, "    <timer name='pit' tickpolicy='delay'/>");
        let _ = writeln!(x, "    <timer name='hpet' present='no'/>");
        if host.domain_type == "kvm" {
            let _ = writeln!(x, "    <timer name='hypervclock' present='yes'/>");
        }
        let _ = writeln!(x, "  </clock>");
    } else {
        let _ = writeln!(x, "  <clock offset='utc'/>");
    }
    let _ = writeln!(x, "  <on_poweroff>destroy</on_poweroff>");
    let _ = writeln!(x, "  <on_reboot>restart</on_reboot>");
    let _ = writeln!(x, "  <on_crash>destroy</on_crash>");
    let _ = writeln!(x, "  <devices>");
    let virtio_windows = windows && vm.windows_devices == crate::spec::WindowsDevices::Virtio;
    let (disk_bus, disk_dev, cd_bus, cd_dev, nic) = if virtio_windows {
        ("virtio", "vda", "sata", "sdb", "virtio")
    } else if windows {
        ("sata", "sda", "sata", "sdb", "e1000e")
    } else {
        ("virtio", "vda", "scsi", "sda", "virtio")
    };
    let _ = writeln!(x, "    <disk type='volume' device='disk'>");
    let _ = writeln!(
        x,
        "      <driver name='qemu' type='qcow2' discard='unmap'/>"
    );
    let _ = writeln!(
        x,
        "      <source pool='{}' volume='{}'/>",
        esc(&host.pool),
        esc(&disk_volume(&vm.name))
    );
    let _ = writeln!(x, "      <target dev='{disk_dev}' bus='{disk_bus}'/>");
    if windows {
        let _ = writeln!(x, "      <boot order='1'/>");
    }
    let _ = writeln!(x, "    </disk>");
    if !windows {
        let _ = writeln!(
            x,
            "    <controller type='scsi' index='0' model='virtio-scsi'/>"
        );
    }
    cdrom(
        &mut x,
        &host.pool,
        &seed_volume(&vm.name),
        cd_dev,
        cd_bus,
        None,
    );
    if vm.install_iso.is_some() {
        // The builder: a blank disk boots nothing, so firmware falls
        // through to the installation CD; after Setup's first reboot the
        // disk boots.
        cdrom(
            &mut x,
            &host.pool,
            &install_volume(&vm.name),
            "sdc",
            cd_bus,
            Some(2),
        );
    }
    if vm.install_iso.is_some() && vm.drivers_iso.is_some() {
        // virtio-win, for Setup's DriverPaths (seed::windows::
        // virtio_driver_paths): the third CD-ROM.
        cdrom(
            &mut x,
            &host.pool,
            &drivers_volume(&vm.name),
            "sdd",
            cd_bus,
            None,
        );
    }
    let _ = writeln!(x, "    <interface type='network'>");
    let _ = writeln!(x, "      <mac address='{}'/>", esc(&vm.mac));
    let _ = writeln!(
        x,
        "      <source network='{}'/>",
        esc(&network_name(&vm.cluster))
    );
    let _ = writeln!(x, "      <model type='{nic}'/>");
    let _ = writeln!(x, "    </interface>");
    let _ = writeln!(x, "    <serial type='file'>");
    let _ = writeln!(
        x,
        "      <source path='{}' append='on'/>",
        esc(&vm.serial_log.to_string_lossy())
    );
    let _ = writeln!(x, "      <target port='0'/>");
    let _ = writeln!(x, "    </serial>");
    if windows {
        // To watch Setup and the build: `virsh vncdisplay NAME` (loopback).
        let _ = writeln!(
            x,
            "    <graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'/>"
        );
        let _ = writeln!(x, "    <video>");
        let _ = writeln!(x, "      <model type='vga'/>");
        let _ = writeln!(x, "    </video>");
    }
    let _ = writeln!(x, "    <channel type='unix'>");
    let _ = writeln!(
        x,
        "      <target type='virtio' name='org.qemu.guest_agent.0'/>"
    );
    let _ = writeln!(x, "    </channel>");
    let _ = writeln!(x, "    <rng model='virtio'>");
    let _ = writeln!(x, "      <backend model='random'>/dev/urandom</backend>");
    let _ = writeln!(x, "    </rng>");
    let _ = writeln!(x, "  </devices>");
    x.push_str("</domain>\n");
    x
}

/// A read-only CD-ROM holding volume `volume` of `pool`.
fn cdrom(x: &mut String, pool: &str, volume: &str, dev: &str, bus: &str, boot: Option<u32>) {
    let _ = writeln!(x, "    <disk type='volume' device='cdrom'>");
    let _ = writeln!(x, "      <driver name='qemu' type='raw'/>");
    let _ = writeln!(
        x,
        "      <source pool='{}' volume='{}'/>",
        esc(pool),
        esc(volume)
    );
    let _ = writeln!(x, "      <target dev='{dev}' bus='{bus}'/>");
    let _ = writeln!(x, "      <readonly/>");
    if let Some(order) = boot {
        let _ = writeln!(x, "      <boot order='{order}'/>");
    }
    let _ = writeln!(x, "    </disk>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Surroundings, plan};
    use crate::providers::BaseImage;
    use crate::spec::{Layer, Origin, Val, resolve};

    fn three_node_plan() -> crate::plan::Plan {
        let layer = Layer {
            windows_workers: Some(Val::new(1, Origin::Flag("--windows-workers"))),
            node_cidr: Some(Val::new("192.168.150.0/24".into(), Origin::Default)),
            libvirt_network_mode: Some(Val::new(NetworkMode::Isolated, Origin::Default)),
            ..Layer::default()
        };
        let spec = resolve(Val::new("dev".into(), Origin::Default), layer).unwrap();
        plan(&spec, &Surroundings::default()).unwrap()
    }

    fn vm(node: &crate::plan::NodePlan) -> VmSpec {
        VmSpec {
            cluster: "dev".into(),
            name: node.name.clone(),
            role: node.role.as_str().into(),
            os: node.os,
            cpus: node.cpus,
            memory_mib: node.memory_mib,
            disk_gib: node.disk_gib,
            mac: node.mac.clone(),
            base: BaseImage {
                name: node.image.clone(),
                path: "/cache/base.qcow2".into(),
                sha256: "0".repeat(64),
                firmware: Firmware::Uefi,
                secure_boot: node.os == Os::Windows,
            },
            golden: None,
            seed_iso: Vec::new(),
            install_iso: None,
            windows_devices: Default::default(),
            drivers_iso: None,
            serial_log: format!("/state/clusters/dev/logs/{}.serial.log", node.name).into(),
        }
    }

    #[test]
    fn snapshots_for_a_three_node_plan() {
        let p = three_node_plan();
        insta::assert_snapshot!("network_xml", network_xml(&NetworkSpec::from_plan(&p)));
        let host = DomainHost {
            domain_type: "qemu",
            pool: network_name("dev"),
        };
        for node in &p.nodes {
            insta::assert_snapshot!(
                format!("domain_{}", node.name),
                domain_xml(&vm(node), &host)
            );
        }
        let kvm = DomainHost {
            domain_type: "kvm",
            pool: network_name("dev"),
        };
        let xml = domain_xml(&vm(&p.nodes[0]), &kvm);
        assert!(xml.contains("<cpu mode='host-passthrough'"));
    }

    #[test]
    fn windows_builder_has_a_blank_disk_and_the_install_cd() {
        let p = three_node_plan();
        let mut b = vm(&p.nodes[2]);
        b.name = "dev-build".into();
        b.install_iso = Some("/cache/windows.iso".into());
        let host = DomainHost {
            domain_type: "kvm",
            pool: network_name("dev"),
        };
        let xml = domain_xml(&b, &host);
        insta::assert_snapshot!("domain_windows_builder", xml);
        // Disk first (blank: firmware falls through), then the install CD.
        let disk = xml.find("<boot order='1'/>").unwrap();
        let cd = xml.find("<boot order='2'/>").unwrap();
        assert!(disk < cd);
        assert!(xml[cd - 200..cd].contains("dev-build-install.iso"));
        assert!(!xml.contains("<boot dev="), "per-device boot order only");
    }

    #[test]
    fn virtio_windows_gets_virtio_disk_and_nic_and_the_builder_the_drivers_cd() {
        let p = three_node_plan();
        let host = DomainHost {
            domain_type: "kvm",
            pool: network_name("dev"),
        };
        let mut node = vm(&p.nodes[2]);
        assert_eq!(node.os, Os::Windows);
        node.windows_devices = crate::spec::WindowsDevices::Virtio;
        let xml = domain_xml(&node, &host);
        insta::assert_snapshot!("domain_windows_virtio_node", xml);
        assert_eq!(
            disk_target(&xml, &disk_volume(&node.name)).as_deref(),
            Some("vda")
        );
        assert!(xml.contains("<target dev='vda' bus='virtio'/>"));
        assert!(xml.contains("<model type='virtio'/>") && !xml.contains("e1000e"));
        // The seed CD stays on SATA (Setup reads it before drivers load).
        assert!(xml.contains("<target dev='sdb' bus='sata'/>"));
        assert!(!xml.contains("-drivers.iso"), "a node has no drivers CD");

        let mut b = node.clone();
        b.name = "dev-build".into();
        b.install_iso = Some("/cache/windows.iso".into());
        b.drivers_iso = Some("/cache/virtio-win.iso".into());
        let xml = domain_xml(&b, &host);
        insta::assert_snapshot!("domain_windows_virtio_builder", xml);
        let cds: Vec<&str> = xml
            .split("<disk type='volume' device='cdrom'>")
            .skip(1)
            .collect();
        assert_eq!(cds.len(), 3, "build CD, install ISO, virtio-win: {xml}");
        assert!(cds[2].contains("dev-build-drivers.iso"));
        assert!(cds[2].contains("<target dev='sdd' bus='sata'/>"));
        // An emulated builder has no drivers CD.
        b.windows_devices = crate::spec::WindowsDevices::Emulated;
        b.drivers_iso = None;
        assert!(!domain_xml(&b, &host).contains("-drivers.iso"));
    }

    #[test]
    fn isolated_has_no_forward_and_nat_does() {
        let p = three_node_plan();
        let mut net = NetworkSpec::from_plan(&p);
        assert!(!network_xml(&net).contains("<forward"));
        net.mode = NetworkMode::Nat;
        assert!(network_xml(&net).contains("<forward mode='nat'/>"));
    }

    #[test]
    fn names_fit_and_uuids_are_stable() {
        assert!(bridge_name("abcdefghij").len() <= 15);
        assert_eq!(uuid_for("domain", "a"), uuid_for("domain", "a"));
        assert_ne!(uuid_for("domain", "a"), uuid_for("domain", "b"));
        assert_eq!(uuid_for("domain", "a").len(), 36);
        assert_eq!(esc("a<'&\">"), "a&lt;&apos;&amp;&quot;&gt;");
    }
    #[test]
    fn backup_is_a_push_mode_copy_of_one_disk_into_a_new_qcow2() {
        insta::assert_snapshot!(
            "backup_xml",
            backup_xml(
                "vda",
                "/var/lib/libvirt/images/devcluster-images/golden-0123-1.qcow2"
            )
        );
    }

    #[test]
    fn the_backed_up_disk_is_found_by_its_volume() {
        let p = three_node_plan();
        for node in &p.nodes {
            let host = DomainHost {
                domain_type: "qemu",
                pool: "devcluster-dev".into(),
            };
            let xml = domain_xml(&vm(node), &host);
            let want = if node.os == Os::Windows { "sda" } else { "vda" };
            assert_eq!(
                disk_target(&xml, &disk_volume(&node.name)).as_deref(),
                Some(want)
            );
            // Not the seed ISO, not another node's disk.
            assert_eq!(disk_target(&xml, "other.qcow2"), None);
        }
    }
}
