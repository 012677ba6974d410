//! Which USB devices may leave the appliance: usbredir's filter rules, parsed and checked
//! without I/O so the server can validate its config and the appliance can decide per device.
//!
//! # Syntax
//!
//! Rules `class,vendor,product,version,allow` joined by `|`, e.g.
//! `0x03,-1,-1,-1,0|-1,-1,-1,-1,1`. Each number is decimal or `0x` hex; `-1` means "any".
//! `class` is a USB class code (0–255), `vendor`/`product` the ids, `version` the device's
//! `bcdDevice` (0–0xffff); `allow` is `1` (allow) or `0` (deny). Spaces around numbers are
//! ignored, and so are empty rules (`a||b`, a trailing `|`), as usbredir does.
//!
//! # Semantics (usbredir's `usbredirfilter_check`, flags 0)
//!
//! Followed from usbredir's `usbredirparser/usbredirfilter.c`:
//! 1. Unless the device class is 0x00 (per interface) or 0xef (miscellaneous/IAD), the device
//!    class is checked first: the first rule whose four fields match decides; deny stops here.
//!    No matching rule denies too (usbredir without `usbredirfilter_fl_default_allow`).
//! 2. Then every interface of the active configuration, by its class, the same way; one denied
//!    interface denies the device.
//! 3. Non-boot HID interfaces (class 3, subclass 0, protocol 0) are skipped when the device has
//!    more than one interface (a headset's volume buttons do not make it a keyboard); if every
//!    interface was skipped, they are all checked after all.
//!
//! Deviations, both stricter: usbredir reads numbers with `strtol(…, 0)`, so `010` is octal 8;
//! here a number with a leading zero is an error rather than a silent surprise, and `allow` must
//! be 0 or 1 (usbredir takes any non-zero). usbredir allows a device whose class is 0x00/0xef
//! when it has no interfaces (nothing was checked); here such a device is denied.
//!
//! Rules see only class codes, not subclass or protocol (usbredir's rule format has no field
//! for them); the HID skip of step 3 is what tells keyboards and mice (boot protocol, subclass 1)
//! from other HID interfaces.

use std::fmt;

/// The filter the server uses when its config names none: HID devices stay on the appliance
/// (keyboards and mice — boot-protocol HID interfaces — are the appliance's own input, and a
/// device with a single HID interface is treated alike), everything else may be forwarded.
/// Composite devices whose only HID interfaces are non-boot (headset buttons) are allowed,
/// by step 3 of the semantics above.
pub const DEFAULT: &str = "0x03,-1,-1,-1,0|-1,-1,-1,-1,1";

/// Most rules a filter may hold; more is a config mistake, not a policy.
pub const MAX_RULES: usize = 1024;

/// One rule; `None` is usbredir's `-1` ("any").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UsbFilterRule {
    pub class: Option<u8>,
    pub vendor: Option<u16>,
    pub product: Option<u16>,
    /// `bcdDevice`.
    pub version: Option<u16>,
    pub allow: bool,
}

/// A parsed filter: rules in order, first match wins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct UsbFilter {
    rules: Vec<UsbFilterRule>,
}

/// What a filter says about one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Not forwarded; the text names the class and the rule that decided, for logs and audit.
    Denied {
        reason: String,
    },
}

impl Verdict {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Verdict::Allowed)
    }
}

/// Why a filter string was refused; names the rule (1-based, as people count) and its text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("USB filter rule {index} \"{rule}\": {problem}")]
    BadRule {
        index: usize,
        rule: String,
        problem: String,
    },
    #[error("USB filter has more than {MAX_RULES} rules")]
    TooManyRules,
}

const FIELDS: [&str; 5] = ["class", "vendor", "product", "version", "allow"];

impl UsbFilter {
    /// Parses usbredir rule syntax (see the module doc).
    pub fn parse(text: &str) -> Result<UsbFilter, FilterError> {
        let mut rules = Vec::new();
        for (i, rule) in text.split('|').enumerate() {
            if rule.trim().is_empty() {
                continue;
            }
            if rules.len() == MAX_RULES {
                return Err(FilterError::TooManyRules);
            }
            let bad = |problem: String| FilterError::BadRule {
                index: i + 1,
                rule: rule.chars().take(80).collect(),
                problem,
            };
            let tokens: Vec<&str> = rule.split(',').map(str::trim).collect();
            if tokens.len() != FIELDS.len() {
                return Err(bad(format!(
                    "has {} fields, a rule has 5: class,vendor,product,version,allow",
                    tokens.len()
                )));
            }
            let mut values = [None; 5];
            for (slot, (token, field)) in values.iter_mut().zip(tokens.iter().zip(FIELDS)) {
                let max = match field {
                    "class" => 0xff,
                    "allow" => 1,
                    _ => 0xffff,
                };
                *slot = parse_number(token, field != "allow", max)
                    .map_err(|e| bad(format!("{field} \"{token}\": {e}")))?;
            }
            rules.push(UsbFilterRule {
                class: values[0].map(|v| v as u8),
                vendor: values[1].map(|v| v as u16),
                product: values[2].map(|v| v as u16),
                version: values[3].map(|v| v as u16),
                allow: values[4] == Some(1),
            });
        }
        Ok(UsbFilter { rules })
    }

    /// A filter from rules already built (tests, the server's config).
    pub fn from_rules(rules: Vec<UsbFilterRule>) -> UsbFilter {
        UsbFilter { rules }
    }

    /// The filter of [`DEFAULT`].
    pub fn default_policy() -> UsbFilter {
        UsbFilter::from_rules(vec![
            UsbFilterRule {
                class: Some(3),
                vendor: None,
                product: None,
                version: None,
                allow: false,
            },
            UsbFilterRule {
                class: None,
                vendor: None,
                product: None,
                version: None,
                allow: true,
            },
        ])
    }

    pub fn rules(&self) -> &[UsbFilterRule] {
        &self.rules
    }

    /// Decides about one device, with usbredir's semantics (module doc).
    pub fn check(&self, device: &super::UsbDeviceOpen) -> Verdict {
        let ids = (device.vendor, device.product, device.version);
        if device.class != 0x00 && device.class != 0xef {
            if let Some(denied) = self.decide(device.class, ids, "device class") {
                return denied;
            }
        }
        let many = device.interfaces.len() > 1;
        let skipped = |i: &super::UsbInterfaceClass| {
            many && i.class == 3 && i.subclass == 0 && i.protocol == 0
        };
        let all_skipped = device.interfaces.iter().all(skipped);
        let mut checked = 0;
        for (n, interface) in device.interfaces.iter().enumerate() {
            if !all_skipped && skipped(interface) {
                continue;
            }
            checked += 1;
            let what = format!("interface {n} class");
            if let Some(denied) = self.decide(interface.class, ids, &what) {
                return denied;
            }
        }
        if checked == 0 && (device.class == 0x00 || device.class == 0xef) {
            return Verdict::Denied {
                reason: format!(
                    "device class {:#04x} defers to its interfaces and it has none",
                    device.class
                ),
            };
        }
        Verdict::Allowed
    }

    /// `None` when the class is allowed, else the denial.
    fn decide(
        &self,
        class: u8,
        (vendor, product, version): (u16, u16, u16),
        what: &str,
    ) -> Option<Verdict> {
        let matching = self.rules.iter().enumerate().find(|(_, r)| {
            r.class.is_none_or(|c| c == class)
                && r.vendor.is_none_or(|v| v == vendor)
                && r.product.is_none_or(|p| p == product)
                && r.version.is_none_or(|v| v == version)
        });
        match matching {
            Some((_, rule)) if rule.allow => None,
            Some((i, rule)) => Some(Verdict::Denied {
                reason: format!("{what} {class:#04x} denied by rule {} ({rule})", i + 1),
            }),
            None => Some(Verdict::Denied {
                reason: format!("{what} {class:#04x} matches no rule"),
            }),
        }
    }
}

/// `-1` → `None` (when `any` is allowed); decimal or `0x` hex up to `max`.
fn parse_number(token: &str, any: bool, max: u32) -> Result<Option<u32>, String> {
    if token == "-1" && any {
        return Ok(None);
    }
    let (digits, radix) = match token
        .strip_prefix("0x")
        .or_else(|| token.strip_prefix("0X"))
    {
        Some(hex) => (hex, 16),
        None => (token, 10),
    };
    if digits.is_empty() {
        return Err("is not a number".into());
    }
    if !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(if any {
            "is not -1, a decimal or a 0x hex number".into()
        } else {
            "is not 0 or 1".into()
        });
    }
    if radix == 10 && digits.len() > 1 && digits.starts_with('0') {
        return Err("has a leading zero (octal in usbredir): write it in decimal or 0x hex".into());
    }
    match u32::from_str_radix(digits, radix) {
        Ok(v) if v <= max => Ok(Some(v)),
        _ => Err(format!("is larger than {max:#x}")),
    }
}

impl fmt::Display for UsbFilterRule {
    /// usbredir's own spelling (`usbredirfilter_rules_to_string`): hex, `-1` for any.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.class {
            Some(c) => write!(f, "{c:#04x},")?,
            None => write!(f, "-1,")?,
        }
        for v in [self.vendor, self.product, self.version] {
            match v {
                Some(v) => write!(f, "{v:#06x},")?,
                None => write!(f, "-1,")?,
            }
        }
        write!(f, "{}", u8::from(self.allow))
    }
}

impl fmt::Display for UsbFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, rule) in self.rules.iter().enumerate() {
            if i > 0 {
                f.write_str("|")?;
            }
            write!(f, "{rule}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for UsbFilter {
    type Err = FilterError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UsbFilter::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{UsbDeviceOpen, UsbInterfaceClass};
    use super::*;
    use proptest::prelude::*;

    fn device(class: u8, vendor: u16, product: u16, interfaces: &[(u8, u8, u8)]) -> UsbDeviceOpen {
        UsbDeviceOpen {
            busid: "1-1".into(),
            devid: 1 << 16 | 2,
            speed: 3,
            vendor,
            product,
            version: 0x0100,
            class,
            subclass: 0,
            protocol: 0,
            interfaces: interfaces
                .iter()
                .map(|&(class, subclass, protocol)| UsbInterfaceClass {
                    class,
                    subclass,
                    protocol,
                })
                .collect(),
            manufacturer: None,
            product_name: None,
            serial: None,
        }
    }

    fn stick() -> UsbDeviceOpen {
        // QEMU's usb-storage: class per interface, one mass-storage BOT interface.
        device(0, 0x46f4, 0x0001, &[(8, 6, 0x50)])
    }
    fn keyboard() -> UsbDeviceOpen {
        device(0, 0x0627, 0x0001, &[(3, 1, 1)])
    }
    fn mouse() -> UsbDeviceOpen {
        device(0, 0x0627, 0x0001, &[(3, 1, 2)])
    }
    fn headset() -> UsbDeviceOpen {
        // Audio control + streaming + a non-boot HID for the volume buttons.
        device(
            0,
            0x1234,
            0x5678,
            &[(1, 1, 0), (1, 2, 0), (1, 2, 0), (3, 0, 0)],
        )
    }

    #[test]
    fn default_denies_keyboards_and_mice_and_allows_the_rest() {
        let f = UsbFilter::parse(DEFAULT).unwrap();
        assert_eq!(f, UsbFilter::default_policy());
        assert!(f.check(&stick()).is_allowed());
        assert!(f.check(&headset()).is_allowed());
        let Verdict::Denied { reason } = f.check(&keyboard()) else {
            panic!("keyboard allowed")
        };
        assert_eq!(
            reason,
            "interface 0 class 0x03 denied by rule 1 (0x03,-1,-1,-1,0)"
        );
        assert!(!f.check(&mouse()).is_allowed());
        // A keyboard+mouse combo with a vendor HID interface: the boot ones deny it.
        let combo = device(0, 1, 2, &[(3, 1, 1), (3, 1, 2), (3, 0, 0)]);
        assert!(!f.check(&combo).is_allowed());
        // A lone non-boot HID interface is checked after all (step 3): denied.
        assert!(!f.check(&device(0, 1, 2, &[(3, 0, 0)])).is_allowed());
        assert!(!f
            .check(&device(0, 1, 2, &[(3, 0, 0), (3, 0, 0)]))
            .is_allowed());
    }

    #[test]
    fn first_match_wins_and_ids_narrow_a_rule() {
        let f = UsbFilter::parse("0x08,0x46f4,-1,-1,0|0x08,-1,-1,-1,1").unwrap();
        assert!(!f.check(&stick()).is_allowed());
        assert!(f.check(&device(0, 0x1111, 1, &[(8, 6, 0x50)])).is_allowed());
        let f =
            UsbFilter::parse("0x03,0x0627,0x0001,0x0100,1|0x03,-1,-1,-1,0|-1,-1,-1,-1,1").unwrap();
        assert!(f.check(&keyboard()).is_allowed());
        assert!(!f.check(&device(0, 0x0628, 1, &[(3, 1, 1)])).is_allowed());
    }

    #[test]
    fn device_class_is_checked_before_interfaces() {
        // A hub (class 9) denied by its device class even though no interface rule denies it.
        let hub = device(9, 1, 1, &[(9, 0, 0)]);
        let f = UsbFilter::parse("9,-1,-1,-1,0|-1,-1,-1,-1,1").unwrap();
        let Verdict::Denied { reason } = f.check(&hub) else {
            panic!()
        };
        assert!(reason.starts_with("device class 0x09"), "{reason}");
        // 0xef (IAD) defers to the interfaces.
        let f = UsbFilter::parse("0xef,-1,-1,-1,0|-1,-1,-1,-1,1").unwrap();
        assert!(f.check(&device(0xef, 1, 1, &[(0x0e, 1, 0)])).is_allowed());
    }

    #[test]
    fn nothing_matching_denies() {
        let f = UsbFilter::parse("0x08,-1,-1,-1,1").unwrap();
        let Verdict::Denied { reason } = f.check(&keyboard()) else {
            panic!()
        };
        assert_eq!(reason, "interface 0 class 0x03 matches no rule");
        assert!(!UsbFilter::parse("").unwrap().check(&stick()).is_allowed());
        // No interfaces and a deferring class: denied, not waved through.
        assert!(!UsbFilter::parse(DEFAULT)
            .unwrap()
            .check(&device(0, 1, 1, &[]))
            .is_allowed());
    }

    #[test]
    fn numbers_and_spacing() {
        let f = UsbFilter::parse(" 8 , 0X46F4 ,1, 0x0100 , 1 ||").unwrap();
        assert_eq!(
            f.rules(),
            &[UsbFilterRule {
                class: Some(8),
                vendor: Some(0x46f4),
                product: Some(1),
                version: Some(0x100),
                allow: true
            }]
        );
        assert_eq!(f.to_string(), "0x08,0x46f4,0x0001,0x0100,1");
    }

    #[test]
    fn errors_name_the_rule() {
        let cases = [
            ("-1,-1,-1,-1,1|8,-1,-1,1", "USB filter rule 2 \"8,-1,-1,1\": has 4 fields, a rule has 5: class,vendor,product,version,allow"),
            ("256,-1,-1,-1,1", "USB filter rule 1 \"256,-1,-1,-1,1\": class \"256\": is larger than 0xff"),
            ("8,0x10000,-1,-1,1", "USB filter rule 1 \"8,0x10000,-1,-1,1\": vendor \"0x10000\": is larger than 0xffff"),
            ("8,-1,-1,-1,2", "USB filter rule 1 \"8,-1,-1,-1,2\": allow \"2\": is larger than 0x1"),
            ("8,-1,-1,-1,-1", "USB filter rule 1 \"8,-1,-1,-1,-1\": allow \"-1\": is not 0 or 1"),
            ("010,-1,-1,-1,1", "USB filter rule 1 \"010,-1,-1,-1,1\": class \"010\": has a leading zero (octal in usbredir): write it in decimal or 0x hex"),
            ("8,-2,-1,-1,1", "USB filter rule 1 \"8,-2,-1,-1,1\": vendor \"-2\": is not -1, a decimal or a 0x hex number"),
            ("8,0x,-1,-1,1", "USB filter rule 1 \"8,0x,-1,-1,1\": vendor \"0x\": is not a number"),
            ("8,,-1,-1,1", "USB filter rule 1 \"8,,-1,-1,1\": vendor \"\": is not a number"),
        ];
        for (text, message) in cases {
            assert_eq!(
                UsbFilter::parse(text).unwrap_err().to_string(),
                message,
                "{text}"
            );
        }
        let many = vec!["-1,-1,-1,-1,1"; MAX_RULES + 1].join("|");
        assert_eq!(UsbFilter::parse(&many), Err(FilterError::TooManyRules));
    }

    fn any_rule() -> impl Strategy<Value = UsbFilterRule> {
        (
            proptest::option::of(any::<u8>()),
            proptest::option::of(any::<u16>()),
            proptest::option::of(any::<u16>()),
            proptest::option::of(any::<u16>()),
            any::<bool>(),
        )
            .prop_map(|(class, vendor, product, version, allow)| UsbFilterRule {
                class,
                vendor,
                product,
                version,
                allow,
            })
    }

    proptest! {
        #[test]
        fn display_parses_back(rules in proptest::collection::vec(any_rule(), 0..20)) {
            let f = UsbFilter::from_rules(rules);
            prop_assert_eq!(UsbFilter::parse(&f.to_string()).unwrap(), f);
        }

        #[test]
        fn no_string_panics_the_parser(text in "\\PC{0,200}") {
            let _ = UsbFilter::parse(&text);
        }

        #[test]
        fn near_valid_strings_do_not_panic(text in "[-0-9xXa-fA-F ,|]{0,120}") {
            if let Ok(f) = UsbFilter::parse(&text) {
                prop_assert_eq!(UsbFilter::parse(&f.to_string()).unwrap(), f);
            }
        }

        #[test]
        fn check_never_panics(rules in proptest::collection::vec(any_rule(), 0..8),
                              class in any::<u8>(),
                              interfaces in proptest::collection::vec((any::<u8>(), any::<u8>(), any::<u8>()), 0..5)) {
            let f = UsbFilter::from_rules(rules);
            let _ = f.check(&device(class, 1, 2, &interfaces));
        }
    }
}
