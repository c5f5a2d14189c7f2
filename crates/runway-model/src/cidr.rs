//! IPv4 networks in CIDR form: the private range instances get their addresses from, and
//! the VPCs and subnets users declare.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network such as `10.201.0.0/16`. The first host address is the bridge's
/// (the instances' gateway); the rest go to instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subnet {
    network: Ipv4Addr,
    prefix: u8,
}

impl Subnet {
    /// The subnet of `addr` with `prefix` bits, or an error if host bits are set or the
    /// prefix leaves no room for a gateway and one instance.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Subnet, String> {
        if !(8..=29).contains(&prefix) {
            return Err(format!(
                "subnet prefix must be between /8 and /29, got /{prefix}"
            ));
        }
        let mask = mask(prefix);
        if u32::from(addr) & !mask != 0 {
            return Err(format!(
                "{addr}/{prefix} has host bits set; did you mean {}/{prefix}?",
                Ipv4Addr::from(u32::from(addr) & mask)
            ));
        }
        Ok(Subnet {
            network: addr,
            prefix,
        })
    }

    /// Any network, host bits cleared (for comparing with routes); `None` if `prefix`
    /// is over 32.
    pub fn covering(addr: Ipv4Addr, prefix: u8) -> Option<Subnet> {
        (prefix <= 32).then(|| Subnet {
            network: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        })
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The bridge's address, which instances route through.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    fn broadcast(&self) -> u32 {
        u32::from(self.network) | !mask(self.prefix)
    }

    /// Whether `ip` is inside this subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.network)
    }

    /// Whether two subnets share any address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.contains(other.network) || other.contains(self.network)
    }

    /// The addresses instances may get, lowest first (neither the network, the gateway
    /// nor the broadcast address).
    pub fn instance_addresses(&self) -> impl Iterator<Item = Ipv4Addr> + use<> {
        (u32::from(self.network) + 2..self.broadcast()).map(Ipv4Addr::from)
    }
}

/// The network mask of a prefix length (at most 32).
fn mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Splits `ADDRESS/PREFIX`.
fn parts(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let (addr, prefix) = s
        .split_once('/')
        .ok_or_else(|| format!("subnet {s:?} must be written ADDRESS/PREFIX"))?;
    let addr: Ipv4Addr = addr
        .parse()
        .map_err(|_| format!("subnet {s:?}: {addr:?} is not an IPv4 address"))?;
    let prefix: u8 = prefix
        .parse()
        .map_err(|_| format!("subnet {s:?}: {prefix:?} is not a prefix length"))?;
    Ok((addr, prefix))
}

impl Subnet {
    /// Any IPv4 range in CIDR form, `/0` to `/32` (a firewall rule's), with no host bits
    /// set.
    pub fn parse_range(s: &str) -> Result<Subnet, String> {
        let (addr, prefix) = parts(s)?;
        if prefix > 32 {
            return Err(format!("{s:?}: the prefix must be at most /32"));
        }
        let range = Subnet::covering(addr, prefix).unwrap_or(Subnet {
            network: addr,
            prefix,
        });
        if range.network != addr {
            return Err(format!(
                "{addr}/{prefix} has host bits set; did you mean {range}?"
            ));
        }
        Ok(range)
    }

    /// How many addresses the range holds.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// The highest address below the broadcast address.
    pub fn last_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.broadcast().saturating_sub(1))
    }
}

impl FromStr for Subnet {
    type Err = String;
    fn from_str(s: &str) -> Result<Subnet, String> {
        let (addr, prefix) = parts(s)?;
        Subnet::new(addr, prefix)
    }
}

/// Stored and sent as its text, `10.201.0.0/16`.
impl serde::Serialize for Subnet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Subnet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Subnet, D::Error> {
        let text = String::deserialize(d)?;
        Subnet::parse_range(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
