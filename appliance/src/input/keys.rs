//! Names of evdev keys and buttons (linux/input-event-codes.h without the `KEY_`/`BTN_` prefix,
//! lower case), so scripts can say `key enter` or `click left`.

pub const KEY_LEFTCTRL: u32 = 29;
pub const KEY_LEFTSHIFT: u32 = 42;
pub const KEY_LEFTALT: u32 = 56;
/// AltGr on layouts that have one.
pub const KEY_RIGHTALT: u32 = 100;
pub const KEY_LEFTMETA: u32 = 125;

pub const BTN_LEFT: u32 = 0x110;
pub const BTN_RIGHT: u32 = 0x111;
pub const BTN_MIDDLE: u32 = 0x112;
pub const BTN_SIDE: u32 = 0x113;
pub const BTN_EXTRA: u32 = 0x114;

/// Common keys. Not every evdev key, just what a keyboard has and a script may want.
const KEYS: &[(&str, u32)] = &[
    ("esc", 1),
    ("escape", 1),
    ("1", 2),
    ("2", 3),
    ("3", 4),
    ("4", 5),
    ("5", 6),
    ("6", 7),
    ("7", 8),
    ("8", 9),
    ("9", 10),
    ("0", 11),
    ("minus", 12),
    ("equal", 13),
    ("backspace", 14),
    ("tab", 15),
    ("q", 16),
    ("w", 17),
    ("e", 18),
    ("r", 19),
    ("t", 20),
    ("y", 21),
    ("u", 22),
    ("i", 23),
    ("o", 24),
    ("p", 25),
    ("leftbrace", 26),
    ("rightbrace", 27),
    ("enter", 28),
    ("return", 28),
    ("leftctrl", KEY_LEFTCTRL),
    ("a", 30),
    ("s", 31),
    ("d", 32),
    ("f", 33),
    ("g", 34),
    ("h", 35),
    ("j", 36),
    ("k", 37),
    ("l", 38),
    ("semicolon", 39),
    ("apostrophe", 40),
    ("grave", 41),
    ("leftshift", KEY_LEFTSHIFT),
    ("backslash", 43),
    ("z", 44),
    ("x", 45),
    ("c", 46),
    ("v", 47),
    ("b", 48),
    ("n", 49),
    ("m", 50),
    ("comma", 51),
    ("dot", 52),
    ("slash", 53),
    ("rightshift", 54),
    ("kpasterisk", 55),
    ("leftalt", KEY_LEFTALT),
    ("space", 57),
    ("capslock", 58),
    ("f1", 59),
    ("f2", 60),
    ("f3", 61),
    ("f4", 62),
    ("f5", 63),
    ("f6", 64),
    ("f7", 65),
    ("f8", 66),
    ("f9", 67),
    ("f10", 68),
    ("numlock", 69),
    ("scrolllock", 70),
    ("kp7", 71),
    ("kp8", 72),
    ("kp9", 73),
    ("kpminus", 74),
    ("kp4", 75),
    ("kp5", 76),
    ("kp6", 77),
    ("kpplus", 78),
    ("kp1", 79),
    ("kp2", 80),
    ("kp3", 81),
    ("kp0", 82),
    ("kpdot", 83),
    ("102nd", 86),
    ("f11", 87),
    ("f12", 88),
    ("kpenter", 96),
    ("rightctrl", 97),
    ("kpslash", 98),
    ("sysrq", 99),
    ("print", 99),
    ("rightalt", KEY_RIGHTALT),
    ("altgr", KEY_RIGHTALT),
    ("home", 102),
    ("up", 103),
    ("pageup", 104),
    ("left", 105),
    ("right", 106),
    ("end", 107),
    ("down", 108),
    ("pagedown", 109),
    ("insert", 110),
    ("delete", 111),
    ("mute", 113),
    ("volumedown", 114),
    ("volumeup", 115),
    ("power", 116),
    ("pause", 119),
    ("leftmeta", KEY_LEFTMETA),
    ("rightmeta", 126),
    ("compose", 127),
    ("menu", 139),
];

/// The evdev code of key `name` (case-insensitive, `KEY_` prefix optional).
pub fn key_code(name: &str) -> Option<u32> {
    let name = name.to_ascii_lowercase();
    let name = name.strip_prefix("key_").unwrap_or(&name);
    KEYS.iter().find(|(n, _)| *n == name).map(|&(_, code)| code)
}

/// A modifier as people write it in a shortcut (`alt`, `ctrl`, `super`…), else any key name.
pub fn modifier_code(name: &str) -> Option<u32> {
    match name.to_ascii_lowercase().as_str() {
        "alt" => Some(KEY_LEFTALT),
        "ctrl" | "control" => Some(KEY_LEFTCTRL),
        "shift" => Some(KEY_LEFTSHIFT),
        "super" | "meta" | "logo" | "win" => Some(KEY_LEFTMETA),
        _ => key_code(name),
    }
}

/// The evdev code of mouse button `name` (left, right, middle, side, extra).
pub fn button_code(name: &str) -> Option<u32> {
    match name.to_ascii_lowercase().as_str() {
        "left" => Some(BTN_LEFT),
        "right" => Some(BTN_RIGHT),
        "middle" => Some(BTN_MIDDLE),
        "side" => Some(BTN_SIDE),
        "extra" => Some(BTN_EXTRA),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_input_event_codes() {
        assert_eq!(key_code("Enter"), Some(28));
        assert_eq!(key_code("KEY_Z"), Some(44));
        assert_eq!(key_code("f12"), Some(88));
        assert_eq!(key_code("0"), Some(11));
        assert_eq!(key_code("nosuchkey"), None);
        assert_eq!(modifier_code("Super"), Some(KEY_LEFTMETA));
        assert_eq!(modifier_code("rightalt"), Some(KEY_RIGHTALT));
        assert_eq!(button_code("MIDDLE"), Some(0x112));
        assert_eq!(button_code("wheel"), None);
    }

    #[test]
    fn every_code_is_an_evdev_key() {
        for &(name, code) in KEYS {
            assert!(
                (1..=wayray_protocol::input::MAX_EVDEV_CODE).contains(&code),
                "{name}"
            );
        }
    }
}
