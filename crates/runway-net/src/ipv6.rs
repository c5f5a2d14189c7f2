//! Instances' IPv6 addresses (dual stack): one /64 per bridge, in which an instance's
//! address ends with its IPv4 address, so that no second allocation is needed and the
//! two never disagree. The bridge is `::1`.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IPv6 /64 such as `fd42:7:7:1::/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Subnet {
    network: Ipv6Addr,
}

/// The prefix length of every [`Ipv6Subnet`].
pub const PREFIX: u8 = 64;

impl Ipv6Subnet {
    pub fn network(&self) -> Ipv6Addr {
        self.network
    }

    /// The bridge's address, which instances route through.
    pub fn gateway(&self) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.network) | 1)
    }

    /// The address of the instance whose IPv4 address is `v4`.
    pub fn address_of(&self, v4: Ipv4Addr) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.network) | u128::from(u32::from(v4)))
    }

    /// Whether the network `addr/prefix` shares an address with this one.
    pub fn overlaps(&self, addr: Ipv6Addr, prefix: u8) -> bool {
        let bits = prefix.min(PREFIX);
        let mask = if bits == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(bits))
        };
        u128::from(addr) & mask == u128::from(self.network) & mask
    }
}

impl FromStr for Ipv6Subnet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not an IPv6 network like fd42:7:7:1::/64"))?;
        let network: Ipv6Addr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IPv6 address"))?;
        if prefix != "64" {
            return Err(format!(
                "{s}: instances' IPv6 network must be a /64, got /{prefix}"
            ));
        }
        if u128::from(network) & u128::from(u64::MAX) != 0 {
            return Err(format!("{s} has host bits set"));
        }
        let first = network.segments()[0];
        if network.is_unspecified() || network.is_multicast() || first & 0xffc0 == 0xfe80 {
            return Err(format!(
                "{s} cannot be routed (use a unique local fd00::/8 network or one of yours)"
            ));
        }
        Ok(Ipv6Subnet { network })
    }
}

impl fmt::Display for Ipv6Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{PREFIX}", self.network)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_addresses_end_with_their_ipv4_address() {
        let net: Ipv6Subnet = "fd42:7:7:1::/64".parse().unwrap();
        assert_eq!(net.to_string(), "fd42:7:7:1::/64");
        assert_eq!(net.gateway().to_string(), "fd42:7:7:1::1");
        assert_eq!(
            net.address_of(Ipv4Addr::new(10, 201, 0, 5)).to_string(),
            "fd42:7:7:1::ac9:5"
        );
        assert!(net.overlaps("fd42:7:7::".parse().unwrap(), 48));
        assert!(net.overlaps("fd42:7:7:1::80".parse().unwrap(), 121));
        assert!(!net.overlaps("fd42:7:7:2::".parse().unwrap(), 64));
        assert!(net.overlaps("::".parse().unwrap(), 0));
    }

    #[test]
    fn only_routable_64s_are_accepted() {
        for (bad, says) in [
            ("fd42::/48", "/64"),
            ("fd42::1/64", "host bits"),
            ("fe80::/64", "cannot be routed"),
            ("ff02::/64", "cannot be routed"),
            ("fd42::", "like"),
            ("10.0.0.0/64", "not an IPv6 address"),
        ] {
            let err = bad.parse::<Ipv6Subnet>().unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
