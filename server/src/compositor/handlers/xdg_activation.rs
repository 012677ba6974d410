//! xdg-activation: an application asks to raise one of its windows (a second `foot` instance
//! handing over to the first, a link opened in a running browser). Focus-stealing prevention: a
//! token counts only if it was made from an input event of the client that had keyboard focus,
//! no older than that focus, and used within a few seconds. Other requests are ignored (the
//! built-in WM has no urgency hint to show instead).

use std::time::Duration;

use smithay::{
    delegate_xdg_activation,
    input::Seat,
    reexports::wayland_server::{protocol::wl_surface::WlSurface, Resource},
    utils::SERIAL_COUNTER,
    wayland::xdg_activation::{
        XdgActivationHandler, XdgActivationState, XdgActivationToken, XdgActivationTokenData,
    },
};

use crate::compositor::state::WayRay;

/// How long a token stays usable: long enough to start an application, short enough that a
/// stale token cannot steal focus minutes later.
const TOKEN_LIFETIME: Duration = Duration::from_secs(10);

impl XdgActivationHandler for WayRay {
    fn activation_state(&mut self) -> &mut XdgActivationState {
        &mut self.protocols.xdg_activation
    }

    fn token_created(&mut self, _token: XdgActivationToken, data: XdgActivationTokenData) -> bool {
        let Some((serial, wl_seat)) = data.serial else {
            tracing::debug!("activation token without an input serial: not honoured");
            return false;
        };
        let Some(keyboard) = Seat::<WayRay>::from_resource(&wl_seat).and_then(|s| s.get_keyboard())
        else {
            return false;
        };
        let focused_client = keyboard
            .current_focus()
            .and_then(|s| self.display_handle.get_client(s.id()).ok())
            .map(|c| c.id());
        let from_focused_client = focused_client.is_some() && focused_client == data.client_id;
        let recent = keyboard
            .last_enter()
            .is_some_and(|enter| serial.is_no_older_than(&enter));
        let valid = from_focused_client && recent;
        tracing::debug!(
            valid,
            from_focused_client,
            recent,
            "xdg-activation token created"
        );
        valid
    }

    fn request_activation(
        &mut self,
        token: XdgActivationToken,
        token_data: XdgActivationTokenData,
        surface: WlSurface,
    ) {
        // Only tokens that passed `token_created` are still known; they are single-use.
        self.protocols.xdg_activation.remove_token(&token);
        if token_data.timestamp.elapsed() > TOKEN_LIFETIME {
            tracing::debug!("activation token expired; not raising the window");
            return;
        }
        if self.protocols.lock.is_locked() {
            return;
        }
        match self.window_for_surface(&surface) {
            Some(window) if self.space.elements().any(|w| w == &window) => {
                tracing::info!("raising a window on xdg-activation");
                if self.wm_client_request(&window, |w| w.request_activate()) {
                    return;
                }
                self.focus_window(Some(window), SERIAL_COUNTER.next_serial());
            }
            _ => tracing::debug!("activation for a surface that is not a mapped window"),
        }
    }
}

delegate_xdg_activation!(WayRay);
