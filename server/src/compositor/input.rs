//! Input from the appliance into the seat: keys with the appliance's keymap, pointer, scroll and
//! touch, plus click-to-focus and the WM's key and pointer bindings.

use smithay::{
    backend::input::{Axis, AxisSource as SmithayAxisSource, ButtonState, KeyState},
    desktop::Window,
    input::{
        keyboard::{FilterResult, Keycode, Keysym},
        pointer::{
            AxisFrame, ButtonEvent, CursorImageStatus, Focus, MotionEvent, RelativeMotionEvent,
        },
        touch::{DownEvent, MotionEvent as TouchMotionEvent, UpEvent},
    },
    utils::{Point, Serial, SERIAL_COUNTER},
};
use wayray_protocol::{AxisSource, AxisValue, InputMessage, Keymap};

use super::{
    decorations::{self, DecorationHit},
    state::WayRay,
    wm::{grabs::WindowGrab, Mods, Snap, WmAction},
};

/// evdev BTN_LEFT.
const BTN_LEFT: u32 = 0x110;

/// A key press one of the WMs took.
#[derive(Debug, Clone, Copy)]
enum Bound {
    Builtin(WmAction),
    /// The external WM's binding id.
    External(u32),
}

impl WayRay {
    /// Compiles the appliance's keymap and makes the seat use it, so clients see the user's
    /// layout. A keymap that does not compile keeps the previous one.
    pub fn set_keymap(&mut self, keymap: &Keymap) {
        let Some(keyboard) = self.seat.get_keyboard() else {
            return;
        };
        match keyboard.set_keymap_from_string(self, keymap.text.clone()) {
            Ok(()) => tracing::info!(layout = %keymap.layout, "keymap set from the appliance"),
            Err(err) => {
                tracing::warn!(layout = %keymap.layout, ?err, "appliance keymap does not compile; keeping the previous one")
            }
        }
    }

    pub fn on_input(&mut self, event: InputMessage) {
        // While an external WM decides on earlier input (a click that focuses, a binding that
        // switches workspace), later input waits, so it reaches the window the WM chose.
        if self.wm_defers_input() {
            self.deferred_input.push_back(event);
            return;
        }
        self.note_user_activity();
        match event {
            InputMessage::Keymap(keymap) => self.set_keymap(&keymap),
            InputMessage::Key {
                time_ms,
                keycode,
                pressed,
            } => self.on_key(time_ms, keycode, pressed),
            // The appliance speaks output pixels; the seat and the space are logical.
            InputMessage::PointerMotion { time_ms, x, y } => {
                self.on_pointer_motion(time_ms, self.pixels_to_logical((x, y)))
            }
            InputMessage::PointerRelative {
                time_ms,
                dx,
                dy,
                dx_unaccel,
                dy_unaccel,
            } => {
                let Some(pointer) = self.seat.get_pointer() else {
                    return;
                };
                let under = self.surface_under(pointer.current_location());
                pointer.relative_motion(
                    self,
                    under,
                    &RelativeMotionEvent {
                        delta: (dx, dy).into(),
                        delta_unaccel: (dx_unaccel, dy_unaccel).into(),
                        utime: time_ms as u64 * 1000,
                    },
                );
                pointer.frame(self);
            }
            InputMessage::PointerButton {
                time_ms,
                button,
                pressed,
            } => self.on_button(time_ms, button, pressed),
            InputMessage::PointerAxis {
                time_ms,
                source,
                horizontal,
                vertical,
            } => self.on_axis(time_ms, source, horizontal, vertical),
            InputMessage::TouchDown {
                time_ms,
                slot,
                x,
                y,
            } => {
                let Some(touch) = self.seat.get_touch() else {
                    return;
                };
                let location = self.pixels_to_logical((x, y));
                if let Some(window) = self.window_under(location) {
                    self.focus_window(Some(window), SERIAL_COUNTER.next_serial());
                }
                let focus = self.surface_under(location);
                touch.down(
                    self,
                    focus,
                    &DownEvent {
                        slot: Some(slot).into(),
                        location,
                        serial: SERIAL_COUNTER.next_serial(),
                        time: time_ms,
                    },
                );
            }
            InputMessage::TouchMotion {
                time_ms,
                slot,
                x,
                y,
            } => {
                let Some(touch) = self.seat.get_touch() else {
                    return;
                };
                let location = self.pixels_to_logical((x, y));
                let focus = self.surface_under(location);
                touch.motion(
                    self,
                    focus,
                    &TouchMotionEvent {
                        slot: Some(slot).into(),
                        location,
                        time: time_ms,
                    },
                );
            }
            InputMessage::TouchUp { time_ms, slot } => {
                let Some(touch) = self.seat.get_touch() else {
                    return;
                };
                touch.up(
                    self,
                    &UpEvent {
                        slot: Some(slot).into(),
                        serial: SERIAL_COUNTER.next_serial(),
                        time: time_ms,
                    },
                );
            }
            InputMessage::TouchFrame => {
                if let Some(touch) = self.seat.get_touch() {
                    touch.frame(self);
                }
            }
            InputMessage::TouchCancel => {
                if let Some(touch) = self.seat.get_touch() {
                    touch.cancel(self);
                }
            }
        }
    }

    fn on_key(&mut self, time_ms: u32, keycode: u32, pressed: bool) {
        let Some(keyboard) = self.seat.get_keyboard() else {
            return;
        };
        if pressed && self.key_pressed_at.is_none() {
            self.key_pressed_at = Some(std::time::Instant::now());
        }
        let serial = SERIAL_COUNTER.next_serial();
        let state = if pressed {
            KeyState::Pressed
        } else {
            KeyState::Released
        };
        // XKB keycodes are evdev keycodes + 8.
        let action = keyboard.input(
            self,
            Keycode::new(keycode + 8),
            state,
            serial,
            time_ms,
            |state, mods, keysym| {
                let sym = keysym.modified_sym();
                let is_super = matches!(sym, Keysym::Super_L | Keysym::Super_R);
                if !pressed && is_super && std::mem::take(&mut state.super_tap) {
                    state.open_app_launcher();
                }
                state.super_tap = pressed && is_super;
                // Volume keys change the session's sound and reach no client.
                if pressed
                    && state
                        .audio
                        .as_ref()
                        .is_some_and(|audio| audio.volume_key(sym))
                {
                    state.suppressed_keys.insert(keycode);
                    return FilterResult::Intercept(None);
                }
                if !pressed {
                    // The client never saw the press of a WM binding, so not its release either.
                    return if state.suppressed_keys.remove(&keycode) {
                        FilterResult::Intercept(None)
                    } else {
                        FilterResult::Forward
                    };
                }
                // Locked: keys are the lock screen's. Inhibited: the focused client (a VM
                // viewer) wants the WM's bindings too.
                if state.protocols.lock.is_locked() || state.shortcuts_inhibited() {
                    return FilterResult::Forward;
                }
                let mods = Mods::from(mods);
                let bound = if state.external_wm.is_active() {
                    // With and without Shift's level: Super+Shift+1 is bound as "1".
                    let mut syms: Vec<u32> = keysym.raw_syms().iter().map(|s| s.raw()).collect();
                    syms.push(keysym.modified_sym().raw());
                    state.wm_key_binding(mods, &syms).map(Bound::External)
                } else {
                    state
                        .wm
                        .key_binding(mods, keysym.modified_sym())
                        .map(Bound::Builtin)
                };
                match bound {
                    Some(bound) => {
                        state.suppressed_keys.insert(keycode);
                        FilterResult::Intercept(Some(bound))
                    }
                    None => FilterResult::Forward,
                }
            },
        );
        match action {
            Some(Some(Bound::Builtin(action))) => self.run_wm_action(action, serial),
            Some(Some(Bound::External(id))) => self.wm_binding_pressed(id),
            _ => {}
        }
    }

    pub(super) fn on_pointer_motion(
        &mut self,
        time_ms: u32,
        location: Point<f64, smithay::utils::Logical>,
    ) {
        let Some(pointer) = self.seat.get_pointer() else {
            return;
        };
        // A locked pointer stays put; a confined one stays in its region.
        let Some(location) = self.constrain_motion(&pointer, location) else {
            return;
        };
        let under = self.surface_under(location);
        // Over the background or a title bar no client owns the cursor: show the default one
        // (repeats are deduplicated before anything is sent).
        let over_client = under.is_some();
        let under_for_constraint = under.clone();
        pointer.motion(
            self,
            under,
            &MotionEvent {
                location,
                serial: SERIAL_COUNTER.next_serial(),
                time: time_ms,
            },
        );
        pointer.frame(self);
        if let Some((surface, origin)) = under_for_constraint {
            self.activate_pointer_constraint(&pointer, &surface, origin);
        }
        if !over_client && !pointer.is_grabbed() {
            self.set_cursor(CursorImageStatus::default_named());
        }
    }

    fn on_button(&mut self, time_ms: u32, button: u32, pressed: bool) {
        let Some(pointer) = self.seat.get_pointer() else {
            return;
        };
        let serial = SERIAL_COUNTER.next_serial();
        let location = pointer.current_location();
        // Super+click is a binding, not a tap of Super.
        self.super_tap = false;
        if pressed {
            self.held_button = Some(button);
        } else if self.held_button == Some(button) {
            self.held_button = None;
        }
        if pressed
            && !pointer.is_grabbed()
            && !self.protocols.lock.is_locked()
            && self.external_wm.is_active()
        {
            let mods = self
                .seat
                .get_keyboard()
                .map(|k| Mods::from(&k.modifier_state()))
                .unwrap_or_default();
            let under = self.window_under(location);
            if self.focus_layer_under(location) {
                // A click on a panel or a launcher is theirs.
            } else if self.wm_button_pressed(mods, button, under) {
                // A binding: the client sees neither the press nor its release.
                self.suppressed_buttons.insert(button);
                return;
            }
        } else if !pressed && self.suppressed_buttons.remove(&button) && !pointer.is_grabbed() {
            // (A grab the binding started ends with this release: the grab gets it.)
            return;
        } else if pressed && !pointer.is_grabbed() && !self.protocols.lock.is_locked() {
            let mods = self
                .seat
                .get_keyboard()
                .map(|k| Mods::from(&k.modifier_state()))
                .unwrap_or_default();
            let binding = self.wm.pointer_binding(mods, button);
            match (binding, decorations::hit(&self.space, location)) {
                (Some(action @ (WmAction::BeginMove | WmAction::BeginResize)), _) => {
                    if let Some(window) = self.window_under(location) {
                        self.focus_window(Some(window.clone()), serial);
                        self.start_window_grab(window, action, button, serial);
                    }
                }
                (_, Some((window, DecorationHit::Close))) if button == BTN_LEFT => {
                    request_close(&window);
                    return;
                }
                (_, Some((window, DecorationHit::TitleBar))) if button == BTN_LEFT => {
                    self.focus_window(Some(window.clone()), serial);
                    self.start_window_grab(window, WmAction::BeginMove, button, serial);
                }
                _ => {
                    // A click on a panel or a launcher leaves the windows' focus alone.
                    if !self.focus_layer_under(location) {
                        let window = self.window_under(location);
                        self.focus_window(window, serial);
                    }
                }
            }
        }
        pointer.button(
            self,
            &ButtonEvent {
                button,
                state: if pressed {
                    ButtonState::Pressed
                } else {
                    ButtonState::Released
                },
                serial,
                time: time_ms,
            },
        );
        pointer.frame(self);
    }

    fn on_axis(
        &mut self,
        time_ms: u32,
        source: AxisSource,
        horizontal: AxisValue,
        vertical: AxisValue,
    ) {
        let Some(pointer) = self.seat.get_pointer() else {
            return;
        };
        let source = match source {
            AxisSource::Wheel => SmithayAxisSource::Wheel,
            AxisSource::Finger => SmithayAxisSource::Finger,
            AxisSource::Continuous => SmithayAxisSource::Continuous,
            AxisSource::WheelTilt => SmithayAxisSource::WheelTilt,
        };
        let mut frame = AxisFrame::new(time_ms).source(source);
        for (axis, v) in [(Axis::Horizontal, horizontal), (Axis::Vertical, vertical)] {
            if v.value != 0.0 {
                frame = frame.value(axis, v.value);
            }
            if let Some(v120) = v.v120.filter(|d| *d != 0) {
                frame = frame.v120(axis, v120);
            }
            if v.stop {
                frame = frame.stop(axis);
            }
        }
        pointer.axis(self, frame);
        pointer.frame(self);
    }

    /// The toplevel under a point, including its title bar.
    pub fn window_under(&self, location: Point<f64, smithay::utils::Logical>) -> Option<Window> {
        if let Some((window, _)) = decorations::hit(&self.space, location) {
            return Some(window);
        }
        self.element_under(location).map(|(w, _)| w)
    }

    /// Raises `window` and gives it keyboard focus; `None` unfocuses everything. X11
    /// override-redirect windows (menus, tooltips) never take the focus.
    pub fn focus_window(&mut self, window: Option<Window>, serial: Serial) {
        // While locked the lock surface keeps the keyboard; windows wait for the unlock.
        if self.protocols.lock.is_locked() {
            return;
        }
        if window
            .as_ref()
            .and_then(|w| w.x11_surface())
            .is_some_and(|x| x.is_override_redirect())
        {
            return;
        }
        // Under an external WM stacking is the WM's (its render sequences).
        if let Some(window) = window.as_ref().filter(|_| !self.external_wm.is_active()) {
            self.space.raise_element(window, true);
        }
        for w in self.space.elements() {
            let active = window.as_ref() == Some(w);
            w.set_activated(active);
            if let Some(t) = w.toplevel() {
                t.send_pending_configure();
            }
        }
        // An exclusive layer (an open launcher) keeps the keyboard until it closes.
        let surface = self
            .exclusive_layer()
            .or_else(|| window.as_ref().and_then(super::xwayland::window_surface));
        if let Some(keyboard) = self.seat.get_keyboard() {
            self.keyboard_on_layer = self.exclusive_layer().is_some();
            keyboard.set_focus(self, surface, serial);
        }
        self.x11_focus_changed(window.as_ref());
        self.needs_render = true;
    }

    pub(in crate::compositor) fn start_window_grab(
        &mut self,
        window: Window,
        action: WmAction,
        button: u32,
        serial: Serial,
    ) {
        let Some(pointer) = self.seat.get_pointer() else {
            return;
        };
        let Some(location) = self.space.element_location(&window) else {
            return;
        };
        let start = smithay::input::pointer::GrabStartData {
            focus: None,
            button,
            location: pointer.current_location(),
        };
        // Placed by hand from now on: an output resize no longer re-snaps it.
        super::resize::set_snap(&window, None);
        let grab = match action {
            WmAction::BeginResize => WindowGrab::resizing(start, window, button),
            _ => WindowGrab::moving(start, window, location, button),
        };
        pointer.set_grab(self, grab, serial, Focus::Clear);
    }

    pub(super) fn run_wm_action(&mut self, action: WmAction, serial: Serial) {
        let focused = self
            .seat
            .get_keyboard()
            .and_then(|k| k.current_focus())
            .and_then(|s| self.window_for_surface(&s));
        match action {
            WmAction::CloseFocused => {
                if let Some(window) = &focused {
                    request_close(window);
                }
            }
            WmAction::FocusNext => {
                // The bottom-most window comes to the top: repeated Alt+Tab visits every window.
                let next = self
                    .space
                    .elements()
                    .find(|w| !w.x11_surface().is_some_and(|x| x.is_override_redirect()))
                    .cloned();
                if next.is_some() && next != focused {
                    self.focus_window(next, serial);
                }
            }
            WmAction::Snap(snap) => {
                if let Some(window) = focused {
                    self.snap_window(&window, snap);
                }
            }
            WmAction::BeginMove | WmAction::BeginResize => {}
        }
    }

    /// Snaps `window` to half the usable area or maximizes it there; an output or panel change
    /// re-applies the snap until the user moves it by hand.
    pub fn snap_window(&mut self, window: &Window, snap: Snap) {
        let area = self
            .wm
            .snap_area(snap, self.usable_area(), decorations::title_height(window));
        if let Some(toplevel) = window.toplevel() {
            toplevel.with_pending_state(|s| {
                s.size = Some((area.w, area.h).into());
                let maximized = smithay::reexports::wayland_protocols::xdg::shell::server::xdg_toplevel::State::Maximized;
                if snap == Snap::Maximize {
                    s.states.set(maximized);
                } else {
                    s.states.unset(maximized);
                }
            });
            toplevel.send_pending_configure();
        } else if let Some(x11) = window.x11_surface() {
            let rect =
                smithay::utils::Rectangle::new((area.x, area.y).into(), (area.w, area.h).into());
            if let Err(err) = x11.configure(Some(rect)) {
                tracing::debug!(%err, "cannot resize an X11 window");
            }
        }
        tracing::info!(?snap, ?area, "window snapped");
        super::resize::set_snap(window, Some(snap));
        self.space
            .map_element(window.clone(), (area.x, area.y), true);
        self.needs_render = true;
    }

    /// A tap of Super (pressed and released alone) opens the launcher, unless one is already
    /// open (it holds the keyboard as an exclusive layer).
    fn open_app_launcher(&mut self) {
        if self.exclusive_layer().is_some() {
            return;
        }
        if let Some(cmd) = self.app_launcher.clone() {
            tracing::info!(cmd, "opening the launcher");
            self.spawn(&cmd);
        }
    }
}

/// Asks a window to close, as its close button or Alt+F4 do (X11 windows get WM_DELETE_WINDOW
/// when they support it, else their client is disconnected).
pub(in crate::compositor) fn request_close(window: &Window) {
    if let Some(toplevel) = window.toplevel() {
        toplevel.send_close();
    } else if let Some(x11) = window.x11_surface() {
        if let Err(err) = x11.close() {
            tracing::debug!(%err, "cannot close an X11 window");
        }
    }
}
