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
use wayray_protocol::{CursorImage, Rect, BYTES_PER_PIXEL};

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

pub struct DrmSink {
    card: Card,
    crtc: crtc::Handle,
    connector: connector::Handle,
    mode: Mode,
    scanouts: [Scanout; 2],
    /// The buffer last handed to the CRTC (on screen, or about to be when a flip is pending).
    front: usize,
    flip_pending: bool,
    /// Rectangles each buffer has not been given yet.
    stale: [Stale; 2],
    scene: Scene,
    cursor_plane: CursorPlane,
    cursor_image: Option<CursorImage>,
    pointer: (i32, i32),
    mode_size: (u32, u32),
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

        let mut seen = Vec::new();
        let mut chosen = None;
        for &handle in resources.connectors() {
            // A forced probe: this is start-up, the one time it is meant for.
            let info = card
                .get_connector(handle, true)
                .map_err(kms("read a connector"))?;
            let name = connector_name(&info);
            seen.push(format!("{name} {:?}", info.state()).to_lowercase());
            if info.state() == connector::State::Connected && chosen.is_none() {
                chosen = Some((info, name));
            }
        }
        let Some((connector, name)) = chosen else {
            return Err(DrmError::NoConnector {
                path,
                seen: seen.join(", "),
            });
        };
        let mode = pick_mode(connector.modes(), mode, &name)?;
        let crtc = find_crtc(&card, &resources, &connector).ok_or_else(|| DrmError::NoCrtc {
            connector: name.clone(),
        })?;
        let (w, h) = mode.size();
        let mode_size = (u32::from(w), u32::from(h));
        tracing::info!(
            card = %path.display(),
            connector = name,
            mode = %describe(&mode),
            "display"
        );

        let scanouts = [
            create_scanout(&card, mode_size)?,
            create_scanout(&card, mode_size)?,
        ];
        let cursor_plane = probe_cursor_plane(&card, crtc);
        let mut sink = Self {
            card,
            crtc,
            connector: connector.handle(),
            mode,
            scanouts,
            front: 0,
            flip_pending: false,
            stale: Default::default(),
            scene: Scene::new(mode_size.0, mode_size.1),
            cursor_plane,
            cursor_image: None,
            pointer: (0, 0),
            mode_size,
        };
        // Buffer 0 gets the whole (empty) screen and goes up with the mode; buffer 1 follows
        // with the first flip.
        let screen = sink.scene.screen();
        sink.stale[1].add(screen);
        sink.fill_buffer(0, &[screen])?;
        sink.card
            .set_crtc(
                crtc,
                Some(sink.scanouts[0].framebuffer),
                (0, 0),
                &[connector.handle()],
                Some(mode),
            )
            .map_err(kms("set the display mode"))?;
        Ok(sink)
    }

    /// Gives every buffer `rects` (screen rectangles that changed), then shows the back buffer
    /// with them on the next vblank.
    fn redraw(&mut self, rects: &[Rect]) -> Result<(), DrmError> {
        for rect in rects {
            self.stale[0].add(*rect);
            self.stale[1].add(*rect);
        }
        self.wait_for_flip()?;
        let back = 1 - self.front;
        if self.stale[back].is_empty() {
            return Ok(());
        }
        let todo = self.stale[back].take();
        self.fill_buffer(back, &todo)?;
        let framebuffer = self.scanouts[back].framebuffer;
        match self
            .card
            .page_flip(self.crtc, framebuffer, PageFlipFlags::EVENT, None)
        {
            Ok(()) => self.flip_pending = true,
            Err(e) => {
                // A driver without flips still shows the picture, with tearing.
                tracing::debug!(error = %e, "page flip failed; setting the framebuffer directly");
                self.card
                    .set_crtc(
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
    fn fill_buffer(&mut self, index: usize, rects: &[Rect]) -> Result<(), DrmError> {
        let (width, height) = self.mode_size;
        let buffer = &mut self.scanouts[index].buffer;
        let pitch = buffer.pitch() as usize;
        let mut map = self
            .card
            .map_dumb_buffer(buffer)
            .map_err(kms("map a scanout buffer"))?;
        let Some(mut target) = Pitched::new(&mut map, pitch, width, height) else {
            return Err(DrmError::Kms {
                what: "use the scanout buffer the driver made (too small for its pitch)",
                source: std::io::Error::from(std::io::ErrorKind::InvalidData),
            });
        };
        for rect in rects {
            self.scene.compose(&mut target, *rect);
        }
        Ok(())
    }

    /// Waits for the page flip in flight, if any, to complete.
    fn wait_for_flip(&mut self) -> Result<(), DrmError> {
        let timeout = Timespec {
            tv_sec: FLIP_TIMEOUT.as_secs() as _,
            tv_nsec: FLIP_TIMEOUT.subsec_nanos().into(),
        };
        while self.flip_pending {
            let mut fds = [PollFd::new(&self.card, PollFlags::IN)];
            match poll(&mut fds, Some(&timeout)) {
                Ok(0) => {
                    tracing::warn!(timeout = ?FLIP_TIMEOUT, "no page flip event; going on without it");
                    self.flip_pending = false;
                }
                Ok(_) => {
                    let events = self.card.receive_events().map_err(kms("read DRM events"))?;
                    for event in events {
                        if let Event::PageFlip(flip) = event {
                            if flip.crtc == self.crtc {
                                self.flip_pending = false;
                            }
                        }
                    }
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(kms("wait for a page flip")(e.into())),
            }
        }
        Ok(())
    }

    /// A software cursor changed `rects`: the buffer on screen gets them at once (a pointer
    /// must not wait for the next frame, and flipping per motion event would pace input by
    /// vblank), the other one at its next turn.
    fn redraw_cursor(&mut self, rects: &[Rect]) -> Result<(), DrmError> {
        if rects.is_empty() {
            return Ok(());
        }
        let front = self.front;
        for rect in rects {
            self.stale[1 - front].add(*rect);
        }
        self.fill_buffer(front, rects)?;
        // Drivers that copy to the host (virtio-gpu) only see front buffer writes through this.
        let clips: Vec<ClipRect> = rects
            .iter()
            .map(|r| {
                let c = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
                ClipRect::new(c(r.x), c(r.y), c(r.x + r.w), c(r.y + r.h))
            })
            .collect();
        if let Err(e) = self
            .card
            .dirty_framebuffer(self.scanouts[front].framebuffer, &clips)
        {
            tracing::trace!(error = %e, "dirtyfb");
        }
        Ok(())
    }

    /// Shows `image` on the cursor plane; `false` if the plane cannot show it.
    #[allow(deprecated)] // The legacy cursor ioctls are what every KMS driver with a cursor takes.
    fn set_hardware_cursor(&mut self, image: Option<&CursorImage>) -> bool {
        let CursorPlane::Hardware { buffer, size } = &mut self.cursor_plane else {
            return false;
        };
        let Some(image) = image else {
            return match self
                .card
                .set_cursor2(self.crtc, None::<&DumbBuffer>, (0, 0))
            {
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
        let written = self.card.map_dumb_buffer(buffer).map(|mut map| {
            map.fill(0);
            let row = image.width as usize * BYTES_PER_PIXEL;
            for (y, src) in image.pixels.chunks_exact(row).enumerate() {
                if let Some(dst) = map.get_mut(y * pitch..y * pitch + row) {
                    dst.copy_from_slice(src);
                }
            }
        });
        let hotspot = (image.hotspot_x as i32, image.hotspot_y as i32);
        let shown =
            written.and_then(|()| self.card.set_cursor2(self.crtc, Some(&*buffer), hotspot));
        match shown {
            Ok(()) => true,
            Err(e) => {
                tracing::info!(error = %e, "no hardware cursor; drawing the cursor in software");
                self.cursor_plane = CursorPlane::Software;
                false
            }
        }
    }

    #[allow(deprecated)]
    fn move_hardware_cursor(&mut self) -> Result<(), DrmError> {
        let Some(image) = &self.cursor_image else {
            return Ok(());
        };
        let (x, y) = self.scene.cursor_corner(image.hotspot_x, image.hotspot_y);
        let clamp = |v: i64| v.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
        self.card
            .move_cursor(self.crtc, (clamp(x), clamp(y)))
            .map_err(kms("move the hardware cursor"))
    }

    fn hardware_cursor(&self) -> bool {
        matches!(self.cursor_plane, CursorPlane::Hardware { .. })
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
        self.stale[0].add(screen);
        self.stale[1].add(screen);
        // The origin moved: the cursor plane follows it.
        if self.hardware_cursor() {
            self.move_hardware_cursor()?;
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
        self.redraw(&rects)?;
        Ok(())
    }

    fn show_status(&mut self, text: &str) {
        let rects = self.scene.set_status(Some(text));
        if let Err(e) = self.redraw(&rects) {
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
        if self.set_hardware_cursor(image) {
            self.move_hardware_cursor()?;
            // An earlier image too big for the plane may still be drawn in software.
            let rects = self.scene.set_cursor(None);
            return Ok(self.redraw_cursor(&rects)?);
        }
        if self.hardware_cursor() {
            // Too big for the plane this time: hide the plane, draw it ourselves.
            self.set_hardware_cursor(None);
        }
        let rects = self.scene.set_cursor(image);
        Ok(self.redraw_cursor(&rects)?)
    }

    fn move_cursor(&mut self, x: i32, y: i32) -> Result<(), DisplayError> {
        self.pointer = (x, y);
        let rects = self.scene.move_pointer(x, y);
        if self.hardware_cursor() && self.cursor_image.is_some() && rects.is_empty() {
            return Ok(self.move_hardware_cursor()?);
        }
        Ok(self.redraw_cursor(&rects)?)
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
}

fn connector_name(info: &connector::Info) -> String {
    format!("{}-{}", info.interface().as_str(), info.interface_id())
}

fn describe(mode: &Mode) -> String {
    let (w, h) = mode.size();
    format!("{w}x{h}@{}", mode.vrefresh())
}

/// `requested` if given (the first match, preferring the preferred mode), else the preferred
/// mode, else the first (the kernel lists the best first).
fn pick_mode(
    modes: &[Mode],
    requested: Option<ModeRequest>,
    connector: &str,
) -> Result<Mode, DrmError> {
    let preferred_first = || {
        let preferred = modes
            .iter()
            .filter(|m| m.mode_type().contains(ModeTypeFlags::PREFERRED));
        preferred.chain(modes.iter())
    };
    let Some(request) = requested else {
        return preferred_first()
            .next()
            .copied()
            .ok_or_else(|| DrmError::NoModes {
                connector: connector.to_owned(),
            });
    };
    preferred_first()
        .find(|m| {
            let (w, h) = m.size();
            request.matches(u32::from(w), u32::from(h), m.vrefresh())
        })
        .copied()
        .ok_or_else(|| {
            let mut available: Vec<String> = modes.iter().map(describe).collect();
            available.dedup();
            DrmError::NoMode {
                connector: connector.to_owned(),
                requested: request,
                available: available.join(", "),
            }
        })
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
