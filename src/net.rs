//! IPv4 CIDR arithmetic (just what planning needs).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network `address/prefix` whose host bits are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    addr: Ipv4Addr,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("`{0}` is not in the form A.B.C.D/N")]
    Syntax(String),
    #[error("`{0}`: the prefix length must be 0 to 32")]
    Prefix(String),
    #[error("`{0}` has host bits set: did you mean {1}?")]
    HostBits(String, Cidr),
}

impl Cidr {
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Self> {
        (prefix <= 32 && u32::from(addr) & !mask(prefix) == 0).then_some(Self { addr, prefix })
    }

    /// The network containing `addr` with this prefix.
    pub fn containing(addr: Ipv4Addr, prefix: u8) -> Self {
        let prefix = prefix.min(32);
        Self {
            addr: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        }
    }

    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    fn first(&self) -> u32 {
        u32::from(self.addr)
    }

    fn last(&self) -> u32 {
        self.first() | !mask(self.prefix)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (self.first()..=self.last()).contains(&u32::from(ip))
    }

    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.first() <= other.last() && other.first() <= self.last()
    }

    /// The `n`-th address of the network (0 = the network address), if inside.
    pub fn nth(&self, n: u32) -> Option<Ipv4Addr> {
        let ip = self.first().checked_add(n)?;
        (ip <= self.last()).then(|| Ipv4Addr::from(ip))
    }

    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(mask(self.prefix))
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, p) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| CidrError::Syntax(s.into()))?;
        let addr: Ipv4Addr = a.parse().map_err(|_| CidrError::Syntax(s.into()))?;
        let prefix: u8 = p.parse().map_err(|_| CidrError::Syntax(s.into()))?;
        if prefix > 32 {
            return Err(CidrError::Prefix(s.into()));
        }
        Cidr::new(addr, prefix)
            .ok_or_else(|| CidrError::HostBits(s.into(), Cidr::containing(addr, prefix)))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl serde::Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_overlap() {
        let pods: Cidr = "10.244.0.0/16".parse().unwrap();
        let svc: Cidr = "10.96.0.0/12".parse().unwrap();
        assert!(!pods.overlaps(&svc));
        let wide: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(wide.overlaps(&pods) && pods.overlaps(&wide));
        assert_eq!(
            "10.244.1.0/16".parse::<Cidr>(),
            Err(CidrError::HostBits(
                "10.244.1.0/16".into(),
                "10.244.0.0/16".parse().unwrap()
            ))
        );
        assert!("10.0.0.0".parse::<Cidr>().is_err());
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        let c: Cidr = "192.168.100.0/24".parse().unwrap();
        assert_eq!(c.nth(1), Some(Ipv4Addr::new(192, 168, 100, 1)));
        assert_eq!(c.nth(256), None);
        assert_eq!(c.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(
            "0.0.0.0/0".parse::<Cidr>().unwrap().to_string(),
            "0.0.0.0/0"
        );
    }
}
