//! ext-session-lock: `swaylock` and friends. While locked, frames show only the lock surface
//! (or the bare background before it has drawn, and after a locker crashed), and it alone gets
//! keyboard and pointer input; the WM's bindings are off. A locker that dies without unlocking
//! leaves the session locked, as the protocol demands; a new locker may then take over.
//!
//! The compositor also locks itself ([`WayRay::lock_session`]) when the daemon re-attaches the
//! session under the `reattach = "lock"` policy: locked with no locker yet, before the first
//! frame for the new appliance, and the WayRay locker (`wrlogin --lock`, see `locker.rs`) is
//! started to take the lock over and ask for the password.

use std::time::Duration;

use smithay::{
    delegate_session_lock,
    desktop::utils::send_frames_surface_tree,
    input::pointer::{CursorImageStatus, MotionEvent},
    reexports::{
        wayland_protocols::ext::session_lock::v1::server::ext_session_lock_v1::ExtSessionLockV1,
        wayland_server::{
            protocol::{wl_output::WlOutput, wl_surface::WlSurface},
            Resource,
        },
    },
    utils::SERIAL_COUNTER,
    wayland::session_lock::{
        LockSurface, SessionLockHandler, SessionLockManagerState, SessionLocker,
    },
};

use crate::compositor::state::WayRay;

/// Whether the session is locked, and by what.
#[derive(Default)]
pub struct Lock {
    locked: Option<Locked>,
    /// A lock request waiting for the first frame without the desktop before it is confirmed.
    pending_confirmation: Option<SessionLocker>,
}

struct Locked {
    /// The locker's lock object; dead once the locker exited (the session stays locked), `None`
    /// while a lock the compositor took itself waits for its locker.
    lock: Option<ExtSessionLockV1>,
    surface: Option<LockSurface>,
}

impl Lock {
    pub fn is_locked(&self) -> bool {
        self.locked.is_some()
    }

    /// Locked, and a locker is connected and holds the lock (so no other locker is needed).
    pub fn has_locker(&self) -> bool {
        self.locked
            .as_ref()
            .and_then(|l| l.lock.as_ref())
            .is_some_and(|lock| lock.is_alive())
    }

    /// The surface shown while locked, once the locker made one.
    pub fn surface(&self) -> Option<&WlSurface> {
        self.locked
            .as_ref()
            .and_then(|l| l.surface.as_ref())
            .map(|s| s.wl_surface())
            .filter(|s| s.is_alive())
    }
}

impl SessionLockHandler for WayRay {
    fn lock_state(&mut self) -> &mut SessionLockManagerState {
        &mut self.protocols.session_lock
    }

    fn lock(&mut self, confirmation: SessionLocker) {
        if self.protocols.lock.has_locker() {
            tracing::warn!("a second locker asked to lock a locked session; refused");
            return; // Dropping `confirmation` tells that locker `finished`.
        }
        if let Some(locked) = &self.protocols.lock.locked {
            if locked.lock.is_some() {
                tracing::info!("a new locker takes over from one that exited");
            } else {
                tracing::info!("a locker takes over the session's own lock");
            }
        } else {
            tracing::info!("session locked");
        }
        self.protocols.lock.locked = Some(Locked {
            lock: Some(confirmation.ext_session_lock().clone()),
            surface: None,
        });
        if let Some(keyboard) = self.seat.get_keyboard() {
            keyboard.set_focus(self, None, SERIAL_COUNTER.next_serial());
        }
        self.needs_render = true;
        if self.pacer.attached().is_some() {
            // Confirmed once a frame without the desktop went out (`lock_frame_sent`).
            self.protocols.lock.pending_confirmation = Some(confirmation);
        } else {
            confirmation.lock();
        }
    }

    fn unlock(&mut self) {
        tracing::info!("session unlocked");
        self.protocols.lock = Lock::default();
        self.needs_render = true;
        let top = self.space.elements().last().cloned();
        self.focus_window(top, SERIAL_COUNTER.next_serial());
    }

    fn new_surface(&mut self, surface: LockSurface, _output: WlOutput) {
        let Some(locked) = self.protocols.lock.locked.as_mut() else {
            return;
        };
        let size = self
            .output
            .current_mode()
            .map(|m| m.size)
            .unwrap_or_default();
        surface.with_pending_state(|state| {
            state.size = Some((size.w.max(1) as u32, size.h.max(1) as u32).into());
        });
        surface.send_configure();
        let wl_surface = surface.wl_surface().clone();
        locked.surface = Some(surface);
        if let Some(keyboard) = self.seat.get_keyboard() {
            keyboard.set_focus(self, Some(wl_surface), SERIAL_COUNTER.next_serial());
        }
        self.needs_render = true;
    }
}

delegate_session_lock!(WayRay);

impl WayRay {
    /// Locks the session on the compositor's own account (a re-attach the daemon wants locked):
    /// from now on frames show only the bare background, until the locker started here draws
    /// its form, and input goes nowhere else. Call it before the attached appliance's first
    /// frame is rendered. A session already locked stays as it is.
    pub fn lock_session(&mut self) {
        if !self.protocols.lock.is_locked() {
            tracing::info!("session locked for a re-attach; starting the locker");
            self.protocols.lock.locked = Some(Locked {
                lock: None,
                surface: None,
            });
            if let Some(keyboard) = self.seat.get_keyboard() {
                keyboard.set_focus(self, None, SERIAL_COUNTER.next_serial());
            }
            // No client keeps the pointer, so none sets the cursor the appliance is sent (a
            // client's cursor surface is its pixels too).
            if let Some(pointer) = self.seat.get_pointer() {
                let location = pointer.current_location();
                pointer.motion(
                    self,
                    None,
                    &MotionEvent {
                        location,
                        serial: SERIAL_COUNTER.next_serial(),
                        time: self.start_time.elapsed().as_millis() as u32,
                    },
                );
                pointer.frame(self);
            }
            self.set_cursor(CursorImageStatus::default_named());
            self.needs_render = true;
        }
        self.keep_locker_running();
    }

    /// While the session is locked without a live locker (a re-attach lock, or a locker that
    /// died), keeps the WayRay locker running; reaps it once it exited.
    pub fn keep_locker_running(&mut self) {
        let wanted = self.protocols.lock.is_locked() && !self.protocols.lock.has_locker();
        self.locker
            .poll(wanted, &self.socket_name, &self.client_env);
    }

    /// A frame rendered while locked went out: the desktop is off the appliance's screen, so a
    /// waiting locker may be told the session is locked.
    pub fn lock_frame_sent(&mut self) {
        if self.protocols.lock.is_locked() {
            if let Some(confirmation) = self.protocols.lock.pending_confirmation.take() {
                confirmation.lock();
            }
        }
    }

    /// The lock surface follows the output's size.
    pub fn configure_lock_surface(&mut self) {
        let size = self
            .output
            .current_mode()
            .map(|m| m.size)
            .unwrap_or_default();
        if let Some(surface) = self
            .protocols
            .lock
            .locked
            .as_ref()
            .and_then(|l| l.surface.as_ref())
        {
            surface.with_pending_state(|state| {
                state.size = Some((size.w.max(1) as u32, size.h.max(1) as u32).into());
            });
            surface.send_configure();
        }
    }

    /// The lock surface draws at the output's pace like windows do.
    pub fn send_lock_frame_callbacks(&self, now: Duration) {
        if let Some(surface) = self.protocols.lock.surface() {
            let output = self.output.clone();
            send_frames_surface_tree(surface, &self.output, now, Some(Duration::ZERO), |_, _| {
                Some(output.clone())
            });
        }
    }
}
