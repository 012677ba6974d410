//! Resizing the session output when the session moves to a screen of another size (or the
//! screen itself changes): the output mode changes, the framebuffer is reallocated, and windows
//! are kept usable, with snapped and maximized ones re-fitted and the rest pulled back on screen.

use std::cell::Cell;

use smithay::{
    desktop::Window,
    output::{Mode, Scale},
    reexports::wayland_protocols::xdg::shell::server::xdg_toplevel,
    utils::{Logical, Physical, Point, Size},
    wayland::{compositor::send_surface_state, fractional_scale::with_fractional_scale},
};

use super::{
    capture::CaptureError,
    decorations,
    state::WayRay,
    wm::{Area, Snap},
};

/// How a window was last placed by a snap binding, kept in its user data until the user moves
/// or resizes it by hand; an output resize re-applies it.
#[derive(Debug, Default)]
pub struct SnapState(Cell<Option<Snap>>);

/// Remembers that `window` is snapped (`Some`) or free-floating again (`None`).
pub fn set_snap(window: &Window, snap: Option<Snap>) {
    window.user_data().insert_if_missing(SnapState::default);
    if let Some(state) = window.user_data().get::<SnapState>() {
        state.0.set(snap);
    }
}

fn snap_of(window: &Window) -> Option<Snap> {
    window
        .user_data()
        .get::<SnapState>()
        .and_then(|s| s.0.get())
}

/// Where a free-floating window of content `size` at `loc` goes on a smaller output: its title
/// bar and as much of it as fits stay visible. Returns the new location and, when the window is
/// larger than the area, the size to ask it for.
pub fn fit_into(
    area: Area,
    loc: (i32, i32),
    size: (i32, i32),
    title: i32,
) -> ((i32, i32), Option<(i32, i32)>) {
    let max_w = area.w.max(1);
    let max_h = (area.h - title).max(1);
    let new_size = (size.0.min(max_w), size.1.min(max_h));
    let resized = (new_size != size).then_some(new_size);
    let x = loc.0.clamp(area.x, area.x + area.w - new_size.0);
    let y = loc.1.clamp(area.y + title, area.y + area.h - new_size.1);
    ((x, y), resized)
}

impl WayRay {
    /// Gives the output a new size, and the scale the screen it is shown on calls for (see
    /// `compositor::scale`). Nothing happens when both are unchanged, so re-attaching a
    /// same-size screen keeps every window where it was.
    pub fn resize_output(&mut self, (width, height): (u32, u32)) -> Result<(), CaptureError> {
        let size: Size<i32, Physical> = (width as i32, height as i32).into();
        let current = self.output.current_mode().map(|m| m.size);
        let old_scale = self.output.current_scale().fractional_scale();
        let scale = self.scale.scale((width, height));
        let resized = current != Some(size);
        let rescaled = scale != old_scale;
        if resized {
            // The framebuffer first: a size it cannot have leaves the output as it was.
            self.capture.resize(&self.output, width, height)?;
        }
        self.scale
            .advertise_physical_size(&self.output, (width, height));
        if !resized && !rescaled {
            return Ok(());
        }
        tracing::info!(
            from = ?current,
            to = ?(width, height),
            from_scale = old_scale,
            scale,
            "reconfiguring the session output"
        );
        let mode = Mode {
            size,
            refresh: self.output.current_mode().map_or(60_000, |m| m.refresh),
        };
        if resized {
            // Only the screen's size exists: clients must not be offered the old one.
            if let Some(old) = self.output.current_mode() {
                self.output.delete_mode(old);
            }
        }
        self.output.change_current_state(
            resized.then_some(mode),
            None,
            rescaled.then_some(Scale::Fractional(scale)),
            None,
        );
        if resized {
            self.output.set_preferred(mode);
        }
        if rescaled {
            self.send_scale_to_surfaces(scale);
            self.cursor.set_scale(scale);
            self.refresh_cursor();
        }
        // Panels stretch to the new size and the usable area follows.
        smithay::desktop::layer_map_for_output(&self.output).arrange();
        self.last_usable_area = self.usable_area();
        self.refit_windows();
        if let Some(pointer) = self.seat.get_pointer() {
            let pos = pointer.current_location();
            let logical = self.output_logical_size();
            let clamped: Point<f64, Logical> = (
                pos.x.clamp(0.0, f64::from((logical.w - 1).max(0))),
                pos.y.clamp(0.0, f64::from((logical.h - 1).max(0))),
            )
                .into();
            if clamped != pos {
                self.on_pointer_motion(self.start_time.elapsed().as_millis() as u32, clamped);
            }
        }
        self.pacer.request_key_frame();
        self.needs_render = true;
        Ok(())
    }

    /// Tells every surface of every window (popups and subsurfaces too) the output's new scale:
    /// fractional-scale-v1's exact value, and the rounded-up integer as
    /// `wl_surface.preferred_buffer_scale`. (`wl_output.scale` went out with the output's state.)
    fn send_scale_to_surfaces(&self, scale: f64) {
        let integer = Scale::Fractional(scale).integer_scale();
        let transform = self.output.current_transform();
        for window in self.space.elements().chain(self.unmapped.iter()) {
            window.with_surfaces(|surface, states| {
                with_fractional_scale(states, |fs| fs.set_preferred_scale(scale));
                send_surface_state(surface, states, integer, transform);
            });
        }
        for layer in smithay::desktop::layer_map_for_output(&self.output).layers() {
            layer.with_surfaces(|surface, states| {
                with_fractional_scale(states, |fs| fs.set_preferred_scale(scale));
                send_surface_state(surface, states, integer, transform);
            });
        }
    }

    pub(super) fn refit_windows(&mut self) {
        if self.external_wm.is_active() {
            // The external WM lays the windows out for the new area.
            self.wm_tell_output();
            return;
        }
        let area = self.usable_area();
        let windows: Vec<Window> = self.space.elements().cloned().collect();
        for window in windows {
            let title = decorations::title_height(&window);
            let maximized = window.toplevel().is_some_and(|t| {
                t.with_pending_state(|s| s.states.contains(xdg_toplevel::State::Maximized))
            });
            let snap = snap_of(&window).or(maximized.then_some(Snap::Maximize));
            if let Some(snap) = snap {
                let target = self.wm.snap_area(snap, area, title);
                if let Some(toplevel) = window.toplevel() {
                    toplevel.with_pending_state(|s| s.size = Some((target.w, target.h).into()));
                    toplevel.send_pending_configure();
                }
                self.space.map_element(window, (target.x, target.y), false);
                continue;
            }
            let Some(loc) = self.space.element_location(&window) else {
                continue;
            };
            let geo = window.geometry();
            let (new_loc, new_size) =
                fit_into(area, (loc.x, loc.y), (geo.size.w, geo.size.h), title);
            if let (Some((w, h)), Some(toplevel)) = (new_size, window.toplevel()) {
                toplevel.with_pending_state(|s| s.size = Some((w, h).into()));
                toplevel.send_pending_configure();
            }
            if new_loc != (loc.x, loc.y) {
                self.space.map_element(window, new_loc, false);
            }
            let (w, h) = new_size.unwrap_or((geo.size.w, geo.size.h));
            tracing::debug!(
                x = new_loc.0,
                y = new_loc.1,
                w,
                h,
                "window fitted to the resized output"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Area = Area {
        x: 0,
        y: 0,
        w: 800,
        h: 600,
    };

    #[test]
    fn a_window_that_fits_stays_put() {
        assert_eq!(
            fit_into(SMALL, (100, 124), (300, 200), 24),
            ((100, 124), None)
        );
    }

    #[test]
    fn an_off_screen_window_comes_back_whole() {
        // Was at the right edge of a 1920-wide output.
        assert_eq!(
            fit_into(SMALL, (1500, 900), (300, 200), 24),
            ((500, 400), None)
        );
    }

    #[test]
    fn a_window_larger_than_the_output_is_shrunk_below_its_title_bar() {
        assert_eq!(
            fit_into(SMALL, (0, 24), (1900, 1000), 24),
            ((0, 24), Some((800, 576)))
        );
        // Without a title bar (client-side decorations) it may use the full height.
        assert_eq!(
            fit_into(SMALL, (0, 0), (1900, 1000), 0),
            ((0, 0), Some((800, 600)))
        );
    }
}
