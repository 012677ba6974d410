//! Draws the login form into an XRGB8888 buffer (the `wl_shm` format every compositor has):
//! solid rectangles and anti-aliased text rasterised by `fontdue`. Pure: pixels in, pixels out,
//! so layout and text are tested without a compositor.

use std::collections::HashMap;

use fontdue::{Font, Metrics};

use crate::form::{Field, Form, Phase, Tone};

/// Colours as 0xRRGGBB.
pub const BACKGROUND: u32 = 0x1d2330;
const PANEL: u32 = 0x2a3140;
const PANEL_EDGE: u32 = 0x3a4356;
const FIELD: u32 = 0x151a23;
const FIELD_EDGE: u32 = 0x4a5468;
const ACCENT: u32 = 0x5b9cf0;
const TEXT: u32 = 0xeef1f6;
const DIM: u32 = 0xa3acbb;
const ERROR: u32 = 0xff6363;

/// Lines the status (error) message may take before it is cut short.
const STATUS_LINES: usize = 3;

/// The reference output the layout is designed for; larger or smaller outputs scale it.
const DESIGN_HEIGHT: f32 = 800.0;
const DESIGN_WIDTH: f32 = 1280.0;

/// What the form shows besides its fields.
pub struct Labels<'a> {
    /// The server's host name, under the title.
    pub host: &'a str,
    /// The line above the fields: what to do here.
    pub prompt: &'a str,
}

/// The greeter's prompt.
pub const LOGIN_PROMPT: &str = "Insert your card or log in";
/// The lock screen's prompt.
pub const LOCK_PROMPT: &str = "Locked — enter your password";

/// A rasterised glyph and where it sits relative to the pen.
struct Glyph {
    metrics: Metrics,
    coverage: Vec<u8>,
}

/// Rasterises and caches glyphs of one font.
pub struct Painter {
    font: Font,
    glyphs: HashMap<(char, u32), Glyph>,
    /// What a password character is shown as: a bullet, or `*` if the font has none.
    bullet: char,
}

/// An XRGB8888 pixel buffer: 4 bytes per pixel, little-endian (B, G, R, X in memory).
pub struct Canvas<'a> {
    pixels: &'a mut [u8],
    width: usize,
    height: usize,
}

impl<'a> Canvas<'a> {
    /// `pixels` must hold `width * height` pixels with no row padding; `None` if it does not.
    pub fn new(pixels: &'a mut [u8], width: usize, height: usize) -> Option<Self> {
        (pixels.len() >= width * height * 4).then_some(Self {
            pixels,
            width,
            height,
        })
    }

    pub fn fill(&mut self, colour: u32) {
        let px = pixel_bytes(colour);
        let len = self.width * self.height * 4;
        for chunk in self.pixels[..len].chunks_exact_mut(4) {
            chunk.copy_from_slice(&px);
        }
    }

    /// Fills a rectangle, clipped to the canvas.
    pub fn rect(&mut self, x: i32, y: i32, w: i32, h: i32, colour: u32) {
        let (x0, x1) = clip(x, w, self.width);
        let (y0, y1) = clip(y, h, self.height);
        let px = pixel_bytes(colour);
        for row in y0..y1 {
            let start = (row * self.width + x0) * 4;
            let end = (row * self.width + x1) * 4;
            for chunk in self.pixels[start..end].chunks_exact_mut(4) {
                chunk.copy_from_slice(&px);
            }
        }
    }

    /// A `t` pixel wide outline inside the rectangle.
    fn frame(&mut self, x: i32, y: i32, w: i32, h: i32, t: i32, colour: u32) {
        self.rect(x, y, w, t, colour);
        self.rect(x, y + h - t, w, t, colour);
        self.rect(x, y, t, h, colour);
        self.rect(x + w - t, y, t, h, colour);
    }

    /// Blends `colour` over the pixel at (x, y) with `coverage` (0–255).
    fn blend(&mut self, x: i32, y: i32, colour: u32, coverage: u8) {
        if coverage == 0 || x < 0 || y < 0 || x as usize >= self.width || y as usize >= self.height
        {
            return;
        }
        let i = (y as usize * self.width + x as usize) * 4;
        let fg = pixel_bytes(colour);
        let a = coverage as u32;
        for (out, fg) in self.pixels[i..i + 3].iter_mut().zip(fg) {
            *out = ((fg as u32 * a + *out as u32 * (255 - a) + 127) / 255) as u8;
        }
        self.pixels[i + 3] = 0xff;
    }
}

fn pixel_bytes(colour: u32) -> [u8; 4] {
    (colour | 0xff00_0000).to_le_bytes()
}

/// The part of `[pos, pos + len)` inside `[0, max)`.
fn clip(pos: i32, len: i32, max: usize) -> (usize, usize) {
    let start = pos.clamp(0, max as i32) as usize;
    let end = pos.saturating_add(len).clamp(0, max as i32) as usize;
    (start, end.max(start))
}

/// Where everything goes on an output of a given size, in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Layout {
    /// Pixels per design unit.
    pub unit: f32,
    pub panel: (i32, i32, i32, i32),
    pub user_field: (i32, i32, i32, i32),
    pub password_field: (i32, i32, i32, i32),
}

impl Layout {
    pub fn new(width: u32, height: u32) -> Self {
        let unit = (width as f32 / DESIGN_WIDTH)
            .min(height as f32 / DESIGN_HEIGHT)
            .clamp(0.5, 4.0);
        let u = |v: f32| (v * unit).round() as i32;
        let (pw, ph) = (u(480.0), u(410.0));
        let px = (width as i32 - pw) / 2;
        let py = (height as i32 - ph) / 2;
        let field = |top: f32| (px + u(40.0), py + u(top), pw - u(80.0), u(38.0));
        Self {
            unit,
            panel: (px, py, pw, ph),
            user_field: field(188.0),
            password_field: field(262.0),
        }
    }

    fn px(&self, v: f32) -> i32 {
        (v * self.unit).round() as i32
    }

    fn size(&self, v: f32) -> f32 {
        v * self.unit
    }
}

impl Painter {
    pub fn new(font: Font) -> Self {
        let bullet = if font.lookup_glyph_index('•') != 0 {
            '•'
        } else {
            '*'
        };
        Self {
            font,
            glyphs: HashMap::new(),
            bullet,
        }
    }

    /// What a password of `chars` characters is shown as.
    pub fn mask(&self, chars: usize) -> String {
        std::iter::repeat_n(self.bullet, chars).collect()
    }

    fn glyph(&mut self, c: char, px: f32) -> &Glyph {
        let font = &self.font;
        self.glyphs.entry((c, px.to_bits())).or_insert_with(|| {
            let (metrics, coverage) = font.rasterize(c, px);
            Glyph { metrics, coverage }
        })
    }

    /// Width of `text` at `px` pixels, as [`Painter::text`] advances the pen.
    pub fn text_width(&self, text: &str, px: f32) -> f32 {
        let mut width = 0.0;
        let mut prev = None;
        for c in text.chars() {
            if let Some(p) = prev {
                width += self.font.horizontal_kern(p, c, px).unwrap_or(0.0);
            }
            width += self.font.metrics(c, px).advance_width;
            prev = Some(c);
        }
        width
    }

    /// The longest end of `text` that fits in `max` pixels: a field shows where the user types.
    pub fn visible_tail<'t>(&self, text: &'t str, px: f32, max: f32) -> &'t str {
        let mut start = 0;
        while start < text.len() && self.text_width(&text[start..], px) > max {
            start += text[start..].chars().next().map_or(1, char::len_utf8);
        }
        &text[start..]
    }

    /// Breaks `text` into at most `max_lines` lines of at most `max` pixels, at spaces where
    /// possible; what does not fit ends in "…".
    pub fn wrap(&self, text: &str, px: f32, max: f32, max_lines: usize) -> Vec<String> {
        let mut lines: Vec<String> = Vec::new();
        let mut line = String::new();
        let mut truncated = false;
        'words: for word in text.split_whitespace() {
            let candidate = if line.is_empty() {
                word.to_string()
            } else {
                format!("{line} {word}")
            };
            if self.text_width(&candidate, px) <= max {
                line = candidate;
                continue;
            }
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            // A word wider than a line (a path, say) is broken between characters.
            for c in word.chars() {
                if lines.len() == max_lines {
                    truncated = true;
                    break 'words;
                }
                line.push(c);
                if self.text_width(&line, px) > max {
                    line.pop();
                    lines.push(std::mem::replace(&mut line, c.to_string()));
                }
            }
            if lines.len() == max_lines {
                truncated = true;
                break;
            }
        }
        if !line.is_empty() {
            if lines.len() < max_lines {
                lines.push(line);
            } else {
                truncated = true;
            }
        }
        if truncated {
            if let Some(last) = lines.last_mut() {
                while !last.is_empty() && self.text_width(&format!("{last}…"), px) > max {
                    last.pop();
                }
                last.push('…');
            }
        }
        lines
    }

    /// Draws `text` with its baseline at `baseline`, starting at `x`; returns the pen's end.
    pub fn text(
        &mut self,
        canvas: &mut Canvas,
        x: i32,
        baseline: i32,
        px: f32,
        colour: u32,
        text: &str,
    ) -> i32 {
        let mut pen = x as f32;
        let mut prev = None;
        for c in text.chars() {
            if let Some(p) = prev {
                pen += self.font.horizontal_kern(p, c, px).unwrap_or(0.0);
            }
            let glyph = self.glyph(c, px);
            let m = glyph.metrics;
            let left = pen.round() as i32 + m.xmin;
            let top = baseline - m.height as i32 - m.ymin;
            for (row, line) in glyph.coverage.chunks(m.width.max(1)).enumerate() {
                for (col, &a) in line.iter().enumerate() {
                    canvas.blend(left + col as i32, top + row as i32, colour, a);
                }
            }
            pen += m.advance_width;
            prev = Some(c);
        }
        pen.round() as i32
    }

    fn centred(
        &mut self,
        canvas: &mut Canvas,
        centre: i32,
        baseline: i32,
        px: f32,
        colour: u32,
        text: &str,
    ) {
        let w = self.text_width(text, px).round() as i32;
        self.text(canvas, centre - w / 2, baseline, px, colour, text);
    }

    /// Draws the whole greeter: background, panel, title, hint, both fields, status line.
    pub fn draw(&mut self, canvas: &mut Canvas, form: &Form, labels: &Labels) {
        let layout = Layout::new(canvas.width as u32, canvas.height as u32);
        let (px, py, pw, ph) = layout.panel;
        let centre = px + pw / 2;
        let at = |v: f32| py + layout.px(v);

        canvas.fill(BACKGROUND);
        canvas.rect(px, py, pw, ph, PANEL);
        canvas.frame(px, py, pw, ph, layout.px(1.0).max(1), PANEL_EDGE);
        canvas.rect(px, py, pw, layout.px(4.0).max(2), ACCENT);

        self.centred(canvas, centre, at(66.0), layout.size(40.0), TEXT, "WayRay");
        self.centred(
            canvas,
            centre,
            at(96.0),
            layout.size(18.0),
            DIM,
            labels.host,
        );
        self.centred(
            canvas,
            centre,
            at(140.0),
            layout.size(19.0),
            TEXT,
            labels.prompt,
        );

        let editing = form.phase() != Phase::Welcome;
        let password = self.mask(form.password_chars());
        let fields = [
            (Field::User, "User name", form.user(), layout.user_field),
            (
                Field::Password,
                "Password",
                password.as_str(),
                layout.password_field,
            ),
        ];
        for (field, label, value, (fx, fy, fw, fh)) in fields {
            let focused = editing && form.focus() == field;
            self.text(
                canvas,
                fx,
                fy - layout.px(8.0),
                layout.size(15.0),
                DIM,
                label,
            );
            canvas.rect(fx, fy, fw, fh, FIELD);
            let (edge, thickness) = if focused {
                (ACCENT, layout.px(2.0).max(2))
            } else {
                (FIELD_EDGE, layout.px(1.0).max(1))
            };
            canvas.frame(fx, fy, fw, fh, thickness, edge);
            let size = layout.size(20.0);
            let pad = layout.px(10.0);
            let caret_w = layout.px(2.0).max(2);
            let room = (fw - 2 * pad - caret_w - 1) as f32;
            let shown = self.visible_tail(value, size, room);
            let baseline = fy + fh / 2 + layout.px(7.0);
            let end = self.text(canvas, fx + pad, baseline, size, TEXT, shown);
            if focused {
                let caret_h = layout.px(24.0);
                canvas.rect(end + 1, fy + (fh - caret_h) / 2, caret_w, caret_h, TEXT);
            }
        }

        if let Some((status, tone)) = form.status() {
            let colour = match tone {
                Tone::Info => ACCENT,
                Tone::Error => ERROR,
            };
            let size = layout.size(17.0);
            let (fx, _, fw, _) = layout.password_field;
            let lines = self.wrap(&status, size, fw as f32, STATUS_LINES);
            for (i, line) in lines.iter().enumerate() {
                let baseline = at(338.0 + 22.0 * i as f32);
                self.text(canvas, fx, baseline, size, colour, line);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::form::Key;

    fn painter() -> Painter {
        let path = crate::font::find(None).expect("a font (install fonts-dejavu-core)");
        Painter::new(crate::font::load(&path).expect("load the font"))
    }

    fn render(form: &Form, width: usize, height: usize) -> Vec<u8> {
        let mut pixels = vec![0; width * height * 4];
        let mut canvas = Canvas::new(&mut pixels, width, height).unwrap();
        painter().draw(
            &mut canvas,
            form,
            &Labels {
                host: "rack1",
                prompt: LOGIN_PROMPT,
            },
        );
        pixels
    }

    fn count(
        pixels: &[u8],
        area: (i32, i32, i32, i32),
        width: usize,
        pred: fn(u32) -> bool,
    ) -> usize {
        let (x, y, w, h) = area;
        let mut n = 0;
        for row in y..y + h {
            for col in x..x + w {
                let i = (row as usize * width + col as usize) * 4;
                let c = u32::from_le_bytes([pixels[i], pixels[i + 1], pixels[i + 2], 0]);
                n += pred(c) as usize;
            }
        }
        n
    }

    fn light(c: u32) -> bool {
        (c >> 16) & 0xff > 0xc0 && (c >> 8) & 0xff > 0xc0 && c & 0xff > 0xc0
    }

    fn red(c: u32) -> bool {
        (c >> 16) & 0xff > 0xc0 && (c >> 8) & 0xff < 0x90 && c & 0xff < 0x90
    }

    #[test]
    fn text_width_grows_with_text_and_size() {
        let p = painter();
        assert_eq!(p.text_width("", 20.0), 0.0);
        let w = p.text_width("WayRay", 20.0);
        assert!(w > 40.0 && w < 120.0, "{w}");
        assert!(p.text_width("WayRay login", 20.0) > w);
        assert!((p.text_width("WayRay", 40.0) - 2.0 * w).abs() < 2.0);
    }

    #[test]
    fn passwords_show_as_bullets() {
        let p = painter();
        assert_eq!(p.mask(3), "•••");
        assert_eq!(p.mask(0), "");
    }

    #[test]
    fn long_field_text_shows_its_end() {
        let p = painter();
        let text = "a-very-long-user-name-that-does-not-fit";
        let tail = p.visible_tail(text, 20.0, 100.0);
        assert!(text.ends_with(tail) && tail.len() < text.len());
        assert!(p.text_width(tail, 20.0) <= 100.0);
        assert_eq!(p.visible_tail("bob", 20.0, 100.0), "bob");
        assert_eq!(p.visible_tail("ééé", 20.0, 1.0), "");
    }

    #[test]
    fn long_messages_wrap_at_spaces_and_end_in_an_ellipsis() {
        let p = painter();
        assert_eq!(p.wrap("Login refused", 17.0, 400.0, 3), ["Login refused"]);
        assert!(p.wrap("", 17.0, 400.0, 3).is_empty());
        let words = "one two three four five six seven eight nine ten";
        let lines = p.wrap(words, 17.0, 120.0, 5);
        assert!(lines.len() > 2, "{lines:?}");
        assert_eq!(lines.join(" "), words);
        assert!(lines.iter().all(|l| p.text_width(l, 17.0) <= 120.0));

        let path = format!("cannot connect to /tmp/{}/login.sock", "x".repeat(200));
        let lines = p.wrap(&path, 17.0, 300.0, 3);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(lines[0], "cannot connect to");
        assert!(lines[2].ends_with('…'), "{lines:?}");
        assert!(lines.iter().all(|l| p.text_width(l, 17.0) <= 300.0));
    }

    #[test]
    fn layout_is_centred_and_scales_with_the_output() {
        let small = Layout::new(1280, 800);
        assert_eq!(small.unit, 1.0);
        let (x, y, w, h) = small.panel;
        assert_eq!((x + w / 2, y + h / 2), (640, 400));
        let big = Layout::new(2560, 1600);
        assert_eq!(big.unit, 2.0);
        assert_eq!(big.panel.2, 2 * w);
        assert!(small.password_field.1 > small.user_field.1 + small.user_field.3);
    }

    #[test]
    fn the_form_draws_light_text_on_the_panel_and_the_background_elsewhere() {
        let form = Form::new();
        let px = render(&form, 1280, 800);
        let layout = Layout::new(1280, 800);
        let corner = u32::from_le_bytes([px[0], px[1], px[2], 0]);
        assert_eq!(corner, BACKGROUND);
        assert_eq!(px[3], 0xff, "XRGB: the unused byte is opaque");
        assert!(count(&px, layout.panel, 1280, light) > 500);
        assert_eq!(count(&px, layout.panel, 1280, red), 0);
    }

    #[test]
    fn the_caret_follows_the_focus() {
        let mut form = Form::new();
        let layout = Layout::new(1280, 800);
        let user_first = render(&form, 1280, 800);
        form.key(Key::NextField);
        let password_first = render(&form, 1280, 800);
        let accent = |c: u32| c == ACCENT;
        assert!(count(&user_first, layout.user_field, 1280, accent) > 100);
        assert_eq!(count(&user_first, layout.password_field, 1280, accent), 0);
        assert!(count(&password_first, layout.password_field, 1280, accent) > 100);
    }

    #[test]
    fn typed_characters_and_errors_are_drawn() {
        let mut form = Form::new();
        let layout = Layout::new(1280, 800);
        let empty = render(&form, 1280, 800);
        form.key(Key::NextField);
        form.key(Key::Text("pw".into()));
        let typed = render(&form, 1280, 800);
        assert!(
            count(&typed, layout.password_field, 1280, light)
                > count(&empty, layout.password_field, 1280, light)
        );
        form.key(Key::PreviousField);
        form.key(Key::Text("alice".into()));
        form.key(Key::Enter);
        form.key(Key::Enter);
        form.finish(crate::form::Outcome::Refused(
            "Wrong user name or password".into(),
        ));
        assert!(count(&render(&form, 1280, 800), layout.panel, 1280, red) > 50);
    }

    #[test]
    fn tiny_and_odd_outputs_do_not_panic() {
        let form = Form::new();
        for (w, h) in [(1, 1), (50, 30), (333, 1000), (3000, 200)] {
            render(&form, w, h);
        }
        assert!(Canvas::new(&mut [0; 8], 2, 2).is_none());
    }
}
