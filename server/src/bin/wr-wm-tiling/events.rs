//! The compositor's events, recorded in the [`Wm`]. Only `manage_start` and `render_start` lead
//! to requests (through [`Wm::manage`] and [`Wm::render`]), each answered at once with
//! `manage_done` or `render_done`.

use wayland_client::{
    event_created_child, globals::GlobalListContents, protocol::wl_registry, Connection, Dispatch,
    QueueHandle, WEnum,
};
use wayray_wm_protocol::client::{
    wayray_wm_manager_v1::{self, WayrayWmManagerV1},
    wayray_wm_seat_v1::{self, WayrayWmSeatV1},
    wayray_wm_window_v1::{self, WayrayWmWindowV1},
    wayray_wm_workspace_v1::WayrayWmWorkspaceV1,
};

use crate::bindings::{self, KEYS, POINTER, POINTER_ID_BASE};
use crate::layout::Rect;
use crate::wm::{Output, Pending, Wm};

impl Dispatch<WayrayWmManagerV1, ()> for Wm {
    fn event(
        wm: &mut Wm,
        manager: &WayrayWmManagerV1,
        event: wayray_wm_manager_v1::Event,
        _: &(),
        _: &Connection,
        qh: &QueueHandle<Wm>,
    ) {
        use wayray_wm_manager_v1::Event;
        match event {
            Event::Unavailable => {
                manager.destroy();
                wm.stop = Some(
                    "another window manager is already managing this session \
                     (wayray_wm_manager_v1: unavailable)"
                        .into(),
                );
            }
            // The first output is the one windows are laid out on (a session has one).
            Event::Output {
                name,
                width,
                height,
            } if wm.output.as_ref().is_none_or(|o| o.name == name) => {
                let usable = Rect::new(0, 0, width, height);
                wm.output = Some(Output {
                    name,
                    width,
                    height,
                    usable,
                });
            }
            Event::UsableArea {
                name,
                x,
                y,
                width,
                height,
            } => {
                if let Some(output) = wm.output.as_mut().filter(|o| o.name == name) {
                    output.usable = Rect::new(x, y, width, height);
                }
            }
            Event::Seat { id: seat } => {
                for (index, (keysym, modifiers, _)) in KEYS.iter().enumerate() {
                    seat.bind_key(index as u32, *keysym, *modifiers);
                }
                for (index, (button, modifiers, _)) in POINTER.iter().enumerate() {
                    seat.bind_pointer(POINTER_ID_BASE + index as u32, *button, *modifiers);
                }
                wm.seat = Some(seat);
            }
            Event::Window { id } => wm.add_window(id),
            Event::ManageStart => {
                wm.manage();
                manager.manage_done();
            }
            Event::RenderStart => {
                wm.render(qh);
                manager.render_done();
            }
            _ => {}
        }
    }

    event_created_child!(Wm, WayrayWmManagerV1, [
        wayray_wm_manager_v1::EVT_SEAT_OPCODE => (WayrayWmSeatV1, ()),
        wayray_wm_manager_v1::EVT_WINDOW_OPCODE => (WayrayWmWindowV1, ()),
    ]);
}

impl Dispatch<WayrayWmWindowV1, ()> for Wm {
    fn event(
        wm: &mut Wm,
        proxy: &WayrayWmWindowV1,
        event: wayray_wm_window_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Wm>,
    ) {
        use wayray_wm_window_v1::Event;
        let Some(id) = wm.window_id(proxy) else {
            return;
        };
        if let Event::Closed = event {
            wm.remove_window(id);
            return;
        }
        let pending = match event {
            Event::RequestFullscreen => Pending::Fullscreen(id, true),
            Event::RequestUnfullscreen => Pending::Fullscreen(id, false),
            Event::RequestActivate => Pending::Activate(id),
            Event::RequestMove => Pending::ClientMove(id),
            Event::RequestResize {
                edges: WEnum::Value(edges),
            } => Pending::ClientResize(id, edges),
            event => {
                let Some(window) = wm.windows.get_mut(&id) else {
                    return;
                };
                match event {
                    Event::AppId { app_id } => window.app_id = app_id,
                    Event::Parent { parent } => window.has_parent = parent.is_some(),
                    Event::SizeHints {
                        min_width,
                        min_height,
                        max_width,
                        max_height,
                    } => {
                        window.fixed_size = min_width > 0
                            && min_height > 0
                            && (min_width, min_height) == (max_width, max_height);
                    }
                    Event::Dimensions { width, height } => window.size = (width, height),
                    // Windows taken over, and floating windows after a drag, are where this says.
                    Event::Position { x, y } => window.float_at = Some((x, y)),
                    // Maximize and minimize mean nothing in a tiling layout.
                    _ => {}
                }
                return;
            }
        };
        wm.pending.push(pending);
    }
}

impl Dispatch<WayrayWmSeatV1, ()> for Wm {
    fn event(
        wm: &mut Wm,
        _: &WayrayWmSeatV1,
        event: wayray_wm_seat_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Wm>,
    ) {
        use wayray_wm_seat_v1::Event;
        let pending = match event {
            Event::BindingPressed { id } => bindings::key_action(id).map(Pending::Key),
            Event::PointerBindingPressed { id, window } => {
                let window = window.and_then(|w| wm.window_id(&w));
                bindings::pointer_action(id).map(|action| Pending::Pointer(action, window))
            }
            Event::WindowInteraction { window } => wm.window_id(&window).map(Pending::Interaction),
            Event::Focused { window } => {
                wm.keyboard = window.and_then(|w| wm.window_id(&w));
                None
            }
            _ => None,
        };
        wm.pending.extend(pending);
    }
}

impl Dispatch<WayrayWmWorkspaceV1, ()> for Wm {
    fn event(
        _: &mut Wm,
        _: &WayrayWmWorkspaceV1,
        _: <WayrayWmWorkspaceV1 as wayland_client::Proxy>::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Wm>,
    ) {
        // Workspaces have no events.
    }
}

impl Dispatch<wl_registry::WlRegistry, GlobalListContents> for Wm {
    fn event(
        _: &mut Wm,
        _: &wl_registry::WlRegistry,
        _: wl_registry::Event,
        _: &GlobalListContents,
        _: &Connection,
        _: &QueueHandle<Wm>,
    ) {
        // Globals that come and go later do not matter to the WM.
    }
}
