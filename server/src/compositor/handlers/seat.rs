//! wl_seat and wl_data_device (clipboard / drag and drop; some clients crash without it).

use std::os::fd::OwnedFd;

use smithay::{
    delegate_data_device, delegate_seat,
    input::{pointer::CursorImageStatus, Seat, SeatHandler, SeatState},
    reexports::wayland_server::{protocol::wl_surface::WlSurface, Resource},
    wayland::selection::{
        data_device::{
            set_data_device_focus, ClientDndGrabHandler, DataDeviceHandler, DataDeviceState,
            ServerDndGrabHandler,
        },
        primary_selection::set_primary_focus,
        SelectionHandler, SelectionSource, SelectionTarget,
    },
};

use crate::compositor::state::WayRay;

impl SeatHandler for WayRay {
    type KeyboardFocus = WlSurface;
    type PointerFocus = WlSurface;
    type TouchFocus = WlSurface;

    fn seat_state(&mut self) -> &mut SeatState<WayRay> {
        &mut self.seat_state
    }

    fn cursor_image(&mut self, _seat: &Seat<Self>, image: CursorImageStatus) {
        self.set_cursor(image);
    }

    fn focus_changed(&mut self, seat: &Seat<Self>, focused: Option<&WlSurface>) {
        let dh = &self.display_handle;
        // Without a clipboard (greeters) no client is ever offered a selection.
        let client = focused
            .filter(|_| self.protocols.clipboard)
            .and_then(|s| dh.get_client(s.id()).ok());
        set_data_device_focus(dh, seat, client.clone());
        set_primary_focus(dh, seat, client);
        self.refresh_toplevels_with_focus(focused);
    }
}

delegate_seat!(WayRay);

impl SelectionHandler for WayRay {
    type SelectionUserData = ();

    /// X11 clients see the Wayland selections too (handlers/xwayland.rs).
    fn new_selection(
        &mut self,
        ty: SelectionTarget,
        source: Option<SelectionSource>,
        _seat: Seat<Self>,
    ) {
        self.wayland_selection_to_x11(ty, source.map(|s| s.mime_types()));
    }

    /// The selection set by the compositor is an X11 client's: Xwayland writes it.
    fn send_selection(
        &mut self,
        ty: SelectionTarget,
        mime_type: String,
        fd: OwnedFd,
        _seat: Seat<Self>,
        _user_data: &(),
    ) {
        self.x11_selection_to_wayland(ty, mime_type, fd);
    }
}

impl DataDeviceHandler for WayRay {
    fn data_device_state(&self) -> &DataDeviceState {
        &self.data_device_state
    }
}

impl ClientDndGrabHandler for WayRay {}
impl ServerDndGrabHandler for WayRay {}

delegate_data_device!(WayRay);
