//! Pointer grabs the WM starts: moving and resizing a window while a button is held.

use smithay::{
    desktop::Window,
    input::pointer::{
        AxisFrame, ButtonEvent, GestureHoldBeginEvent, GestureHoldEndEvent, GesturePinchBeginEvent,
        GesturePinchEndEvent, GesturePinchUpdateEvent, GestureSwipeBeginEvent,
        GestureSwipeEndEvent, GestureSwipeUpdateEvent, GrabStartData as PointerGrabStartData,
        MotionEvent, PointerGrab, PointerInnerHandle, RelativeMotionEvent,
    },
    reexports::wayland_server::protocol::wl_surface::WlSurface,
    utils::{Logical, Point, Size},
};

use crate::compositor::state::WayRay;

/// Smallest window a resize produces, so a window never disappears.
const MIN_SIZE: i32 = 64;

/// What a grab does with pointer motion.
enum Kind {
    Move {
        initial_location: Point<i32, Logical>,
    },
    Resize {
        initial_size: Size<i32, Logical>,
    },
}

pub struct WindowGrab {
    start: PointerGrabStartData<WayRay>,
    window: Window,
    kind: Kind,
    /// The button that started the grab; releasing it ends the grab.
    button: u32,
}

impl WindowGrab {
    pub fn moving(
        start: PointerGrabStartData<WayRay>,
        window: Window,
        at: Point<i32, Logical>,
        button: u32,
    ) -> Self {
        Self {
            start,
            window,
            kind: Kind::Move {
                initial_location: at,
            },
            button,
        }
    }

    pub fn resizing(start: PointerGrabStartData<WayRay>, window: Window, button: u32) -> Self {
        let initial_size = window.geometry().size;
        Self {
            start,
            window,
            kind: Kind::Resize { initial_size },
            button,
        }
    }
}

impl PointerGrab<WayRay> for WindowGrab {
    fn motion(
        &mut self,
        data: &mut WayRay,
        handle: &mut PointerInnerHandle<'_, WayRay>,
        _focus: Option<(WlSurface, Point<f64, Logical>)>,
        event: &MotionEvent,
    ) {
        // No client gets pointer focus while the WM holds the window.
        handle.motion(data, None, event);
        let delta = event.location - self.start.location;
        match self.kind {
            Kind::Move { initial_location } => {
                let to = (initial_location.to_f64() + delta).to_i32_round();
                data.space.map_element(self.window.clone(), to, true);
                data.needs_render = true;
            }
            Kind::Resize { initial_size } => {
                let w = (initial_size.w as f64 + delta.x).round() as i32;
                let h = (initial_size.h as f64 + delta.y).round() as i32;
                if let Some(toplevel) = self.window.toplevel() {
                    toplevel.with_pending_state(|s| {
                        s.size = Some((w.max(MIN_SIZE), h.max(MIN_SIZE)).into());
                    });
                    toplevel.send_pending_configure();
                } else if let Some(x11) = self.window.x11_surface() {
                    let loc = x11.geometry().loc;
                    let size = (w.max(MIN_SIZE), h.max(MIN_SIZE));
                    if let Err(err) =
                        x11.configure(smithay::utils::Rectangle::new(loc, size.into()))
                    {
                        tracing::debug!(%err, "cannot resize an X11 window");
                    }
                }
            }
        }
    }

    fn relative_motion(
        &mut self,
        data: &mut WayRay,
        handle: &mut PointerInnerHandle<'_, WayRay>,
        focus: Option<(WlSurface, Point<f64, Logical>)>,
        event: &RelativeMotionEvent,
    ) {
        handle.relative_motion(data, focus, event);
    }

    fn button(
        &mut self,
        data: &mut WayRay,
        handle: &mut PointerInnerHandle<'_, WayRay>,
        event: &ButtonEvent,
    ) {
        handle.button(data, event);
        if !handle.current_pressed().contains(&self.button) {
            handle.unset_grab(self, data, event.serial, event.time, true);
            // An external WM hears where the window ended up.
            data.wm_operation_ended(&self.window);
        }
    }

    fn axis(
        &mut self,
        data: &mut WayRay,
        handle: &mut PointerInnerHandle<'_, WayRay>,
        details: AxisFrame,
    ) {
        handle.axis(data, details)
    }

    fn frame(&mut self, data: &mut WayRay, handle: &mut PointerInnerHandle<'_, WayRay>) {
        handle.frame(data);
    }

    fn gesture_swipe_begin(
        &mut self,
        d: &mut WayRay,
        h: &mut PointerInnerHandle<'_, WayRay>,
        e: &GestureSwipeBeginEvent,
    ) {
        h.gesture_swipe_begin(d, e)
    }
    fn gesture_swipe_update(
        &mut self,
        d: &mut WayRay,
        h: &mut PointerInnerHandle<'_, WayRay>,
        e: &GestureSwipeUpdateEvent,
    ) {
        h.gesture_swipe_update(d, e)
    }
    fn gesture_swipe_end(
        &mut self,
        d: &mut WayRay,
        h: &mut PointerInnerHandle<'_, WayRay>,
        e: &GestureSwipeEndEvent,
    ) {
        h.gesture_swipe_end(d, e)
    }
    fn gesture_pinch_begin(
        &mut self,
        d: &mut WayRay,
        h: &mut PointerInnerHandle<'_, WayRay>,
        e: &GesturePinchBeginEvent,
    ) {
        h.gesture_pinch_begin(d, e)
    }
    fn gesture_pinch_update(
        &mut self,
        d: &mut WayRay,
        h: &mut PointerInnerHandle<'_, WayRay>,
        e: &GesturePinchUpdateEvent,
    ) {
        h.gesture_pinch_update(d, e)
    }
    fn gesture_pinch_end(
        &mut self,
        d: &mut WayRay,
        h: &mut PointerInnerHandle<'_, WayRay>,
        e: &GesturePinchEndEvent,
    ) {
        h.gesture_pinch_end(d, e)
    }
    fn gesture_hold_begin(
        &mut self,
        d: &mut WayRay,
        h: &mut PointerInnerHandle<'_, WayRay>,
        e: &GestureHoldBeginEvent,
    ) {
        h.gesture_hold_begin(d, e)
    }
    fn gesture_hold_end(
        &mut self,
        d: &mut WayRay,
        h: &mut PointerInnerHandle<'_, WayRay>,
        e: &GestureHoldEndEvent,
    ) {
        h.gesture_hold_end(d, e)
    }

    fn start_data(&self) -> &PointerGrabStartData<WayRay> {
        &self.start
    }

    fn unset(&mut self, _data: &mut WayRay) {}
}
