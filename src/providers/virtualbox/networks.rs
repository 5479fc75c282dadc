//! Which host-only subnets VirtualBox allows, and the checks doctor shows.
//!
//! Since 6.1.28, VirtualBox on Linux, macOS and Solaris refuses a host-only
//! address outside `192.168.56.0/21` unless `/etc/vbox/networks.conf`
//! lists its range (manual, "Host-Only Networking"; Vagrant
//! `plugins/providers/virtualbox/action/network.rb`). The file has lines
//! `* 10.0.0.0/8 192.168.0.0/16` (a `*` and ranges; `#` comments), and
//! IPv6 ranges we ignore. A file that exists replaces the default range.
//! Windows hosts have no such restriction.

use crate::doctor::Check;
use crate::net::Cidr;

/// Where VirtualBox reads the allowed ranges (not on Windows).
pub const NETWORKS_CONF: &str = "/etc/vbox/networks.conf";

/// The range allowed without a networks.conf.
pub fn default_range() -> Cidr {
    Cidr::containing(std::net::Ipv4Addr::new(192, 168, 56, 0), 21)
}

/// A line of networks.conf that is neither a comment nor a range list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file} line {line}: `{text}` is not `* RANGE...` (e.g. `* 192.168.100.0/22`)")]
pub struct ConfError {
    pub file: String,
    pub line: usize,
    pub text: String,
}

/// The IPv4 ranges a networks.conf allows.
pub fn parse_networks_conf(text: &str) -> Result<Vec<Cidr>, ConfError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let bad = || ConfError {
            file: NETWORKS_CONF.into(),
            line: i + 1,
            text: raw.trim().into(),
        };
        let rest = line.strip_prefix('*').ok_or_else(bad)?;
        for word in rest.split_whitespace() {
            if word.contains(':') {
                continue; // IPv6
            }
            // VirtualBox takes ranges with host bits set; so do we.
            let (a, p) = word.split_once('/').ok_or_else(bad)?;
            let addr: std::net::Ipv4Addr = a.parse().map_err(|_| bad())?;
            let prefix: u8 = p.parse().ok().filter(|p| *p <= 32).ok_or_else(bad)?;
            out.push(Cidr::containing(addr, prefix));
        }
    }
    Ok(out)
}

/// What VirtualBox allows on this host: `None` = anything (Windows);
/// else the ranges of `conf` (the file's text, `None` when it does not
/// exist), or the default range.
pub fn allowed_ranges(windows: bool, conf: Option<&str>) -> Result<Option<Vec<Cidr>>, ConfError> {
    if windows {
        return Ok(None);
    }
    match conf {
        None => Ok(Some(vec![default_range()])),
        Some(text) => parse_networks_conf(text).map(Some),
    }
}

/// Reads this host's allowed ranges (`None` = unrestricted).
pub fn host_allowed_ranges() -> Result<Option<Vec<Cidr>>, ConfError> {
    let conf = if cfg!(windows) {
        None
    } else {
        std::fs::read_to_string(NETWORKS_CONF).ok()
    };
    allowed_ranges(cfg!(windows), conf.as_deref())
}

/// Whether `subnet` lies inside one of `ranges`.
pub fn allows(ranges: &[Cidr], subnet: &Cidr) -> bool {
    ranges
        .iter()
        .any(|r| r.prefix() <= subnet.prefix() && r.contains(subnet.addr()))
}

/// The exact line to add to networks.conf so `subnet` is allowed.
pub fn fix_line(subnet: &Cidr) -> String {
    format!(
        "add the line `* {subnet}` to {NETWORKS_CONF} (as root: `echo '* {subnet}' | sudo tee -a {NETWORKS_CONF}`), or leave [network] node_cidr unset so devcluster picks a /24 inside {}",
        default_range()
    )
}

/// doctor: does VirtualBox allow the cluster subnets devcluster would use?
/// `ranges`: [`allowed_ranges`]' answer; `subnets`: the subnets of the
/// existing VirtualBox clusters and the one a new cluster would get.
pub fn networks_conf_check(
    ranges: &Result<Option<Vec<Cidr>>, ConfError>,
    subnets: &[Cidr],
) -> Check {
    const NAME: &str = "virtualbox.host-only-ranges";
    match ranges {
        Err(e) => Check::fail(
            NAME,
            e.to_string(),
            format!("fix {NETWORKS_CONF}: each line is `* ` and ranges, e.g. `* 192.168.56.0/21`"),
        ),
        Ok(None) => Check::ok(NAME, "Windows hosts allow any host-only range"),
        Ok(Some(ranges)) => {
            let shown = ranges
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ");
            match subnets.iter().find(|s| !allows(ranges, s)) {
                Some(s) => Check::fail(
                    NAME,
                    format!("{s} is outside the allowed host-only ranges ({shown})"),
                    fix_line(s),
                ),
                None if ranges.is_empty() => Check::fail(
                    NAME,
                    format!("{NETWORKS_CONF} allows no IPv4 host-only range"),
                    format!("add the line `* {}` to {NETWORKS_CONF}", default_range()),
                ),
                None => Check::ok(NAME, format!("allowed host-only ranges: {shown}")),
            }
        }
    }
}

/// doctor: the VirtualBox version (`VBoxManage --version`'s output, or
/// why it could not run).
pub fn version_check(output: Result<&str, String>) -> Check {
    const NAME: &str = "virtualbox.version";
    match output {
        Err(why) => Check::fail(NAME, why, install_hint()),
        Ok(text) => match super::vboxmanage::parse_version(text) {
            Some((major, minor, patch)) if major >= 7 => {
                Check::ok(NAME, format!("VirtualBox {major}.{minor}.{patch}"))
            }
            Some((major, minor, patch)) => Check::fail(
                NAME,
                format!("VirtualBox {major}.{minor}.{patch} is older than 7.0"),
                "install VirtualBox 7.0 or newer from https://www.virtualbox.org/wiki/Downloads",
            ),
            None => Check::fail(
                NAME,
                format!("`VBoxManage --version` printed `{}`", text.trim()),
                "reinstall VirtualBox 7 (VBoxManage must run)",
            ),
        },
    }
}

/// doctor: Hyper-V on a Windows host. `hypervisor_present`: the answer of
/// `(Get-CimInstance Win32_ComputerSystem).HypervisorPresent` (`True` /
/// `False`), `None` when not a Windows host.
pub fn hyperv_check(hypervisor_present: Option<&str>) -> Check {
    const NAME: &str = "virtualbox.hyperv";
    match hypervisor_present.map(str::trim) {
        None => Check::skipped(NAME, "not a Windows host"),
        Some(v) if v.eq_ignore_ascii_case("true") => Check::warn(
            NAME,
            "Hyper-V is enabled: VirtualBox runs its VMs through the Windows hypervisor, much more slowly (a green turtle in the VM's status bar)",
            "use --provider hyperv, or turn Hyper-V off as administrator (`bcdedit /set hypervisorlaunchtype off`, then reboot) to give VirtualBox the CPU's virtualization",
        ),
        Some(v) if v.eq_ignore_ascii_case("false") => Check::ok(NAME, "Hyper-V is not running"),
        Some(other) => Check::warn(
            NAME,
            format!("could not tell whether Hyper-V runs (`{other}`)"),
            "check Windows features: with Hyper-V on, VirtualBox runs slowly",
        ),
    }
}

pub fn install_hint() -> String {
    if cfg!(windows) {
        "install VirtualBox 7 from https://www.virtualbox.org/wiki/Downloads (VBoxManage.exe goes to C:\\Program Files\\Oracle\\VirtualBox), or set DEVCLUSTER_VBOXMANAGE to its path".into()
    } else if cfg!(target_os = "macos") {
        "install VirtualBox 7 from https://www.virtualbox.org/wiki/Downloads (Intel Macs), or set DEVCLUSTER_VBOXMANAGE to VBoxManage's path".into()
    } else {
        "install VirtualBox 7 (https://www.virtualbox.org/wiki/Linux_Downloads) so VBoxManage is on PATH, or set DEVCLUSTER_VBOXMANAGE to its path".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Status;

    const CONF_WIDE: &str = include_str!("../../../testdata/virtualbox/networks.conf");

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_conf_parses() {
        assert_eq!(
            parse_networks_conf(CONF_WIDE).unwrap(),
            [c("10.0.0.0/8"), c("192.168.0.0/16")]
        );
        let err = parse_networks_conf("# ok\n10.0.0.0/8\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(parse_networks_conf("* 10.0.0.0/33").is_err());
        assert_eq!(
            parse_networks_conf("* 192.168.100.1/22").unwrap(),
            [c("192.168.100.0/22")]
        );
    }

    #[test]
    fn default_and_windows() {
        assert_eq!(
            allowed_ranges(false, None).unwrap(),
            Some(vec![c("192.168.56.0/21")])
        );
        assert_eq!(allowed_ranges(true, Some("garbage")).unwrap(), None);
        let r = [default_range()];
        assert!(allows(&r, &c("192.168.63.0/24")));
        assert!(!allows(&r, &c("192.168.64.0/24")));
        assert!(!allows(&r, &c("192.168.0.0/16")));
    }

    #[test]
    fn checks_decide_on_recorded_inputs() {
        let ok = networks_conf_check(&allowed_ranges(false, None), &[c("192.168.57.0/24")]);
        assert_eq!(ok.status, Status::Ok, "{ok:?}");
        let bad = networks_conf_check(&allowed_ranges(false, None), &[c("192.168.100.0/24")]);
        assert_eq!(bad.status, Status::Fail);
        assert!(
            bad.fix
                .as_deref()
                .unwrap()
                .contains("`* 192.168.100.0/24` to /etc/vbox/networks.conf"),
            "{bad:?}"
        );
        let wide = networks_conf_check(
            &allowed_ranges(false, Some(CONF_WIDE)),
            &[c("192.168.100.0/24")],
        );
        assert_eq!(wide.status, Status::Ok);
        let broken = networks_conf_check(&allowed_ranges(false, Some("x")), &[]);
        assert_eq!(broken.status, Status::Fail);

        assert_eq!(version_check(Ok("7.0.14r161095\n")).status, Status::Ok);
        assert_eq!(version_check(Ok("7.1.4r165100\n")).status, Status::Ok);
        let old = version_check(Ok("6.1.50r161033\n"));
        assert_eq!(old.status, Status::Fail);
        assert!(old.found.contains("older than 7.0"));
        assert_eq!(
            version_check(Err("VBoxManage not found".into())).status,
            Status::Fail
        );

        assert_eq!(hyperv_check(None).status, Status::Skipped);
        assert_eq!(hyperv_check(Some("True\r\n")).status, Status::Warn);
        assert_eq!(hyperv_check(Some("False\r\n")).status, Status::Ok);
    }
}
