//! Whether one device leaves the appliance: the server's filter decides, within limits the
//! appliance keeps whatever the server says (hubs, what the appliance's own input reads, and
//! smart-card readers).

use wayray_protocol::usb::{UsbFilter, Verdict};

use super::watch::Present;

/// What to do with one device under the current policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Forward,
    /// Stays local; the text says why, for the log.
    Keep(String),
}

/// `policy` is the server's parsed filter (`None`: the server takes nothing now).
pub fn decide(policy: Option<&UsbFilter>, device: &Present) -> Decision {
    let Some(filter) = policy else {
        return Decision::Keep("the server takes no USB devices now".into());
    };
    if device.info.class == 0x09 {
        return Decision::Keep("hubs stay on the appliance".into());
    }
    if let Verdict::Denied { reason } = filter.check(&device.info) {
        return Decision::Keep(format!("the server's filter denies it: {reason}"));
    }
    // Whatever the filter says: the appliance's keyboard and mouse are its own.
    let boot_hid = device
        .info
        .interfaces
        .iter()
        .any(|i| i.class == 3 && i.subclass == 1 && matches!(i.protocol, 1 | 2));
    if boot_hid || device.has_input {
        return Decision::Keep("the appliance's own input reads it".into());
    }
    // A CCID reader is where the appliance reads its token; the session gets the card in it
    // through its own PC/SC socket instead (forwarding the reader would take it from both).
    if device.info.class == 0x0b || device.info.interfaces.iter().any(|i| i.class == 0x0b) {
        return Decision::Keep(
            "smart-card readers stay: the session reaches the card through PC/SC".into(),
        );
    }
    Decision::Forward
}

/// Parses the server's `UsbPolicy` text; a filter this appliance cannot read takes nothing
/// (and says so), rather than guessing.
pub fn parse_policy(filter: Option<&str>) -> Option<UsbFilter> {
    let text = filter?;
    match UsbFilter::parse(text) {
        Ok(filter) => Some(filter),
        Err(e) => {
            tracing::warn!(error = %e, "the server's USB filter is invalid; keeping every device local");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use wayray_protocol::usb::filter::DEFAULT;
    use wayray_protocol::usb::{UsbDeviceOpen, UsbInterfaceClass};

    use super::*;

    fn present(class: u8, interfaces: &[(u8, u8, u8)], has_input: bool) -> Present {
        Present {
            info: UsbDeviceOpen {
                busid: "1-1".into(),
                devid: 1 << 16 | 2,
                speed: 3,
                vendor: 0x46f4,
                product: 1,
                version: 0,
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
            },
            busnum: 1,
            devnum: 2,
            has_input,
        }
    }

    #[test]
    fn the_filter_decides_within_the_appliances_limits() {
        let stick = present(0, &[(8, 6, 0x50)], false);
        let default = UsbFilter::parse(DEFAULT).unwrap();
        assert_eq!(decide(Some(&default), &stick), Decision::Forward);
        assert!(matches!(decide(None, &stick), Decision::Keep(_)));
        let refuse = UsbFilter::parse("8,-1,-1,-1,0|-1,-1,-1,-1,1").unwrap();
        let Decision::Keep(why) = decide(Some(&refuse), &stick) else {
            panic!()
        };
        assert!(why.contains("denied by rule 1"), "{why}");
        // Allowed by an (unwise) filter, still kept: a keyboard, a hub, an evdev device, a
        // smart-card reader.
        let all = UsbFilter::parse("-1,-1,-1,-1,1").unwrap();
        for device in [
            present(0, &[(3, 1, 1)], false),
            present(0, &[(3, 1, 2)], false),
            present(9, &[(9, 0, 0)], false),
            present(0, &[(3, 0, 0)], true),
            present(0, &[(0x0b, 0, 0)], false),
        ] {
            assert!(
                matches!(decide(Some(&all), &device), Decision::Keep(_)),
                "{device:?}"
            );
        }
    }

    #[test]
    fn an_invalid_policy_takes_nothing() {
        assert_eq!(parse_policy(Some("8,-1")), None);
        assert_eq!(parse_policy(None), None);
        assert!(parse_policy(Some(DEFAULT)).is_some());
    }
}
