//! Server-side decorations: a title bar with a close button above every window that asked for
//! server-side decorations, and the scene (windows and bars in stacking order) the renderer draws.

use std::collections::HashMap;

use smithay::{
    backend::renderer::{
        element::{
            solid::{SolidColorBuffer, SolidColorRenderElement},
            surface::WaylandSurfaceRenderElement,
            AsRenderElements, Kind,
        },
        pixman::PixmanRenderer,
    },
    desktop::{Space, Window},
    reexports::{
        wayland_protocols::xdg::{
            decoration::zv1::server::zxdg_toplevel_decoration_v1::Mode,
            shell::server::xdg_toplevel::State,
        },
        wayland_server::{backend::ObjectId, Resource},
    },
    utils::{Logical, Point, Rectangle},
};

/// Height of a title bar in logical pixels (a multiple of 4, so quarter scales keep it whole).
pub const TITLE_HEIGHT: i32 = 24;
const ACTIVE: [f32; 4] = [0.20, 0.36, 0.62, 1.0];
const INACTIVE: [f32; 4] = [0.26, 0.28, 0.32, 1.0];
const CLOSE: [f32; 4] = [0.80, 0.25, 0.22, 1.0];
/// The close button is inset this much inside the bar's right end.
const CLOSE_INSET: i32 = 4;

smithay::backend::renderer::element::render_elements! {
    /// Everything drawn on the output.
    pub OutputElement<=PixmanRenderer>;
    Surface=WaylandSurfaceRenderElement<PixmanRenderer>,
    Solid=SolidColorRenderElement,
}

/// Which part of a decoration is under the pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecorationHit {
    TitleBar,
    Close,
}

/// Whether the window negotiated server-side decorations (xdg-decoration).
pub fn has_title_bar(window: &Window) -> bool {
    window
        .toplevel()
        .is_some_and(|t| t.current_state().decoration_mode == Some(Mode::ServerSide))
}

pub fn title_height(window: &Window) -> i32 {
    if has_title_bar(window) {
        TITLE_HEIGHT
    } else {
        0
    }
}

fn bar_rect(space: &Space<Window>, window: &Window) -> Option<Rectangle<i32, Logical>> {
    if !has_title_bar(window) {
        return None;
    }
    let g = space.element_geometry(window)?;
    Some(Rectangle::new(
        (g.loc.x, g.loc.y - TITLE_HEIGHT).into(),
        (g.size.w, TITLE_HEIGHT).into(),
    ))
}

fn close_rect(bar: Rectangle<i32, Logical>) -> Rectangle<i32, Logical> {
    let side = TITLE_HEIGHT - 2 * CLOSE_INSET;
    Rectangle::new(
        (
            bar.loc.x + bar.size.w - side - CLOSE_INSET,
            bar.loc.y + CLOSE_INSET,
        )
            .into(),
        (side, side).into(),
    )
}

/// The decoration under `point`, if no window above covers it.
pub fn hit(space: &Space<Window>, point: Point<f64, Logical>) -> Option<(Window, DecorationHit)> {
    // Topmost first: a window's content hides the bars of the windows below it.
    for window in space.elements().rev() {
        if let Some(bar) = bar_rect(space, window) {
            if bar.to_f64().contains(point) {
                let part = if close_rect(bar).to_f64().contains(point) {
                    DecorationHit::Close
                } else {
                    DecorationHit::TitleBar
                };
                return Some((window.clone(), part));
            }
        }
        if let Some(g) = space.element_geometry(window) {
            if g.to_f64().contains(point) {
                return None;
            }
        }
    }
    None
}

/// Solid-colour buffers per decorated window, kept across frames so the damage tracker sees
/// only what changed (a focus change recolours one bar).
#[derive(Default)]
pub struct Decorations {
    bars: HashMap<ObjectId, Bar>,
}

struct Bar {
    size: (i32, i32),
    color: [f32; 4],
    bar: SolidColorBuffer,
    close: SolidColorBuffer,
}

impl Decorations {
    /// Windows and their bars, topmost first, as the damage tracker wants them, at the
    /// output's `scale`: positions and sizes are logical, the elements physical.
    pub fn scene(
        &mut self,
        renderer: &mut PixmanRenderer,
        space: &Space<Window>,
        scale: f64,
    ) -> Vec<OutputElement> {
        let mut elements = Vec::new();
        let mut alive = Vec::new();
        for window in space.elements().rev() {
            let Some(location) = space.element_location(window) else {
                continue;
            };
            if let (Some(bar), Some(toplevel)) = (bar_rect(space, window), window.toplevel()) {
                let id = toplevel.wl_surface().id();
                let active = toplevel.current_state().states.contains(State::Activated);
                let color = if active { ACTIVE } else { INACTIVE };
                let close = close_rect(bar);
                let size = (bar.size.w, bar.size.h);
                let buffers = self.bars.entry(id.clone()).or_insert_with(|| Bar {
                    size,
                    color,
                    bar: SolidColorBuffer::new(bar.size, color),
                    close: SolidColorBuffer::new(close.size, CLOSE),
                });
                if buffers.size != size || buffers.color != color {
                    buffers.bar.update(bar.size, color);
                    buffers.close.resize(close.size);
                    buffers.size = size;
                    buffers.color = color;
                }
                elements.push(OutputElement::Solid(SolidColorRenderElement::from_buffer(
                    &buffers.close,
                    close.loc.to_physical_precise_round(scale),
                    scale,
                    1.0,
                    Kind::Unspecified,
                )));
                elements.push(OutputElement::Solid(SolidColorRenderElement::from_buffer(
                    &buffers.bar,
                    bar.loc.to_physical_precise_round(scale),
                    scale,
                    1.0,
                    Kind::Unspecified,
                )));
                alive.push(id);
            }
            let render_loc = (location - window.geometry().loc).to_physical_precise_round(scale);
            elements.extend(AsRenderElements::<PixmanRenderer>::render_elements::<
                OutputElement,
            >(
                window, renderer, render_loc, scale.into(), 1.0
            ));
        }
        self.bars.retain(|id, _| alive.contains(id));
        elements
    }
}
