//! The key and pointer bindings: what each combination does. The compositor matches a key by
//! its keysym without Shift's level too, so Super+Shift+1 is keysym `1` with Shift and Super.
//! A binding's id, as the WM registers it, is its index in [`KEYS`] (or
//! [`POINTER_ID_BASE`] plus its index in [`POINTER`]).

use wayray_wm_protocol::client::wayray_wm_seat_v1::Modifiers;

use crate::layout::Direction;

/// What a key binding does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start the terminal (`--terminal`).
    Terminal,
    /// Focus the nearest window in that direction.
    Focus(Direction),
    /// Swap the focused tile with its neighbour in that direction (move a floating window).
    Move(Direction),
    /// Show workspace n (0-based).
    Workspace(usize),
    /// Send the focused window to workspace n (0-based).
    SendToWorkspace(usize),
    ToggleFullscreen,
    ToggleFloating,
    Close,
}

/// What a pointer binding does to the (floating) window under the pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PointerAction {
    Move,
    Resize,
}

/// XKB keysyms used below (xkbcommon-keysyms.h); letters and digits are their ASCII codes.
mod keysym {
    pub const RETURN: u32 = 0xff0d;
    pub const LEFT: u32 = 0xff51;
    pub const UP: u32 = 0xff52;
    pub const RIGHT: u32 = 0xff53;
    pub const DOWN: u32 = 0xff54;
    pub const SPACE: u32 = 0x20;
}

/// evdev button codes.
const BTN_LEFT: u32 = 0x110;
const BTN_RIGHT: u32 = 0x111;

const SUPER: Modifiers = Modifiers::Logo;
const SUPER_SHIFT: Modifiers = Modifiers::Logo.union(Modifiers::Shift);

/// The directions and the keys for them: arrows, and vi's h/j/k/l.
const DIRECTIONS: [(Direction, u32, u32); 4] = [
    (Direction::Left, keysym::LEFT, b'h' as u32),
    (Direction::Down, keysym::DOWN, b'j' as u32),
    (Direction::Up, keysym::UP, b'k' as u32),
    (Direction::Right, keysym::RIGHT, b'l' as u32),
];

/// The key table: (keysym, modifiers, action).
pub static KEYS: std::sync::LazyLock<Vec<(u32, Modifiers, Action)>> =
    std::sync::LazyLock::new(|| {
        let mut keys = vec![
            (keysym::RETURN, SUPER, Action::Terminal),
            (b'f' as u32, SUPER, Action::ToggleFullscreen),
            (keysym::SPACE, SUPER, Action::ToggleFloating),
            (b'q' as u32, SUPER_SHIFT, Action::Close),
        ];
        for (dir, arrow, letter) in DIRECTIONS {
            for key in [arrow, letter] {
                keys.push((key, SUPER, Action::Focus(dir)));
                keys.push((key, SUPER_SHIFT, Action::Move(dir)));
            }
        }
        for n in 0..9 {
            let digit = b'1' as u32 + n as u32;
            keys.push((digit, SUPER, Action::Workspace(n)));
            keys.push((digit, SUPER_SHIFT, Action::SendToWorkspace(n)));
        }
        keys
    });

/// Pointer binding ids start here, apart from key binding ids.
pub const POINTER_ID_BASE: u32 = 1000;

/// The pointer table: (button, modifiers, action).
pub const POINTER: [(u32, Modifiers, PointerAction); 2] = [
    (BTN_LEFT, SUPER, PointerAction::Move),
    (BTN_RIGHT, SUPER, PointerAction::Resize),
];

/// The action of the key binding `id`.
pub fn key_action(id: u32) -> Option<Action> {
    KEYS.get(id as usize).map(|(_, _, action)| *action)
}

/// The action of the pointer binding `id`.
pub fn pointer_action(id: u32) -> Option<PointerAction> {
    let index = id.checked_sub(POINTER_ID_BASE)?;
    POINTER.get(index as usize).map(|(_, _, action)| *action)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_combination_is_bound_once() {
        let mut seen = std::collections::HashSet::new();
        for (keysym, mods, action) in KEYS.iter() {
            assert!(
                seen.insert((*keysym, mods.bits())),
                "{action:?} bound twice"
            );
        }
        assert_eq!(key_action(0), Some(Action::Terminal));
        assert_eq!(
            pointer_action(POINTER_ID_BASE + 1),
            Some(PointerAction::Resize)
        );
        assert_eq!(pointer_action(3), None);
        assert_eq!(key_action(POINTER_ID_BASE), None);
    }
}
