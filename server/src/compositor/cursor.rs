//! The pointer's image, forwarded to the appliance, which draws it itself at its local pointer
//! position: pointing then never waits for a network round trip, and a cursor change costs one
//! small message on the display stream instead of re-encoded tiles under the pointer.
//!
//! The image comes from what `SeatHandler::cursor_image` last said: a client's cursor surface
//! (its shm buffer, re-read on every commit so animated cursors animate), a named shape
//! (cursor-shape-v1, and our default over the background) drawn from an xcursor theme, or nothing.

use std::{collections::HashMap, path::Path, sync::Arc, time::Duration};

use smithay::{
    backend::renderer::utils::with_renderer_surface_state,
    desktop::utils::send_frames_surface_tree,
    input::pointer::{CursorIcon, CursorImageStatus, CursorImageSurfaceData},
    reexports::{
        calloop::timer::{TimeoutAction, Timer},
        wayland_server::protocol::{wl_shm, wl_surface::WlSurface},
    },
    utils::IsAlive,
    wayland::{
        compositor::with_states,
        shm::{with_buffer_contents, BufferAccessError, BufferData},
    },
};
use wayray_protocol::{
    cursor::MAX_CURSOR_SIZE, framing, CursorImage, CursorUpdate, DisplayMessage,
};

use super::state::WayRay;
use crate::link::ToTransport;

/// Themes tried after the configured one, so a missing or misspelt theme still gives a themed
/// cursor: Adwaita comes with most desktops, DMZ-White is the small Debian package the scripts
/// install.
const FALLBACK_THEMES: &[&str] = &["Adwaita", "DMZ-White"];

/// Which xcursor theme and nominal size named cursors are drawn from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorSettings {
    pub theme: String,
    /// The theme's image nearest this size (pixels) is used.
    pub size: u32,
}

/// Named cursors from xcursor themes, each read from disk once.
pub struct ThemeCursors {
    /// Tried in order for every icon.
    themes: Vec<(String, xcursor::CursorTheme)>,
    /// The configured size, at scale 1.
    base_size: u32,
    /// The size images are loaded at: the configured size times the output's scale, so the
    /// cursor keeps its size next to scaled windows.
    size: u32,
    cache: HashMap<CursorIcon, CursorImage>,
}

impl ThemeCursors {
    pub fn new(settings: &CursorSettings) -> Self {
        let mut names = vec![settings.theme.clone()];
        for theme in FALLBACK_THEMES {
            if !names.iter().any(|n| n == theme) {
                names.push((*theme).to_owned());
            }
        }
        Self::with_themes(&names, settings.size)
    }

    fn with_themes(names: &[String], size: u32) -> Self {
        Self {
            themes: names
                .iter()
                .map(|name| (name.clone(), xcursor::CursorTheme::load(name)))
                .collect(),
            base_size: size,
            size,
            cache: HashMap::new(),
        }
    }

    /// Loads images for an output of `scale` from now on.
    pub fn set_scale(&mut self, scale: f64) {
        let size = (f64::from(self.base_size) * scale)
            .round()
            .clamp(1.0, f64::from(MAX_CURSOR_SIZE)) as u32;
        if size != self.size {
            self.size = size;
            self.cache.clear();
        }
    }

    /// The image for `icon`. An icon no theme has falls back to the default arrow, and with no
    /// theme installed at all to a built-in arrow, so the appliance always has a cursor to draw.
    pub fn image(&mut self, icon: CursorIcon) -> CursorImage {
        if let Some(image) = self.cache.get(&icon) {
            return image.clone();
        }
        let image = match self.load(icon) {
            Some(image) => image,
            None if icon != CursorIcon::Default => {
                tracing::debug!(?icon, "no cursor theme has this icon; using the default");
                self.image(CursorIcon::Default)
            }
            None => {
                let themes: Vec<&str> = self.themes.iter().map(|(n, _)| n.as_str()).collect();
                tracing::warn!(
                    ?themes,
                    "no xcursor theme with a default cursor is installed; using a built-in arrow"
                );
                builtin_arrow()
            }
        };
        self.cache.insert(icon, image.clone());
        image
    }

    fn load(&self, icon: CursorIcon) -> Option<CursorImage> {
        // Themes follow the CSS names; older ones only have the X11 names (`left_ptr`, `xterm`).
        let names = std::iter::once(icon.name()).chain(icon.alt_names().iter().copied());
        for (theme, cursors) in &self.themes {
            for name in names.clone() {
                let Some(path) = cursors.load_icon(name) else {
                    continue;
                };
                match load_xcursor_file(&path, self.size) {
                    Ok(image) => {
                        tracing::debug!(?icon, theme, path = %path.display(), "loaded cursor");
                        return Some(image);
                    }
                    Err(err) => {
                        tracing::warn!(path = %path.display(), %err, "cannot use cursor file")
                    }
                }
            }
        }
        None
    }
}

#[derive(Debug, thiserror::Error)]
pub enum XcursorError {
    #[error("cannot read it: {0}")]
    Read(#[from] std::io::Error),
    #[error("it is not a valid xcursor file")]
    Parse,
    #[error("it has no image of at most {MAX_CURSOR_SIZE}x{MAX_CURSOR_SIZE} pixels")]
    NoUsableImage,
}

fn load_xcursor_file(path: &Path, size: u32) -> Result<CursorImage, XcursorError> {
    let bytes = std::fs::read(path)?;
    let images = xcursor::parser::parse_xcursor(&bytes).ok_or(XcursorError::Parse)?;
    image_from_xcursor(&images, size).ok_or(XcursorError::NoUsableImage)
}

/// The image whose nominal size is nearest `size`; of an animated cursor its first frame (named
/// cursors are not animated yet).
pub fn image_from_xcursor(images: &[xcursor::parser::Image], size: u32) -> Option<CursorImage> {
    images
        .iter()
        .filter(|i| {
            (1..=MAX_CURSOR_SIZE).contains(&i.width)
                && (1..=MAX_CURSOR_SIZE).contains(&i.height)
                && i.pixels_rgba.len() == i.width as usize * i.height as usize * 4
        })
        .min_by_key(|i| i.size.abs_diff(size))
        .map(|i| CursorImage {
            width: i.width,
            height: i.height,
            // libXcursor allows a hotspot on the far edge; the wire needs it inside.
            hotspot_x: i.xhot.min(i.width - 1),
            hotspot_y: i.yhot.min(i.height - 1),
            // Xcursor pixels are little-endian premultiplied ARGB words, exactly the wire format
            // (the crate calls the file-order bytes "rgba").
            pixels: i.pixels_rgba.clone(),
        })
}

/// A 16×24 arrow, black with a white outline, hotspot at its tip: the cursor of last resort
/// when no xcursor theme is installed.
pub fn builtin_arrow() -> CursorImage {
    const ARROW: [&str; 21] = [
        "X",
        "XX",
        "XoX",
        "XooX",
        "XoooX",
        "XooooX",
        "XoooooX",
        "XooooooX",
        "XoooooooX",
        "XooooooooX",
        "XoooooooooX",
        "XooooooooooX",
        "XoooooooXXXXX",
        "XoooXoooX",
        "XooX XoooX",
        "XoX  XoooX",
        "XX    XoooX",
        "X     XoooX",
        "       XoooX",
        "       XoooX",
        "        XXX",
    ];
    const W: usize = 16;
    const H: usize = 24;
    let mut pixels = vec![0u8; W * H * 4];
    for (y, row) in ARROW.iter().enumerate() {
        for (x, c) in row.bytes().enumerate() {
            // B, G, R, A; opaque, so premultiplying changes nothing.
            let px = match c {
                b'X' => [0xff, 0xff, 0xff, 0xff],
                b'o' => [0x00, 0x00, 0x00, 0xff],
                _ => continue,
            };
            let i = (y * W + x) * 4;
            pixels[i..i + 4].copy_from_slice(&px);
        }
    }
    CursorImage {
        width: W as u32,
        height: H as u32,
        hotspot_x: 0,
        hotspot_y: 0,
        pixels,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SurfaceCursorError {
    #[error("cursor buffer is not shared memory")]
    NotShm,
    #[error("cursor buffer's memory cannot be read (the client sent a bad pool)")]
    BadMap,
    #[error("cursor buffer format {0:?} is not supported; use ARGB8888 or XRGB8888")]
    Format(wl_shm::Format),
    #[error(
        "cursor buffer of {0}x{1} is empty or larger than {MAX_CURSOR_SIZE}x{MAX_CURSOR_SIZE}"
    )]
    Size(i32, i32),
    #[error("cursor buffer lies outside its pool")]
    OutOfBounds,
}

/// Copies a cursor out of an shm buffer described by `data`, in a pool of `pool_len` bytes.
/// `copy(offset, dst)` fills `dst` from the pool at byte `offset`; it is only called for ranges
/// inside the pool, so the caller can copy from raw shared memory without checks of its own.
/// `hotspot` is in buffer pixels; one outside the image is moved to its nearest edge.
pub fn read_shm_cursor(
    pool_len: usize,
    data: BufferData,
    hotspot: (i32, i32),
    mut copy: impl FnMut(usize, &mut [u8]),
) -> Result<CursorImage, SurfaceCursorError> {
    let opaque = match data.format {
        wl_shm::Format::Argb8888 => false,
        wl_shm::Format::Xrgb8888 => true,
        other => return Err(SurfaceCursorError::Format(other)),
    };
    let max = MAX_CURSOR_SIZE as i32;
    if !(1..=max).contains(&data.width) || !(1..=max).contains(&data.height) {
        return Err(SurfaceCursorError::Size(data.width, data.height));
    }
    let (width, height) = (data.width as usize, data.height as usize);
    let row_len = width * 4;
    let offset = usize::try_from(data.offset).map_err(|_| SurfaceCursorError::OutOfBounds)?;
    let stride = usize::try_from(data.stride)
        .ok()
        .filter(|&s| s >= row_len)
        .ok_or(SurfaceCursorError::OutOfBounds)?;
    let end = stride
        .checked_mul(height - 1)
        .and_then(|v| v.checked_add(row_len))
        .and_then(|v| v.checked_add(offset))
        .ok_or(SurfaceCursorError::OutOfBounds)?;
    if end > pool_len {
        return Err(SurfaceCursorError::OutOfBounds);
    }
    let mut pixels = vec![0u8; row_len * height];
    for (y, row) in pixels.chunks_exact_mut(row_len).enumerate() {
        copy(offset + y * stride, row);
    }
    if opaque {
        for px in pixels.chunks_exact_mut(4) {
            px[3] = 0xff;
        }
    }
    Ok(CursorImage {
        width: width as u32,
        height: height as u32,
        hotspot_x: hotspot.0.clamp(0, data.width - 1) as u32,
        hotspot_y: hotspot.1.clamp(0, data.height - 1) as u32,
        pixels,
    })
}

/// What a cursor surface shows now: its current buffer, hotspot as the client set it; hidden
/// once it committed no buffer. `None` while it never committed: clients often make a surface
/// the cursor before its first commit, and showing nothing until then would flicker.
/// A buffer scale > 1 is sent at buffer size: clients pick it from the output's scale, so the
/// image is already about as large as the output's pixels want it.
fn surface_cursor(surface: &WlSurface) -> Result<Option<CursorUpdate>, SurfaceCursorError> {
    let current = with_renderer_surface_state(surface, |s| {
        s.buffer().cloned().map(|b| (b, s.buffer_scale().max(1)))
    });
    let (buffer, scale) = match current {
        None => return Ok(None),
        Some(None) => return Ok(Some(CursorUpdate::Hidden)),
        Some(Some(current)) => current,
    };
    let hotspot = with_states(surface, |states| {
        states
            .data_map
            .get::<CursorImageSurfaceData>()
            .and_then(|d| d.lock().ok().map(|a| a.hotspot))
            .unwrap_or_default()
    });
    let hotspot = (
        hotspot.x.saturating_mul(scale),
        hotspot.y.saturating_mul(scale),
    );
    let read = with_buffer_contents(&buffer, |ptr, len, data| {
        read_shm_cursor(len, data, hotspot, |offset, dst| {
            // SAFETY: read_shm_cursor only asks for ranges inside the pool's `len` bytes, which
            // stay mapped while this closure runs. The client may write concurrently; copying
            // without forming a reference makes a torn cursor the worst outcome.
            unsafe { std::ptr::copy_nonoverlapping(ptr.add(offset), dst.as_mut_ptr(), dst.len()) }
        })
    });
    match read {
        Ok(image) => image.map(|image| Some(CursorUpdate::Image(image))),
        Err(BufferAccessError::NotManaged) => Err(SurfaceCursorError::NotShm),
        Err(_) => Err(SurfaceCursorError::BadMap),
    }
}

/// The seat's cursor, and what the attached appliance was last sent, so an unchanged cursor
/// (a client re-setting the same one on every enter, an idle cursor surface committing) costs
/// nothing on the wire.
pub struct CursorForwarder {
    status: CursorImageStatus,
    current: CursorUpdate,
    last_sent: Option<CursorUpdate>,
    theme: ThemeCursors,
    frame_timer_armed: bool,
    /// A broken cursor surface is reported once, not on each of its commits.
    warned: bool,
}

impl CursorForwarder {
    /// Starts with the theme's default arrow, what the pointer shows over the background.
    pub fn new(settings: &CursorSettings) -> Self {
        Self::with_theme(ThemeCursors::new(settings))
    }

    fn with_theme(mut theme: ThemeCursors) -> Self {
        Self {
            status: CursorImageStatus::default_named(),
            current: CursorUpdate::Image(theme.image(CursorIcon::Default)),
            last_sent: None,
            theme,
            frame_timer_armed: false,
            warned: false,
        }
    }

    /// The current cursor if the appliance has not been sent it yet; it then counts as sent.
    fn take_unsent(&mut self) -> Option<CursorUpdate> {
        if self.last_sent.as_ref() == Some(&self.current) {
            return None;
        }
        self.last_sent = Some(self.current.clone());
        Some(self.current.clone())
    }

    /// Named cursors are drawn for an output of `scale` from now on (the next refresh shows it).
    pub fn set_scale(&mut self, scale: f64) {
        self.theme.set_scale(scale);
    }

    /// A newly attached appliance has no cursor yet.
    fn forget_sent(&mut self) {
        self.last_sent = None;
    }
}

impl WayRay {
    /// The seat's cursor changed: wl_pointer.set_cursor, cursor-shape-v1, or the window manager
    /// putting back the default (`CursorImageStatus::default_named()`) when the pointer leaves
    /// every client.
    pub fn set_cursor(&mut self, status: CursorImageStatus) {
        let is_surface = matches!(status, CursorImageStatus::Surface(_));
        self.cursor.status = status;
        self.cursor.warned = false;
        self.refresh_cursor();
        if is_surface {
            // The client may have committed, asking for a callback, before making it the cursor.
            self.arm_cursor_frame_timer();
        }
    }

    /// Called on every commit: a commit of the cursor surface (its first buffer, or the next
    /// frame of an animated cursor) refreshes the image.
    pub fn cursor_surface_committed(&mut self, surface: &WlSurface) {
        if matches!(&self.cursor.status, CursorImageStatus::Surface(s) if s == surface) {
            self.refresh_cursor();
            self.arm_cursor_frame_timer();
        }
    }

    /// Sends the current cursor to an appliance that just attached; call after the pacer knows it.
    pub fn send_cursor_to_new_appliance(&mut self) {
        self.cursor.forget_sent();
        self.refresh_cursor();
    }

    pub(super) fn refresh_cursor(&mut self) {
        if let CursorImageStatus::Surface(surface) = &self.cursor.status {
            if !surface.alive() {
                self.cursor.status = CursorImageStatus::default_named();
            }
        }
        let update = match &self.cursor.status {
            CursorImageStatus::Hidden => CursorUpdate::Hidden,
            CursorImageStatus::Named(icon) => CursorUpdate::Image(self.cursor.theme.image(*icon)),
            CursorImageStatus::Surface(surface) => match surface_cursor(surface) {
                Ok(Some(update)) => update,
                // Keep showing what was there until its first commit.
                Ok(None) => return,
                Err(err) => {
                    if !std::mem::replace(&mut self.cursor.warned, true) {
                        tracing::warn!(%err, "cannot show a client's cursor; showing the default");
                    }
                    CursorUpdate::Image(self.cursor.theme.image(CursorIcon::Default))
                }
            },
        };
        self.cursor.current = update;
        self.forward_cursor();
    }

    fn forward_cursor(&mut self) {
        let Some(appliance) = self.pacer.attached() else {
            return;
        };
        let Some(update) = self.cursor.take_unsent() else {
            return;
        };
        let bytes = match framing::encode(&DisplayMessage::Cursor(update)) {
            Ok(bytes) => bytes,
            Err(err) => {
                tracing::error!(%err, "cannot encode the cursor");
                return;
            }
        };
        tracing::debug!(appliance, len = bytes.len(), "sending cursor");
        let msg = ToTransport::Cursor {
            appliance,
            bytes: Arc::from(bytes),
        };
        self.to_transport.send(msg);
    }

    /// Cursor surfaces get frame callbacks once per output refresh, as if shown on it, so a
    /// client that animates its cursor by callbacks runs at a sane pace and never stalls.
    fn arm_cursor_frame_timer(&mut self) {
        if self.cursor.frame_timer_armed {
            return;
        }
        let timer = Timer::from_duration(self.min_frame_interval);
        match self.loop_handle.insert_source(timer, |_, _, state| {
            state.cursor.frame_timer_armed = false;
            state.send_cursor_frame_callbacks();
            TimeoutAction::Drop
        }) {
            Ok(_) => self.cursor.frame_timer_armed = true,
            Err(err) => tracing::error!(%err, "cannot arm the cursor frame timer"),
        }
    }

    fn send_cursor_frame_callbacks(&mut self) {
        let CursorImageStatus::Surface(surface) = &self.cursor.status else {
            return;
        };
        if !surface.alive() {
            return;
        }
        let output = self.output.clone();
        send_frames_surface_tree(
            surface,
            &output,
            self.start_time.elapsed(),
            Some(Duration::ZERO),
            |_, _| Some(output.clone()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(w: i32, h: i32, stride: i32, offset: i32, format: wl_shm::Format) -> BufferData {
        BufferData {
            offset,
            width: w,
            height: h,
            stride,
            format,
        }
    }

    /// Reads from a byte vector the way the real caller reads from the mapped pool.
    fn read(
        pool: &[u8],
        data: BufferData,
        hotspot: (i32, i32),
    ) -> Result<CursorImage, SurfaceCursorError> {
        read_shm_cursor(pool.len(), data, hotspot, |offset, dst| {
            dst.copy_from_slice(&pool[offset..offset + dst.len()])
        })
    }

    #[test]
    fn argb_is_copied_row_by_row_skipping_the_stride_padding() {
        // 2×2 pixels at offset 4, stride 12 (one pixel of padding per row).
        let mut pool = vec![0xee; 4 + 12 * 2];
        pool[4..12].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        pool[16..24].copy_from_slice(&[9, 10, 11, 12, 13, 14, 15, 16]);
        let image = read(&pool, layout(2, 2, 12, 4, wl_shm::Format::Argb8888), (1, 0)).unwrap();
        assert_eq!((image.width, image.height), (2, 2));
        assert_eq!((image.hotspot_x, image.hotspot_y), (1, 0));
        assert_eq!(image.pixels, (1..=16).collect::<Vec<u8>>());
        assert_eq!(image.validate(), Ok(()));
    }

    #[test]
    fn xrgb_becomes_opaque() {
        let pool = [10, 20, 30, 0, 40, 50, 60, 77];
        let image = read(&pool, layout(2, 1, 8, 0, wl_shm::Format::Xrgb8888), (0, 0)).unwrap();
        assert_eq!(image.pixels, [10, 20, 30, 255, 40, 50, 60, 255]);
    }

    #[test]
    fn hotspot_outside_the_image_is_clamped() {
        let pool = [0u8; 4 * 4 * 4];
        let data = layout(4, 4, 16, 0, wl_shm::Format::Argb8888);
        let image = read(&pool, data, (9, -3)).unwrap();
        assert_eq!((image.hotspot_x, image.hotspot_y), (3, 0));
        assert_eq!(image.validate(), Ok(()));
    }

    #[test]
    fn unsupported_formats_sizes_and_bounds_are_rejected() {
        let pool = [0u8; 1024];
        assert!(matches!(
            read(&pool, layout(2, 2, 8, 0, wl_shm::Format::Rgb565), (0, 0)),
            Err(SurfaceCursorError::Format(wl_shm::Format::Rgb565))
        ));
        assert!(matches!(
            read(&pool, layout(0, 2, 8, 0, wl_shm::Format::Argb8888), (0, 0)),
            Err(SurfaceCursorError::Size(0, 2))
        ));
        let big = MAX_CURSOR_SIZE as i32 + 1;
        assert!(matches!(
            read(
                &pool,
                layout(big, 1, big * 4, 0, wl_shm::Format::Argb8888),
                (0, 0)
            ),
            Err(SurfaceCursorError::Size(..))
        ));
        // Stride shorter than a row, negative offset, and a buffer past the pool's end.
        for data in [
            layout(4, 4, 8, 0, wl_shm::Format::Argb8888),
            layout(4, 4, 16, -1, wl_shm::Format::Argb8888),
            layout(16, 16, 64, 1, wl_shm::Format::Argb8888),
        ] {
            assert!(
                matches!(
                    read(&pool, data, (0, 0)),
                    Err(SurfaceCursorError::OutOfBounds)
                ),
                "{data:?}"
            );
        }
        // Exactly filling the pool is fine.
        assert!(read(
            &pool,
            layout(16, 16, 64, 0, wl_shm::Format::Argb8888),
            (0, 0)
        )
        .is_ok());
    }

    fn xcursor_image(
        size: u32,
        w: u32,
        h: u32,
        hot: (u32, u32),
        fill: u8,
    ) -> xcursor::parser::Image {
        xcursor::parser::Image {
            size,
            width: w,
            height: h,
            xhot: hot.0,
            yhot: hot.1,
            delay: 0,
            pixels_rgba: vec![fill; (w * h * 4) as usize],
            pixels_argb: Vec::new(),
        }
    }

    #[test]
    fn xcursor_picks_the_nearest_size_and_keeps_pixel_bytes() {
        let images = [
            xcursor_image(16, 16, 16, (1, 1), 1),
            xcursor_image(24, 24, 24, (4, 4), 2),
            xcursor_image(24, 24, 24, (4, 4), 3), // second animation frame
            xcursor_image(48, 48, 48, (48, 8), 4),
        ];
        let image = image_from_xcursor(&images, 26).unwrap();
        assert_eq!((image.width, image.hotspot_x), (24, 4));
        assert!(image.pixels.iter().all(|&b| b == 2), "not the first frame");
        let image = image_from_xcursor(&images, 64).unwrap();
        assert_eq!(
            (image.width, image.hotspot_x),
            (48, 47),
            "hotspot not clamped"
        );
        assert_eq!(image.validate(), Ok(()));
        // Too large for the wire: skipped.
        assert!(image_from_xcursor(&[xcursor_image(300, 300, 300, (0, 0), 0)], 300).is_none());
    }

    /// A real xcursor file, written the way themes ship it, parses into the wire format.
    #[test]
    fn xcursor_file_round_trip() {
        let (w, h) = (2u32, 1u32);
        let mut file = Vec::new();
        let words = |file: &mut Vec<u8>, ws: &[u32]| {
            for w in ws {
                file.extend_from_slice(&w.to_le_bytes());
            }
        };
        file.extend_from_slice(b"Xcur");
        words(&mut file, &[16, 0x1_0000, 1]); // header size, version, one TOC entry
        words(&mut file, &[0xfffd_0002, 24, 28]); // image chunk, nominal 24, at byte 28
        words(&mut file, &[36, 0xfffd_0002, 24, 1, w, h, 1, 0, 50]);
        words(&mut file, &[0x80102030, 0xff405060]); // premultiplied ARGB words
        let dir = std::env::temp_dir().join(format!("wayray-xcursor-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("left_ptr");
        std::fs::write(&path, &file).unwrap();
        let image = load_xcursor_file(&path, 24);
        let _ = std::fs::remove_dir_all(&dir);
        let image = image.unwrap();
        assert_eq!((image.width, image.height, image.hotspot_x), (2, 1, 1));
        assert_eq!(
            image.pixels,
            [0x30, 0x20, 0x10, 0x80, 0x60, 0x50, 0x40, 0xff]
        );
    }

    #[test]
    fn missing_theme_falls_back_to_the_builtin_arrow() {
        let mut theme = ThemeCursors::with_themes(&["wayray-no-such-theme".into()], 24);
        let arrow = builtin_arrow();
        assert_eq!(arrow.validate(), Ok(()));
        assert_eq!(theme.image(CursorIcon::Default), arrow);
        // Other icons fall back to the default, and everything is cached.
        assert_eq!(theme.image(CursorIcon::Text), arrow);
        assert_eq!(theme.cache.len(), 2);
    }

    /// With the theme the scripts install (or any other), named cursors load and differ.
    #[test]
    fn installed_theme_loads_named_cursors() {
        let mut theme = ThemeCursors::new(&CursorSettings {
            theme: "default".into(),
            size: 24,
        });
        let default = theme.image(CursorIcon::Default);
        assert_eq!(default.validate(), Ok(()));
        if default == builtin_arrow() {
            eprintln!("no xcursor theme installed; skipping");
            return;
        }
        let text = theme.image(CursorIcon::Text);
        assert_eq!(text.validate(), Ok(()));
        assert_ne!(
            default, text,
            "the text cursor should be an I-beam, not the arrow"
        );
    }

    /// The fallback names match the installed themes' directory names (when installed).
    #[test]
    fn fallback_themes_load_when_installed() {
        for theme in FALLBACK_THEMES {
            if !Path::new("/usr/share/icons")
                .join(theme)
                .join("cursors")
                .is_dir()
            {
                eprintln!("{theme} not installed; skipping");
                continue;
            }
            let cursors = ThemeCursors::with_themes(&[(*theme).to_owned()], 24);
            let image = cursors.load(CursorIcon::Default);
            assert!(image.is_some(), "{theme} has no default cursor");
            assert_ne!(image, Some(builtin_arrow()));
        }
    }

    #[test]
    fn unchanged_cursor_is_sent_once_and_again_to_a_new_appliance() {
        let mut cursor =
            CursorForwarder::with_theme(ThemeCursors::with_themes(&["wayray-none".into()], 24));
        let first = cursor.take_unsent();
        assert_eq!(first, Some(CursorUpdate::Image(builtin_arrow())));
        assert_eq!(cursor.take_unsent(), None, "same cursor sent twice");
        cursor.current = CursorUpdate::Hidden;
        assert_eq!(cursor.take_unsent(), Some(CursorUpdate::Hidden));
        assert_eq!(cursor.take_unsent(), None);
        cursor.forget_sent();
        assert_eq!(cursor.take_unsent(), Some(CursorUpdate::Hidden));
    }
}
