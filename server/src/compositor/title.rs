//! Title text on server-side title bars: the window's title (its app_id or X11 class when it has
//! none), elided with "…" to fit, drawn with fontdue into the bar's pixels. Without a font the
//! bars stay plain, which is logged once at start.

use std::collections::HashMap;

use fontdue::{Font, Metrics};
use smithay::{
    desktop::Window,
    wayland::{compositor::with_states, shell::xdg::XdgToplevelSurfaceData},
};

/// Text height in logical pixels inside a 24-pixel bar.
pub const TEXT_PX: f32 = 14.0;
/// Space between the bar's left end and the text.
pub const TEXT_LEFT: i32 = 8;
const TEXT_COLOR: [u8; 3] = [0xee, 0xee, 0xee];
const ELLIPSIS: char = '…';

/// What the bar of `window` says: its title, else its app_id (Wayland) or class (X11).
pub fn window_title(window: &Window) -> String {
    if let Some(toplevel) = window.toplevel() {
        return with_states(toplevel.wl_surface(), |states| {
            states
                .data_map
                .get::<XdgToplevelSurfaceData>()
                .and_then(|d| d.lock().ok())
                .map(|d| {
                    d.title
                        .clone()
                        .filter(|t| !t.trim().is_empty())
                        .or_else(|| d.app_id.clone())
                        .unwrap_or_default()
                })
                .unwrap_or_default()
        });
    }
    if let Some(x11) = window.x11_surface() {
        let title = x11.title();
        return if title.trim().is_empty() {
            x11.class()
        } else {
            title
        };
    }
    String::new()
}

/// A loaded font with its rasterized glyphs, kept for the session's life.
pub struct TitleFont {
    font: Font,
    /// Rasterized glyphs by character and pixel size (its bits: title bars follow the scale).
    glyphs: HashMap<(char, u32), (Metrics, Vec<u8>)>,
}

impl TitleFont {
    /// The first sans font the system has (see `crate::font`), or `None` with a warning.
    pub fn load() -> Option<Self> {
        let loaded = crate::font::find(None).and_then(|path| crate::font::load(&path));
        match loaded {
            Ok(font) => Some(TitleFont::new(font)),
            Err(err) => {
                tracing::warn!(%err, "title bars are drawn without titles");
                None
            }
        }
    }

    pub fn new(font: Font) -> Self {
        TitleFont {
            font,
            glyphs: HashMap::new(),
        }
    }

    fn glyph(&mut self, c: char, px: f32) -> &(Metrics, Vec<u8>) {
        let font = &self.font;
        self.glyphs
            .entry((c, px.to_bits()))
            .or_insert_with(|| font.rasterize(c, px))
    }

    fn advance(&mut self, c: char, px: f32) -> f32 {
        self.glyph(c, px).0.advance_width
    }

    /// `text` at `px` cut to at most `max_width` pixels, ending in "…" when it was cut.
    pub fn elide(&mut self, text: &str, max_width: i32, px: f32) -> String {
        let max = max_width.max(0) as f32;
        let width: f32 = text.chars().map(|c| self.advance(c, px)).sum();
        if width <= max {
            return text.to_string();
        }
        let room = max - self.advance(ELLIPSIS, px);
        let mut used = 0.0;
        let mut out = String::new();
        for c in text.chars() {
            let w = self.advance(c, px);
            if used + w > room {
                break;
            }
            used += w;
            out.push(c);
        }
        if room >= 0.0 {
            out.push(ELLIPSIS);
        }
        out
    }

    /// Draws `text` (already elided) at `px` onto ARGB8888 `pixels` of `width`×`height`,
    /// starting `left` pixels in and centred vertically, blending over what is there.
    pub fn draw(
        &mut self,
        pixels: &mut [u8],
        width: i32,
        height: i32,
        left: i32,
        text: &str,
        px: f32,
    ) {
        let (ascent, descent) = self
            .font
            .horizontal_line_metrics(px)
            .map(|m| (m.ascent, m.descent))
            .unwrap_or((px * 0.8, -px * 0.2));
        let baseline = ((height as f32 + ascent + descent) / 2.0).round() as i32;
        let mut pen = left as f32;
        for c in text.chars() {
            let (metrics, coverage) = self.glyph(c, px).clone();
            let gx = pen.round() as i32 + metrics.xmin;
            let gy = baseline - metrics.height as i32 - metrics.ymin;
            for row in 0..metrics.height as i32 {
                let y = gy + row;
                if y < 0 || y >= height {
                    continue;
                }
                for col in 0..metrics.width as i32 {
                    let x = gx + col;
                    if x < 0 || x >= width {
                        continue;
                    }
                    let a = coverage[(row * metrics.width as i32 + col) as usize] as u32;
                    if a == 0 {
                        continue;
                    }
                    let i = ((y * width + x) * 4) as usize;
                    // Little-endian ARGB8888: B, G, R, A.
                    for (k, &fg) in [TEXT_COLOR[2], TEXT_COLOR[1], TEXT_COLOR[0]]
                        .iter()
                        .enumerate()
                    {
                        let bg = pixels[i + k] as u32;
                        pixels[i + k] = ((fg as u32 * a + bg * (255 - a)) / 255) as u8;
                    }
                }
            }
            pen += metrics.advance_width;
        }
    }
}

/// A solid ARGB8888 bar of `color` (RGBA in 0..1).
pub fn fill(width: i32, height: i32, color: [f32; 4]) -> Vec<u8> {
    let to = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    let px = [to(color[2]), to(color[1]), to(color[0]), to(color[3])];
    px.iter()
        .copied()
        .cycle()
        .take((width.max(0) * height.max(0) * 4) as usize)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn font() -> Option<TitleFont> {
        let path = crate::font::find(None).ok()?;
        Some(TitleFont::new(crate::font::load(&path).ok()?))
    }

    #[test]
    fn short_titles_are_kept_and_long_ones_elided_to_fit() {
        let Some(mut font) = font() else {
            eprintln!("no font installed (fonts-dejavu-core); skipping");
            return;
        };
        assert_eq!(font.elide("foot", 200, TEXT_PX), "foot");
        let long = "A very long window title that cannot possibly fit in a small bar";
        let cut = font.elide(long, 120, TEXT_PX);
        assert!(cut.ends_with(ELLIPSIS), "{cut}");
        assert!(cut.len() < long.len());
        let width: f32 = cut.chars().map(|c| font.advance(c, TEXT_PX)).sum();
        assert!(width <= 120.0, "{cut} is {width} px");
        // No room at all: nothing but possibly the ellipsis.
        assert!(font.elide(long, 0, TEXT_PX).chars().count() <= 1);
    }

    #[test]
    fn drawing_changes_only_the_text_area() {
        let Some(mut font) = font() else {
            eprintln!("no font installed (fonts-dejavu-core); skipping");
            return;
        };
        let (w, h) = (200, 24);
        let bg = fill(w, h, [0.2, 0.36, 0.62, 1.0]);
        let mut px = bg.clone();
        font.draw(&mut px, w, h, TEXT_LEFT, "Hello", TEXT_PX);
        assert_ne!(px, bg, "text drew nothing");
        // Nothing left of the text's start or in the right half.
        for y in 0..h {
            for x in (0..TEXT_LEFT - 1).chain(w / 2..w) {
                let i = ((y * w + x) * 4) as usize;
                assert_eq!(px[i..i + 4], bg[i..i + 4], "pixel {x},{y}");
            }
        }
    }
}
