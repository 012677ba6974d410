//! The built-in floating WM: new windows centered (or where they overlap least), click to focus
//! and raise, Alt+F4 closes, Alt+Tab cycles, Super+Left/Right/Up snap, Super+drag moves,
//! Super+right-drag resizes.

use smithay::input::keyboard::Keysym;

use super::{Area, Mods, Snap, WindowPolicy, WmAction};
use crate::compositor::placement::place_new_window;

/// evdev button codes.
const BTN_LEFT: u32 = 0x110;
const BTN_RIGHT: u32 = 0x111;

#[derive(Debug, Default)]
pub struct FloatingWm;

impl WindowPolicy for FloatingWm {
    fn key_binding(&self, mods: Mods, keysym: Keysym) -> Option<WmAction> {
        match (mods.alt, mods.logo, keysym) {
            (true, false, Keysym::F4) => Some(WmAction::CloseFocused),
            (true, false, Keysym::Tab | Keysym::ISO_Left_Tab) => Some(WmAction::FocusNext),
            (false, true, Keysym::Left) => Some(WmAction::Snap(Snap::LeftHalf)),
            (false, true, Keysym::Right) => Some(WmAction::Snap(Snap::RightHalf)),
            (false, true, Keysym::Up) => Some(WmAction::Snap(Snap::Maximize)),
            _ => None,
        }
    }

    fn pointer_binding(&self, mods: Mods, button: u32) -> Option<WmAction> {
        match (mods.logo, button) {
            (true, BTN_LEFT) => Some(WmAction::BeginMove),
            (true, BTN_RIGHT) => Some(WmAction::BeginResize),
            _ => None,
        }
    }

    fn place(&self, usable: Area, size: (i32, i32), existing: &[Area]) -> (i32, i32) {
        let relative: Vec<Area> = existing
            .iter()
            .map(|a| Area {
                x: a.x - usable.x,
                y: a.y - usable.y,
                ..*a
            })
            .collect();
        let (x, y) = place_new_window((usable.w, usable.h), size, &relative);
        (x + usable.x, y + usable.y)
    }

    fn snap_area(&self, snap: Snap, usable: Area, title_height: i32) -> Area {
        let half = usable.w / 2;
        let (x, w) = match snap {
            Snap::LeftHalf => (usable.x, half),
            Snap::RightHalf => (usable.x + half, usable.w - half),
            Snap::Maximize => (usable.x, usable.w),
        };
        Area {
            x,
            y: usable.y + title_height,
            w,
            h: (usable.h - title_height).max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALT: Mods = Mods {
        alt: true,
        ctrl: false,
        shift: false,
        logo: false,
    };
    const SUPER: Mods = Mods {
        alt: false,
        ctrl: false,
        shift: false,
        logo: true,
    };

    #[test]
    fn key_bindings() {
        let wm = FloatingWm;
        assert_eq!(
            wm.key_binding(ALT, Keysym::F4),
            Some(WmAction::CloseFocused)
        );
        assert_eq!(wm.key_binding(ALT, Keysym::Tab), Some(WmAction::FocusNext));
        assert_eq!(
            wm.key_binding(SUPER, Keysym::Left),
            Some(WmAction::Snap(Snap::LeftHalf))
        );
        assert_eq!(
            wm.key_binding(SUPER, Keysym::Up),
            Some(WmAction::Snap(Snap::Maximize))
        );
        // Plain keys and unbound combinations belong to the client.
        assert_eq!(wm.key_binding(Mods::default(), Keysym::F4), None);
        assert_eq!(wm.key_binding(Mods::default(), Keysym::Tab), None);
        assert_eq!(wm.key_binding(ALT, Keysym::a), None);
    }

    #[test]
    fn pointer_bindings_need_super() {
        let wm = FloatingWm;
        assert_eq!(
            wm.pointer_binding(SUPER, BTN_LEFT),
            Some(WmAction::BeginMove)
        );
        assert_eq!(
            wm.pointer_binding(SUPER, BTN_RIGHT),
            Some(WmAction::BeginResize)
        );
        assert_eq!(wm.pointer_binding(Mods::default(), BTN_LEFT), None);
    }

    #[test]
    fn snapping_splits_the_output() {
        let wm = FloatingWm;
        let out = Area {
            x: 0,
            y: 0,
            w: 1280,
            h: 800,
        };
        let l = wm.snap_area(Snap::LeftHalf, out, 24);
        let r = wm.snap_area(Snap::RightHalf, out, 24);
        assert_eq!(
            l,
            Area {
                x: 0,
                y: 24,
                w: 640,
                h: 776
            }
        );
        assert_eq!(
            r,
            Area {
                x: 640,
                y: 24,
                w: 640,
                h: 776
            }
        );
        assert_eq!(
            wm.snap_area(Snap::Maximize, out, 24),
            Area {
                x: 0,
                y: 24,
                w: 1280,
                h: 776
            }
        );
    }
}
