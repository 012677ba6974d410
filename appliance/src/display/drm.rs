//! The real screen: DRM/KMS with two dumb buffers, flipped on vblank.
//!
//! The sink opens the card itself (the appliance runs as root and owns the screen), becomes DRM
//! master, drives the first connected connector at its preferred mode (or `--mode`) and scans
//! out of two XRGB8888 dumb buffers, the wire's own pixel format, so a frame's damage is a row
//! by row copy. A frame goes into the buffer not on screen, which is then page-flipped on
//! vblank; the next frame waits for that flip's completion event before it touches the buffer
//! the flip released. What each buffer shows comes from [`Scene`], the pure half in
//! `compose.rs`: the session picture (kept whole in memory, for screenshots and for the
//! buffer that comes back after a flip), a status box, and the cursor when the driver has no
//! cursor plane (bochs, for one).
//!
//! Displays come and go. After a hotplug ([`super::hotplug`]) [`DisplaySink::rescan`] reads the
//! connectors again and picks as start-up did; another connector or mode gets new buffers of
//! its size with the last picture (or the status) on them, and the appliance asks the server
//! for a session of the new size. With no display connected the sink runs dark: frames still
//! land in the scene (and screenshots), and go up on the next display plugged in. Which
//! connector and mode to drive is decided by `pick_output` on plain data, tested without a
//! device.

use std::fmt;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use drm::buffer::{Buffer as _, DrmFourcc};
use drm::control::dumbbuffer::DumbBuffer;
use drm::control::{
    connector, crtc, framebuffer, ClipRect, Device as ControlDevice, Event, Mode, ModeTypeFlags,
    PageFlipFlags,
};
use drm::{Device, DriverCapability};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use wayray_protocol::{CursorImage, PhysicalSize, Rect, BYTES_PER_PIXEL};

use super::compose::{Pitched, Scene, Stale};
use super::{CursorView, DisplayError, DisplaySink, FrameView};
use crate::config::ModeRequest;
use crate::report::error_chain;

/// How long a page flip may take before the sink stops waiting for its event (a vblank is
/// 16 ms at 60 Hz; a driver that loses events must not freeze the appliance).
const FLIP_TIMEOUT: Duration = Duration::from_secs(1);
/// Cursor plane size when the driver does not say.
const DEFAULT_CURSOR_SIZE: u64 = 64;

#[derive(Debug, thiserror::Error)]
pub enum DrmError {
    #[error("cannot open {}; is the DRM driver loaded (e.g. bochs for QEMU -vga std, virtio-gpu)?", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot become DRM master of {}; is a compositor or another wrclient using it?", path.display())]
    Master {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a modesetting device", path.display())]
    Resources {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no connected display on {}{}", path.display(), if seen.is_empty() { String::new() } else { format!(" (connectors: {seen})") })]
    NoConnector { path: PathBuf, seen: String },
    #[error("{connector} has no mode {requested}; it offers {available}")]
    NoMode {
        connector: String,
        requested: ModeRequest,
        available: String,
    },
    #[error("{connector} offers no modes")]
    NoModes { connector: String },
    #[error("no CRTC can drive {connector}")]
    NoCrtc { connector: String },
    #[error("cannot {what}")]
    Kms {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

fn kms(what: &'static str) -> impl FnOnce(std::io::Error) -> DrmError {
    move |source| DrmError::Kms { what, source }
}

/// The opened card.
struct Card(File);

impl AsFd for Card {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl Device for Card {}
impl ControlDevice for Card {}

struct Scanout {
    buffer: DumbBuffer,
    framebuffer: framebuffer::Handle,
}

enum CursorPlane {
    /// The driver's cursor plane, fed from an ARGB dumb buffer of the plane's size.
    Hardware {
        buffer: DumbBuffer,
        size: (u32, u32),
    },
    /// Drawn into the scanout buffers by [`Scene`].
    Software,
}

/// The display being driven: a connector, the CRTC feeding it, its mode and the buffers of that
/// mode's size.
struct Output {
    connector: connector::Handle,
    name: String,
    crtc: crtc::Handle,
    mode: Mode,
    scanouts: [Scanout; 2],
    /// The buffer last handed to the CRTC (on screen, or about to be when a flip is pending).
    front: usize,
    flip_pending: bool,
    /// Rectangles each buffer has not been given yet.
    stale: [Stale; 2],
    cursor_plane: CursorPlane,
}

pub struct DrmSink {
    card: Card,
    path: PathBuf,
    /// `--mode`, asked for again whenever a display is plugged in.
    request: Option<ModeRequest>,
    /// `None` while no display is connected: frames, statuses and the cursor then only update
    /// the scene, which goes up on the next display plugged in.
    output: Option<Output>,
    /// The size of the last mode set: what the session should be (kept while dark, so a
    /// display coming back at the same mode changes nothing for the server).
    mode_size: (u32, u32),
    /// The driven monitor's size in millimetres (EDID), kept while dark like `mode_size`.
    physical_size: Option<PhysicalSize>,
    scene: Scene,
    cursor_image: Option<CursorImage>,
    pointer: (i32, i32),
}

impl DrmSink {
    /// Takes over `card`: the first connected connector, at `mode` or its preferred mode.
    pub fn open(card: &Path, mode: Option<ModeRequest>) -> Result<Self, DrmError> {
        let file = File::options()
            .read(true)
            .write(true)
            .open(card)
            .map_err(|source| DrmError::Open {
                path: card.to_owned(),
                source,
            })?;
        let path = card.to_owned();
        let card = Card(file);
        // Opening the primary node makes the first opener master; asking again is harmless.
        card.acquire_master_lock()
            .map_err(|source| DrmError::Master {
                path: path.clone(),
                source,
            })?;
        let resources = card
            .resource_handles()
            .map_err(|source| DrmError::Resources {
                path: path.clone(),
                source,
            })?;
        let connectors = probe_connectors(&card, &resources);
        let offers: Vec<ConnectorOffer> = connectors.iter().map(ConnectorOffer::of).collect();
        let pick = pick_output(&offers, mode, Occasion::Start)
            .map_err(|e| pick_error(e, &path, &offers, mode))?;
        let connector = &connectors[pick.connector];
        let chosen = connector.modes()[pick.mode];
        let crtc = find_crtc(&card, &resources, connector).ok_or_else(|| DrmError::NoCrtc {
            connector: offers[pick.connector].name.clone(),
        })?;

        let mut sink = Self {
            card,
            path,
            request: mode,
            output: None,
            mode_size: (0, 0),
            physical_size: None,
            scene: Scene::new(0, 0),
            cursor_image: None,
            pointer: (0, 0),
        };
        sink.light(connector, crtc, chosen)?;
        Ok(sink)
    }

    /// Drives `connector` from `crtc` at `mode` with new scanout buffers showing the scene (the
    /// last picture, or the status), then lets go of the display driven before, if any.
    fn light(
        &mut self,
        connector: &connector::Info,
        crtc: crtc::Handle,
        mode: Mode,
    ) -> Result<(), DrmError> {
        let name = connector_name(connector);
        let (w, h) = mode.size();
        let mode_size = (u32::from(w), u32::from(h));
        tracing::info!(
            card = %self.path.display(),
            connector = name,
            mode = %describe(&mode),
            "display"
        );
        let mut old = self.output.take();
        if let Some(old) = &mut old {
            // The old buffers must be off the flip queue before the CRTC changes hands.
            wait_for_flip(&self.card, old.crtc, &mut old.flip_pending);
        }
        let scanouts = match create_scanouts(&self.card, mode_size) {
            Ok(scanouts) => scanouts,
            Err(e) => {
                self.release(old);
                return Err(e);
            }
        };
        let cursor_plane = probe_cursor_plane(&self.card, crtc);
        let mut output = Output {
            connector: connector.handle(),
            name,
            crtc,
            mode,
            scanouts,
            front: 0,
            flip_pending: false,
            stale: Default::default(),
            cursor_plane,
        };
        // The cursor is put back below, on whichever plane this CRTC has.
        self.scene.set_cursor(None);
        let screen = self.scene.set_mode(mode_size.0, mode_size.1);
        // Buffer 0 gets the whole screen and goes up with the mode; buffer 1 follows with the
        // first flip.
        output.stale[1].add(screen);
        let shown = output
            .fill_buffer(&self.card, &self.scene, 0, &[screen])
            .and_then(|()| {
                self.card
                    .set_crtc(
                        crtc,
                        Some(output.scanouts[0].framebuffer),
                        (0, 0),
                        &[output.connector],
                        Some(mode),
                    )
                    .map_err(kms("set the display mode"))
            });
        if let Err(e) = shown {
            output.release(&self.card);
            self.release(old);
            return Err(e);
        }
        if let Some(old) = old {
            if old.crtc != crtc {
                self.disable(old.crtc);
            }
            old.release(&self.card);
        }
        self.output = Some(output);
        self.mode_size = mode_size;
        self.physical_size = physical_size_of(connector);
        let image = self.cursor_image.clone();
        if let Err(e) = self.set_cursor(image.as_ref()) {
            tracing::warn!(error = %error_chain(&e), "cannot show the cursor on the new display");
        }
        Ok(())
    }

    /// No display to drive: turns the CRTC off and frees the buffers; the scene stays.
    fn go_dark(&mut self) {
        let old = self.output.take();
        self.release(old);
    }

    fn release(&mut self, output: Option<Output>) {
        if let Some(mut output) = output {
            wait_for_flip(&self.card, output.crtc, &mut output.flip_pending);
            self.disable(output.crtc);
            output.release(&self.card);
        }
    }

    /// A frame could not go up. If the display went away or changed meanwhile (its hotplug not
    /// read yet; a DP-MST connector vanishes with its CRTC), that is no error: the rescan has
    /// followed it, and the connection announces a new size right after this frame. The
    /// same display failing again is `failure`.
    fn recover(&mut self, failure: DrmError) -> Result<(), DisplayError> {
        let driven = |sink: &Self| sink.output.as_ref().map(|o| (o.connector, o.mode));
        let before = driven(self);
        tracing::debug!(error = %error_chain(&failure), "cannot show a frame; looking at the displays");
        self.rescan()?;
        if driven(self) == before {
            return Err(failure.into());
        }
        Ok(())
    }

    fn disable(&self, crtc: crtc::Handle) {
        if let Err(e) = self.card.set_crtc(crtc, None, (0, 0), &[], None) {
            tracing::debug!(error = %e, "cannot turn a CRTC off");
        }
    }
}

impl Output {
    /// Gives every buffer `rects` (screen rectangles that changed), then shows the back buffer
    /// with them on the next vblank.
    fn redraw(&mut self, card: &Card, scene: &Scene, rects: &[Rect]) -> Result<(), DrmError> {
        for rect in rects {
            self.stale[0].add(*rect);
            self.stale[1].add(*rect);
        }
        wait_for_flip(card, self.crtc, &mut self.flip_pending);
        let back = 1 - self.front;
        if self.stale[back].is_empty() {
            return Ok(());
        }
        let todo = self.stale[back].take();
        self.fill_buffer(card, scene, back, &todo)?;
        let framebuffer = self.scanouts[back].framebuffer;
        match card.page_flip(self.crtc, framebuffer, PageFlipFlags::EVENT, None) {
            Ok(()) => self.flip_pending = true,
            Err(e) => {
                // A driver without flips still shows the picture, with tearing.
                tracing::debug!(error = %e, "page flip failed; setting the framebuffer directly");
                card.set_crtc(
                    self.crtc,
                    Some(framebuffer),
                    (0, 0),
                    &[self.connector],
                    Some(self.mode),
                )
                .map_err(kms("show a frame"))?;
            }
        }
        self.front = back;
        Ok(())
    }

    /// Composes `rects` of the screen into scanout buffer `index`.
    fn fill_buffer(
        &mut self,
        card: &Card,
        scene: &Scene,
        index: usize,
        rects: &[Rect],
    ) -> Result<(), DrmError> {
        let (w, h) = self.mode.size();
        let buffer = &mut self.scanouts[index].buffer;
        let pitch = buffer.pitch() as usize;
        let mut map = card
            .map_dumb_buffer(buffer)
            .map_err(kms("map a scanout buffer"))?;
        let Some(mut target) = Pitched::new(&mut map, pitch, u32::from(w), u32::from(h)) else {
            return Err(DrmError::Kms {
                what: "use the scanout buffer the driver made (too small for its pitch)",
                source: std::io::Error::from(std::io::ErrorKind::InvalidData),
            });
        };
        for rect in rects {
            scene.compose(&mut target, *rect);
        }
        Ok(())
    }

    /// A software cursor changed `rects`: the buffer on screen gets them at once (a pointer
    /// must not wait for the next frame, and flipping per motion event would pace input by
    /// vblank), the other one at its next turn.
    fn redraw_cursor(
        &mut self,
        card: &Card,
        scene: &Scene,
        rects: &[Rect],
    ) -> Result<(), DrmError> {
        if rects.is_empty() {
            return Ok(());
        }
        let front = self.front;
        for rect in rects {
            self.stale[1 - front].add(*rect);
        }
        self.fill_buffer(card, scene, front, rects)?;
        // Drivers that copy to the host (virtio-gpu) only see front buffer writes through this.
        let clips: Vec<ClipRect> = rects
            .iter()
            .map(|r| {
                let c = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
                ClipRect::new(c(r.x), c(r.y), c(r.x + r.w), c(r.y + r.h))
            })
            .collect();
        if let Err(e) = card.dirty_framebuffer(self.scanouts[front].framebuffer, &clips) {
            tracing::trace!(error = %e, "dirtyfb");
        }
        Ok(())
    }

    /// Shows `image` on the cursor plane; `false` if the plane cannot show it.
    #[allow(deprecated)] // The legacy cursor ioctls are what every KMS driver with a cursor takes.
    fn set_hardware_cursor(&mut self, card: &Card, image: Option<&CursorImage>) -> bool {
        let CursorPlane::Hardware { buffer, size } = &mut self.cursor_plane else {
            return false;
        };
        let Some(image) = image else {
            return match card.set_cursor2(self.crtc, None::<&DumbBuffer>, (0, 0)) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot hide the hardware cursor");
                    false
                }
            };
        };
        if image.width > size.0 || image.height > size.1 {
            return false;
        }
        let pitch = buffer.pitch() as usize;
        let written = card.map_dumb_buffer(buffer).map(|mut map| {
            map.fill(0);
            let row = image.width as usize * BYTES_PER_PIXEL;
            for (y, src) in image.pixels.chunks_exact(row).enumerate() {
                if let Some(dst) = map.get_mut(y * pitch..y * pitch + row) {
                    dst.copy_from_slice(src);
                }
            }
        });
        let hotspot = (image.hotspot_x as i32, image.hotspot_y as i32);
        let shown = written.and_then(|()| card.set_cursor2(self.crtc, Some(&*buffer), hotspot));
        match shown {
            Ok(()) => true,
            Err(e) => {
                tracing::info!(error = %e, "no hardware cursor; drawing the cursor in software");
                let old = std::mem::replace(&mut self.cursor_plane, CursorPlane::Software);
                old.release(card);
                false
            }
        }
    }

    #[allow(deprecated)]
    fn move_hardware_cursor(
        &self,
        card: &Card,
        scene: &Scene,
        image: Option<&CursorImage>,
    ) -> Result<(), DrmError> {
        let Some(image) = image else {
            return Ok(());
        };
        let (x, y) = scene.cursor_corner(image.hotspot_x, image.hotspot_y);
        let clamp = |v: i64| v.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
        card.move_cursor(self.crtc, (clamp(x), clamp(y)))
            .map_err(kms("move the hardware cursor"))
    }

    fn hardware_cursor(&self) -> bool {
        matches!(self.cursor_plane, CursorPlane::Hardware { .. })
    }

    /// Frees the buffers (the caller has taken them off screen, or the next mode replaced them).
    fn release(self, card: &Card) {
        for scanout in self.scanouts {
            scanout.release(card);
        }
        self.cursor_plane.release(card);
    }
}

impl Scanout {
    fn release(self, card: &Card) {
        if let Err(e) = card.destroy_framebuffer(self.framebuffer) {
            tracing::debug!(error = %e, "cannot remove a framebuffer");
        }
        if let Err(e) = card.destroy_dumb_buffer(self.buffer) {
            tracing::debug!(error = %e, "cannot free a scanout buffer");
        }
    }
}

impl CursorPlane {
    fn release(self, card: &Card) {
        if let CursorPlane::Hardware { buffer, .. } = self {
            if let Err(e) = card.destroy_dumb_buffer(buffer) {
                tracing::debug!(error = %e, "cannot free the cursor buffer");
            }
        }
    }
}

/// Waits for the page flip in flight on `crtc`, if any, to complete.
fn wait_for_flip(card: &Card, crtc: crtc::Handle, pending: &mut bool) {
    let timeout = Timespec {
        tv_sec: FLIP_TIMEOUT.as_secs() as _,
        tv_nsec: FLIP_TIMEOUT.subsec_nanos().into(),
    };
    while *pending {
        let mut fds = [PollFd::new(card, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) => {
                tracing::warn!(timeout = ?FLIP_TIMEOUT, "no page flip event; going on without it");
                *pending = false;
            }
            Ok(_) => match card.receive_events() {
                Ok(events) => {
                    for event in events {
                        if let Event::PageFlip(flip) = event {
                            if flip.crtc == crtc {
                                *pending = false;
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read DRM events; going on without the flip");
                    *pending = false;
                }
            },
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot wait for a page flip; going on without it");
                *pending = false;
            }
        }
    }
}

impl DisplaySink for DrmSink {
    fn configure(&mut self, width: u32, height: u32) -> Result<(), DisplayError> {
        if (width, height) != self.mode_size {
            tracing::info!(
                width,
                height,
                mode_width = self.mode_size.0,
                mode_height = self.mode_size.1,
                "session size differs from the display mode; centring it"
            );
        }
        let screen = self.scene.configure(width, height);
        let Some(output) = &mut self.output else {
            return Ok(());
        };
        output.stale[0].add(screen);
        output.stale[1].add(screen);
        // The origin moved: the cursor plane follows it.
        if output.hardware_cursor() {
            let image = self.cursor_image.as_ref();
            if let Err(e) = output.move_hardware_cursor(&self.card, &self.scene, image) {
                tracing::warn!(error = %error_chain(&e), "cannot move the hardware cursor");
            }
        }
        Ok(())
    }

    fn present(
        &mut self,
        pixels: &[u8],
        width: u32,
        height: u32,
        damage: &[Rect],
    ) -> Result<(), DisplayError> {
        let Some((_, configured_width, configured_height)) = self.scene.session() else {
            return Err(DisplayError::SizeMismatch {
                width,
                height,
                configured_width: 0,
                configured_height: 0,
            });
        };
        if (width, height) != (configured_width, configured_height) {
            return Err(DisplayError::SizeMismatch {
                width,
                height,
                configured_width,
                configured_height,
            });
        }
        let needed = width as usize * height as usize * BYTES_PER_PIXEL;
        if pixels.len() < needed {
            return Err(DisplayError::ShortBuffer {
                width,
                height,
                needed,
                got: pixels.len(),
            });
        }
        let mut rects = self.scene.update_session(pixels, damage);
        // A picture from the server means the status said all it had to.
        if self.scene.has_status() {
            rects.extend(self.scene.set_status(None));
        }
        let Some(output) = &mut self.output else {
            return Ok(());
        };
        match output.redraw(&self.card, &self.scene, &rects) {
            Ok(()) => Ok(()),
            Err(e) => self.recover(e),
        }
    }

    fn show_status(&mut self, text: &str) {
        let rects = self.scene.set_status(Some(text));
        let Some(output) = &mut self.output else {
            return;
        };
        if let Err(e) = output.redraw(&self.card, &self.scene, &rects) {
            tracing::warn!(error = %error_chain(&e), "cannot show the status on screen");
        }
    }

    fn contents(&self) -> Option<FrameView<'_>> {
        self.scene
            .session()
            .map(|(pixels, width, height)| FrameView {
                pixels,
                width,
                height,
            })
    }

    fn set_cursor(&mut self, image: Option<&CursorImage>) -> Result<(), DisplayError> {
        self.cursor_image = image.cloned();
        let Some(output) = &mut self.output else {
            // Put up with the next display.
            return Ok(());
        };
        if output.set_hardware_cursor(&self.card, image) {
            output.move_hardware_cursor(&self.card, &self.scene, image)?;
            // An earlier image too big for the plane may still be drawn in software.
            let rects = self.scene.set_cursor(None);
            return Ok(output.redraw_cursor(&self.card, &self.scene, &rects)?);
        }
        if output.hardware_cursor() {
            // Too big for the plane this time: hide the plane, draw it ourselves.
            output.set_hardware_cursor(&self.card, None);
        }
        let rects = self.scene.set_cursor(image);
        Ok(output.redraw_cursor(&self.card, &self.scene, &rects)?)
    }

    fn move_cursor(&mut self, x: i32, y: i32) -> Result<(), DisplayError> {
        self.pointer = (x, y);
        let rects = self.scene.move_pointer(x, y);
        let Some(output) = &mut self.output else {
            return Ok(());
        };
        if output.hardware_cursor() && self.cursor_image.is_some() && rects.is_empty() {
            let image = self.cursor_image.as_ref();
            return Ok(output.move_hardware_cursor(&self.card, &self.scene, image)?);
        }
        Ok(output.redraw_cursor(&self.card, &self.scene, &rects)?)
    }

    fn cursor(&self) -> Option<CursorView<'_>> {
        let (x, y) = self.pointer;
        self.cursor_image
            .as_ref()
            .map(|image| CursorView { image, x, y })
    }

    /// The mode's size: the session should be this big.
    fn native_size(&self) -> Option<(u32, u32)> {
        Some(self.mode_size)
    }

    /// The connector's `mm_width`×`mm_height`, from the monitor's EDID.
    fn physical_size(&self) -> Option<PhysicalSize> {
        self.physical_size
    }

    /// Reads the connectors again and picks as [`DrmSink::open`] did (the first connected
    /// connector, at `--mode` or its preferred mode); if that is another connector or another
    /// mode than the one driven now, sets it up. With nothing connected the sink goes dark
    /// and waits for the next hotplug.
    fn rescan(&mut self) -> Result<Option<(u32, u32)>, DisplayError> {
        let resources = self
            .card
            .resource_handles()
            .map_err(kms("read the display resources"))?;
        let connectors = probe_connectors(&self.card, &resources);
        let offers: Vec<ConnectorOffer> = connectors.iter().map(ConnectorOffer::of).collect();
        let pick = match pick_output(&offers, self.request, Occasion::Hotplug) {
            Ok(pick) => pick,
            Err(e) => {
                if let Some(output) = &self.output {
                    tracing::warn!(
                        card = %self.path.display(),
                        was = output.name,
                        error = %pick_error(e, &self.path, &offers, self.request),
                        "display gone; waiting for one to be plugged in"
                    );
                }
                self.go_dark();
                return Ok(None);
            }
        };
        let connector = &connectors[pick.connector];
        let mode = connector.modes()[pick.mode];
        if let Some(output) = &self.output {
            if output.connector == connector.handle() && output.mode == mode {
                // The same mode on another monitor of another size (swapped on this port).
                self.physical_size = physical_size_of(connector);
                return Ok(None);
            }
        }
        if let (true, Some(request)) = (pick.fallback, self.request) {
            tracing::warn!(
                connector = offers[pick.connector].name,
                requested = %request,
                available = %available_modes(&offers[pick.connector].modes),
                "the display plugged in has no such mode; using its preferred mode"
            );
        }
        let before = self.mode_size;
        let lit = find_crtc(&self.card, &resources, connector)
            .ok_or_else(|| DrmError::NoCrtc {
                connector: offers[pick.connector].name.clone(),
            })
            .and_then(|crtc| self.light(connector, crtc, mode));
        if let Err(e) = lit {
            // Whatever was up may be half torn down: dark until the next hotplug tries again.
            self.go_dark();
            return Err(e.into());
        }
        Ok((self.mode_size != before).then_some(self.mode_size))
    }
}

/// Every connector's current state, probed (a hotplug is what the forced probe is for: it reads
/// a new monitor's modes). A connector that vanished meanwhile (DP-MST) is skipped.
fn probe_connectors(
    card: &Card,
    resources: &drm::control::ResourceHandles,
) -> Vec<connector::Info> {
    resources
        .connectors()
        .iter()
        .filter_map(|&handle| match card.get_connector(handle, true) {
            Ok(info) => Some(info),
            Err(e) => {
                tracing::debug!(connector = ?handle, error = %e, "cannot read a connector");
                None
            }
        })
        .collect()
}

/// The monitor's size as the kernel read it from the EDID; 0×0 (none given) is unknown.
fn physical_size_of(info: &connector::Info) -> Option<PhysicalSize> {
    let size = info.size().and_then(|(w, h)| PhysicalSize::known(w, h));
    tracing::debug!(connector = connector_name(info), ?size, "physical size");
    size
}

fn connector_name(info: &connector::Info) -> String {
    format!("{}-{}", info.interface().as_str(), info.interface_id())
}

fn describe(mode: &Mode) -> String {
    ModeOffer::of(mode).to_string()
}

/// A mode as the pick sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ModeOffer {
    width: u32,
    height: u32,
    refresh: u32,
    preferred: bool,
}

impl ModeOffer {
    fn of(mode: &Mode) -> Self {
        let (w, h) = mode.size();
        Self {
            width: u32::from(w),
            height: u32::from(h),
            refresh: mode.vrefresh(),
            preferred: mode.mode_type().contains(ModeTypeFlags::PREFERRED),
        }
    }
}

impl fmt::Display for ModeOffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}@{}", self.width, self.height, self.refresh)
    }
}

/// A connector as the pick sees it: no device needed, so the pick is tested in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ConnectorOffer {
    name: String,
    state: connector::State,
    modes: Vec<ModeOffer>,
}

impl ConnectorOffer {
    fn of(info: &connector::Info) -> Self {
        Self {
            name: connector_name(info),
            state: info.state(),
            modes: info.modes().iter().map(ModeOffer::of).collect(),
        }
    }

    fn connected(&self) -> bool {
        self.state == connector::State::Connected
    }
}

/// When a pick happens: at start-up a display that cannot do what was asked is an error the
/// person at the appliance must see; after a hotplug the appliance must go on with what it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Occasion {
    Start,
    Hotplug,
}

/// What to drive: indices into the offers and into that connector's modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pick {
    connector: usize,
    mode: usize,
    /// The connector has no `--mode`, so this is its preferred mode instead (hotplug only).
    fallback: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PickError {
    /// No connector is connected (or, after a hotplug, none that offers a mode).
    Disconnected,
    /// The first connected connector offers no modes (start-up only).
    Modeless { connector: usize },
    /// The first connected connector lacks `--mode` (start-up only).
    ModeMissing { connector: usize },
}

/// The first connected connector, at the requested mode (its first match, preferring the
/// preferred mode) or else at its preferred mode, else at its first (the kernel lists the best
/// first). After a hotplug, a connector without modes is passed over and a missing `--mode`
/// falls back to the preferred mode, where at start-up both are errors.
fn pick_output(
    offers: &[ConnectorOffer],
    request: Option<ModeRequest>,
    occasion: Occasion,
) -> Result<Pick, PickError> {
    for (connector, offer) in offers.iter().enumerate().filter(|(_, o)| o.connected()) {
        let pick = |mode, fallback| Pick {
            connector,
            mode,
            fallback,
        };
        match (pick_mode(&offer.modes, request), occasion) {
            (Some(mode), _) => return Ok(pick(mode, false)),
            (None, Occasion::Hotplug) => match pick_mode(&offer.modes, None) {
                Some(mode) => return Ok(pick(mode, true)),
                None => continue,
            },
            (None, Occasion::Start) if offer.modes.is_empty() => {
                return Err(PickError::Modeless { connector })
            }
            (None, Occasion::Start) => return Err(PickError::ModeMissing { connector }),
        }
    }
    Err(PickError::Disconnected)
}

/// The index of the mode `requested` (the first match, preferring the preferred mode), or
/// without a request the preferred mode, else the first.
fn pick_mode(modes: &[ModeOffer], requested: Option<ModeRequest>) -> Option<usize> {
    let preferred = modes.iter().enumerate().filter(|(_, m)| m.preferred);
    let mut preferred_first = preferred.chain(modes.iter().enumerate());
    match requested {
        None => preferred_first.next(),
        Some(request) => {
            preferred_first.find(|(_, m)| request.matches(m.width, m.height, m.refresh))
        }
    }
    .map(|(index, _)| index)
}

fn available_modes(modes: &[ModeOffer]) -> String {
    let mut available: Vec<String> = modes.iter().map(ModeOffer::to_string).collect();
    available.dedup();
    available.join(", ")
}

fn pick_error(
    e: PickError,
    path: &Path,
    offers: &[ConnectorOffer],
    requested: Option<ModeRequest>,
) -> DrmError {
    match (e, requested) {
        (PickError::Disconnected, _) => DrmError::NoConnector {
            path: path.to_owned(),
            seen: offers
                .iter()
                .map(|o| format!("{} {:?}", o.name, o.state).to_lowercase())
                .collect::<Vec<_>>()
                .join(", "),
        },
        (PickError::ModeMissing { connector }, Some(requested)) => DrmError::NoMode {
            connector: offers[connector].name.clone(),
            requested,
            available: available_modes(&offers[connector].modes),
        },
        (PickError::Modeless { connector } | PickError::ModeMissing { connector }, _) => {
            DrmError::NoModes {
                connector: offers[connector].name.clone(),
            }
        }
    }
}

/// The CRTC the connector's encoder drives now, else the first one any of its encoders can use.
fn find_crtc(
    card: &Card,
    resources: &drm::control::ResourceHandles,
    connector: &connector::Info,
) -> Option<crtc::Handle> {
    let encoders: Vec<_> = connector
        .current_encoder()
        .into_iter()
        .chain(connector.encoders().iter().copied())
        .filter_map(|handle| card.get_encoder(handle).ok())
        .collect();
    encoders
        .iter()
        .find_map(|encoder| encoder.crtc())
        .or_else(|| {
            encoders.iter().find_map(|encoder| {
                resources
                    .filter_crtcs(encoder.possible_crtcs())
                    .first()
                    .copied()
            })
        })
}

/// The two scanout buffers of a mode of `size`.
fn create_scanouts(card: &Card, size: (u32, u32)) -> Result<[Scanout; 2], DrmError> {
    let first = create_scanout(card, size)?;
    match create_scanout(card, size) {
        Ok(second) => Ok([first, second]),
        Err(e) => {
            first.release(card);
            Err(e)
        }
    }
}

fn create_scanout(card: &Card, (width, height): (u32, u32)) -> Result<Scanout, DrmError> {
    let buffer = card
        .create_dumb_buffer((width, height), DrmFourcc::Xrgb8888, 32)
        .map_err(kms("allocate a scanout buffer"))?;
    let framebuffer = card
        .add_framebuffer(&buffer, 24, 32)
        .map_err(kms("add a framebuffer"))?;
    Ok(Scanout {
        buffer,
        framebuffer,
    })
}

/// Whether the CRTC has a cursor plane (hiding the cursor fails with ENXIO when it has not, as
/// on bochs); if so, an ARGB buffer of the plane's size for it.
#[allow(deprecated)]
fn probe_cursor_plane(card: &Card, crtc: crtc::Handle) -> CursorPlane {
    if let Err(e) = card.set_cursor2(crtc, None::<&DumbBuffer>, (0, 0)) {
        tracing::info!(error = %e, "no hardware cursor; drawing the cursor in software");
        return CursorPlane::Software;
    }
    let cap = |c| {
        card.get_driver_capability(c)
            .ok()
            .filter(|&v| v > 0 && v <= 512)
            .unwrap_or(DEFAULT_CURSOR_SIZE) as u32
    };
    let size = (
        cap(DriverCapability::CursorWidth),
        cap(DriverCapability::CursorHeight),
    );
    match card.create_dumb_buffer(size, DrmFourcc::Argb8888, 32) {
        Ok(buffer) => {
            tracing::debug!(width = size.0, height = size.1, "hardware cursor");
            CursorPlane::Hardware { buffer, size }
        }
        Err(e) => {
            tracing::info!(error = %e, "cannot allocate a cursor buffer; drawing the cursor in software");
            CursorPlane::Software
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(spec: &str) -> ModeOffer {
        // "WxH@R", with a trailing `*` for the preferred mode.
        let (spec, preferred) = match spec.strip_suffix('*') {
            Some(spec) => (spec, true),
            None => (spec, false),
        };
        let request: ModeRequest = spec.parse().unwrap();
        ModeOffer {
            width: request.width,
            height: request.height,
            refresh: request.refresh.unwrap(),
            preferred,
        }
    }

    fn connector(name: &str, connected: bool, modes: &[&str]) -> ConnectorOffer {
        ConnectorOffer {
            name: name.into(),
            state: if connected {
                connector::State::Connected
            } else {
                connector::State::Disconnected
            },
            modes: modes.iter().map(|m| mode(m)).collect(),
        }
    }

    fn pick(connector: usize, mode: usize, fallback: bool) -> Result<Pick, PickError> {
        Ok(Pick {
            connector,
            mode,
            fallback,
        })
    }

    fn request(text: &str) -> Option<ModeRequest> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn the_first_connected_connector_at_its_preferred_mode() {
        let offers = [
            connector("hdmi-a-1", false, &["1920x1080@60*"]),
            connector(
                "dp-1",
                true,
                &["2560x1440@144", "1920x1080@60*", "1024x768@60"],
            ),
            connector("dp-2", true, &["800x600@60*"]),
        ];
        for occasion in [Occasion::Start, Occasion::Hotplug] {
            assert_eq!(pick_output(&offers, None, occasion), pick(1, 1, false));
        }
        // No preferred mode: the first, which the kernel lists as the best.
        let offers = [connector("vga-1", true, &["1024x768@60", "800x600@60"])];
        assert_eq!(
            pick_output(&offers, None, Occasion::Start),
            pick(0, 0, false)
        );
    }

    #[test]
    fn a_requested_mode_prefers_the_preferred_among_its_matches() {
        let offers = [connector(
            "dp-1",
            true,
            &["1920x1080@50", "1920x1080@60*", "1280x720@60"],
        )];
        let any_rate = request("1920x1080");
        assert_eq!(
            pick_output(&offers, any_rate, Occasion::Start),
            pick(0, 1, false)
        );
        let at_50 = request("1920x1080@50");
        assert_eq!(
            pick_output(&offers, at_50, Occasion::Start),
            pick(0, 0, false)
        );
        let small = request("1280x720");
        assert_eq!(
            pick_output(&offers, small, Occasion::Hotplug),
            pick(0, 2, false)
        );
    }

    #[test]
    fn at_start_up_what_cannot_be_done_is_an_error() {
        let path = Path::new("/dev/dri/card0");
        let none = [
            connector("hdmi-a-1", false, &["1920x1080@60*"]),
            connector("dp-1", false, &[]),
        ];
        let err = pick_output(&none, None, Occasion::Start).unwrap_err();
        assert_eq!(err, PickError::Disconnected);
        let text = pick_error(err, path, &none, None).to_string();
        assert!(
            text.contains("no connected display on /dev/dri/card0")
                && text.contains("hdmi-a-1 disconnected, dp-1 disconnected"),
            "{text}"
        );

        let modeless = [
            connector("dp-1", true, &[]),
            connector("dp-2", true, &["800x600@60"]),
        ];
        let err = pick_output(&modeless, None, Occasion::Start).unwrap_err();
        assert_eq!(err, PickError::Modeless { connector: 0 });
        assert_eq!(
            pick_error(err, path, &modeless, None).to_string(),
            "dp-1 offers no modes"
        );

        let offers = [connector("dp-1", true, &["1920x1080@60*", "1920x1080@60"])];
        let wanted = request("640x480");
        let err = pick_output(&offers, wanted, Occasion::Start).unwrap_err();
        assert_eq!(err, PickError::ModeMissing { connector: 0 });
        assert_eq!(
            pick_error(err, path, &offers, wanted).to_string(),
            "dp-1 has no mode 640x480; it offers 1920x1080@60"
        );
    }

    #[test]
    fn after_a_hotplug_the_appliance_goes_on_with_what_there_is() {
        // The monitor plugged in lacks `--mode`: its preferred mode, flagged as a fallback.
        let offers = [connector("dp-1", true, &["1024x768@60", "1920x1080@60*"])];
        assert_eq!(
            pick_output(&offers, request("640x480"), Occasion::Hotplug),
            pick(0, 1, true)
        );
        // A connected connector with no modes is passed over.
        let offers = [
            connector("dp-1", true, &[]),
            connector("dp-2", true, &["800x600@60"]),
        ];
        assert_eq!(
            pick_output(&offers, None, Occasion::Hotplug),
            pick(1, 0, false)
        );
        // Nothing usable: dark, not an error that ends the appliance.
        let offers = [
            connector("dp-1", false, &["800x600@60*"]),
            connector("dp-2", true, &[]),
        ];
        assert_eq!(
            pick_output(&offers, None, Occasion::Hotplug),
            Err(PickError::Disconnected)
        );
        assert_eq!(
            pick_output(&[], None, Occasion::Hotplug),
            Err(PickError::Disconnected)
        );
    }

    /// The rescans a monitor swap goes through, each picking as a fresh start would.
    #[test]
    fn a_monitor_swap_seen_by_successive_rescans() {
        let plugged = |hdmi: Option<&[&str]>, dp: Option<&[&str]>| {
            vec![
                connector("hdmi-a-1", hdmi.is_some(), hdmi.unwrap_or(&[])),
                connector("dp-1", dp.is_some(), dp.unwrap_or(&[])),
            ]
        };
        let pick_now = |offers: &[ConnectorOffer]| {
            pick_output(offers, None, Occasion::Hotplug).map(|p| {
                let m = offers[p.connector].modes[p.mode];
                (offers[p.connector].name.clone(), m.to_string())
            })
        };
        let full_hd: &[&str] = &["1920x1080@60*", "1280x720@60"];
        let qhd: &[&str] = &["3840x2160@30", "2560x1440@60*"];

        // On DP at start.
        let at_start = plugged(None, Some(full_hd));
        assert_eq!(
            pick_now(&at_start),
            Ok(("dp-1".into(), "1920x1080@60".into()))
        );
        // A second monitor on HDMI (listed first): picked again, as a restart would.
        let both = plugged(Some(qhd), Some(full_hd));
        assert_eq!(
            pick_now(&both),
            Ok(("hdmi-a-1".into(), "2560x1440@60".into()))
        );
        // The connector in use is pulled: back to the other one.
        let hdmi_gone = plugged(None, Some(full_hd));
        assert_eq!(
            pick_now(&hdmi_gone),
            Ok(("dp-1".into(), "1920x1080@60".into()))
        );
        // Same connector, another monitor: its preferred mode.
        let swapped = plugged(None, Some(qhd));
        assert_eq!(
            pick_now(&swapped),
            Ok(("dp-1".into(), "2560x1440@60".into()))
        );
        // Nothing at all.
        assert_eq!(pick_now(&plugged(None, None)), Err(PickError::Disconnected));
    }

    #[test]
    fn modes_are_described_as_asked_for() {
        assert_eq!(mode("1920x1080@60*").to_string(), "1920x1080@60");
        let modes = [mode("800x600@60"), mode("800x600@60"), mode("640x480@75")];
        assert_eq!(available_modes(&modes), "800x600@60, 640x480@75");
    }
}
