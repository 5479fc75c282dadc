//! Each check's decision on recorded inputs (testdata/doctor, sources in
//! its README), and the table for a healthy and an unhealthy host.

use std::path::{Path, PathBuf};

use super::*;

fn fixture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/doctor")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The second line of virsh's output: libvirt's own message.
fn virsh_error(name: &str) -> String {
    let text = fixture(name);
    text.lines()
        .nth(1)
        .unwrap()
        .trim_start_matches("error: ")
        .to_string()
}

#[test]
fn meminfo_is_read_in_mib() {
    let m = parse_meminfo(&fixture("meminfo-debian12-24g.txt")).unwrap();
    assert_eq!(m.total_mib, 24683568 / 1024);
    assert_eq!(m.available_mib, 22965628 / 1024);
    assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None, "no MemAvailable");
}

#[test]
fn memory_against_the_host() {
    let big = parse_meminfo(&fixture("meminfo-debian12-24g.txt"));
    let busy = parse_meminfo(&fixture("meminfo-8g-busy.txt"));
    let c = memory("resources.memory", "the default cluster", 4096, big);
    assert_eq!(c.status, Status::Ok, "{c:?}");
    assert!(c.found.contains("needs 4096 MiB"), "{}", c.found);
    // Fits the host, not what is free now.
    let c = memory("resources.memory", "x", 4096, busy);
    assert_eq!(c.status, Status::Warn, "{c:?}");
    assert!(c.fix.unwrap().contains("suspend"));
    // More than the host has.
    let c = memory("resources.memory", "x", 10240, busy);
    assert_eq!(c.status, Status::Fail);
    assert!(c.fix.unwrap().contains("--workers"));
    // Above 80% of the host, but free.
    let m = Memory {
        total_mib: 10000,
        available_mib: 9500,
    };
    assert_eq!(memory("m", "x", 9000, Some(m)).status, Status::Warn);
    assert_eq!(memory("m", "x", 1, None).status, Status::Warn);
}

#[test]
fn disk_space() {
    let p = Path::new("/var/lib/libvirt/images");
    let g = 1u64 << 30;
    assert_eq!(
        disk("d", p, Some(100 * g), 10 * g, 8 * g, "x").status,
        Status::Ok
    );
    // Room for the downloads and base disks, not for the nodes' growth.
    assert_eq!(
        disk("d", p, Some(12 * g), 10 * g, 8 * g, "x").status,
        Status::Warn
    );
    let c = disk(
        "d",
        p,
        Some(5 * g),
        30 * g,
        8 * g,
        "image windows-server-2022",
    );
    assert_eq!(c.status, Status::Fail);
    assert!(c.found.contains("/var/lib/libvirt/images"), "{}", c.found);
    assert!(c.found.contains("30.0 GiB up front"), "{}", c.found);
    assert!(c.fix.unwrap().contains("images prune"));
    assert_eq!(disk("d", p, None, g, g, "x").status, Status::Warn);
}

#[test]
fn host_os_and_arch() {
    assert_eq!(host_os("linux", "x86_64").status, Status::Ok);
    assert_eq!(host_os("windows", "x86_64").status, Status::Ok);
    assert_eq!(host_os("macos", "aarch64").status, Status::Warn);
    assert_eq!(host_os("freebsd", "x86_64").status, Status::Fail);
}

#[test]
fn kvm_verdicts() {
    assert_eq!(kvm(&KvmVerdict::Works, false, false).status, Status::Ok);
    let hang = kvm(&KvmVerdict::Hangs, true, false);
    assert_eq!(hang.status, Status::Warn);
    assert!(
        hang.found.contains("/dev/kvm exists but hangs"),
        "{}",
        hang.found
    );
    assert!(hang.found.contains("cached"), "{}", hang.found);
    assert!(hang.fix.as_ref().unwrap().contains("nested virtualization"));
    // domain_type = "kvm" insists: then it stops up.
    assert_eq!(kvm(&KvmVerdict::Hangs, false, true).status, Status::Fail);
    let c = kvm(
        &KvmVerdict::NoAccess("Permission denied (os error 13)".into()),
        false,
        false,
    );
    assert!(c.fix.unwrap().contains("kvm group"));
    assert!(
        kvm(&KvmVerdict::NoDevice, false, false)
            .fix
            .unwrap()
            .contains("VT-x")
    );
    assert_eq!(kvm(&KvmVerdict::NoQemu, false, false).status, Status::Warn);
    // The cache's form (shared with the libvirt driver) round-trips.
    for v in [
        KvmVerdict::Works,
        KvmVerdict::Hangs,
        KvmVerdict::NoAccess("x".into()),
    ] {
        let j = serde_json::to_string(&v).unwrap();
        assert_eq!(serde_json::from_str::<KvmVerdict>(&j).unwrap(), v, "{j}");
    }
}

#[test]
fn hypervisor_present_from_powershell_json() {
    crate::test_support::assert_pwsh_parses("hypervisor-present", HYPERVISOR_PRESENT_PS1);
    let yes = fixture("ps-hypervisor-present-true.json");
    assert_eq!(hypervisor_present(Ok(&yes)).status, Status::Ok);
    let no = hypervisor_present(Ok(&fixture("ps-hypervisor-present-false.json")));
    assert_eq!(no.status, Status::Fail);
    assert!(no.fix.unwrap().contains("Microsoft-Hyper-V"));
    assert_eq!(hypervisor_present(Ok("garbage")).status, Status::Warn);
    assert_eq!(
        hypervisor_present(Err("cannot run powershell.exe")).status,
        Status::Warn
    );
    assert_eq!(hv_support(Ok("1\n")).status, Status::Ok);
    assert_eq!(hv_support(Ok("0\n")).status, Status::Fail);
}

#[test]
fn libvirt_errors_get_their_fix() {
    let uri = "qemu:///system";
    let c = libvirt_reachable(uri, Err(&virsh_error("virsh-no-socket.txt")));
    assert_eq!(c.status, Status::Fail);
    assert!(c.found.contains("No such file"), "{}", c.found);
    // A local URI and no socket: libvirtd is not running.
    let fix = libvirt_error_fix(uri, &virsh_error("virsh-no-socket.txt"));
    assert!(fix.contains("start libvirtd"), "{fix}");
    for f in ["virsh-polkit.txt", "virsh-socket-permission.txt"] {
        let fix = libvirt_error_fix(uri, &virsh_error(f));
        assert!(fix.contains("usermod -aG libvirt"), "{f}: {fix}");
    }
    let fix = libvirt_error_fix(uri, &virsh_error("virsh-no-system-bus.txt"));
    assert!(
        fix.contains("libvirt group") && fix.contains("D-Bus"),
        "{fix}"
    );
    let tcp = "qemu+tcp://127.0.0.1:1/system";
    let fix = libvirt_error_fix(tcp, &virsh_error("virsh-tcp-refused.txt"));
    assert!(
        fix.contains("nothing answers at qemu+tcp://127.0.0.1:1/system"),
        "{fix}"
    );
    let ok = libvirt_reachable(uri, Ok("libvirt 9.0.0"));
    assert_eq!(ok.status, Status::Ok);
    assert_eq!(ok.found, "libvirt 9.0.0 at qemu:///system");
}

#[test]
fn libvirt_permissions_from_id() {
    let sys = "qemu:///system";
    let root = fixture("id-Gn-root.txt");
    assert_eq!(libvirt_permissions(sys, 0, &root, None).status, Status::Ok);
    let user = fixture("id-Gn-desktop-user.txt");
    let member = fixture("id-Gn-desktop-user-libvirt.txt");
    let c = libvirt_permissions(sys, 1000, &user, Some(&user));
    assert_eq!(c.status, Status::Fail);
    assert!(c.found.contains("sudo, audio"), "{}", c.found);
    assert!(c.fix.unwrap().contains("usermod -aG libvirt"));
    assert_eq!(
        libvirt_permissions(sys, 1000, &member, Some(&member)).status,
        Status::Ok
    );
    // Added to the group, but this session started before.
    let c = libvirt_permissions(sys, 1000, &user, Some(&member));
    assert_eq!(c.status, Status::Fail);
    assert!(c.fix.unwrap().contains("log out"));
    // A session URI needs no group.
    assert_eq!(
        libvirt_permissions("qemu:///session", 1000, &user, None).status,
        Status::Ok
    );
}

fn descriptors(names: &[&str]) -> Vec<Firmware> {
    names
        .iter()
        .map(|n| {
            let mut f = parse_firmware_descriptor(Path::new(n), &fixture(n)).expect("a descriptor");
            f.files_exist = true;
            f
        })
        .collect()
}

#[test]
fn ovmf_and_the_secure_boot_pair() {
    let all = descriptors(&[
        "firmware-40-edk2-x86_64-secure-enrolled.json",
        "firmware-50-edk2-x86_64-secure.json",
        "firmware-60-edk2-x86_64.json",
    ]);
    let enrolled = &all[0];
    assert!(enrolled.uefi_x86_64 && enrolled.secure_boot && enrolled.enrolled_keys);
    assert_eq!(
        enrolled.executable,
        PathBuf::from("/usr/share/OVMF/OVMF_CODE_4M.ms.fd")
    );
    assert_eq!(
        enrolled.nvram_template,
        Some(PathBuf::from("/usr/share/OVMF/OVMF_VARS_4M.ms.fd"))
    );
    assert!(!all[2].secure_boot);
    let checks = ovmf(&all, true);
    assert_eq!(checks[0].status, Status::Ok);
    assert!(
        checks[0].found.contains("OVMF_CODE_4M.fd"),
        "{}",
        checks[0].found
    );
    assert_eq!(checks[1].status, Status::Ok);
    assert!(
        checks[1].found.contains("OVMF_VARS_4M.ms.fd"),
        "{}",
        checks[1].found
    );
    // Without the Microsoft-keys pair: a warning, a failure for Windows.
    let plain = descriptors(&[
        "firmware-50-edk2-x86_64-secure.json",
        "firmware-60-edk2-x86_64.json",
    ]);
    assert_eq!(ovmf(&plain, false)[1].status, Status::Warn);
    assert_eq!(ovmf(&plain, true)[1].status, Status::Fail);
    // Descriptors whose files are gone count for nothing.
    let mut gone = all.clone();
    for f in &mut gone {
        f.files_exist = false;
    }
    let c = ovmf(&gone, false);
    assert_eq!(c[0].status, Status::Fail);
    assert!(c[0].fix.as_ref().unwrap().contains("apt install ovmf"));
    assert_eq!(ovmf(&[], false)[0].status, Status::Fail);
}

#[test]
fn libvirt_storage_facts() {
    let p = Path::new("/var/lib/libvirt/images");
    let s = |f| libvirt_storage(p, &f).status;
    assert_eq!(
        s(StorageFacts::Dir {
            writable: Some(true)
        }),
        Status::Ok
    );
    assert_eq!(s(StorageFacts::Dir { writable: None }), Status::Ok);
    assert_eq!(
        s(StorageFacts::Dir {
            writable: Some(false)
        }),
        Status::Fail
    );
    assert_eq!(s(StorageFacts::Creatable), Status::Ok);
    assert_eq!(s(StorageFacts::Missing), Status::Fail);
    assert_eq!(s(StorageFacts::NotADir), Status::Fail);
}

#[test]
fn kubectl_versions_and_skew() {
    assert_eq!(
        parse_kubectl_version(&fixture("kubectl-1.33.json")),
        Some((1, 33, "v1.33.1".into()))
    );
    let (maj, min, git) = parse_kubectl_version(&fixture("kubectl-1.32-dispatcher.json")).unwrap();
    assert_eq!((maj, min), (1, 32), "{git}");
    let k = Path::new("/usr/bin/kubectl");
    let v133 = fixture("kubectl-1.33.json");
    let v127 = fixture("kubectl-1.27.json");
    assert_eq!(kubectl(Some(k), Ok(&v133), "1.34").status, Status::Ok);
    assert_eq!(kubectl(Some(k), Ok(&v133), "1.33").status, Status::Ok);
    let far = kubectl(Some(k), Ok(&v127), "1.34");
    assert_eq!(far.status, Status::Warn);
    assert!(far.found.contains("v1.27"), "{}", far.found);
    assert!(far.fix.unwrap().contains("install kubectl 1.34"));
    assert_eq!(
        kubectl(None, Err("not on PATH"), "1.34").status,
        Status::Warn
    );
    assert_eq!(kubectl(Some(k), Ok("{}"), "1.34").status, Status::Warn);
    assert_eq!(kubectl(Some(k), Err("exit 1"), "1.34").status, Status::Warn);
}

#[test]
fn ssh_client_or_the_fallback() {
    assert_eq!(
        ssh_client(Some(Path::new("/usr/bin/ssh"))).status,
        Status::Ok
    );
    let c = ssh_client(None);
    assert_eq!(c.status, Status::Warn);
    assert!(c.found.contains("built-in client"));
}

#[test]
fn kubeconfig_files() {
    let a = PathBuf::from("/home/a/.kube/config");
    let ok = KubeconfigFacts::Present {
        parse_error: None,
        writable: true,
    };
    assert_eq!(kubeconfig(&[(a.clone(), ok.clone())]).status, Status::Ok);
    let bad = KubeconfigFacts::Present {
        parse_error: Some("invalid YAML".into()),
        writable: true,
    };
    let c = kubeconfig(&[(PathBuf::from("/k/other"), ok.clone()), (a.clone(), bad)]);
    assert_eq!(c.status, Status::Fail);
    assert!(
        c.found.starts_with("/home/a/.kube/config does not parse"),
        "{}",
        c.found
    );
    let ro = KubeconfigFacts::Present {
        parse_error: None,
        writable: false,
    };
    let c = kubeconfig(&[(a.clone(), ro)]);
    assert_eq!(c.status, Status::Fail);
    assert!(c.found.contains("not writable"));
    let new = KubeconfigFacts::Missing { creatable: true };
    assert_eq!(kubeconfig(&[(a.clone(), new)]).status, Status::Ok);
    let c = kubeconfig(&[(a.clone(), KubeconfigFacts::Missing { creatable: false })]);
    assert_eq!(c.status, Status::Fail);
    // KUBECONFIG=a:b with b absent: kubectl (and devcluster) use a.
    let c = kubeconfig(&[
        (a, ok.clone()),
        (
            PathBuf::from("/nope/b"),
            KubeconfigFacts::Missing { creatable: false },
        ),
    ]);
    assert_eq!(c.status, Status::Ok, "{c:?}");
    assert_eq!(kubeconfig(&[]).status, Status::Fail);
}

#[test]
fn state_dir_and_subnet() {
    assert_eq!(state_dir(Path::new("/s"), Ok(())).status, Status::Ok);
    let c = state_dir(Path::new("/s"), Err("Permission denied"));
    assert_eq!(c.status, Status::Fail);
    assert!(c.fix.unwrap().contains("DEVCLUSTER_HOME"));
    let net: Cidr = "192.168.100.0/24".parse().unwrap();
    assert_eq!(
        subnet("dev", Ok((net, false))).found,
        "192.168.100.0/24 is free for a new cluster dev"
    );
    assert_eq!(
        subnet("dev", Ok((net, true))).found,
        "cluster dev keeps 192.168.100.0/24"
    );
    let c = subnet("dev", Err(("no free /24", Some("set node_cidr"))));
    assert_eq!(c.status, Status::Fail);
    assert_eq!(c.fix.as_deref(), Some("set node_cidr"));
}

#[test]
fn proxy_settings() {
    let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    let net: Cidr = "192.168.100.0/24".parse().unwrap();
    assert_eq!(proxy(&env(&[]), Some(net)).status, Status::Ok);
    let c = proxy(
        &env(&[("https_proxy", "http://bob:secret@proxy.corp:3128")]),
        Some(net),
    );
    assert_eq!(c.status, Status::Warn);
    assert!(!c.found.contains("secret"), "{}", c.found);
    assert!(
        c.found.contains("HTTPS_PROXY=http://***@proxy.corp:3128"),
        "{}",
        c.found
    );
    assert!(c.fix.unwrap().contains("192.168.100.0/24"));
    for covered in [
        "localhost,192.168.0.0/16",
        "192.168.100.0/24",
        "*",
        "192.168.100.10",
    ] {
        let c = proxy(
            &env(&[("HTTPS_PROXY", "http://proxy:3128"), ("NO_PROXY", covered)]),
            Some(net),
        );
        assert_eq!(c.status, Status::Ok, "{covered}: {c:?}");
    }
    assert_eq!(redact_url("proxy:3128"), "proxy:3128");
    assert_eq!(redact_url("u:p@proxy:3128"), "***@proxy:3128");
}

fn healthy() -> Vec<Check> {
    vec![
        Check::ok("host.os", "linux x86_64"),
        Check::ok("host.virtualization", "KVM runs guests"),
        Check::ok(
            "resources.memory",
            "cluster dev (1 control plane, 1 Linux worker) needs 4096 MiB; the host has 32000 MiB, 28000 MiB available",
        ),
        Check::ok("libvirt.reachable", "libvirt 9.0.0 at qemu:///system"),
        Check::ok("libvirt.permissions", "you are in the libvirt group"),
        Check::skipped(
            "hyperv",
            "Hyper-V runs only on Windows hosts (this is linux)",
        ),
        Check::ok("provider", "auto picks libvirt"),
        Check::ok(
            "tools.kubectl",
            "/usr/bin/kubectl v1.34.2 (the cluster runs 1.34)",
        ),
    ]
}

#[test]
fn table_of_a_healthy_host() {
    let o = Outcome::new(healthy());
    assert!(o.passed);
    insta::assert_snapshot!(render(&o));
}

#[test]
fn table_of_an_unhealthy_host() {
    let mut checks = healthy();
    checks[1] = kvm(&KvmVerdict::Hangs, true, false);
    checks[3] = libvirt_reachable("qemu:///system", Err(&virsh_error("virsh-no-socket.txt")));
    checks[4] = libvirt_permissions(
        "qemu:///system",
        1000,
        &fixture("id-Gn-desktop-user.txt"),
        None,
    );
    let o = Outcome::new(checks);
    assert!(!o.passed);
    assert_eq!(
        o.counts,
        Counts {
            ok: 4,
            warn: 1,
            fail: 2,
            skipped: 1
        }
    );
    insta::assert_snapshot!(render(&o));
}
