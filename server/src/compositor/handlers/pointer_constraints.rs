//! pointer-constraints: games and 3D viewers lock the pointer in place (then read relative
//! motion) or confine it to a region. A constraint is activated when the pointer is over its
//! surface (inside its region) and honoured in pointer motion (`constrain_motion`); it ends when
//! its surface is no longer under the pointer (the window was closed or covered).

use smithay::{
    delegate_pointer_constraints,
    input::pointer::PointerHandle,
    reexports::wayland_server::protocol::wl_surface::WlSurface,
    utils::{Logical, Point},
    wayland::pointer_constraints::{
        with_pointer_constraint, PointerConstraint, PointerConstraintsHandler,
    },
};

use crate::compositor::state::WayRay;

impl PointerConstraintsHandler for WayRay {
    fn new_constraint(&mut self, surface: &WlSurface, pointer: &PointerHandle<Self>) {
        if let Some((under, origin)) = self.surface_under(pointer.current_location()) {
            if &under == surface {
                activate_if_inside(surface, pointer, pointer.current_location() - origin);
            }
        }
    }

    fn cursor_position_hint(
        &mut self,
        surface: &WlSurface,
        pointer: &PointerHandle<Self>,
        location: Point<f64, Logical>,
    ) {
        // A locked pointer is left where the client says it logically is when the lock ends.
        let active =
            with_pointer_constraint(surface, pointer, |c| c.is_some_and(|c| c.is_active()));
        if !active {
            return;
        }
        if let Some((under, origin)) = self.surface_under(pointer.current_location()) {
            if &under == surface {
                pointer.set_location(origin + location);
            }
        }
    }
}

delegate_pointer_constraints!(WayRay);

fn activate_if_inside(
    surface: &WlSurface,
    pointer: &PointerHandle<WayRay>,
    local: Point<f64, Logical>,
) {
    with_pointer_constraint(surface, pointer, |constraint| {
        if let Some(constraint) = constraint {
            let inside = constraint
                .region()
                .is_none_or(|r| r.contains(local.to_i32_round()));
            if !constraint.is_active() && inside {
                constraint.activate();
            }
        }
    });
}

impl WayRay {
    /// Where absolute pointer motion to `target` may take the pointer: `None` while a lock holds
    /// it (only relative motion reaches the client), the target itself otherwise; a confined
    /// pointer does not leave its region.
    pub fn constrain_motion(
        &mut self,
        pointer: &PointerHandle<WayRay>,
        target: Point<f64, Logical>,
    ) -> Option<Point<f64, Logical>> {
        let Some(focus) = pointer.current_focus() else {
            return Some(target);
        };
        let still_under = self
            .surface_under(pointer.current_location())
            .filter(|(s, _)| s == &focus);
        let Some((_, origin)) = still_under else {
            // The constrained surface went away from under the pointer: the constraint ends.
            with_pointer_constraint(&focus, pointer, |c| {
                if let Some(c) = c.filter(|c| c.is_active()) {
                    c.deactivate();
                }
            });
            return Some(target);
        };
        let allowed = with_pointer_constraint(&focus, pointer, |constraint| {
            let Some(constraint) = constraint.filter(|c| c.is_active()) else {
                return true;
            };
            match &*constraint {
                PointerConstraint::Locked(_) => false,
                PointerConstraint::Confined(confined) => {
                    let on_surface = self.surface_under(target).is_some_and(|(s, _)| s == focus);
                    on_surface
                        && confined
                            .region()
                            .is_none_or(|r| r.contains((target - origin).to_i32_round()))
                }
            }
        });
        allowed.then_some(target)
    }

    /// After the pointer moved onto `surface` (whose origin is `origin`): its constraint, if
    /// any, starts once the pointer is inside the constraint's region.
    pub fn activate_pointer_constraint(
        &mut self,
        pointer: &PointerHandle<WayRay>,
        surface: &WlSurface,
        origin: Point<f64, Logical>,
    ) {
        activate_if_inside(surface, pointer, pointer.current_location() - origin);
    }
}
