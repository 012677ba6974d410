//! The pseudo-token, `pseudo.<mac>`: who is at an appliance that has no card in it is "this
//! appliance", named by the MAC address of its network interface (12 lowercase hex digits).
//!
//! The interface is the one the default route leaves by (`/proc/net/route`), because that is the
//! NIC the server sees the appliance through. Without a default route (an IPv6-only or
//! directly-connected network), it is the first interface in `/sys/class/net` that has a
//! non-zero address, real NICs (those with a `device` link) before virtual ones, whose MACs
//! (bridges, ifb, veth) are often random at every boot.

use std::path::{Path, PathBuf};

use super::CardError;

/// `pseudo.<mac>` of `iface`, or of the appliance's network interface when `None` (see the
/// module's documentation for which one).
pub fn pseudo_token(iface: Option<&str>) -> Result<String, CardError> {
    Net::system().pseudo_token(iface)
}

/// Where the kernel tells about network interfaces; tests point it at a directory of their own.
pub(crate) struct Net {
    pub proc_net_route: PathBuf,
    pub sys_class_net: PathBuf,
}

impl Net {
    pub fn system() -> Self {
        Self {
            proc_net_route: PathBuf::from("/proc/net/route"),
            sys_class_net: PathBuf::from("/sys/class/net"),
        }
    }

    pub fn pseudo_token(&self, iface: Option<&str>) -> Result<String, CardError> {
        let mac = match iface {
            Some(iface) => self.mac(iface)?.ok_or_else(|| CardError::NoMacAddress {
                iface: iface.to_owned(),
            })?,
            None => self.appliance_mac()?,
        };
        Ok(format!("pseudo.{mac}"))
    }

    fn appliance_mac(&self) -> Result<String, CardError> {
        // A missing or unreadable route table is no reason to fail: the interfaces still are.
        let routes = std::fs::read_to_string(&self.proc_net_route).unwrap_or_default();
        if let Some(iface) = default_route_interface(&routes) {
            match self.mac(iface) {
                Ok(Some(mac)) => return Ok(mac),
                // A tunnel or a PPP link carries the default route but has no MAC.
                Ok(None) | Err(_) => {
                    tracing::debug!(iface, "the default route's interface has no MAC address")
                }
            }
        }
        let entries = std::fs::read_dir(&self.sys_class_net).map_err(|source| CardError::Read {
            path: self.sys_class_net.clone(),
            source,
        })?;
        let mut names: Vec<String> = entries
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| name != "lo")
            .collect();
        // Real NICs first, then by name, so the choice is the same at every boot.
        names.sort_by_key(|name| {
            (
                !self.sys_class_net.join(name).join("device").exists(),
                name.clone(),
            )
        });
        for name in &names {
            if let Ok(Some(mac)) = self.mac(name) {
                return Ok(mac);
            }
        }
        Err(CardError::NoNetworkInterface {
            searched: self.sys_class_net.clone(),
        })
    }

    /// The interface's MAC as 12 hex digits; `None` when it has no (non-zero, 6-byte) address.
    fn mac(&self, iface: &str) -> Result<Option<String>, CardError> {
        if iface.is_empty() || iface.contains('/') || iface == "." || iface == ".." {
            return Err(CardError::NoInterface {
                iface: iface.to_owned(),
            });
        }
        let dir = self.sys_class_net.join(iface);
        if !dir.exists() {
            return Err(CardError::NoInterface {
                iface: iface.to_owned(),
            });
        }
        let path = dir.join("address");
        let address = read(&path)?;
        Ok(mac_hex(&address))
    }
}

fn read(path: &Path) -> Result<String, CardError> {
    std::fs::read_to_string(path).map_err(|source| CardError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The interface of the default IPv4 route in a `/proc/net/route` table: destination and mask
/// `00000000`, flag RTF_UP; the lowest metric wins, the first line among equals.
pub fn default_route_interface(table: &str) -> Option<&str> {
    const RTF_UP: u32 = 0x1;
    table
        .lines()
        .skip(1) // Iface Destination Gateway Flags RefCnt Use Metric Mask MTU Window IRTT
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (iface, destination, flags, metric, mask) = match fields[..] {
                [iface, destination, _gateway, flags, _refcnt, _use, metric, mask, ..] => {
                    (iface, destination, flags, metric, mask)
                }
                _ => return None,
            };
            let flags = u32::from_str_radix(flags, 16).ok()?;
            let metric: u32 = metric.parse().ok()?;
            (destination == "00000000" && mask == "00000000" && flags & RTF_UP != 0)
                .then_some((metric, iface))
        })
        .enumerate()
        .min_by_key(|&(line, (metric, _))| (metric, line))
        .map(|(_, (_, iface))| iface)
}

/// `aa:bb:cc:dd:ee:ff` (as in `/sys/class/net/*/address`) → `aabbccddeeff`. `None` for anything
/// but six hex octets, and for the all-zero address (loopback, interfaces without hardware).
pub fn mac_hex(address: &str) -> Option<String> {
    let octets: Vec<&str> = address.trim().split(':').collect();
    if octets.len() != 6
        || octets
            .iter()
            .any(|octet| octet.len() != 2 || !octet.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return None;
    }
    let mac = octets.concat().to_ascii_lowercase();
    (mac != "000000000000").then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT";

    #[test]
    fn default_route_is_found() {
        let table = format!(
            "{HEADER}\n\
             eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
             eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
        );
        assert_eq!(default_route_interface(&table), Some("eth0"));
    }

    #[test]
    fn lowest_metric_wins_then_first_line() {
        let table = format!(
            "{HEADER}\n\
             wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n\
             eth1\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
             eth0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
        );
        assert_eq!(default_route_interface(&table), Some("eth1"));
    }

    #[test]
    fn no_default_route() {
        let down = format!(
            "{HEADER}\n\
             eth0\t00000000\t010200C0\t0002\t0\t0\t0\t00000000\t0\t0\t0\n\
             eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
        );
        assert_eq!(default_route_interface(&down), None, "not RTF_UP");
        assert_eq!(default_route_interface(HEADER), None);
        assert_eq!(default_route_interface(""), None);
        assert_eq!(
            default_route_interface(&format!("{HEADER}\ngarbage\n\n eth0 zz")),
            None
        );
    }

    #[test]
    fn mac_formatting() {
        assert_eq!(
            mac_hex("02:FC:00:00:00:01\n").as_deref(),
            Some("02fc00000001")
        );
        assert_eq!(mac_hex("00:00:00:00:00:00"), None, "loopback");
        assert_eq!(mac_hex(""), None, "no hardware address (tun)");
        assert_eq!(mac_hex("02:fc:00:00:00"), None, "five octets");
        assert_eq!(mac_hex("02:fc:00:00:00:1"), None, "short octet");
        assert_eq!(mac_hex("02:fc:00:00:00:0g"), None, "not hex");
        // InfiniBand: 20 bytes, not a MAC.
        assert_eq!(
            mac_hex("80:00:02:08:fe:80:00:00:00:00:00:00:00:02:c9:03:00:0f:6f:11"),
            None
        );
    }

    /// A fake /proc/net/route and /sys/class/net in a temporary directory.
    struct FakeNet {
        dir: tempfile::TempDir,
    }

    impl FakeNet {
        fn new(routes: Option<&str>) -> Self {
            let dir = tempfile::tempdir().expect("temporary directory");
            std::fs::create_dir(dir.path().join("net")).expect("net directory");
            if let Some(routes) = routes {
                std::fs::write(dir.path().join("route"), format!("{HEADER}\n{routes}"))
                    .expect("route table");
            }
            Self { dir }
        }

        fn iface(self, name: &str, address: &str, real: bool) -> Self {
            let iface = self.dir.path().join("net").join(name);
            std::fs::create_dir(&iface).expect("interface directory");
            std::fs::write(iface.join("address"), format!("{address}\n")).expect("address");
            if real {
                std::fs::create_dir(iface.join("device")).expect("device directory");
            }
            self
        }

        fn net(&self) -> Net {
            Net {
                proc_net_route: self.dir.path().join("route"),
                sys_class_net: self.dir.path().join("net"),
            }
        }
    }

    #[test]
    fn pseudo_token_of_the_default_route() {
        let fake = FakeNet::new(Some(
            "eth1\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n",
        ))
        .iface("lo", "00:00:00:00:00:00", false)
        .iface("eth0", "02:00:00:00:00:01", true)
        .iface("eth1", "02:00:00:00:00:02", true);
        assert_eq!(
            fake.net().pseudo_token(None).ok().as_deref(),
            Some("pseudo.020000000002")
        );
    }

    #[test]
    fn pseudo_token_without_a_default_route_prefers_real_nics() {
        let fake = FakeNet::new(None)
            .iface("lo", "00:00:00:00:00:00", false)
            .iface("br0", "aa:00:00:00:00:01", false)
            .iface("eth0", "00:00:00:00:00:00", true)
            .iface("wlan0", "02:00:00:00:00:03", true);
        assert_eq!(
            fake.net().pseudo_token(None).ok().as_deref(),
            Some("pseudo.020000000003")
        );
    }

    #[test]
    fn pseudo_token_falls_back_when_the_route_has_no_mac() {
        let fake = FakeNet::new(Some(
            "tun0\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0\n",
        ))
        .iface("tun0", "", false)
        .iface("ifb0", "be:18:85:3c:8c:65", false);
        assert_eq!(
            fake.net().pseudo_token(None).ok().as_deref(),
            Some("pseudo.be18853c8c65")
        );
    }

    #[test]
    fn pseudo_token_of_a_named_interface() {
        let fake = FakeNet::new(None)
            .iface("eth0", "02:00:00:00:00:01", true)
            .iface("lo", "00:00:00:00:00:00", false);
        assert_eq!(
            fake.net().pseudo_token(Some("eth0")).ok().as_deref(),
            Some("pseudo.020000000001")
        );
        assert!(matches!(
            fake.net().pseudo_token(Some("eth9")),
            Err(CardError::NoInterface { .. })
        ));
        assert!(matches!(
            fake.net().pseudo_token(Some("../net")),
            Err(CardError::NoInterface { .. })
        ));
        assert!(matches!(
            fake.net().pseudo_token(Some("lo")),
            Err(CardError::NoMacAddress { .. })
        ));
    }

    #[test]
    fn no_interface_at_all() {
        let fake = FakeNet::new(None).iface("lo", "00:00:00:00:00:00", false);
        assert!(matches!(
            fake.net().pseudo_token(None),
            Err(CardError::NoNetworkInterface { .. })
        ));
    }

    #[test]
    fn this_machine_has_a_pseudo_token() {
        // Every machine that runs the tests has some network interface with a MAC.
        match pseudo_token(None) {
            Ok(token) => {
                let mac = token.strip_prefix("pseudo.").unwrap_or_default();
                assert_eq!(mac.len(), 12, "{token}");
                assert!(mac
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            }
            Err(error) => panic!("no pseudo-token on this machine: {error}"),
        }
    }
}
