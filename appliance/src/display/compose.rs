//! The pure half of the DRM sink: what every scanout pixel shows, and which pixels each of the
//! two scanout buffers still lacks. No device here, so all of it is tested in memory.
//!
//! A scanout pixel shows, bottom to top: the session picture (centred in the mode; black border
//! around it), or a dark desk colour before any session; a status box; a software cursor. The
//! sink writes rectangles of that picture into a [`Pitched`] buffer (a mapped dumb buffer, whose
//! rows may be longer than `width * 4`), and [`Stale`] remembers, per buffer, the rectangles it
//! has not been given yet, so a buffer that comes back after a page flip catches up with
//! everything the other one got meanwhile.

use wayray_protocol::{CursorImage, Rect, BYTES_PER_PIXEL};

/// Around a session smaller than the mode (B, G, R, X).
pub const BORDER: [u8; 4] = [0, 0, 0, 0];
/// The whole screen before the first session picture.
pub const DESK: [u8; 4] = [0x30, 0x22, 0x18, 0];
/// Status box fill and text.
pub const STATUS_FILL: [u8; 4] = [0x60, 0x44, 0x30, 0];
pub const STATUS_TEXT: [u8; 4] = [0xf0, 0xf0, 0xf0, 0];

/// More stale rectangles than this for one buffer become their bounding box.
const MAX_STALE_RECTS: usize = 32;
/// Longest status line, in characters, however wide the screen.
const MAX_STATUS_COLUMNS: usize = 90;

/// A writable XRGB8888 picture whose rows are `pitch` bytes apart.
pub struct Pitched<'a> {
    bytes: &'a mut [u8],
    pitch: usize,
    width: u32,
    height: u32,
}

impl<'a> Pitched<'a> {
    /// `None` if `bytes` cannot hold `height` rows of `width` pixels `pitch` bytes apart.
    pub fn new(bytes: &'a mut [u8], pitch: usize, width: u32, height: u32) -> Option<Self> {
        let row = width as usize * BYTES_PER_PIXEL;
        let needed = match height {
            0 => 0,
            h => pitch.checked_mul(h as usize - 1)?.checked_add(row)?,
        };
        (pitch >= row && bytes.len() >= needed).then_some(Self {
            bytes,
            pitch,
            width,
            height,
        })
    }

    /// Bytes of pixels `x0..x1` of row `y` (already clipped by the caller).
    fn span(&mut self, y: u32, x0: u32, x1: u32) -> &mut [u8] {
        let start = y as usize * self.pitch + x0 as usize * BYTES_PER_PIXEL;
        &mut self.bytes[start..start + (x1 - x0) as usize * BYTES_PER_PIXEL]
    }
}

/// Rectangles one scanout buffer has yet to be given.
#[derive(Debug, Default)]
pub struct Stale {
    rects: Vec<Rect>,
}

impl Stale {
    pub fn add(&mut self, rect: Rect) {
        if rect.is_empty() || self.rects.iter().any(|r| contains(r, &rect)) {
            return;
        }
        self.rects.retain(|r| !contains(&rect, r));
        self.rects.push(rect);
        if self.rects.len() > MAX_STALE_RECTS {
            let all = self.rects.iter().copied().reduce(|a, b| union(&a, &b));
            self.rects = all.into_iter().collect();
        }
    }

    pub fn take(&mut self) -> Vec<Rect> {
        std::mem::take(&mut self.rects)
    }

    pub fn is_empty(&self) -> bool {
        self.rects.is_empty()
    }
}

fn contains(outer: &Rect, inner: &Rect) -> bool {
    let end = |r: &Rect| {
        (
            u64::from(r.x) + u64::from(r.w),
            u64::from(r.y) + u64::from(r.h),
        )
    };
    outer.x <= inner.x
        && outer.y <= inner.y
        && end(outer).0 >= end(inner).0
        && end(outer).1 >= end(inner).1
}

/// Bounding box of two rects that both lie inside a screen (so no overflow).
fn union(a: &Rect, b: &Rect) -> Rect {
    let x = a.x.min(b.x);
    let y = a.y.min(b.y);
    let x1 = (a.x + a.w).max(b.x + b.w);
    let y1 = (a.y + a.h).max(b.y + b.h);
    Rect::new(x, y, x1 - x, y1 - y)
}

/// The session's framebuffer as the server last sent it (the "shadow" of what is on screen).
struct Session {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

/// A picture of its own placed over the screen (the rendered status box).
struct Overlay {
    rect: Rect,
    pixels: Vec<u8>,
}

struct SoftCursor {
    image: CursorImage,
}

/// Everything a scanout pixel depends on.
pub struct Scene {
    mode_width: u32,
    mode_height: u32,
    session: Option<Session>,
    /// The status text, kept to lay it out again for another mode.
    status_text: Option<String>,
    status: Option<Overlay>,
    cursor: Option<SoftCursor>,
    /// Where the pointer (the cursor's hotspot) is, in session pixels.
    pointer: (i32, i32),
}

impl Scene {
    pub fn new(mode_width: u32, mode_height: u32) -> Self {
        Self {
            mode_width,
            mode_height,
            session: None,
            status_text: None,
            status: None,
            cursor: None,
            pointer: (0, 0),
        }
    }

    pub fn screen(&self) -> Rect {
        Rect::new(0, 0, self.mode_width, self.mode_height)
    }

    /// Top-left corner of the session picture on screen: centred when smaller than the mode,
    /// cropped to its top-left part when larger.
    pub fn origin(&self) -> (u32, u32) {
        match &self.session {
            Some(s) => (
                self.mode_width.saturating_sub(s.width) / 2,
                self.mode_height.saturating_sub(s.height) / 2,
            ),
            None => (0, 0),
        }
    }

    /// The display's mode changed (another monitor was plugged in): the session picture stays
    /// (centred or cropped as before), the status box is laid out again for the new size, and
    /// the whole new screen changes.
    pub fn set_mode(&mut self, mode_width: u32, mode_height: u32) -> Rect {
        self.mode_width = mode_width;
        self.mode_height = mode_height;
        self.status = self
            .status_text
            .as_deref()
            .and_then(|text| render_status(text, mode_width, mode_height));
        self.screen()
    }

    /// A new session size: a black picture, and the whole screen changes.
    pub fn configure(&mut self, width: u32, height: u32) -> Rect {
        self.session = Some(Session {
            width,
            height,
            pixels: vec![0; width as usize * height as usize * BYTES_PER_PIXEL],
        });
        self.screen()
    }

    /// The session framebuffer as last presented; `None` before [`Scene::configure`].
    pub fn session(&self) -> Option<(&[u8], u32, u32)> {
        self.session
            .as_ref()
            .map(|s| (&s.pixels[..], s.width, s.height))
    }

    /// Copies the `damage` of a frame (`pixels` is a whole `width * 4`-stride framebuffer of
    /// the configured size, checked by the caller) into the shadow; returns the screen
    /// rectangles that changed.
    pub fn update_session(&mut self, pixels: &[u8], damage: &[Rect]) -> Vec<Rect> {
        let (ox, oy) = self.origin();
        let Some(session) = &mut self.session else {
            return Vec::new();
        };
        let stride = session.width as usize * BYTES_PER_PIXEL;
        let mut changed = Vec::with_capacity(damage.len());
        for rect in damage {
            // Damage comes from the network: it may lie outside the frame or overflow.
            let Some(rect) = rect.clip(session.width, session.height) else {
                continue;
            };
            let start = rect.x as usize * BYTES_PER_PIXEL;
            let end = start + rect.w as usize * BYTES_PER_PIXEL;
            for row in rect.y as usize..(rect.y + rect.h) as usize {
                let span = row * stride + start..row * stride + end;
                if let (Some(dst), Some(src)) =
                    (session.pixels.get_mut(span.clone()), pixels.get(span))
                {
                    dst.copy_from_slice(src);
                }
            }
            let on_screen = Rect::new(rect.x + ox, rect.y + oy, rect.w, rect.h);
            changed.extend(on_screen.clip(self.mode_width, self.mode_height));
        }
        changed
    }

    /// Shows `text` in a box in the middle of the screen, or removes the box; returns the
    /// screen rectangles that changed.
    pub fn set_status(&mut self, text: Option<&str>) -> Vec<Rect> {
        let old = self.status.take().map(|s| s.rect);
        self.status_text = text.map(str::to_owned);
        self.status = text.and_then(|text| render_status(text, self.mode_width, self.mode_height));
        old.into_iter()
            .chain(self.status.as_ref().map(|s| s.rect))
            .collect()
    }

    pub fn has_status(&self) -> bool {
        self.status_text.is_some()
    }

    /// Draws `image` as a software cursor (or stops drawing one); returns the screen
    /// rectangles that changed.
    pub fn set_cursor(&mut self, image: Option<&CursorImage>) -> Vec<Rect> {
        let old = self.cursor_rect();
        self.cursor = image.map(|image| SoftCursor {
            image: image.clone(),
        });
        old.into_iter().chain(self.cursor_rect()).collect()
    }

    /// Moves the pointer (session pixels); returns the screen rectangles that changed.
    pub fn move_pointer(&mut self, x: i32, y: i32) -> Vec<Rect> {
        let old = self.cursor_rect();
        self.pointer = (x, y);
        old.into_iter().chain(self.cursor_rect()).collect()
    }

    /// Where an image of `hotspot` goes on screen for the current pointer: its top-left corner.
    pub fn cursor_corner(&self, hotspot_x: u32, hotspot_y: u32) -> (i64, i64) {
        let (ox, oy) = self.origin();
        (
            i64::from(self.pointer.0) + i64::from(ox) - i64::from(hotspot_x),
            i64::from(self.pointer.1) + i64::from(oy) - i64::from(hotspot_y),
        )
    }

    /// The software cursor's rectangle on screen, clipped; `None` if none or off screen.
    fn cursor_rect(&self) -> Option<Rect> {
        let image = &self.cursor.as_ref()?.image;
        let (left, top) = self.cursor_corner(image.hotspot_x, image.hotspot_y);
        clip_signed(
            left,
            top,
            image.width,
            image.height,
            self.mode_width,
            self.mode_height,
        )
    }

    /// Writes the screen's `rect` into `target` (a buffer of the mode's size).
    pub fn compose(&self, target: &mut Pitched<'_>, rect: Rect) {
        let Some(rect) = rect.clip(
            self.mode_width.min(target.width),
            self.mode_height.min(target.height),
        ) else {
            return;
        };
        let (x0, x1) = (rect.x, rect.x + rect.w);
        let (ox, oy) = self.origin();
        for y in rect.y..rect.y + rect.h {
            let row = target.span(y, x0, x1);
            // The picture, or what is around it.
            match &self.session {
                None => fill(row, DESK),
                Some(s) => {
                    let sx0 = ox.clamp(x0, x1);
                    let sx1 = (ox + s.width).clamp(x0, x1);
                    if (oy..oy + s.height).contains(&y) && sx0 < sx1 {
                        let px = |x: u32| (x - x0) as usize * BYTES_PER_PIXEL;
                        fill(&mut row[..px(sx0)], BORDER);
                        let src_row = (y - oy) as usize * s.width as usize * BYTES_PER_PIXEL;
                        let src = src_row + (sx0 - ox) as usize * BYTES_PER_PIXEL;
                        let len = px(sx1) - px(sx0);
                        if let Some(src) = s.pixels.get(src..src + len) {
                            row[px(sx0)..px(sx1)].copy_from_slice(src);
                        }
                        fill(&mut row[px(sx1)..], BORDER);
                    } else {
                        fill(row, BORDER);
                    }
                }
            }
            if let Some(status) = &self.status {
                overlay_row(row, x0, y, status.rect, &status.pixels, |dst, src| {
                    dst.copy_from_slice(src)
                });
            }
            if let Some(cursor) = &self.cursor {
                let image = &cursor.image;
                let (left, top) = self.cursor_corner(image.hotspot_x, image.hotspot_y);
                blend_cursor_row(row, x0, y, left, top, image);
            }
        }
    }
}

fn fill(bytes: &mut [u8], colour: [u8; 4]) {
    for pixel in bytes.chunks_exact_mut(BYTES_PER_PIXEL) {
        pixel.copy_from_slice(&colour);
    }
}

/// Applies `put(dst_pixel, src_pixel)` for the part of screen row `y` (whose pixels from `x0`
/// on are `row`) that `rect` (holding `pixels`, stride `rect.w * 4`) covers.
fn overlay_row(
    row: &mut [u8],
    x0: u32,
    y: u32,
    rect: Rect,
    pixels: &[u8],
    put: impl Fn(&mut [u8], &[u8]),
) {
    if !(rect.y..rect.y + rect.h).contains(&y) {
        return;
    }
    let x1 = x0 + (row.len() / BYTES_PER_PIXEL) as u32;
    let from = rect.x.max(x0);
    let to = (rect.x + rect.w).min(x1);
    for x in from..to {
        let src =
            ((y - rect.y) as usize * rect.w as usize + (x - rect.x) as usize) * BYTES_PER_PIXEL;
        let dst = (x - x0) as usize * BYTES_PER_PIXEL;
        if let Some(src) = pixels.get(src..src + BYTES_PER_PIXEL) {
            put(&mut row[dst..dst + BYTES_PER_PIXEL], src);
        }
    }
}

/// Blends a premultiplied ARGB cursor whose top-left corner is at (`left`, `top`) over screen
/// row `y`: `out = cursor + picture × (1 − α)`, as a cursor plane does.
fn blend_cursor_row(row: &mut [u8], x0: u32, y: u32, left: i64, top: i64, image: &CursorImage) {
    let Some(placed) = clip_signed(left, top, image.width, image.height, u32::MAX, u32::MAX) else {
        return;
    };
    if !(placed.y..placed.y + placed.h).contains(&y) {
        return;
    }
    let x1 = x0 + (row.len() / BYTES_PER_PIXEL) as u32;
    let iy = i64::from(y) - top;
    for x in placed.x.max(x0)..(placed.x + placed.w).min(x1) {
        let ix = i64::from(x) - left;
        let src = ((iy * i64::from(image.width) + ix) as usize) * BYTES_PER_PIXEL;
        let dst = (x - x0) as usize * BYTES_PER_PIXEL;
        let Some(c) = image.pixels.get(src..src + BYTES_PER_PIXEL) else {
            continue;
        };
        let keep = 255 - u32::from(c[3]);
        for i in 0..3 {
            let under = u32::from(row[dst + i]);
            row[dst + i] = (u32::from(c[i]) + (under * keep + 127) / 255).min(255) as u8;
        }
    }
}

/// The part of a `w`×`h` rect at (`left`, `top`) that lies on a `width`×`height` screen.
fn clip_signed(left: i64, top: i64, w: u32, h: u32, width: u32, height: u32) -> Option<Rect> {
    let x0 = left.max(0);
    let y0 = top.max(0);
    let x1 = (left + i64::from(w)).min(i64::from(width));
    let y1 = (top + i64::from(h)).min(i64::from(height));
    (x0 < x1 && y0 < y1).then(|| {
        // All four lie in 0..=u32::MAX here.
        Rect::new(x0 as u32, y0 as u32, (x1 - x0) as u32, (y1 - y0) as u32)
    })
}

/// Lays `text` out in lines of at most `columns` characters, breaking at spaces where it can.
fn wrap(text: &str, columns: usize) -> Vec<Vec<char>> {
    let columns = columns.max(1);
    let mut lines = Vec::new();
    for paragraph in text.lines() {
        let mut line: Vec<char> = Vec::new();
        for word in paragraph.split_whitespace() {
            let word: Vec<char> = word.chars().collect();
            if !line.is_empty() && line.len() + 1 + word.len() > columns {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.extend(word);
            while line.len() > columns {
                let rest = line.split_off(columns);
                lines.push(std::mem::replace(&mut line, rest));
            }
        }
        lines.push(line);
    }
    lines
}

/// The 8×8 glyph of `c`: ASCII and Latin-1; anything else shows as `?`.
fn glyph(c: char) -> [u8; 8] {
    use font8x8::legacy::{BASIC_LEGACY, LATIN_LEGACY};
    let code = c as usize;
    match code {
        0x20..=0x7e => BASIC_LEGACY[code],
        0xa0..=0xff => LATIN_LEGACY[code - 0xa0],
        _ => BASIC_LEGACY[usize::from(b'?')],
    }
}

/// Renders `text` as a box centred on a `width`×`height` screen; `None` if nothing fits.
fn render_status(text: &str, width: u32, height: u32) -> Option<Overlay> {
    // Twice the font's size on anything but tiny screens, so it reads from a chair's distance.
    let scale: u32 = if width >= 640 && height >= 400 { 2 } else { 1 };
    let cell = 8 * scale;
    let pad = cell;
    let line_height = cell + 2 * scale;
    let columns = (width.saturating_sub(2 * pad) / cell) as usize;
    let rows = (height.saturating_sub(2 * pad) / line_height) as usize;
    if columns == 0 || rows == 0 {
        return None;
    }
    let columns = columns.min(MAX_STATUS_COLUMNS);
    let mut lines = wrap(text, columns);
    if lines.len() > rows {
        lines.truncate(rows);
        if let Some(last) = lines.last_mut() {
            last.truncate(columns.saturating_sub(3));
            last.extend(['.'; 3]);
            last.truncate(columns);
        }
    }
    if lines.is_empty() {
        lines.push(Vec::new());
    }
    let longest = lines.iter().map(Vec::len).max().unwrap_or(0).max(1) as u32;
    let w = longest * cell + 2 * pad;
    let h = lines.len() as u32 * line_height - 2 * scale + 2 * pad;
    let rect = Rect::new((width - w) / 2, (height - h) / 2, w, h);
    let mut pixels = vec![0; w as usize * h as usize * BYTES_PER_PIXEL];
    fill(&mut pixels, STATUS_FILL);
    for (n, line) in lines.iter().enumerate() {
        let top = pad + n as u32 * line_height;
        for (i, &c) in line.iter().enumerate() {
            let left = pad + i as u32 * cell;
            for (gy, bits) in glyph(c).iter().enumerate() {
                for gx in 0..8 {
                    if bits & (1 << gx) == 0 {
                        continue;
                    }
                    for dy in 0..scale {
                        let y = top + gy as u32 * scale + dy;
                        let x = left + gx * scale;
                        let at = (y as usize * w as usize + x as usize) * BYTES_PER_PIXEL;
                        let len = scale as usize * BYTES_PER_PIXEL;
                        if let Some(px) = pixels.get_mut(at..at + len) {
                            fill(px, STATUS_TEXT);
                        }
                    }
                }
            }
        }
    }
    Some(Overlay { rect, pixels })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAD: u8 = 0xEE;

    fn pixel(bytes: &[u8], pitch: usize, x: u32, y: u32) -> [u8; 4] {
        let at = y as usize * pitch + x as usize * 4;
        bytes[at..at + 4].try_into().unwrap()
    }

    /// A session frame whose every pixel names its position.
    fn numbered(width: u32, height: u32) -> Vec<u8> {
        (0..height)
            .flat_map(|y| (0..width).flat_map(move |x| [x as u8, y as u8, 0x55, 0]))
            .collect()
    }

    #[test]
    fn damage_lands_in_a_pitched_buffer_and_leaves_the_row_padding_alone() {
        let mut scene = Scene::new(6, 4);
        scene.configure(6, 4);
        let frame = numbered(6, 4);
        let changed = scene.update_session(&frame, &[Rect::new(1, 1, 3, 2)]);
        assert_eq!(changed, [Rect::new(1, 1, 3, 2)]);

        let pitch = 6 * 4 + 8;
        let mut buffer = vec![PAD; pitch * 4];
        let mut target = Pitched::new(&mut buffer, pitch, 6, 4).unwrap();
        for rect in changed {
            scene.compose(&mut target, rect);
        }
        for y in 0..4 {
            for x in 0..6 {
                let expected = if (1..4).contains(&x) && (1..3).contains(&y) {
                    [x as u8, y as u8, 0x55, 0]
                } else {
                    [PAD; 4]
                };
                assert_eq!(pixel(&buffer, pitch, x, y), expected, "({x}, {y})");
            }
            assert!(buffer[y as usize * pitch + 24..(y as usize + 1) * pitch]
                .iter()
                .all(|&b| b == PAD));
        }
    }

    #[test]
    fn hostile_damage_and_short_buffers_are_no_panic() {
        let mut scene = Scene::new(4, 3);
        scene.configure(4, 3);
        let changed = scene.update_session(
            &[0xFF; 4 * 3 * 4],
            &[
                Rect::new(u32::MAX, u32::MAX, u32::MAX, u32::MAX),
                Rect::new(3, 2, 100, 100),
            ],
        );
        assert_eq!(changed, [Rect::new(3, 2, 1, 1)]);
        let mut small = vec![0; 10];
        assert!(Pitched::new(&mut small, 16, 4, 3).is_none());
        assert!(
            Pitched::new(&mut small, 8, 4, 1).is_none(),
            "pitch shorter than a row"
        );
    }

    #[test]
    fn a_smaller_session_is_centred_inside_a_black_border() {
        let mut scene = Scene::new(8, 6);
        let everything = scene.configure(4, 2);
        assert_eq!(everything, Rect::new(0, 0, 8, 6));
        assert_eq!(scene.origin(), (2, 2));
        let frame = numbered(4, 2);
        let changed = scene.update_session(&frame, &[Rect::new(0, 0, 4, 2)]);
        assert_eq!(changed, [Rect::new(2, 2, 4, 2)]);

        let mut buffer = vec![PAD; 8 * 6 * 4];
        let mut target = Pitched::new(&mut buffer, 32, 8, 6).unwrap();
        scene.compose(&mut target, everything);
        for y in 0..6 {
            for x in 0..8 {
                let expected = if (2..6).contains(&x) && (2..4).contains(&y) {
                    [x as u8 - 2, y as u8 - 2, 0x55, 0]
                } else {
                    BORDER
                };
                assert_eq!(pixel(&buffer, 32, x, y), expected, "({x}, {y})");
            }
        }
        // A larger session shows its top-left part.
        scene.configure(10, 10);
        assert_eq!(scene.origin(), (0, 0));
    }

    #[test]
    fn another_mode_keeps_the_picture_and_lays_the_status_out_again() {
        let mut scene = Scene::new(8, 6);
        scene.configure(4, 2);
        scene.update_session(&numbered(4, 2), &[Rect::new(0, 0, 4, 2)]);
        // Too small a screen for any status box: the text waits for a bigger one.
        assert!(scene.set_status(Some("no server")).is_empty());
        assert!(scene.has_status());

        assert_eq!(scene.set_mode(640, 480), Rect::new(0, 0, 640, 480));
        assert_eq!(scene.origin(), (318, 239));
        assert_eq!(scene.session().unwrap().1, 4);
        let boxed = scene.set_status(Some("no server"));
        assert_eq!(
            boxed.len(),
            2,
            "the box laid out for 640x480 is replaced: {boxed:?}"
        );
        assert_eq!(boxed[0], boxed[1]);

        // Back to a tiny mode: the session is cropped, the box no longer fits.
        assert_eq!(scene.set_mode(2, 1), Rect::new(0, 0, 2, 1));
        assert_eq!(scene.origin(), (0, 0));
        assert!(scene.has_status());
        let mut buffer = vec![PAD; 2 * 4];
        let mut target = Pitched::new(&mut buffer, 8, 2, 1).unwrap();
        scene.compose(&mut target, scene.screen());
        assert_eq!(pixel(&buffer, 8, 1, 0), [1, 0, 0x55, 0]);
        assert!(scene.set_status(None).is_empty());
        assert!(!scene.has_status());
    }

    #[test]
    fn before_any_session_the_screen_is_the_desk_colour() {
        let scene = Scene::new(3, 2);
        let mut buffer = vec![PAD; 3 * 2 * 4];
        let mut target = Pitched::new(&mut buffer, 12, 3, 2).unwrap();
        scene.compose(&mut target, scene.screen());
        assert!(buffer.chunks(4).all(|p| p == DESK));
        assert!(scene.session().is_none());
    }

    /// Two buffers flipped in turn, as the sink does: each gets its own stale rects, and after
    /// any number of frames the buffer about to be shown equals the whole composed picture.
    #[test]
    fn double_buffers_catch_up_with_the_other_buffers_damage() {
        let (w, h) = (8u32, 5u32);
        let mut scene = Scene::new(w, h);
        let mut stale = [Stale::default(), Stale::default()];
        let mut buffers = [vec![PAD; 40 * 5], vec![PAD; 40 * 5]];
        for s in &mut stale {
            s.add(scene.configure(w, h));
        }
        let mut frame = vec![0; (w * h * 4) as usize];
        let damages = [
            vec![Rect::new(0, 0, 8, 5)],
            vec![Rect::new(1, 1, 2, 2)],
            vec![Rect::new(5, 0, 3, 1)],
            vec![],
            vec![Rect::new(0, 4, 8, 1), Rect::new(7, 0, 1, 5)],
            vec![Rect::new(2, 2, 1, 1)],
        ];
        let mut back = 0;
        for (n, damage) in damages.iter().enumerate() {
            for rect in damage {
                for y in rect.y..rect.y + rect.h {
                    for x in rect.x..rect.x + rect.w {
                        let i = ((y * w + x) * 4) as usize;
                        frame[i..i + 4].copy_from_slice(&[n as u8 + 1, x as u8, y as u8, 0]);
                    }
                }
            }
            for rect in scene.update_session(&frame, damage) {
                stale[0].add(rect);
                stale[1].add(rect);
            }
            let mut target = Pitched::new(&mut buffers[back], 40, w, h).unwrap();
            for rect in stale[back].take() {
                scene.compose(&mut target, rect);
            }
            for y in 0..h {
                for x in 0..w {
                    let i = ((y * w + x) * 4) as usize;
                    assert_eq!(
                        pixel(&buffers[back], 40, x, y),
                        frame[i..i + 4],
                        "frame {n}, buffer {back}, ({x}, {y})"
                    );
                }
            }
            back = 1 - back;
        }
    }

    #[test]
    fn stale_rects_merge_and_collapse() {
        let mut stale = Stale::default();
        stale.add(Rect::new(1, 1, 2, 2));
        stale.add(Rect::new(1, 1, 1, 1));
        stale.add(Rect::new(0, 0, 0, 5));
        assert_eq!(stale.take(), [Rect::new(1, 1, 2, 2)]);
        assert!(stale.is_empty());
        stale.add(Rect::new(1, 1, 1, 1));
        stale.add(Rect::new(0, 0, 4, 4));
        assert_eq!(stale.take(), [Rect::new(0, 0, 4, 4)]);
        for i in 0..=MAX_STALE_RECTS as u32 {
            stale.add(Rect::new(i * 2, i, 1, 1));
        }
        let n = MAX_STALE_RECTS as u32;
        assert_eq!(stale.take(), [Rect::new(0, 0, 2 * n + 1, n + 1)]);
    }

    fn cursor_image() -> CursorImage {
        // 2x2, hotspot (1, 1): opaque white, half-transparent black (premultiplied), clear, opaque red.
        CursorImage {
            width: 2,
            height: 2,
            hotspot_x: 1,
            hotspot_y: 1,
            pixels: vec![255, 255, 255, 255, 0, 0, 0, 128, 0, 0, 0, 0, 0, 0, 255, 255],
        }
    }

    #[test]
    fn software_cursor_blends_at_its_hotspot_and_moving_restores_the_picture() {
        let mut scene = Scene::new(4, 4);
        scene.configure(4, 4);
        let grey = vec![200; 4 * 4 * 4];
        scene.update_session(&grey, &[Rect::new(0, 0, 4, 4)]);
        let mut buffer = vec![0; 4 * 4 * 4];
        fn draw(buffer: &mut [u8], scene: &Scene, rects: Vec<Rect>) {
            let mut target = Pitched::new(buffer, 16, 4, 4).unwrap();
            for rect in rects {
                scene.compose(&mut target, rect);
            }
        }
        draw(&mut buffer, &scene, vec![scene.screen()]);
        let shown = scene.set_cursor(Some(&cursor_image()));
        assert_eq!(
            shown,
            [Rect::new(0, 0, 1, 1)],
            "clipped at the top-left corner"
        );
        let moved = scene.move_pointer(2, 2);
        assert_eq!(moved, [Rect::new(0, 0, 1, 1), Rect::new(1, 1, 2, 2)]);
        draw(&mut buffer, &scene, moved);
        let at = |buffer: &[u8], x: u32, y: u32| pixel(buffer, 16, x, y);
        assert_eq!(
            at(&buffer, 0, 0),
            [200, 200, 200, 200],
            "restored under the old spot"
        );
        assert_eq!(at(&buffer, 1, 1)[..3], [255, 255, 255]);
        assert_eq!(at(&buffer, 2, 1)[..3], [100, 100, 100]);
        assert_eq!(at(&buffer, 1, 2)[..3], [200, 200, 200]);
        assert_eq!(at(&buffer, 2, 2)[..3], [0, 0, 255]);
        // The shadow never holds the cursor: screenshots are the server's picture.
        assert!(scene.session().unwrap().0.iter().all(|&b| b == 200));

        let hidden = scene.set_cursor(None);
        draw(&mut buffer, &scene, hidden);
        assert!(buffer.chunks(4).all(|p| p[..3] == [200, 200, 200]));
        // Far off screen: nothing to redraw, no panic.
        assert!(scene.move_pointer(i32::MIN, i32::MAX).is_empty());
        scene.set_cursor(Some(&cursor_image()));
        assert!(scene.move_pointer(i32::MAX, i32::MIN).is_empty());
    }

    #[test]
    fn status_text_wraps_stays_on_screen_and_goes_away() {
        let (w, h) = (320u32, 200u32);
        let mut scene = Scene::new(w, h);
        let text =
            "connecting to a-rather-long-server-name.example.net:7390 while the network is slow";
        let rects = scene.set_status(Some(text));
        assert_eq!(rects.len(), 1);
        let rect = rects[0];
        assert!(rect.fits_in(w, h), "{rect:?}");
        assert!(rect.h > 8 * 2, "wrapped onto several lines: {rect:?}");
        assert_eq!(rect.x, (w - rect.w) / 2);

        let mut buffer = vec![0; (w * h * 4) as usize];
        let mut target = Pitched::new(&mut buffer, (w * 4) as usize, w, h).unwrap();
        scene.compose(&mut target, scene.screen());
        let count = |colour: [u8; 4]| buffer.chunks(4).filter(|p| *p == colour).count();
        assert!(count(STATUS_TEXT) > 100, "text drawn");
        assert!(count(STATUS_FILL) > count(STATUS_TEXT));
        let outside = pixel(&buffer, (w * 4) as usize, 0, 0);
        assert_eq!(outside, DESK);

        let gone = scene.set_status(None);
        assert_eq!(gone, [rect]);
        assert!(!scene.has_status());

        // Long text on a tiny screen is cut, never drawn off screen; nothing fits on a 4x4 one.
        for (w, h) in [(40, 30), (1280, 800)] {
            let rects = Scene::new(w, h).set_status(Some(&"word ".repeat(5000)));
            assert!(rects[0].fits_in(w, h), "{w}x{h}: {:?}", rects[0]);
        }
        assert!(Scene::new(4, 4).set_status(Some("x")).is_empty());
    }

    #[test]
    fn wrapping() {
        let lines = |text, n| -> Vec<String> {
            wrap(text, n)
                .into_iter()
                .map(|l| l.into_iter().collect())
                .collect()
        };
        assert_eq!(lines("a bb ccc", 4), ["a bb", "ccc"]);
        assert_eq!(lines("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        assert_eq!(lines("one\ntwo", 10), ["one", "two"]);
        assert_eq!(glyph('é'), font8x8::legacy::LATIN_LEGACY[0xe9 - 0xa0]);
        assert_eq!(glyph('→'), glyph('?'));
    }
}
