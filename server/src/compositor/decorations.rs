//! Server-side decorations: a title bar with the window's title and a close button above every
//! window that asked for server-side decorations, and the scene (windows and bars in stacking
//! order) the renderer draws.

use std::collections::HashMap;

use smithay::{
    backend::allocator::Fourcc,
    backend::renderer::{
        element::{
            memory::{MemoryRenderBuffer, MemoryRenderBufferRenderElement},
            solid::{SolidColorBuffer, SolidColorRenderElement},
            surface::{render_elements_from_surface_tree, WaylandSurfaceRenderElement},
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
    utils::{Logical, Point, Rectangle, Transform},
};

use super::title::{self, TitleFont};

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
    Memory=MemoryRenderBufferRenderElement<PixmanRenderer>,
}

/// Which part of a decoration is under the pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecorationHit {
    TitleBar,
    Close,
}

/// Whether the window negotiated server-side decorations (xdg-decoration), or is an X11
/// window that does not draw its own.
pub fn has_title_bar(window: &Window) -> bool {
    // An external WM draws what it wants (borders); title bars are the built-in WM's.
    if super::wm::external::externally_managed(window) {
        return false;
    }
    if let Some(x11) = window.x11_surface() {
        return super::handlers::x11_wants_title_bar(x11);
    }
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

/// Bar pixels per decorated window, kept across frames so the damage tracker sees only what
/// changed (a focus change recolours one bar, a new title redraws one bar).
pub struct Decorations {
    bars: HashMap<ObjectId, Bar>,
    /// An external WM's borders per window: four sides, kept so only changes are damage.
    borders: HashMap<ObjectId, [SolidColorBuffer; 4]>,
    font: Option<TitleFont>,
}

struct Bar {
    size: (i32, i32),
    color: [f32; 4],
    title: String,
    bar: MemoryRenderBuffer,
    close: SolidColorBuffer,
}

impl Default for Decorations {
    fn default() -> Self {
        Decorations {
            bars: HashMap::new(),
            borders: HashMap::new(),
            font: TitleFont::load(),
        }
    }
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
        let mut alive_borders = Vec::new();
        for window in space.elements().rev() {
            let Some(location) = space.element_location(window) else {
                continue;
            };
            if let (Some(bar), Some(surface)) = (
                bar_rect(space, window),
                super::xwayland::window_surface(window),
            ) {
                let id = surface.id();
                let active = match (window.toplevel(), window.x11_surface()) {
                    (Some(toplevel), _) => {
                        toplevel.current_state().states.contains(State::Activated)
                    }
                    (None, Some(x11)) => x11.is_activated(),
                    (None, None) => false,
                };
                let color = if active { ACTIVE } else { INACTIVE };
                let close = close_rect(bar);
                // The bar's pixels are drawn at the output's scale, so its text stays sharp.
                let physical = bar.size.to_f64().to_physical(scale).to_i32_round::<i32>();
                let size = (physical.w, physical.h);
                let title = title::window_title(window);
                let font = &mut self.font;
                let buffers = self.bars.entry(id.clone()).or_insert_with(|| Bar {
                    size,
                    color,
                    title: title.clone(),
                    bar: bar_pixels(font.as_mut(), size, color, &title, scale),
                    close: SolidColorBuffer::new(close.size, CLOSE),
                });
                if buffers.size != size || buffers.color != color || buffers.title != title {
                    buffers.bar = bar_pixels(font.as_mut(), size, color, &title, scale);
                    buffers.close.resize(close.size);
                    buffers.size = size;
                    buffers.color = color;
                    buffers.title = title;
                }
                elements.push(OutputElement::Solid(SolidColorRenderElement::from_buffer(
                    &buffers.close,
                    close.loc.to_physical_precise_round(scale),
                    scale,
                    1.0,
                    Kind::Unspecified,
                )));
                match MemoryRenderBufferRenderElement::from_buffer(
                    renderer,
                    bar.loc
                        .to_physical_precise_round::<f64, i32>(scale)
                        .to_f64(),
                    &buffers.bar,
                    None,
                    // All of the buffer's physical pixels onto the bar's logical size: one
                    // buffer pixel per screen pixel, no filtering at the edges.
                    Some(Rectangle::from_size(
                        (f64::from(size.0), f64::from(size.1)).into(),
                    )),
                    Some((bar.size.w, bar.size.h).into()),
                    Kind::Unspecified,
                ) {
                    Ok(element) => elements.push(OutputElement::Memory(element)),
                    Err(err) => tracing::warn!(%err, "cannot draw a title bar"),
                }
                alive.push(id);
            }
            if let (Some((width, rgba)), Some(surface)) = (
                super::wm::external::borders(window),
                super::xwayland::window_surface(window),
            ) {
                // Before the window in this topmost-first list: drawn just outside it.
                let content = Rectangle::new(location, window.geometry().size);
                let sides = border_sides(content, width);
                let color = rgba_color(rgba);
                let buffers = self
                    .borders
                    .entry(surface.id())
                    .or_insert_with(|| sides.map(|side| SolidColorBuffer::new(side.size, color)));
                for (buffer, side) in buffers.iter_mut().zip(sides) {
                    buffer.update(side.size, color);
                    elements.push(OutputElement::Solid(SolidColorRenderElement::from_buffer(
                        buffer,
                        side.loc.to_physical_precise_round(scale),
                        scale,
                        1.0,
                        Kind::Unspecified,
                    )));
                }
                alive_borders.push(surface.id());
            }
            let render_loc = (location - window.geometry().loc).to_physical_precise_round(scale);
            if let Some(surface) = super::xwayland::legacy_surface(window) {
                elements.extend(render_elements_from_surface_tree(
                    renderer,
                    &surface,
                    render_loc,
                    scale,
                    1.0,
                    Kind::Unspecified,
                ));
                continue;
            }
            elements.extend(AsRenderElements::<PixmanRenderer>::render_elements::<
                OutputElement,
            >(
                window, renderer, render_loc, scale.into(), 1.0
            ));
        }
        self.bars.retain(|id, _| alive.contains(id));
        self.borders.retain(|id, _| alive_borders.contains(id));
        elements
    }
}

/// The four sides of a border `width` wide around `content`, in logical coordinates.
fn border_sides(content: Rectangle<i32, Logical>, width: i32) -> [Rectangle<i32, Logical>; 4] {
    let (x, y, w, h) = (content.loc.x, content.loc.y, content.size.w, content.size.h);
    [
        (x - width, y - width, w + 2 * width, width),
        (x - width, y + h, w + 2 * width, width),
        (x - width, y, width, h),
        (x + w, y, width, h),
    ]
    .map(|(x, y, w, h)| Rectangle::new((x, y).into(), (w, h).into()))
}

/// 0xRRGGBBAA as the renderer's colour, drawn opaque.
fn rgba_color(rgba: u32) -> [f32; 4] {
    let channel = |shift: u32| ((rgba >> shift) & 0xff) as f32 / 255.0;
    [channel(24), channel(16), channel(8), 1.0]
}

/// A bar of `size` physical pixels in `color` with `title` elided to end before the close
/// button, laid out for the output's `scale`.
fn bar_pixels(
    font: Option<&mut TitleFont>,
    (w, h): (i32, i32),
    color: [f32; 4],
    title: &str,
    scale: f64,
) -> MemoryRenderBuffer {
    let mut pixels = title::fill(w, h, color);
    if let Some(font) = font {
        let px = |logical: i32| (f64::from(logical) * scale).round() as i32;
        let close_side = TITLE_HEIGHT - 2 * CLOSE_INSET;
        let room = w - px(title::TEXT_LEFT + close_side + 3 * CLOSE_INSET);
        let size = title::TEXT_PX * scale as f32;
        let text = font.elide(title, room, size);
        font.draw(&mut pixels, w, h, px(title::TEXT_LEFT), &text, size);
    }
    MemoryRenderBuffer::from_slice(
        &pixels,
        Fourcc::Argb8888,
        (w, h),
        1,
        Transform::Normal,
        Some(vec![Rectangle::from_size((w, h).into())]),
    )
}
