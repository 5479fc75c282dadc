//! Windows answer files and seed CDs, provider-neutral (libvirt and
//! Hyper-V Gen 2 both use them).
//!
//! Two CDs, both written by our ISO writer ([`super::iso`]), each with
//! `autounattend.xml` at its root — the name Windows Setup looks for on
//! removable media, in every configuration pass:
//!
//! - **The build seed** goes beside the installation ISO in the builder
//!   VM. Its answer file wipes disk 0 into the UEFI/GPT layout (EFI 100 MB
//!   FAT32, MSR 16 MB, NTFS C: for the rest), installs the evaluation
//!   image chosen by index (Server Core: no desktop), with no product key
//!   (evaluation media refuse one: "No images are available"), logs on
//!   once as Administrator and runs `build.ps1` from the CD, which runs
//!   the build steps in `provisioners/windows/build/` and ends in sysprep.
//! - **The node seed** goes with a linked clone of the sysprepped base
//!   disk. Its answer file has only the passes a generalized image runs:
//!   specialize (`ComputerName`, static IPv4 on the interface keyed by its
//!   MAC, DNS, and the first-boot script `devcluster-node.ps1` as SYSTEM)
//!   and oobeSystem (no OOBE pages, the cluster's Administrator password).
//!
//! Scripts are static files (parse-checked as they are in the tree); what
//! differs per image or node travels as files beside them on the CD
//! (`authorized_keys`, the host key), so no value is spliced into code.
//!
//! Element order: the unattend schema is a sequence in several places
//! Setup checks (`Microsoft-Windows-TCPIP`'s `Interface` is the known
//! one: Ipv4Settings, Ipv6Settings, Identifier, UnicastIpAddresses,
//! Routes); everything here is written in the schema's order, which for
//! the rest is alphabetical, as Windows SIM writes it.
//!
//! Passwords in answer files use Windows' own encoding (`PlainText`
//! false: base64 of UTF-16LE of the password followed by the element
//! name). That hides them from a casual look, no more: the seed CD is as
//! private as the pki/ directory it comes from.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use base64::Engine as _;

use super::{SeedError, iso};
use crate::providers::libvirt::xml::esc;

/// Volume label of the build seed CD.
pub const BUILD_LABEL: &str = "DCBUILD";
/// Volume label of a node's seed CD.
pub const NODE_LABEL: &str = "DCSEED";
/// The answer file's name at the CD's root.
pub const ANSWER_FILE: &str = "autounattend.xml";
/// The Win32-OpenSSH release zip's name on the build CD (2022 only).
pub const OPENSSH_ZIP: &str = "openssh-win64.zip";

const PUBLIC_KEY_TOKEN: &str = "31bf3856ad364e35";

/// The build steps, in the order `build.ps1` runs them.
pub const BUILD_SCRIPTS: [(&str, &str); 6] = [
    (
        "build.ps1",
        include_str!("../../provisioners/windows/build/build.ps1"),
    ),
    (
        "10-sshd.ps1",
        include_str!("../../provisioners/windows/build/10-sshd.ps1"),
    ),
    (
        "20-shutdown-without-logon.ps1",
        include_str!("../../provisioners/windows/build/20-shutdown-without-logon.ps1"),
    ),
    (
        "30-containers.ps1",
        include_str!("../../provisioners/windows/build/30-containers.ps1"),
    ),
    (
        "40-time-sync.ps1",
        include_str!("../../provisioners/windows/build/40-time-sync.ps1"),
    ),
    (
        "90-sysprep.ps1",
        include_str!("../../provisioners/windows/build/90-sysprep.ps1"),
    ),
];

/// The node's first-boot script.
pub const NODE_SCRIPT: (&str, &str) = (
    "devcluster-node.ps1",
    include_str!("../../provisioners/windows/node/devcluster-node.ps1"),
);

/// A Windows Server edition on its installation media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowsImage {
    /// Catalog name (`windows-server-2025`).
    pub catalog: String,
    /// `/IMAGE/INDEX` in `sources/install.wim`.
    pub image_index: u32,
    /// The edition's name, for messages.
    pub edition: &'static str,
    /// Whether OpenSSH server ships in the image (2025); otherwise the
    /// build seed must carry the Win32-OpenSSH zip.
    pub builtin_openssh: bool,
    /// The virtio-win ISO's folder of this version's drivers
    /// (`viostor\2k25\amd64`).
    pub virtio_dir: &'static str,
}

/// Server Datacenter Core on the evaluation ISOs of 2022 and 2025
/// (indexes: 1 Standard Core, 2 Standard Desktop, 3 Datacenter Core,
/// 4 Datacenter Desktop; rgl/windows-vagrant windows-evaluation-isos.json).
/// Datacenter: no per-host limit on Windows containers.
pub fn image_for(catalog: &str) -> Option<WindowsImage> {
    let (builtin_openssh, virtio_dir) = match catalog {
        "windows-server-2022" => (false, "2k22"),
        "windows-server-2025" => (true, "2k25"),
        _ => return None,
    };
    Some(WindowsImage {
        catalog: catalog.into(),
        image_index: 3,
        edition: "Datacenter (Server Core)",
        builtin_openssh,
        virtio_dir,
    })
}

/// Inputs of the build seed.
#[derive(Debug, Clone)]
pub struct BuildSeed {
    pub image: WindowsImage,
    /// devcluster's client key (one `ssh-ed25519 ...` line), authorized
    /// for Administrator in the image so the host can watch the build.
    pub authorized_key: String,
    /// The builder's temporary Administrator password (autologon while
    /// building; replaced per cluster on every node).
    pub admin_password: crate::pki::Secret,
    /// The Win32-OpenSSH zip's bytes, for images without OpenSSH.
    pub openssh_zip: Option<Vec<u8>>,
    /// The builder's disk and NIC: with virtio, Setup loads their drivers
    /// from the virtio-win CD ([`virtio_driver_paths`]).
    pub devices: crate::spec::WindowsDevices,
}

/// Inputs of a node's seed.
#[derive(Debug, Clone)]
pub struct NodeSeed {
    /// ComputerName: the node name (≤ 15 characters, planned so).
    pub computer_name: String,
    /// The planned MAC, `52:54:00:..` form.
    pub mac: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub dns: Vec<Ipv4Addr>,
    pub admin_password: crate::pki::Secret,
    pub authorized_key: String,
    pub host_key_private: crate::pki::Secret,
    pub host_key_public: String,
}

#[derive(Debug, thiserror::Error)]
pub enum WindowsSeedError {
    #[error("Windows computer name `{0}` must be 1 to 15 characters of letters, digits and `-`")]
    ComputerName(String),
    #[error("MAC address `{0}` is not six hex pairs")]
    Mac(String),
    #[error("image {0} needs the Win32-OpenSSH release zip on its build seed")]
    NoOpenSsh(String),
}

/// `52:54:00:AB:CD:EF` → `52-54-00-AB-CD-EF`, the form Windows writes.
pub fn windows_mac(mac: &str) -> Result<String, WindowsSeedError> {
    let parts: Vec<&str> = mac.split([':', '-']).collect();
    if parts.len() != 6
        || parts
            .iter()
            .any(|p| p.len() != 2 || !p.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return Err(WindowsSeedError::Mac(mac.into()));
    }
    Ok(parts.join("-").to_ascii_uppercase())
}

/// Windows' answer-file password encoding (not encryption).
fn encode_password(password: &str, element: &str) -> String {
    let utf16: Vec<u8> = format!("{password}{element}")
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    base64::engine::general_purpose::STANDARD.encode(utf16)
}

fn component(x: &mut String, name: &str) {
    let _ = writeln!(
        x,
        "    <component name=\"{name}\" processorArchitecture=\"amd64\" publicKeyToken=\"{PUBLIC_KEY_TOKEN}\" language=\"neutral\" versionScope=\"nonSxS\">"
    );
}

fn header(x: &mut String) {
    x.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    x.push_str("<unattend xmlns=\"urn:schemas-microsoft-com:unattend\" xmlns:wcm=\"http://schemas.microsoft.com/WMIConfig/2002/State\">\n");
}

fn password(x: &mut String, indent: &str, element: &str, password: &str) {
    let _ = writeln!(x, "{indent}<{element}>");
    let _ = writeln!(
        x,
        "{indent}  <Value>{}</Value>",
        encode_password(password, element)
    );
    let _ = writeln!(x, "{indent}  <PlainText>false</PlainText>");
    let _ = writeln!(x, "{indent}</{element}>");
}

/// OOBE pages a server shows; all skipped.
fn oobe(x: &mut String) {
    x.push_str("      <OOBE>\n");
    x.push_str("        <HideEULAPage>true</HideEULAPage>\n");
    x.push_str("        <HideLocalAccountScreen>true</HideLocalAccountScreen>\n");
    x.push_str("        <HideOnlineAccountScreens>true</HideOnlineAccountScreens>\n");
    x.push_str("        <HideWirelessSetupInOOBE>true</HideWirelessSetupInOOBE>\n");
    x.push_str("        <NetworkLocation>Work</NetworkLocation>\n");
    x.push_str("        <ProtectYourPC>3</ProtectYourPC>\n");
    x.push_str("      </OOBE>\n");
}

/// oobeSystem's Shell-Setup body: no OOBE pages, the Administrator password.
fn oobe_and_password(x: &mut String, admin_password: &str) {
    oobe(x);
    x.push_str("      <UserAccounts>\n");
    password(x, "        ", "AdministratorPassword", admin_password);
    x.push_str("      </UserAccounts>\n");
}

/// The builder's `autounattend.xml`.
pub fn autounattend(b: &BuildSeed) -> String {
    let mut x = String::new();
    header(&mut x);
    x.push_str("  <settings pass=\"windowsPE\">\n");
    component(&mut x, "Microsoft-Windows-International-Core-WinPE");
    x.push_str("      <SetupUILanguage>\n        <UILanguage>en-US</UILanguage>\n      </SetupUILanguage>\n");
    x.push_str("      <InputLocale>en-US</InputLocale>\n      <SystemLocale>en-US</SystemLocale>\n      <UILanguage>en-US</UILanguage>\n      <UserLocale>en-US</UserLocale>\n");
    x.push_str("    </component>\n");
    if b.devices == crate::spec::WindowsDevices::Virtio {
        component(&mut x, "Microsoft-Windows-PnpCustomizationsWinPE");
        x.push_str("      <DriverPaths>\n");
        for (i, path) in virtio_driver_paths(&b.image).iter().enumerate() {
            let _ = writeln!(
                x,
                "        <PathAndCredentials wcm:action=\"add\" wcm:keyValue=\"{}\">",
                i + 1
            );
            let _ = writeln!(x, "          <Path>{}</Path>", esc(path));
            x.push_str("        </PathAndCredentials>\n");
        }
        x.push_str("      </DriverPaths>\n");
        x.push_str("    </component>\n");
    }
    component(&mut x, "Microsoft-Windows-Setup");
    x.push_str("      <DiskConfiguration>\n");
    x.push_str("        <Disk wcm:action=\"add\">\n");
    x.push_str("          <CreatePartitions>\n");
    for (order, kind, size) in [
        (1, "EFI", Some(100)),
        (2, "MSR", Some(16)),
        (3, "Primary", None),
    ] {
        let _ = writeln!(x, "            <CreatePartition wcm:action=\"add\">");
        let _ = writeln!(x, "              <Order>{order}</Order>");
        let _ = writeln!(x, "              <Type>{kind}</Type>");
        match size {
            Some(mb) => {
                let _ = writeln!(x, "              <Size>{mb}</Size>");
            }
            None => {
                let _ = writeln!(x, "              <Extend>true</Extend>");
            }
        }
        let _ = writeln!(x, "            </CreatePartition>");
    }
    x.push_str("          </CreatePartitions>\n");
    x.push_str("          <ModifyPartitions>\n");
    x.push_str("            <ModifyPartition wcm:action=\"add\">\n              <Order>1</Order>\n              <PartitionID>1</PartitionID>\n              <Label>System</Label>\n              <Format>FAT32</Format>\n            </ModifyPartition>\n");
    x.push_str("            <ModifyPartition wcm:action=\"add\">\n              <Order>2</Order>\n              <PartitionID>2</PartitionID>\n            </ModifyPartition>\n");
    x.push_str("            <ModifyPartition wcm:action=\"add\">\n              <Order>3</Order>\n              <PartitionID>3</PartitionID>\n              <Label>Windows</Label>\n              <Letter>C</Letter>\n              <Format>NTFS</Format>\n            </ModifyPartition>\n");
    x.push_str("          </ModifyPartitions>\n");
    x.push_str("          <DiskID>0</DiskID>\n");
    x.push_str("          <WillWipeDisk>true</WillWipeDisk>\n");
    x.push_str("        </Disk>\n");
    x.push_str("      </DiskConfiguration>\n");
    x.push_str("      <ImageInstall>\n        <OSImage>\n          <InstallFrom>\n            <MetaData wcm:action=\"add\">\n              <Key>/IMAGE/INDEX</Key>\n");
    let _ = writeln!(x, "              <Value>{}</Value>", b.image.image_index);
    x.push_str("            </MetaData>\n          </InstallFrom>\n          <InstallTo>\n            <DiskID>0</DiskID>\n            <PartitionID>3</PartitionID>\n          </InstallTo>\n        </OSImage>\n      </ImageInstall>\n");
    // Evaluation media: no key at all.
    x.push_str("      <UserData>\n        <AcceptEula>true</AcceptEula>\n        <ProductKey>\n          <WillShowUI>OnError</WillShowUI>\n        </ProductKey>\n      </UserData>\n");
    x.push_str("    </component>\n");
    x.push_str("  </settings>\n");
    x.push_str("  <settings pass=\"specialize\">\n");
    component(&mut x, "Microsoft-Windows-Shell-Setup");
    x.push_str("      <ComputerName>*</ComputerName>\n      <TimeZone>UTC</TimeZone>\n");
    x.push_str("    </component>\n");
    x.push_str("  </settings>\n");
    x.push_str("  <settings pass=\"oobeSystem\">\n");
    component(&mut x, "Microsoft-Windows-Shell-Setup");
    x.push_str("      <AutoLogon>\n");
    x.push_str("        <Enabled>true</Enabled>\n");
    x.push_str("        <LogonCount>999</LogonCount>\n");
    password(&mut x, "        ", "Password", b.admin_password.expose());
    x.push_str("        <Username>Administrator</Username>\n");
    x.push_str("      </AutoLogon>\n");
    x.push_str("      <FirstLogonCommands>\n");
    x.push_str("        <SynchronousCommand wcm:action=\"add\">\n");
    let _ = writeln!(
        x,
        "          <CommandLine>{}</CommandLine>",
        esc(&seed_command("build.ps1", false))
    );
    x.push_str("          <Description>devcluster base-image build</Description>\n");
    x.push_str("          <Order>1</Order>\n");
    x.push_str("        </SynchronousCommand>\n");
    x.push_str("      </FirstLogonCommands>\n");
    oobe_and_password(&mut x, b.admin_password.expose());
    x.push_str("    </component>\n");
    x.push_str("  </settings>\n");
    x.push_str("</unattend>\n");
    x
}

/// Where Windows Setup looks for the virtio-blk (`viostor`) and
/// virtio-net (`NetKVM`) drivers on the virtio-win CD.
///
/// Why several drive letters: in windowsPE the CD-ROMs get D:, E:, F: in
/// the order they are enumerated, and the builder has three (its build CD,
/// the installation ISO, virtio-win; SATA ports 1-3, so most likely F:);
/// an answer file cannot name a CD by its label. Setup copies the drivers
/// of these paths into the driver store of the installed Windows
/// (Microsoft Learn, `Microsoft-Windows-PnpCustomizationsWinPE` |
/// DriverPaths | PathAndCredentials | Path), and sysprep keeps the driver
/// store, so nodes cloned from the base disk boot from virtio-blk too.
/// That Setup passes over the paths on the two other CDs, which do not
/// exist, is what Packer templates listing several letters rely on; it is
/// not proven here (no Windows runs on these machines).
pub fn virtio_driver_paths(image: &WindowsImage) -> Vec<String> {
    let mut paths = Vec::new();
    for letter in ['D', 'E', 'F'] {
        for driver in ["viostor", "NetKVM"] {
            paths.push(format!("{letter}:\\{driver}\\{}\\amd64", image.virtio_dir));
        }
    }
    paths
}

/// A command line that finds the seed CD by the script on it and runs the
/// script with PowerShell (drive letters differ between machines and
/// providers). Short: RunSynchronous allows 259 characters.
fn seed_command(script: &str, pass_seed_dir: bool) -> String {
    let args = if pass_seed_dir { " -SeedDir %d:\\" } else { "" };
    format!(
        "cmd.exe /c for %d in (D E F G H I J K) do @if exist %d:\\{script} powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -File %d:\\{script}{args}"
    )
}

/// A node's `autounattend.xml` (specialize + oobeSystem).
pub fn node_unattend(n: &NodeSeed) -> Result<String, WindowsSeedError> {
    let name = &n.computer_name;
    if name.is_empty()
        || name.len() > 15
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(WindowsSeedError::ComputerName(name.clone()));
    }
    let mac = windows_mac(&n.mac)?;
    let mut x = String::new();
    header(&mut x);
    x.push_str("  <settings pass=\"specialize\">\n");
    component(&mut x, "Microsoft-Windows-Shell-Setup");
    let _ = writeln!(x, "      <ComputerName>{}</ComputerName>", esc(name));
    x.push_str("      <TimeZone>UTC</TimeZone>\n");
    x.push_str("    </component>\n");
    component(&mut x, "Microsoft-Windows-TCPIP");
    x.push_str("      <Interfaces>\n");
    x.push_str("        <Interface wcm:action=\"add\">\n");
    x.push_str("          <Ipv4Settings>\n            <DhcpEnabled>false</DhcpEnabled>\n          </Ipv4Settings>\n");
    x.push_str("          <Ipv6Settings>\n            <DhcpEnabled>false</DhcpEnabled>\n          </Ipv6Settings>\n");
    let _ = writeln!(x, "          <Identifier>{mac}</Identifier>");
    x.push_str("          <UnicastIpAddresses>\n");
    let _ = writeln!(
        x,
        "            <IpAddress wcm:action=\"add\" wcm:keyValue=\"1\">{}/{}</IpAddress>",
        n.ip, n.prefix
    );
    x.push_str("          </UnicastIpAddresses>\n");
    x.push_str("          <Routes>\n            <Route wcm:action=\"add\">\n              <Identifier>0</Identifier>\n              <Metric>10</Metric>\n");
    let _ = writeln!(
        x,
        "              <NextHopAddress>{}</NextHopAddress>",
        n.gateway
    );
    x.push_str(
        "              <Prefix>0.0.0.0/0</Prefix>\n            </Route>\n          </Routes>\n",
    );
    x.push_str("        </Interface>\n");
    x.push_str("      </Interfaces>\n");
    x.push_str("    </component>\n");
    component(&mut x, "Microsoft-Windows-DNS-Client");
    x.push_str("      <Interfaces>\n");
    x.push_str("        <Interface wcm:action=\"add\">\n");
    x.push_str("          <DNSServerSearchOrder>\n");
    for (i, d) in n.dns.iter().enumerate() {
        let _ = writeln!(
            x,
            "            <IpAddress wcm:action=\"add\" wcm:keyValue=\"{}\">{d}</IpAddress>",
            i + 1
        );
    }
    x.push_str("          </DNSServerSearchOrder>\n");
    let _ = writeln!(x, "          <Identifier>{mac}</Identifier>");
    x.push_str("        </Interface>\n");
    x.push_str("      </Interfaces>\n");
    x.push_str("    </component>\n");
    component(&mut x, "Microsoft-Windows-Deployment");
    x.push_str("      <RunSynchronous>\n");
    x.push_str("        <RunSynchronousCommand wcm:action=\"add\">\n");
    x.push_str("          <Description>devcluster: install the node's SSH keys</Description>\n");
    x.push_str("          <Order>1</Order>\n");
    let _ = writeln!(
        x,
        "          <Path>{}</Path>",
        esc(&seed_command(NODE_SCRIPT.0, true))
    );
    x.push_str("        </RunSynchronousCommand>\n");
    x.push_str("      </RunSynchronous>\n");
    x.push_str("    </component>\n");
    x.push_str("  </settings>\n");
    x.push_str("  <settings pass=\"oobeSystem\">\n");
    component(&mut x, "Microsoft-Windows-Shell-Setup");
    oobe_and_password(&mut x, n.admin_password.expose());
    x.push_str("    </component>\n");
    x.push_str("  </settings>\n");
    x.push_str("</unattend>\n");
    Ok(x)
}

/// The files of the build seed CD.
pub fn build_seed_files(b: &BuildSeed) -> Result<Vec<(String, Vec<u8>)>, WindowsSeedError> {
    let mut files = vec![
        (ANSWER_FILE.to_string(), autounattend(b).into_bytes()),
        (
            "authorized_keys".to_string(),
            format!("{}\n", b.authorized_key.trim()).into_bytes(),
        ),
    ];
    for (name, text) in BUILD_SCRIPTS {
        files.push((name.to_string(), text.as_bytes().to_vec()));
    }
    match (&b.openssh_zip, b.image.builtin_openssh) {
        (Some(zip), _) => files.push((OPENSSH_ZIP.to_string(), zip.clone())),
        (None, true) => {}
        (None, false) => return Err(WindowsSeedError::NoOpenSsh(b.image.catalog.clone())),
    }
    Ok(files)
}

/// The files of a node's seed CD.
pub fn node_seed_files(n: &NodeSeed) -> Result<Vec<(String, Vec<u8>)>, WindowsSeedError> {
    Ok(vec![
        (ANSWER_FILE.to_string(), node_unattend(n)?.into_bytes()),
        (NODE_SCRIPT.0.to_string(), NODE_SCRIPT.1.as_bytes().to_vec()),
        (
            "authorized_keys".to_string(),
            format!("{}\n", n.authorized_key.trim()).into_bytes(),
        ),
        (
            "ssh_host_ed25519_key".to_string(),
            n.host_key_private.expose().as_bytes().to_vec(),
        ),
        (
            "ssh_host_ed25519_key.pub".to_string(),
            format!("{}\n", n.host_key_public.trim()).into_bytes(),
        ),
    ])
}

fn iso_of(label: &str, files: &[(String, Vec<u8>)]) -> Result<Vec<u8>, SeedError> {
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, c)| (n.as_str(), c.as_slice()))
        .collect();
    iso::build(label, &refs).map_err(SeedError::Iso)
}

/// The build seed CD.
pub fn build_seed_iso(b: &BuildSeed) -> Result<Vec<u8>, SeedError> {
    iso_of(
        BUILD_LABEL,
        &build_seed_files(b).map_err(SeedError::Windows)?,
    )
}

/// A node's seed CD.
pub fn node_seed_iso(n: &NodeSeed) -> Result<Vec<u8>, SeedError> {
    iso_of(NODE_LABEL, &node_seed_files(n).map_err(SeedError::Windows)?)
}

/// The seed inputs of Windows node `node` of `plan`: its planned address on
/// the cluster network, the host side as gateway and DNS server.
pub fn node_seed_for(
    plan: &crate::plan::Plan,
    node: &crate::plan::NodePlan,
    secrets: &crate::pki::ClusterSecrets,
) -> Option<NodeSeed> {
    let host = secrets.host_key(&node.name)?;
    Some(NodeSeed {
        computer_name: node.name.clone(),
        mac: node.mac.clone(),
        ip: node.ip,
        prefix: plan.network.subnet.prefix(),
        gateway: plan.network.gateway,
        dns: vec![plan.network.gateway],
        admin_password: secrets.windows_admin_password.clone()?,
        authorized_key: secrets.ssh_client.public_line.clone(),
        host_key_private: host.private_openssh.clone(),
        host_key_public: host.public_line.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::Secret;

    /// Test fixtures, not real secrets.
    const CLIENT_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITESTFIXTUREuserkeyNOTAREALKEY00000000000 devcluster@dev";
    const HOST_PRIVATE: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\nTEST+FIXTURE+HOST+KEY+NOT+REAL\n-----END OPENSSH PRIVATE KEY-----\n";
    const HOST_PUBLIC: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITESTFIXTUREhostkeyNOTAREALKEY00000000000 root@dev-win1";
    const NODE_PASSWORD: &str = "Node-Passw0rd-FIXTURE";
    const BUILD_PASSWORD: &str = "Build-Passw0rd-FIXTURE";

    fn build(catalog: &str) -> BuildSeed {
        let image = image_for(catalog).unwrap();
        BuildSeed {
            openssh_zip: (!image.builtin_openssh).then(|| b"PK\x05\x06stand-in zip".to_vec()),
            image,
            authorized_key: CLIENT_KEY.into(),
            admin_password: Secret::new(BUILD_PASSWORD),
            devices: Default::default(),
        }
    }

    fn node() -> NodeSeed {
        NodeSeed {
            computer_name: "dev-win1".into(),
            mac: "52:54:00:ab:cd:31".into(),
            ip: "192.168.100.31".parse().unwrap(),
            prefix: 24,
            gateway: "192.168.100.1".parse().unwrap(),
            dns: vec!["192.168.100.1".parse().unwrap()],
            admin_password: Secret::new(NODE_PASSWORD),
            authorized_key: CLIENT_KEY.into(),
            host_key_private: Secret::new(HOST_PRIVATE),
            host_key_public: HOST_PUBLIC.into(),
        }
    }

    const NS: &str = "urn:schemas-microsoft-com:unattend";

    fn element_children<'a>(n: roxmltree::Node<'a, 'a>) -> Vec<roxmltree::Node<'a, 'a>> {
        n.children().filter(|c| c.is_element()).collect()
    }

    fn names(n: roxmltree::Node) -> Vec<String> {
        element_children(n)
            .iter()
            .map(|c| c.tag_name().name().to_string())
            .collect()
    }

    fn child<'a>(n: roxmltree::Node<'a, 'a>, name: &str) -> roxmltree::Node<'a, 'a> {
        element_children(n)
            .into_iter()
            .find(|c| c.tag_name().name() == name)
            .unwrap_or_else(|| panic!("no <{name}> in <{}>", n.tag_name().name()))
    }

    fn text(n: roxmltree::Node, path: &[&str]) -> String {
        let mut cur = n;
        for p in path {
            cur = child(cur, p);
        }
        cur.text().unwrap_or_default().to_string()
    }

    /// `(pass, [component names])`, every component amd64/neutral with
    /// Microsoft's public key token.
    fn structure(doc: &roxmltree::Document) -> Vec<(String, Vec<String>)> {
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "unattend");
        assert_eq!(root.tag_name().namespace(), Some(NS));
        element_children(root)
            .iter()
            .map(|settings| {
                assert_eq!(settings.tag_name().name(), "settings");
                let comps = element_children(*settings)
                    .iter()
                    .map(|c| {
                        assert_eq!(c.tag_name().name(), "component");
                        assert_eq!(c.attribute("processorArchitecture"), Some("amd64"));
                        assert_eq!(c.attribute("publicKeyToken"), Some(PUBLIC_KEY_TOKEN));
                        assert_eq!(c.attribute("language"), Some("neutral"));
                        assert_eq!(c.attribute("versionScope"), Some("nonSxS"));
                        c.attribute("name").unwrap().to_string()
                    })
                    .collect();
                (settings.attribute("pass").unwrap().to_string(), comps)
            })
            .collect()
    }

    fn component_of<'a>(
        doc: &'a roxmltree::Document<'a>,
        pass: &str,
        name: &str,
    ) -> roxmltree::Node<'a, 'a> {
        doc.descendants()
            .find(|n| {
                n.tag_name().name() == "component"
                    && n.attribute("name") == Some(name)
                    && n.parent().and_then(|p| p.attribute("pass")) == Some(pass)
            })
            .unwrap_or_else(|| panic!("no {name} in {pass}"))
    }

    fn decode_password(value: &str, element: &str) -> String {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(value)
            .unwrap();
        let units: Vec<u16> = bytes
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let s = String::from_utf16(&units).unwrap();
        s.strip_suffix(element).unwrap().to_string()
    }

    #[test]
    fn snapshot_build_answer_files_for_both_images() {
        for catalog in ["windows-server-2022", "windows-server-2025"] {
            insta::assert_snapshot!(
                format!("autounattend_{catalog}"),
                autounattend(&build(catalog))
            );
            // The whole CD: names and sizes (scripts are the files in
            // provisioners/windows/build/, covered by tests/powershell.rs
            // and asserted below).
            let listing: String = build_seed_files(&build(catalog))
                .unwrap()
                .iter()
                .map(|(n, c)| format!("{n} {}\n", c.len()))
                .collect();
            insta::assert_snapshot!(format!("build_cd_{catalog}"), listing);
        }
    }

    #[test]
    fn snapshot_node_answer_file_and_script() {
        insta::assert_snapshot!("node_autounattend", node_unattend(&node()).unwrap());
        insta::assert_snapshot!("node_script", NODE_SCRIPT.1);
    }

    #[test]
    fn every_script_on_both_cds_parses() {
        for catalog in ["windows-server-2022", "windows-server-2025"] {
            for (name, content) in build_seed_files(&build(catalog)).unwrap() {
                if name.ends_with(".ps1") {
                    crate::test_support::assert_pwsh_parses(
                        &name,
                        std::str::from_utf8(&content).unwrap(),
                    );
                }
            }
        }
        // The check bites: a script cut short is caught.
        let cut = &NODE_SCRIPT.1[..NODE_SCRIPT.1.find("function Install-Restricted").unwrap() + 60];
        assert!(!crate::test_support::pwsh_problems(cut).is_empty());
        for (name, content) in node_seed_files(&node()).unwrap() {
            if name.ends_with(".ps1") {
                crate::test_support::assert_pwsh_parses(
                    &name,
                    std::str::from_utf8(&content).unwrap(),
                );
            }
        }
    }

    #[test]
    fn build_answer_file_installs_server_core_by_index_without_a_key() {
        for catalog in ["windows-server-2022", "windows-server-2025"] {
            let b = build(catalog);
            let xml = autounattend(&b);
            let doc = roxmltree::Document::parse(&xml).unwrap();
            assert_eq!(
                structure(&doc),
                [
                    (
                        "windowsPE".to_string(),
                        vec![
                            "Microsoft-Windows-International-Core-WinPE".to_string(),
                            "Microsoft-Windows-Setup".to_string()
                        ]
                    ),
                    (
                        "specialize".to_string(),
                        vec!["Microsoft-Windows-Shell-Setup".to_string()]
                    ),
                    (
                        "oobeSystem".to_string(),
                        vec!["Microsoft-Windows-Shell-Setup".to_string()]
                    ),
                ]
            );
            let setup = component_of(&doc, "windowsPE", "Microsoft-Windows-Setup");
            let disk = child(child(setup, "DiskConfiguration"), "Disk");
            assert_eq!(text(disk, &["WillWipeDisk"]), "true");
            let parts: Vec<(String, String)> = element_children(child(disk, "CreatePartitions"))
                .iter()
                .map(|p| (text(*p, &["Type"]), names(*p).join(",")))
                .collect();
            assert_eq!(
                parts,
                [
                    ("EFI".to_string(), "Order,Type,Size".to_string()),
                    ("MSR".to_string(), "Order,Type,Size".to_string()),
                    ("Primary".to_string(), "Order,Type,Extend".to_string())
                ]
            );
            let modify = element_children(child(disk, "ModifyPartitions"));
            assert_eq!(text(modify[0], &["Format"]), "FAT32");
            assert_eq!(text(modify[2], &["Format"]), "NTFS");
            assert_eq!(text(modify[2], &["Letter"]), "C");
            let os = child(child(setup, "ImageInstall"), "OSImage");
            let meta = child(child(os, "InstallFrom"), "MetaData");
            assert_eq!(text(meta, &["Key"]), "/IMAGE/INDEX");
            assert_eq!(text(meta, &["Value"]), b.image.image_index.to_string());
            assert_eq!(text(os, &["InstallTo", "PartitionID"]), "3");
            let key = child(child(setup, "UserData"), "ProductKey");
            assert_eq!(names(key), ["WillShowUI"], "evaluation media take no key");

            let shell = component_of(&doc, "oobeSystem", "Microsoft-Windows-Shell-Setup");
            assert_eq!(
                names(shell),
                ["AutoLogon", "FirstLogonCommands", "OOBE", "UserAccounts"]
            );
            assert_eq!(text(shell, &["AutoLogon", "Username"]), "Administrator");
            let pw = child(child(shell, "UserAccounts"), "AdministratorPassword");
            assert_eq!(text(pw, &["PlainText"]), "false");
            assert_eq!(
                decode_password(&text(pw, &["Value"]), "AdministratorPassword"),
                BUILD_PASSWORD
            );
            let cmd = text(
                shell,
                &["FirstLogonCommands", "SynchronousCommand", "CommandLine"],
            );
            assert!(cmd.contains("build.ps1"), "{cmd}");
            assert!(!xml.contains(BUILD_PASSWORD));
        }
    }

    #[test]
    fn virtio_build_answer_file_loads_viostor_and_netkvm_in_windows_pe() {
        for (catalog, dir) in [
            ("windows-server-2022", "2k22"),
            ("windows-server-2025", "2k25"),
        ] {
            let mut b = build(catalog);
            b.devices = crate::spec::WindowsDevices::Virtio;
            let xml = autounattend(&b);
            insta::assert_snapshot!(format!("autounattend_{catalog}_virtio"), xml);
            let doc = roxmltree::Document::parse(&xml).unwrap();
            // The driver component sits in windowsPE, before Setup needs
            // the disk; the other passes are those of the emulated build.
            let passes = structure(&doc);
            assert_eq!(
                passes[0].1,
                [
                    "Microsoft-Windows-International-Core-WinPE",
                    "Microsoft-Windows-PnpCustomizationsWinPE",
                    "Microsoft-Windows-Setup"
                ]
            );
            let emulated = autounattend(&build(catalog));
            let plain = roxmltree::Document::parse(&emulated).unwrap();
            assert_eq!(passes[1..], structure(&plain)[1..]);
            let pnp = component_of(
                &doc,
                "windowsPE",
                "Microsoft-Windows-PnpCustomizationsWinPE",
            );
            let items = element_children(child(pnp, "DriverPaths"));
            let paths: Vec<String> = items.iter().map(|i| text(*i, &["Path"])).collect();
            assert_eq!(paths, virtio_driver_paths(&b.image));
            assert!(
                paths.contains(&format!("F:\\viostor\\{dir}\\amd64")),
                "{paths:?}"
            );
            assert!(
                paths.contains(&format!("F:\\NetKVM\\{dir}\\amd64")),
                "{paths:?}"
            );
            // Unique keys, as the list item type requires.
            let keys: std::collections::BTreeSet<_> = items
                .iter()
                .map(|i| {
                    i.attribute((
                        "http://schemas.microsoft.com/WMIConfig/2002/State",
                        "keyValue",
                    ))
                    .unwrap()
                })
                .collect();
            assert_eq!(keys.len(), items.len());
            assert!(!emulated.contains("PnpCustomizationsWinPE"));
            assert!(!xml.contains(BUILD_PASSWORD));
        }
    }

    #[test]
    fn node_answer_file_sets_name_static_ip_by_mac_dns_and_password() {
        let n = node();
        let xml = node_unattend(&n).unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        assert_eq!(
            structure(&doc),
            [
                (
                    "specialize".to_string(),
                    vec![
                        "Microsoft-Windows-Shell-Setup".to_string(),
                        "Microsoft-Windows-TCPIP".to_string(),
                        "Microsoft-Windows-DNS-Client".to_string(),
                        "Microsoft-Windows-Deployment".to_string()
                    ]
                ),
                (
                    "oobeSystem".to_string(),
                    vec!["Microsoft-Windows-Shell-Setup".to_string()]
                ),
            ]
        );
        let shell = component_of(&doc, "specialize", "Microsoft-Windows-Shell-Setup");
        assert_eq!(text(shell, &["ComputerName"]), "dev-win1");

        let tcpip = component_of(&doc, "specialize", "Microsoft-Windows-TCPIP");
        let iface = child(child(tcpip, "Interfaces"), "Interface");
        // The schema's sequence: Setup rejects another order.
        assert_eq!(
            names(iface),
            [
                "Ipv4Settings",
                "Ipv6Settings",
                "Identifier",
                "UnicastIpAddresses",
                "Routes"
            ]
        );
        assert_eq!(text(iface, &["Identifier"]), "52-54-00-AB-CD-31");
        assert_eq!(text(iface, &["Ipv4Settings", "DhcpEnabled"]), "false");
        let ip = child(child(iface, "UnicastIpAddresses"), "IpAddress");
        assert_eq!(ip.text(), Some("192.168.100.31/24"));
        assert_eq!(
            ip.attribute((
                "http://schemas.microsoft.com/WMIConfig/2002/State",
                "keyValue"
            )),
            Some("1")
        );
        let route = child(child(iface, "Routes"), "Route");
        assert_eq!(
            names(route),
            ["Identifier", "Metric", "NextHopAddress", "Prefix"]
        );
        assert_eq!(text(route, &["NextHopAddress"]), "192.168.100.1");
        assert_eq!(text(route, &["Prefix"]), "0.0.0.0/0");

        let dns = component_of(&doc, "specialize", "Microsoft-Windows-DNS-Client");
        let diface = child(child(dns, "Interfaces"), "Interface");
        assert_eq!(names(diface), ["DNSServerSearchOrder", "Identifier"]);
        assert_eq!(text(diface, &["Identifier"]), "52-54-00-AB-CD-31");
        assert_eq!(
            text(diface, &["DNSServerSearchOrder", "IpAddress"]),
            "192.168.100.1"
        );

        let deploy = component_of(&doc, "specialize", "Microsoft-Windows-Deployment");
        let run = child(child(deploy, "RunSynchronous"), "RunSynchronousCommand");
        assert_eq!(names(run), ["Description", "Order", "Path"]);
        let path = text(run, &["Path"]);
        assert!(
            path.len() <= 259,
            "RunSynchronous Path is {} chars",
            path.len()
        );
        assert!(
            path.contains("devcluster-node.ps1 -SeedDir %d:\\"),
            "{path}"
        );

        let oobe = component_of(&doc, "oobeSystem", "Microsoft-Windows-Shell-Setup");
        assert_eq!(names(oobe), ["OOBE", "UserAccounts"]);
        let pw = child(child(oobe, "UserAccounts"), "AdministratorPassword");
        assert_eq!(
            decode_password(&text(pw, &["Value"]), "AdministratorPassword"),
            NODE_PASSWORD
        );
        assert!(!xml.contains(NODE_PASSWORD));
        assert!(!xml.contains("PRIVATE KEY"));
    }

    #[test]
    fn node_cd_carries_the_keys_as_files() {
        let files = node_seed_files(&node()).unwrap();
        let get = |name: &str| {
            files
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, c)| String::from_utf8(c.clone()).unwrap())
                .unwrap_or_else(|| panic!("no {name}"))
        };
        assert_eq!(get("ssh_host_ed25519_key"), HOST_PRIVATE);
        assert_eq!(get("ssh_host_ed25519_key.pub"), format!("{HOST_PUBLIC}\n"));
        assert_eq!(get("authorized_keys"), format!("{CLIENT_KEY}\n"));
        // The script reads them from the CD and writes them where Windows
        // OpenSSH reads them.
        let script = get(NODE_SCRIPT.0);
        for want in [
            "'ssh_host_ed25519_key'",
            "'administrators_authorized_keys'",
            "C:\\ProgramData\\ssh",
            "*S-1-5-32-544:F",
            "/inheritance:r",
        ] {
            assert!(script.contains(want), "{want}");
        }
    }

    #[test]
    fn build_cd_has_openssh_for_2022_only_and_the_steps_in_order() {
        let names_of = |b: &BuildSeed| -> Vec<String> {
            build_seed_files(b)
                .unwrap()
                .into_iter()
                .map(|(n, _)| n)
                .collect()
        };
        assert!(names_of(&build("windows-server-2022")).contains(&OPENSSH_ZIP.to_string()));
        assert!(!names_of(&build("windows-server-2025")).contains(&OPENSSH_ZIP.to_string()));
        let mut no_zip = build("windows-server-2022");
        no_zip.openssh_zip = None;
        assert!(matches!(
            build_seed_files(&no_zip),
            Err(WindowsSeedError::NoOpenSsh(_))
        ));
        // build.ps1 runs exactly the scripts on the CD, in order.
        let driver = BUILD_SCRIPTS[0].1;
        let mut last = 0;
        for (name, _) in &BUILD_SCRIPTS[1..] {
            let step = name.trim_end_matches(".ps1");
            let at = driver
                .find(&format!("'{step}'"))
                .unwrap_or_else(|| panic!("build.ps1 does not run {step}"));
            assert!(at > last, "{step} out of order");
            last = at;
        }
        let sshd = BUILD_SCRIPTS[1].1;
        for want in [
            "administrators_authorized_keys",
            "DefaultShell",
            "OpenSSH-Server-In-TCP",
            "delayed-auto",
        ] {
            assert!(sshd.contains(want), "{want}");
        }
        assert!(BUILD_SCRIPTS[5].1.contains("/generalize /oobe /shutdown"));
    }

    #[test]
    fn bad_inputs_are_errors_not_files() {
        let mut n = node();
        n.computer_name = "dev-windows-worker1".into();
        assert!(matches!(
            node_unattend(&n),
            Err(WindowsSeedError::ComputerName(_))
        ));
        let mut n = node();
        n.mac = "52:54:00:zz:00:01".into();
        assert!(matches!(node_unattend(&n), Err(WindowsSeedError::Mac(_))));
        assert_eq!(
            windows_mac("52:54:00:ab:CD:01").unwrap(),
            "52-54-00-AB-CD-01"
        );
    }

    /// What could reach a log (Debug of the inputs, every error message)
    /// holds no password and no private key.
    #[test]
    fn no_secret_in_anything_logged() {
        let n = node();
        let b = build("windows-server-2025");
        let mut logged = vec![format!("{n:?}"), format!("{b:?}")];
        let mut bad = node();
        bad.mac = "nope".into();
        logged.push(crate::error::one_line(&SeedError::Windows(
            node_unattend(&bad).unwrap_err(),
        )));
        for line in &logged {
            for secret in [NODE_PASSWORD, BUILD_PASSWORD, "TEST+FIXTURE+HOST+KEY"] {
                assert!(!line.contains(secret), "{secret} in {line}");
            }
        }
    }

    #[test]
    fn seed_isos_are_deterministic_and_labelled() {
        let a = node_seed_iso(&node()).unwrap();
        assert_eq!(a, node_seed_iso(&node()).unwrap());
        assert_eq!(&a[16 * 2048 + 40..16 * 2048 + 46], NODE_LABEL.as_bytes());
        let b = build_seed_iso(&build("windows-server-2022")).unwrap();
        assert_eq!(&b[16 * 2048 + 40..16 * 2048 + 47], BUILD_LABEL.as_bytes());
    }
}
