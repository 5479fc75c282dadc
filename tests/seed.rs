//! The seed ISO as independent readers see it: `isoinfo` (genisoimage),
//! `blkid` (util-linux), `cloud-localds` (cloud-image-utils) for comparison,
//! and PyYAML (what cloud-init parses YAML with). These tools are required:
//! a missing one fails the test with the package to install.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use devcluster::seed::{self, LinuxSeed, cloud_init, iso};
use proptest::prelude::*;

fn run(program: &str, package: &str, args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}): install the {package} package"));
    if let Some(input) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn isoinfo(image: &Path, args: &[&str]) -> Vec<u8> {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["-i", image.to_str().unwrap()]);
    run("isoinfo", "genisoimage", &all, None)
}

fn isoinfo_text(image: &Path, args: &[&str]) -> String {
    String::from_utf8(isoinfo(image, args)).unwrap()
}

/// `isoinfo -f` listing, sorted.
fn listing(image: &Path, extension: &str) -> Vec<String> {
    let mut names: Vec<String> = isoinfo_text(image, &[extension, "-f"])
        .lines()
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

fn blkid(image: &Path) -> Vec<String> {
    let out = run(
        "blkid",
        "util-linux",
        &["-p", "-o", "export", image.to_str().unwrap()],
        None,
    );
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Test fixtures, not real keys.
fn seed() -> LinuxSeed {
    LinuxSeed {
        instance_id: cloud_init::instance_id("dev", "dev-cp", "ssh-ed25519 AAAATESTFIXTURE"),
        hostname: "dev-cp".into(),
        fqdn: None,
        user: cloud_init::USER.into(),
        ssh_authorized_keys: vec!["ssh-ed25519 AAAATESTFIXTUREUSERKEY test@host".into()],
        host_key_ed25519_private: "-----BEGIN OPENSSH PRIVATE KEY-----\n\
             TEST+FIXTURE+NOT+A+REAL+KEY\n\
             -----END OPENSSH PRIVATE KEY-----\n"
            .into(),
        host_key_ed25519_public: "ssh-ed25519 AAAATESTFIXTURE root@dev-cp".into(),
        mac: "02:25:0e:66:00:0a".into(),
        interface: cloud_init::INTERFACE.into(),
        ip: Ipv4Addr::new(192, 168, 100, 10),
        prefix: 24,
        gateway: Ipv4Addr::new(192, 168, 100, 1),
        dns: vec![Ipv4Addr::new(192, 168, 100, 1)],
        hosts: vec![
            ("dev-cp".into(), Ipv4Addr::new(192, 168, 100, 10)),
            ("dev-w1".into(), Ipv4Addr::new(192, 168, 100, 21)),
            ("dev-win1".into(), Ipv4Addr::new(192, 168, 100, 31)),
        ],
        write_files: vec![seed::WriteFile::root(
            "/etc/sysctl.d/99-kubernetes.conf",
            "net.ipv4.ip_forward = 1\n",
            0o644,
        )],
    }
}

struct Seed {
    _dir: tempfile::TempDir,
    iso: PathBuf,
    files: Vec<(&'static str, String)>,
    dir: PathBuf,
}

/// Our seed ISO, written with `iso::write`, and its three files.
fn our_seed() -> Seed {
    let dir = tempfile::tempdir().unwrap();
    let s = seed();
    let files = seed::linux_seed_files(&s).unwrap().to_vec();
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, c)| (*n, c.as_bytes())).collect();
    let path = dir.path().join("seed.iso");
    iso::write(&path, seed::NOCLOUD_LABEL, &refs).unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        seed::linux_seed_iso(&s).unwrap(),
        "write() writes what linux_seed_iso() builds"
    );
    Seed {
        iso: path,
        files,
        dir: dir.path().to_path_buf(),
        _dir: dir,
    }
}

const NAMES: [&str; 3] = ["/meta-data", "/network-config", "/user-data"];

#[test]
fn isoinfo_sees_label_joliet_and_rock_ridge() {
    let s = our_seed();
    let info = isoinfo_text(&s.iso, &["-d"]);
    assert!(info.contains("CD-ROM is in ISO 9660 format"), "{info}");
    assert!(info.contains("\nVolume id: cidata\n"), "{info}");
    assert!(info.contains("\nLogical block size is: 2048\n"), "{info}");
    assert!(info.contains("\nJoliet with UCS level 3 found\n"), "{info}");
    assert!(
        info.contains("\nRock Ridge signatures version 1 found\n"),
        "{info}"
    );
    let size = std::fs::metadata(&s.iso).unwrap().len();
    assert!(
        info.contains(&format!("\nVolume size is: {}\n", size / 2048)),
        "{info}"
    );
}

#[test]
fn rock_ridge_and_joliet_list_the_long_names() {
    let s = our_seed();
    assert_eq!(listing(&s.iso, "-R"), NAMES);
    assert_eq!(listing(&s.iso, "-J"), NAMES);
    // The plain ISO 9660 view has valid level-1 names.
    let plain = isoinfo_text(&s.iso, &["-f"]);
    let mut plain: Vec<&str> = plain.lines().collect();
    plain.sort();
    assert_eq!(plain, ["/META_DAT.;1", "/NETWORK_.;1", "/USER_DAT.;1"]);
}

#[test]
fn rock_ridge_permissions_are_posix() {
    let s = our_seed();
    let long = isoinfo_text(&s.iso, &["-R", "-l"]);
    let files: Vec<&str> = long
        .lines()
        .filter(|l| l.contains("-data") || l.contains("-config"))
        .collect();
    assert_eq!(files.len(), 3, "{long}");
    assert!(files.iter().all(|l| l.starts_with("-rw-r--r--")), "{long}");
    assert!(long.contains("drwxr-xr-x"), "{long}");
}

#[test]
fn extracted_contents_are_byte_identical() {
    let s = our_seed();
    for (name, content) in &s.files {
        let path = format!("/{name}");
        for ext in ["-R", "-J"] {
            let got = isoinfo(&s.iso, &[ext, "-x", &path]);
            assert_eq!(got, content.as_bytes(), "{ext} {path}");
        }
    }
    let user_data = isoinfo(&s.iso, &["-x", "/USER_DAT.;1"]);
    assert!(user_data.starts_with(b"#cloud-config\n"));
}

#[test]
fn blkid_reports_label_and_type() {
    let s = our_seed();
    let tags = blkid(&s.iso);
    assert!(tags.contains(&"LABEL=cidata".to_string()), "{tags:?}");
    assert!(tags.contains(&"TYPE=iso9660".to_string()), "{tags:?}");
    assert!(
        tags.contains(&"VERSION=Joliet\\ Extension".to_string()),
        "{tags:?}"
    );
    // The fixed creation date makes the (date-derived) UUID fixed too.
    assert!(
        tags.contains(&"UUID=2000-01-01-00-00-00-00".to_string()),
        "{tags:?}"
    );
}

/// `cloud-localds` (genisoimage) and our writer give readers the same view.
#[test]
fn readers_see_what_cloud_localds_gives_them() {
    let s = our_seed();
    let file = |name: &str| {
        let p = s.dir.join(format!("in-{name}"));
        let content = &s.files.iter().find(|(n, _)| *n == name).unwrap().1;
        std::fs::write(&p, content).unwrap();
        p.to_str().unwrap().to_string()
    };
    let (ud, md, nc) = (file("user-data"), file("meta-data"), file("network-config"));
    let theirs = s.dir.join("localds.iso");
    run(
        "cloud-localds",
        "cloud-image-utils",
        &["--network-config", &nc, theirs.to_str().unwrap(), &ud, &md],
        None,
    );

    let keep = |info: String| -> Vec<String> {
        info.lines()
            .filter(|l| {
                l.starts_with("Volume id")
                    || l.starts_with("Logical block size")
                    || l.starts_with("Joliet")
                    || l.starts_with("Rock Ridge")
                    || l.contains("ISO 9660 format")
            })
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        keep(isoinfo_text(&s.iso, &["-d"])),
        keep(isoinfo_text(&theirs, &["-d"]))
    );
    for ext in ["-R", "-J"] {
        assert_eq!(listing(&s.iso, ext), listing(&theirs, ext), "{ext}");
        for name in NAMES {
            assert_eq!(
                isoinfo(&s.iso, &[ext, "-x", name]),
                isoinfo(&theirs, &[ext, "-x", name]),
                "{ext} {name}"
            );
        }
    }
    let tag = |tags: &[String], key: &str| tags.iter().find(|t| t.starts_with(key)).cloned();
    let (ours, theirs) = (blkid(&s.iso), blkid(&theirs));
    for key in ["LABEL=", "TYPE=", "VERSION=", "USAGE="] {
        assert_eq!(tag(&ours, key), tag(&theirs, key), "{key}");
    }
}

/// Two more independent readers: 7-Zip (reads Joliet, as Windows tools
/// do) and libarchive's bsdtar (reads Rock Ridge).
#[test]
fn seven_zip_and_bsdtar_extract_the_same_files() {
    let s = our_seed();
    let iso = s.iso.to_str().unwrap();
    let out_7z = s.dir.join("7z");
    let out_tar = s.dir.join("tar");
    std::fs::create_dir_all(&out_tar).unwrap();
    run(
        "7z",
        "p7zip-full",
        &["x", "-y", &format!("-o{}", out_7z.display()), iso],
        None,
    );
    run(
        "bsdtar",
        "libarchive-tools",
        &["-x", "-f", iso, "-C", out_tar.to_str().unwrap()],
        None,
    );
    for out in [&out_7z, &out_tar] {
        let mut names: Vec<String> = std::fs::read_dir(out)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["meta-data", "network-config", "user-data"],
            "{}",
            out.display()
        );
        for (name, content) in &s.files {
            assert_eq!(
                std::fs::read(out.join(name)).unwrap(),
                content.as_bytes(),
                "{}",
                out.display()
            );
        }
    }
    let listing =
        String::from_utf8(run("bsdtar", "libarchive-tools", &["-tvf", iso], None)).unwrap();
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("-rw-r--r--") && l.ends_with(" user-data")),
        "Rock Ridge modes: {listing}"
    );
}

#[test]
fn same_inputs_same_bytes() {
    let a = our_seed();
    let b = our_seed();
    assert_eq!(
        std::fs::read(&a.iso).unwrap(),
        std::fs::read(&b.iso).unwrap()
    );
}

#[cfg(unix)]
#[test]
fn written_seed_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let s = our_seed();
    let mode = std::fs::metadata(&s.iso).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "seeds carry the host's private key");
}

/// PyYAML (YAML 1.1, cloud-init's parser) reads each rendered file as the
/// same data as serde_norway (YAML 1.2) does: no string turns into a
/// number, boolean or date on the way.
#[test]
fn pyyaml_reads_the_same_documents() {
    let s = our_seed();
    const TO_JSON: &str = "import json, sys, yaml\n\
        print(json.dumps(yaml.safe_load(sys.stdin.read()), sort_keys=True))";
    for (name, content) in &s.files {
        let py = run(
            "python3",
            "python3-yaml",
            &["-c", TO_JSON],
            Some(content.as_bytes()),
        );
        let py: serde_json::Value = serde_json::from_slice(&py).unwrap();
        let ours: serde_json::Value = serde_norway::from_str(content).unwrap();
        assert_eq!(py, ours, "{name}");
    }
}

fn file_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(0usize),
        Just(1),
        Just(2047),
        Just(2048),
        Just(2049),
        Just(4096),
        Just(5000),
        0usize..=5000,
    ]
    .prop_flat_map(|n| proptest::collection::vec(any::<u8>(), n))
}

proptest! {
    // Each case spawns isoinfo a dozen times: keep it modest.
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Any small set of files comes back byte for byte through both the
    /// Rock Ridge and the Joliet view.
    #[test]
    fn isoinfo_round_trips_any_small_file_set(
        files in proptest::collection::btree_map(
            "[a-z0-9_.-]{1,64}".prop_filter("not . or ..", |n| n != "." && n != ".."),
            file_strategy(),
            1..=5,
        ),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.iso");
        let list: Vec<(&str, &[u8])> = files.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
        iso::write(&path, "cidata", &list).unwrap();
        let expected: Vec<String> = files.keys().map(|n| format!("/{n}")).collect();
        for ext in ["-R", "-J"] {
            prop_assert_eq!(&listing(&path, ext), &expected);
            for (name, data) in &files {
                let got = isoinfo(&path, &[ext, "-x", &format!("/{name}")]);
                prop_assert_eq!(&got, data, "{} {}", ext, name);
            }
        }
    }
}
