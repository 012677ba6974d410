//! Input events, appliance → server on the input stream ([`crate::StreamKind::Input`]).
//!
//! Keys travel as evdev keycodes plus the appliance's XKB keymap, so the server's seat (and every
//! client) interprets them with the user's layout; pointer and touch positions are in session
//! output pixels. [`InputMessage::validate`] is the one place that decides what is acceptable.

use serde::{Deserialize, Serialize};

/// Largest keymap text accepted; real keymaps are 40–120 KiB.
pub const MAX_KEYMAP_LEN: usize = 1024 * 1024;
/// Highest evdev code (KEY_MAX in linux/input-event-codes.h).
pub const MAX_EVDEV_CODE: u32 = 0x2ff;
/// Touch slots above this are nonsense (multitouch hardware reports ≤ 10, some 20).
pub const MAX_TOUCH_SLOT: u32 = 63;

/// Where scroll events come from; clients treat wheel clicks and finger scrolling differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AxisSource {
    Wheel,
    Finger,
    Continuous,
    WheelTilt,
}

/// One axis of a scroll event.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct AxisValue {
    /// Continuous motion in surface pixels (0 when none).
    pub value: f64,
    /// High-resolution wheel steps, 120 per detent (`None` for finger/continuous sources).
    pub v120: Option<i32>,
    /// The finger lifted: kinetic scrolling may start (finger source only).
    pub stop: bool,
}

/// How an XKB keymap is described: the compiled text (what `xkbcommon` writes with
/// `get_as_string`) so the server needs no XKB data files matching the appliance's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keymap {
    /// `XKB_KEYMAP_FORMAT_TEXT_V1` text.
    pub text: String,
    /// The RMLVO names it was compiled from, for logs ("de", "fr(oss)", …).
    pub layout: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum InputMessage {
    /// The keymap changed (it is also sent in Hello).
    Keymap(Keymap),
    Key {
        time_ms: u32,
        /// Linux evdev keycode (KEY_A = 30), not an XKB keycode.
        keycode: u32,
        pressed: bool,
    },
    /// The pointer is at this position of the session output (the appliance moves its cursor
    /// locally and tells the server where it is).
    PointerMotion {
        time_ms: u32,
        x: f64,
        y: f64,
    },
    /// Unaccelerated relative motion, for clients that lock or confine the pointer.
    PointerRelative {
        time_ms: u32,
        dx: f64,
        dy: f64,
        dx_unaccel: f64,
        dy_unaccel: f64,
    },
    PointerButton {
        time_ms: u32,
        /// evdev button code (BTN_LEFT = 0x110).
        button: u32,
        pressed: bool,
    },
    PointerAxis {
        time_ms: u32,
        source: AxisSource,
        horizontal: AxisValue,
        vertical: AxisValue,
    },
    TouchDown {
        time_ms: u32,
        slot: u32,
        x: f64,
        y: f64,
    },
    TouchMotion {
        time_ms: u32,
        slot: u32,
        x: f64,
        y: f64,
    },
    TouchUp {
        time_ms: u32,
        slot: u32,
    },
    /// End of a set of touch events that belong together.
    TouchFrame,
    /// The touch sequence was taken over (e.g. by a gesture): clients forget it.
    TouchCancel,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InputError {
    #[error("keycode {0} is outside the evdev range")]
    Keycode(u32),
    #[error("button code {0:#x} is outside the evdev range")]
    Button(u32),
    #[error("coordinate is not a finite number")]
    NotFinite,
    #[error("position ({x}, {y}) is outside the {width}x{height} output")]
    OutOfOutput {
        x: f64,
        y: f64,
        width: u32,
        height: u32,
    },
    #[error("touch slot {0} is out of range")]
    Slot(u32),
    #[error("keymap of {0} bytes is larger than allowed")]
    KeymapTooLarge(usize),
    #[error("scroll of {0} v120 units in one event is implausible")]
    Axis(i32),
}

impl InputMessage {
    /// Checks an event from the appliance against an output of `width`×`height` pixels. The
    /// server drops events that fail (with a log line) and the session goes on.
    pub fn validate(&self, width: u32, height: u32) -> Result<(), InputError> {
        let position = |x: f64, y: f64| {
            if !x.is_finite() || !y.is_finite() {
                return Err(InputError::NotFinite);
            }
            // One pixel of slack: an appliance's cursor may sit on the far edge.
            if x < 0.0 || y < 0.0 || x > width as f64 || y > height as f64 {
                return Err(InputError::OutOfOutput {
                    x,
                    y,
                    width,
                    height,
                });
            }
            Ok(())
        };
        let axis = |a: &AxisValue| {
            if !a.value.is_finite() {
                return Err(InputError::NotFinite);
            }
            match a.v120 {
                Some(v) if v.unsigned_abs() > 120 * 100 => Err(InputError::Axis(v)),
                _ => Ok(()),
            }
        };
        match self {
            InputMessage::Keymap(k) if k.text.len() > MAX_KEYMAP_LEN => {
                Err(InputError::KeymapTooLarge(k.text.len()))
            }
            InputMessage::Keymap(_) => Ok(()),
            InputMessage::Key { keycode, .. } if *keycode > MAX_EVDEV_CODE => {
                Err(InputError::Keycode(*keycode))
            }
            InputMessage::Key { .. } => Ok(()),
            InputMessage::PointerMotion { x, y, .. } => position(*x, *y),
            InputMessage::PointerRelative {
                dx,
                dy,
                dx_unaccel,
                dy_unaccel,
                ..
            } => {
                if [dx, dy, dx_unaccel, dy_unaccel]
                    .iter()
                    .all(|v| v.is_finite())
                {
                    Ok(())
                } else {
                    Err(InputError::NotFinite)
                }
            }
            InputMessage::PointerButton { button, .. } if *button > MAX_EVDEV_CODE => {
                Err(InputError::Button(*button))
            }
            InputMessage::PointerButton { .. } => Ok(()),
            InputMessage::PointerAxis {
                horizontal,
                vertical,
                ..
            } => axis(horizontal).and(axis(vertical)),
            InputMessage::TouchDown { slot, x, y, .. }
            | InputMessage::TouchMotion { slot, x, y, .. } => {
                if *slot > MAX_TOUCH_SLOT {
                    return Err(InputError::Slot(*slot));
                }
                position(*x, *y)
            }
            InputMessage::TouchUp { slot, .. } if *slot > MAX_TOUCH_SLOT => {
                Err(InputError::Slot(*slot))
            }
            InputMessage::TouchUp { .. } | InputMessage::TouchFrame | InputMessage::TouchCancel => {
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing;

    #[test]
    fn sane_events_pass() {
        let events = [
            InputMessage::Key {
                time_ms: 1,
                keycode: 30,
                pressed: true,
            },
            InputMessage::PointerMotion {
                time_ms: 1,
                x: 1280.0,
                y: 0.0,
            },
            InputMessage::PointerButton {
                time_ms: 1,
                button: 0x110,
                pressed: true,
            },
            InputMessage::PointerAxis {
                time_ms: 1,
                source: AxisSource::Wheel,
                horizontal: AxisValue::default(),
                vertical: AxisValue {
                    value: 15.0,
                    v120: Some(120),
                    stop: false,
                },
            },
            InputMessage::TouchDown {
                time_ms: 1,
                slot: 0,
                x: 10.0,
                y: 10.0,
            },
            InputMessage::TouchFrame,
        ];
        for e in events {
            assert_eq!(e.validate(1280, 800), Ok(()), "{e:?}");
        }
    }

    #[test]
    fn malformed_events_are_rejected() {
        let bad = [
            (
                InputMessage::Key {
                    time_ms: 1,
                    keycode: 0x300,
                    pressed: true,
                },
                "keycode",
            ),
            (
                InputMessage::PointerMotion {
                    time_ms: 1,
                    x: f64::NAN,
                    y: 0.0,
                },
                "finite",
            ),
            (
                InputMessage::PointerMotion {
                    time_ms: 1,
                    x: -1.0,
                    y: 0.0,
                },
                "outside",
            ),
            (
                InputMessage::PointerMotion {
                    time_ms: 1,
                    x: 0.0,
                    y: 801.0,
                },
                "outside",
            ),
            (
                InputMessage::PointerButton {
                    time_ms: 1,
                    button: 1 << 20,
                    pressed: true,
                },
                "button",
            ),
            (
                InputMessage::TouchDown {
                    time_ms: 1,
                    slot: 64,
                    x: 1.0,
                    y: 1.0,
                },
                "slot",
            ),
            (
                InputMessage::PointerAxis {
                    time_ms: 1,
                    source: AxisSource::Wheel,
                    horizontal: AxisValue {
                        value: f64::INFINITY,
                        v120: None,
                        stop: false,
                    },
                    vertical: AxisValue::default(),
                },
                "finite",
            ),
            (
                InputMessage::Keymap(Keymap {
                    text: "x".repeat(MAX_KEYMAP_LEN + 1),
                    layout: "us".into(),
                }),
                "keymap",
            ),
        ];
        for (e, why) in bad {
            let err = e.validate(1280, 800).expect_err(why).to_string();
            assert!(err.contains(why), "{err:?} should mention {why}");
        }
    }

    #[test]
    fn a_malformed_message_does_not_desync_the_stream() {
        let mut bytes = framing::encode(&InputMessage::TouchFrame).unwrap();
        bytes.extend_from_slice(&[2, 0, 0, 0, 200, 1]); // unknown variant
        bytes.extend(framing::encode(&InputMessage::TouchCancel).unwrap());
        let mut r = framing::FrameReader::new(1024);
        r.push(&bytes);
        assert_eq!(r.next::<InputMessage>(), Ok(Some(InputMessage::TouchFrame)));
        assert!(r.next::<InputMessage>().is_err());
        assert_eq!(
            r.next::<InputMessage>(),
            Ok(Some(InputMessage::TouchCancel))
        );
    }
}
