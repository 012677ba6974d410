//! Window-management policy, behind a small trait so the pluggable WM protocol
//! (`wayray_wm_manager_v1`) can replace the built-in floating WM without touching input or
//! rendering code. Policies decide; the compositor carries decisions out. `external` is the
//! protocol's state machine: while a WM client is connected it decides instead of the
//! built-in policy, which takes over again the moment that client is gone.

pub mod external;
mod floating;
pub mod grabs;

pub use floating::FloatingWm;

use smithay::input::keyboard::{Keysym, ModifiersState};

/// Something the user asked the window manager to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WmAction {
    CloseFocused,
    /// Alt+Tab: give focus to the next window in stacking order and raise it.
    FocusNext,
    Snap(Snap),
    /// Move the window under the pointer while the button is held.
    BeginMove,
    /// Resize the window under the pointer (bottom-right corner follows the pointer).
    BeginResize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snap {
    LeftHalf,
    RightHalf,
    Maximize,
}

/// Modifier keys as the policy sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mods {
    pub alt: bool,
    pub ctrl: bool,
    pub shift: bool,
    pub logo: bool,
}

impl From<&ModifiersState> for Mods {
    fn from(m: &ModifiersState) -> Self {
        Self {
            alt: m.alt,
            ctrl: m.ctrl,
            shift: m.shift,
            logo: m.logo,
        }
    }
}

/// A rectangle in logical coordinates (output pixels over the output's scale).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Area {
    pub x: i32,
    pub y: i32,
    pub w: i32,
    pub h: i32,
}

pub trait WindowPolicy {
    /// A key press with these modifiers: a WM action, or `None` to give it to the client.
    fn key_binding(&self, mods: Mods, keysym: Keysym) -> Option<WmAction>;
    /// A button press over a window with these modifiers.
    fn pointer_binding(&self, mods: Mods, button: u32) -> Option<WmAction>;
    /// Top-left corner for a new window's content of `size`, given the windows on screen
    /// (including their decorations) and the usable output area.
    fn place(&self, usable: Area, size: (i32, i32), existing: &[Area]) -> (i32, i32);
    /// The content area a snapped window gets in `usable` (title bar excluded).
    fn snap_area(&self, snap: Snap, usable: Area, title_height: i32) -> Area;
}
