//! The libvirt provider against libvirt's built-in `test:///default`
//! driver: the whole lifecycle, idempotence, and state mapping, without
//! QEMU. (Real VMs: tests/libvirt_e2e.rs.)

#![cfg(target_os = "linux")]

use std::time::Duration;

use devcluster::plan::Os;
use devcluster::providers::libvirt::Libvirt;
use devcluster::providers::{
    BaseImage, Firmware, HostEntry, NetworkSpec, Provider, ProviderConfig, Shutdown, VmSpec,
    VmState,
};
use devcluster::spec::{DomainType, NetworkMode};

fn config(cache: &std::path::Path) -> ProviderConfig {
    ProviderConfig {
        libvirt_uri: "test:///default".into(),
        libvirt_domain_type: DomainType::Auto,
        cache_dir: cache.to_path_buf(),
    }
}

fn vm(dir: &std::path::Path, name: &str, base: &std::path::Path) -> VmSpec {
    VmSpec {
        cluster: "tdev".into(),
        name: name.into(),
        role: "worker".into(),
        os: Os::Linux,
        cpus: 1,
        memory_mib: 512,
        disk_gib: 2,
        mac: "02:00:00:00:00:15".into(),
        base: BaseImage {
            name: "tiny".into(),
            path: base.to_path_buf(),
            sha256: "ab".repeat(32),
            firmware: Firmware::Uefi,
            secure_boot: false,
        },
        golden: None,
        seed_iso: vec![7u8; 4096],
        install_iso: None,
        windows_devices: Default::default(),
        drivers_iso: None,
        serial_log: dir.join(format!("{name}.serial.log")),
    }
}

#[tokio::test]
async fn lifecycle_on_the_test_driver() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.qcow2");
    std::fs::write(&base, vec![1u8; 64 * 1024]).unwrap();
    let p = Libvirt::open(&config(dir.path())).await.unwrap();
    assert_eq!(p.domain_type(), None, "no KVM probe before it is needed");
    assert!(p.prepare_create().await.unwrap().is_empty());
    assert_eq!(p.domain_type(), Some("qemu"));

    let net = NetworkSpec {
        cluster: "tdev".into(),
        subnet: "192.168.177.0/24".parse().unwrap(),
        gateway: "192.168.177.1".parse().unwrap(),
        mode: NetworkMode::Isolated,
        hosts: vec![HostEntry {
            name: "tdev-w1".into(),
            mac: "02:00:00:00:00:15".into(),
            ip: "192.168.177.21".parse().unwrap(),
        }],
    };
    p.ensure_network(&net).await.unwrap();
    p.ensure_network(&net).await.unwrap();

    assert_eq!(p.state("tdev-w1").await.unwrap(), VmState::Absent);
    let spec = vm(dir.path(), "tdev-w1", &base);
    p.create_node(&spec).await.unwrap();
    p.create_node(&spec).await.unwrap();
    assert_eq!(p.state("tdev-w1").await.unwrap(), VmState::Off);
    assert_eq!(
        p.cluster_vms("tdev").await.unwrap(),
        vec!["tdev-w1".to_string()]
    );
    assert!(p.cluster_vms("other").await.unwrap().is_empty());

    p.start("tdev-w1").await.unwrap();
    p.start("tdev-w1").await.unwrap();
    assert_eq!(p.state("tdev-w1").await.unwrap(), VmState::Running);

    p.suspend("tdev-w1").await.unwrap();
    assert_eq!(p.state("tdev-w1").await.unwrap(), VmState::Saved);
    p.suspend("tdev-w1").await.unwrap();
    p.resume("tdev-w1").await.unwrap();
    assert_eq!(p.state("tdev-w1").await.unwrap(), VmState::Running);

    let s = p.shutdown("tdev-w1", Duration::from_secs(5)).await.unwrap();
    assert_ne!(s, Shutdown::AlreadyOff);
    assert_eq!(p.state("tdev-w1").await.unwrap(), VmState::Off);
    assert_eq!(
        p.shutdown("tdev-w1", Duration::from_secs(5)).await.unwrap(),
        Shutdown::AlreadyOff
    );
    assert!(
        p.resume("tdev-w1").await.is_err(),
        "an off VM is not suspended"
    );

    p.delete_node("tdev-w1").await.unwrap();
    p.delete_node("tdev-w1").await.unwrap();
    assert_eq!(p.state("tdev-w1").await.unwrap(), VmState::Absent);
    assert!(p.start("tdev-w1").await.is_err());
    p.remove_storage("tdev").await.unwrap();
    p.remove_storage("tdev").await.unwrap();
    p.remove_network("tdev").await.unwrap();
    p.remove_network("tdev").await.unwrap();
}
