//! Which USB devices may leave an appliance for a session: the `[usb]` table of the server
//! config, resolved per user and per appliance network (most specific wins).

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;
use wayray_protocol::usb::{filter::Verdict, UsbDeviceOpen};

/// `[usb]`: USB forwarding (README.md, "USB forwarding"). Filters use the usbredir rule syntax
/// the appliance checks too (`class,vendor,product,version,allow` rules joined by `|`, first
/// match wins; see `wayray_protocol::usb::filter`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct UsbConfig {
    /// Forward devices at all. `false`: every appliance keeps its devices. Default `true`
    /// (where the kernel has `vhci-hcd` and the daemon keeps root, see README.md).
    pub enabled: bool,
    /// The filter for everyone no rule below matches. Default: the shared default filter,
    /// `0x03,-1,-1,-1,0|-1,-1,-1,-1,1`: everything but HID devices (keyboards and mice are the
    /// appliance's own input).
    pub filter: Option<String>,
    /// Filters by appliance network, e.g. `[[usb.network]]` with `network = "10.20.0.0/16"` and
    /// `filter = "0x08,-1,-1,-1,0|-1,-1,-1,-1,1"` (no mass storage from that network). The
    /// narrowest matching network wins.
    pub network: Vec<NetworkFilter>,
    /// Filters by the session's user, e.g. `[[usb.user]]` with `user = "alice"` and
    /// `filter = "-1,-1,-1,-1,0"`; a user rule wins over every network rule.
    pub user: Vec<UserFilter>,
    /// Without the session launcher every appliance shows one shared session: the account whose
    /// forwarded devices they are (node owner, and the name `[[usb.user]]` rules match).
    /// Default: the account wrsrvd was started as.
    pub shared_user: Option<String>,
}

impl Default for UsbConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            filter: None,
            network: Vec::new(),
            user: Vec::new(),
            shared_user: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NetworkFilter {
    /// CIDR network the appliance's address is in.
    pub network: IpNet,
    pub filter: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UserFilter {
    pub user: String,
    pub filter: String,
}

#[derive(Debug, thiserror::Error)]
#[error("[usb] {place}: invalid filter {filter:?}: {why}")]
pub struct PolicyError {
    pub place: String,
    pub filter: String,
    pub why: String,
}

/// A parsed filter, with its text as sent to appliances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub text: String,
    rules: wayray_protocol::usb::filter::UsbFilter,
}

impl Filter {
    pub fn parse(text: &str) -> Result<Filter, String> {
        let rules =
            wayray_protocol::usb::filter::UsbFilter::parse(text).map_err(|e| e.to_string())?;
        Ok(Filter {
            text: text.to_owned(),
            rules,
        })
    }

    /// The shared default (HID devices stay on the appliance).
    pub fn default_filter() -> Filter {
        Filter {
            text: wayray_protocol::usb::filter::DEFAULT.to_owned(),
            rules: wayray_protocol::usb::filter::UsbFilter::default_policy(),
        }
    }

    /// Whether `device` may be forwarded (the same check the appliance makes); the reason
    /// when not.
    pub fn check(&self, device: &UsbDeviceOpen) -> Result<(), String> {
        match self.rules.check(device) {
            Verdict::Allowed => Ok(()),
            Verdict::Denied { reason } => Err(reason),
        }
    }

    pub fn allows(&self, device: &UsbDeviceOpen) -> bool {
        self.check(device).is_ok()
    }
}

impl UsbConfig {
    /// Every filter parses (checked when the config is loaded).
    pub fn validate(&self) -> Result<(), PolicyError> {
        let check = |place: String, filter: &str| {
            Filter::parse(filter)
                .map(|_| ())
                .map_err(|why| PolicyError {
                    place,
                    filter: filter.to_owned(),
                    why,
                })
        };
        if let Some(f) = &self.filter {
            check("filter".into(), f)?;
        }
        for rule in &self.network {
            check(format!("network {}", rule.network), &rule.filter)?;
        }
        for rule in &self.user {
            check(format!("user {}", rule.user), &rule.filter)?;
        }
        Ok(())
    }

    /// The filter for `user`'s session on an appliance at `addr`: the user's rule, else the
    /// narrowest network containing `addr`, else the default. `None` when forwarding is off.
    pub fn resolve(&self, user: &str, addr: Option<IpAddr>) -> Option<Filter> {
        if !self.enabled {
            return None;
        }
        let addr = addr.map(|a| match a {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
            v4 => v4,
        });
        let text = self
            .user
            .iter()
            .find(|r| r.user == user)
            .map(|r| r.filter.as_str())
            .or_else(|| {
                let addr = addr?;
                self.network
                    .iter()
                    .filter(|r| r.network.contains(&addr))
                    .max_by_key(|r| r.network.prefix_len())
                    .map(|r| r.filter.as_str())
            })
            .or(self.filter.as_deref());
        match text {
            // Validated at load; a filter that no longer parses forwards nothing.
            Some(text) => Filter::parse(text).ok(),
            None => Some(Filter::default_filter()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> UsbConfig {
        toml::from_str(
            r#"
            filter = "-1,-1,-1,-1,1"
            [[network]]
            network = "10.0.0.0/8"
            filter = "0x08,-1,-1,-1,1|-1,-1,-1,-1,0"
            [[network]]
            network = "10.20.0.0/16"
            filter = "0x08,-1,-1,-1,0|-1,-1,-1,-1,1"
            [[user]]
            user = "alice"
            filter = "-1,-1,-1,-1,0"
            "#,
        )
        .unwrap()
    }

    #[test]
    fn the_most_specific_rule_wins() {
        let c = config();
        c.validate().unwrap();
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(
            c.resolve("bob", ip("192.168.1.2")).unwrap().text,
            "-1,-1,-1,-1,1"
        );
        assert_eq!(
            c.resolve("bob", ip("10.1.2.3")).unwrap().text,
            "0x08,-1,-1,-1,1|-1,-1,-1,-1,0"
        );
        assert_eq!(
            c.resolve("bob", ip("10.20.2.3")).unwrap().text,
            "0x08,-1,-1,-1,0|-1,-1,-1,-1,1"
        );
        assert_eq!(
            c.resolve("bob", ip("::ffff:10.20.2.3")).unwrap().text,
            "0x08,-1,-1,-1,0|-1,-1,-1,-1,1"
        );
        assert_eq!(
            c.resolve("alice", ip("10.20.2.3")).unwrap().text,
            "-1,-1,-1,-1,0"
        );
        assert_eq!(c.resolve("bob", None).unwrap().text, "-1,-1,-1,-1,1");
    }

    #[test]
    fn defaults_and_off() {
        let c = UsbConfig::default();
        assert_eq!(c.resolve("bob", None), Some(Filter::default_filter()));
        let off = UsbConfig {
            enabled: false,
            ..config()
        };
        assert_eq!(off.resolve("alice", None), None);
    }

    #[test]
    fn a_bad_filter_is_refused_at_load_naming_its_place() {
        let c: UsbConfig = toml::from_str(
            r#"
            [[user]]
            user = "carol"
            filter = "this is no filter"
            "#,
        )
        .unwrap();
        let err = c.validate().unwrap_err();
        assert!(err.to_string().contains("user carol"), "{err}");
    }
}
