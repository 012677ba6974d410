//! cursor-shape-v1: clients name a cursor ("text", "pointer") instead of drawing one, which the
//! compositor draws from its xcursor theme, so every toolkit shows the same cursors and the
//! appliance gets a themed image without a client buffer round trip.

use smithay::{delegate_cursor_shape, wayland::tablet_manager::TabletSeatHandler};

use crate::compositor::state::WayRay;

/// cursor-shape-v1 also covers tablet tools, so Smithay requires this; appliances have no
/// tablets, so tool images are ignored (the default method).
impl TabletSeatHandler for WayRay {}

delegate_cursor_shape!(WayRay);
