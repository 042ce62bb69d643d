//! 1:1 NAT: the public addresses announced for the SFU's host candidates.

use std::net::IpAddr;

/// One `rtc.nat_1to1_ips` entry: `public` stands for every local address, `public/private` for
/// `private` only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatMapping {
    pub public: IpAddr,
    pub private: Option<IpAddr>,
}

impl NatMapping {
    /// `None` unless the entry is an IP address or a `public/private` pair of them.
    pub fn parse(entry: &str) -> Option<Self> {
        Some(match entry.split_once('/') {
            Some((public, private)) => Self {
                public: public.parse().ok()?,
                private: Some(private.parse().ok()?),
            },
            None => Self {
                public: entry.parse().ok()?,
                private: None,
            },
        })
    }
}

/// A local ICE candidate as clients should see it behind a 1:1 NAT: a host candidate whose
/// address a mapping stands for is announced with that mapping's public address instead, once
/// per matching mapping. Other candidates pass unchanged.
pub fn nat_1to1_candidates(candidate: &str, mappings: &[NatMapping]) -> Vec<String> {
    // candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type> …
    let fields: Vec<&str> = candidate.split(' ').collect();
    let is_host = fields.len() >= 8 && fields[6] == "typ" && fields[7] == "host";
    let Some(address) = is_host.then(|| fields[4].parse::<IpAddr>().ok()).flatten() else {
        return vec![candidate.to_owned()];
    };
    let mapped: Vec<String> = mappings
        .iter()
        .filter(|m| m.private.is_none_or(|private| private == address))
        .map(|m| {
            let public = m.public.to_string();
            let mut f = fields.clone();
            f[4] = &public;
            f.join(" ")
        })
        .collect();
    if mapped.is_empty() {
        vec![candidate.to_owned()]
    } else {
        mapped
    }
}

#[cfg(test)]
mod tests {
    use super::{nat_1to1_candidates, NatMapping};

    const HOST: &str = "candidate:1 1 udp 2130706431 10.0.1.5 50000 typ host";

    fn nat(entries: &[&str]) -> Vec<NatMapping> {
        entries
            .iter()
            .map(|e| NatMapping::parse(e).unwrap())
            .collect()
    }

    #[test]
    fn entries_are_an_ip_or_a_public_private_pair() {
        assert!(NatMapping::parse("54.1.2.3").is_some());
        assert!(NatMapping::parse("54.1.2.3/10.0.1.5").is_some());
        assert!(NatMapping::parse("2001:db8::1").is_some());
        for bad in ["sfu.example.com", "54.1.2.3/", "/10.0.1.5", ""] {
            assert_eq!(NatMapping::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn host_candidates_take_the_public_address() {
        assert_eq!(
            nat_1to1_candidates(HOST, &nat(&["54.1.2.3"])),
            vec!["candidate:1 1 udp 2130706431 54.1.2.3 50000 typ host"]
        );
        // Mapped by private address: only the matching one.
        assert_eq!(
            nat_1to1_candidates(HOST, &nat(&["54.1.2.3/10.0.1.5", "54.9.9.9/10.0.2.7"])),
            vec!["candidate:1 1 udp 2130706431 54.1.2.3 50000 typ host"]
        );
    }

    #[test]
    fn other_candidates_and_unmapped_addresses_pass_unchanged() {
        assert_eq!(nat_1to1_candidates(HOST, &[]), vec![HOST]);
        assert_eq!(
            nat_1to1_candidates(HOST, &nat(&["54.9.9.9/10.0.2.7"])),
            vec![HOST]
        );
        let srflx = "candidate:2 1 udp 1694498815 54.1.2.3 50000 typ srflx raddr 0.0.0.0 rport 0";
        assert_eq!(nat_1to1_candidates(srflx, &nat(&["1.1.1.1"])), vec![srflx]);
        assert_eq!(
            nat_1to1_candidates("garbage", &nat(&["1.1.1.1"])),
            vec!["garbage"]
        );
    }
}
