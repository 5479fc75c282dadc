//! Facts about the host that planning and validation need: physical
//! memory and the IPv4 networks already in use (interfaces and routes).

use std::net::Ipv4Addr;

use crate::net::Cidr;

/// Physical memory in MiB, if the platform tells.
pub fn physical_memory_mib() -> Option<u64> {
    memory_mib().map(|(total, _)| total)
}

/// Physical and available memory in MiB, if the platform tells.
pub fn memory_mib() -> Option<(u64, u64)> {
    use sysinfo::{MemoryRefreshKind, RefreshKind, System};
    let sys = System::new_with_specifics(
        RefreshKind::nothing().with_memory(MemoryRefreshKind::nothing().with_ram()),
    )
    .ok()?;
    let total = sys.total_memory();
    (total > 0).then_some((
        total / (1024 * 1024),
        sys.available_memory() / (1024 * 1024),
    ))
}

/// IPv4 networks the host already reaches directly: the networks of its
/// interfaces, and (on Linux) every non-default route. A cluster subnet
/// must not overlap any of them. Loopback and default routes are left out.
pub fn networks_in_use() -> Vec<Cidr> {
    let mut nets = Vec::new();
    if let Ok(ifaces) = if_addrs::get_if_addrs() {
        for iface in ifaces {
            if let if_addrs::IfAddr::V4(v4) = iface.addr {
                if v4.ip.is_loopback() {
                    continue;
                }
                let prefix = u32::from(v4.netmask).count_ones() as u8;
                nets.push(Cidr::containing(v4.ip, prefix));
            }
        }
    }
    nets.extend(linux_routes());
    nets.sort();
    nets.dedup();
    nets
}

#[cfg(target_os = "linux")]
fn linux_routes() -> Vec<Cidr> {
    std::fs::read_to_string("/proc/net/route")
        .map(|text| parse_proc_net_route(&text))
        .unwrap_or_default()
}

#[cfg(not(target_os = "linux"))]
fn linux_routes() -> Vec<Cidr> {
    Vec::new()
}

/// Parses `/proc/net/route` (addresses are little-endian hex); skips the
/// default route, which overlaps everything.
pub fn parse_proc_net_route(text: &str) -> Vec<Cidr> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let dest = u32::from_str_radix(f.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(f.get(7)?, 16).ok()?;
            let dest = Ipv4Addr::from(dest.swap_bytes());
            let mask = Ipv4Addr::from(mask.swap_bytes());
            let prefix = u32::from(mask).count_ones() as u8;
            (prefix > 0 && !dest.is_loopback()).then(|| Cidr::containing(dest, prefix))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_route() {
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
eth0\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
virbr0\t007AA8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        let nets = parse_proc_net_route(text);
        assert_eq!(
            nets,
            vec![
                "192.168.2.0/24".parse().unwrap(),
                "192.168.122.0/24".parse().unwrap()
            ]
        );
    }
}
