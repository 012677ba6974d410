//! Typing text as key presses: which key, with which modifiers, produces a character in a given
//! keymap. The server interprets keycodes with the appliance's keymap, so a script that types
//! "z" on a German layout must press the key labelled Z there (evdev KEY_Y).

use std::collections::HashMap;

use xkbcommon::xkb;

use super::keys::{KEY_LEFTSHIFT, KEY_RIGHTALT};

/// xkbcommon numbers keys 8 above evdev (an X11 legacy).
const XKB_EVDEV_OFFSET: u32 = 8;

/// One key press that types a character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keystroke {
    /// evdev keycode.
    pub keycode: u32,
    pub shift: bool,
    /// AltGr (right Alt), the third and fourth level of European layouts.
    pub altgr: bool,
}

impl Keystroke {
    /// The modifier keys to hold, in press order (released in reverse).
    pub fn modifiers(&self) -> impl DoubleEndedIterator<Item = u32> {
        [
            self.shift.then_some(KEY_LEFTSHIFT),
            self.altgr.then_some(KEY_RIGHTALT),
        ]
        .into_iter()
        .flatten()
    }
}

/// Every character a keymap can type with at most Shift and AltGr, and the keystroke for it.
#[derive(Debug, Clone, Default)]
pub struct CharTable {
    chars: HashMap<char, Keystroke>,
}

impl CharTable {
    /// Asks xkbcommon what each key types with each modifier combination. Keys are tried in
    /// keycode order and, per key, with the fewest modifiers first, so the main block wins over
    /// the keypad and `<` on a US layout is Shift+comma, as a person would type it.
    pub fn new(keymap: &xkb::Keymap) -> Self {
        let combos = [(false, false), (true, false), (false, true), (true, true)];
        let states: Vec<(bool, bool, xkb::State)> = combos
            .into_iter()
            .map(|(shift, altgr)| {
                let mut state = xkb::State::new(keymap);
                let held = Keystroke {
                    keycode: 0,
                    shift,
                    altgr,
                };
                for modifier in held.modifiers() {
                    state.update_key(
                        xkb::Keycode::new(modifier + XKB_EVDEV_OFFSET),
                        xkb::KeyDirection::Down,
                    );
                }
                (shift, altgr, state)
            })
            .collect();

        let mut chars = HashMap::new();
        let first = keymap.min_keycode().raw().max(XKB_EVDEV_OFFSET);
        for xkb_code in first..=keymap.max_keycode().raw() {
            let keycode = xkb_code - XKB_EVDEV_OFFSET;
            if keycode == KEY_LEFTSHIFT || keycode == KEY_RIGHTALT {
                continue;
            }
            for (shift, altgr, state) in &states {
                let Some(c) = char::from_u32(state.key_get_utf32(xkb::Keycode::new(xkb_code)))
                else {
                    continue;
                };
                if c == '\0' {
                    continue;
                }
                chars.entry(c).or_insert(Keystroke {
                    keycode,
                    shift: *shift,
                    altgr: *altgr,
                });
            }
        }
        Self { chars }
    }

    pub fn keystroke(&self, c: char) -> Option<Keystroke> {
        self.chars.get(&c).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keymap::{Layout, Rmlvo};

    fn table(layout: &str) -> CharTable {
        Layout::compile(&Rmlvo::layout(layout, "")).unwrap().chars
    }

    fn plain(keycode: u32) -> Option<Keystroke> {
        Some(Keystroke {
            keycode,
            shift: false,
            altgr: false,
        })
    }

    #[test]
    fn german_swaps_y_and_z() {
        let (us, de) = (table("us"), table("de"));
        assert_eq!(us.keystroke('z'), plain(44));
        assert_eq!(us.keystroke('y'), plain(21));
        assert_eq!(de.keystroke('z'), plain(21));
        assert_eq!(de.keystroke('y'), plain(44));
    }

    #[test]
    fn shift_and_altgr_levels() {
        let (us, de) = (table("us"), table("de"));
        let stroke = |keycode, shift, altgr| {
            Some(Keystroke {
                keycode,
                shift,
                altgr,
            })
        };
        assert_eq!(us.keystroke('Z'), stroke(44, true, false));
        assert_eq!(us.keystroke('<'), stroke(51, true, false));
        assert_eq!(us.keystroke(' '), plain(57));
        assert_eq!(us.keystroke('1'), plain(2));
        assert_eq!(de.keystroke('@'), stroke(16, false, true));
        assert_eq!(de.keystroke('ß'), plain(12));
        assert_eq!(de.keystroke('<'), plain(86));
        assert_eq!(de.keystroke('>'), stroke(86, true, false));
        assert_eq!(us.keystroke('ß'), None);
        assert_eq!(
            stroke(16, true, true)
                .unwrap()
                .modifiers()
                .collect::<Vec<_>>(),
            [KEY_LEFTSHIFT, KEY_RIGHTALT]
        );
    }
}
