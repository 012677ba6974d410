//! Renders the space into an in-memory XRGB8888 framebuffer with Pixman and turns each render's
//! damage into an encoded `FrameUpdate`.

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::Path,
};

use smithay::{
    backend::{
        allocator::Fourcc,
        renderer::{damage::OutputDamageTracker, pixman::PixmanRenderer, Bind, Offscreen},
    },
    desktop::{Space, Window},
    output::Output,
    reexports::pixman,
};
use wayray_protocol::{framing, DisplayMessage, Encoder, EncoderConfig, Rect};

use smithay::{
    backend::renderer::element::{surface::render_elements_from_surface_tree, Kind},
    reexports::wayland_server::protocol::wl_surface::WlSurface,
};

use super::{
    decorations::{Decorations, OutputElement},
    layers::{layer_elements, ABOVE_WINDOWS, BELOW_WINDOWS},
};

/// Background behind all windows.
const CLEAR_COLOR: [f32; 4] = [0.07, 0.09, 0.13, 1.0];

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot create the Pixman renderer: {0}")]
    Renderer(String),
    #[error("cannot allocate a {0}x{1} framebuffer: {2}")]
    Allocate(u32, u32, String),
    #[error("rendering the output failed: {0}")]
    Render(String),
    #[error("encoding frame {seq} failed: {why}")]
    Encode { seq: u64, why: String },
    #[error("cannot write frame log: {0}")]
    FrameLog(#[from] std::io::Error),
}

pub struct Capture {
    renderer: PixmanRenderer,
    image: pixman::Image<'static, 'static>,
    tracker: OutputDamageTracker,
    /// Buffer age for the damage tracker: 0 before the first render (everything is damage),
    /// then 1, because we always render into the same image.
    age: usize,
    encoder: Encoder,
    /// Kept for the encoders made on resize.
    encoder_config: EncoderConfig,
    width: u32,
    height: u32,
    frame_log: Option<BufWriter<File>>,
    /// Bitrate for video regions on the attached appliance's link, once it is known.
    video_bitrate: Option<u64>,
    /// Whether the last encode left a video region active, to log when it ends.
    video_was_active: bool,
}

impl Capture {
    pub fn new(
        output: &Output,
        width: u32,
        height: u32,
        encoder_config: EncoderConfig,
    ) -> Result<Self, CaptureError> {
        let mut renderer =
            PixmanRenderer::new().map_err(|e| CaptureError::Renderer(e.to_string()))?;
        let image = Offscreen::<pixman::Image<'static, 'static>>::create_buffer(
            &mut renderer,
            Fourcc::Xrgb8888,
            (width as i32, height as i32).into(),
        )
        .map_err(|e| CaptureError::Allocate(width, height, e.to_string()))?;
        if image.stride() != width as usize * wayray_protocol::BYTES_PER_PIXEL {
            return Err(CaptureError::Allocate(
                width,
                height,
                format!("unexpected stride {}", image.stride()),
            ));
        }
        Ok(Self {
            renderer,
            image,
            tracker: OutputDamageTracker::from_output(output),
            age: 0,
            encoder: Encoder::with_config(width, height, encoder_config),
            encoder_config,
            width,
            height,
            frame_log: None,
            video_bitrate: None,
            video_was_active: false,
        })
    }

    /// Reallocates the framebuffer at a new output size; the next render redraws everything
    /// and the next encode is a key frame at that size.
    pub fn resize(&mut self, output: &Output, width: u32, height: u32) -> Result<(), CaptureError> {
        let image = Offscreen::<pixman::Image<'static, 'static>>::create_buffer(
            &mut self.renderer,
            Fourcc::Xrgb8888,
            (width as i32, height as i32).into(),
        )
        .map_err(|e| CaptureError::Allocate(width, height, e.to_string()))?;
        if image.stride() != width as usize * wayray_protocol::BYTES_PER_PIXEL {
            return Err(CaptureError::Allocate(
                width,
                height,
                format!("unexpected stride {}", image.stride()),
            ));
        }
        self.image = image;
        self.tracker = OutputDamageTracker::from_output(output);
        self.age = 0;
        self.encoder = Encoder::with_config(width, height, self.encoder_config);
        self.width = width;
        self.height = height;
        Ok(())
    }

    /// Appends `<seq> <digest> <w>x<h>` per sent frame, the same format the appliance writes, so
    /// tests can prove both framebuffers are byte-identical for each frame. The digest is of the
    /// encoder's reference, i.e. what the appliance shows: the rendered pixels, except inside a
    /// video region while it plays.
    pub fn set_frame_log(&mut self, path: &Path) -> Result<(), CaptureError> {
        let file = File::options().create(true).append(true).open(path)?;
        self.frame_log = Some(BufWriter::new(file));
        Ok(())
    }

    pub fn full_damage(&self) -> Vec<Rect> {
        vec![Rect {
            x: 0,
            y: 0,
            w: self.width,
            h: self.height,
        }]
    }

    /// Renders the space at the output's `scale` (logical positions times the scale give
    /// framebuffer pixels); returns the damaged rectangles, empty when nothing changed.
    pub fn render(
        &mut self,
        space: &Space<Window>,
        output: &Output,
        decorations: &mut Decorations,
        scale: f64,
    ) -> Result<Vec<Rect>, CaptureError> {
        // Topmost first: overlays and panels, windows with their title bars, then wallpapers.
        let mut elements = layer_elements(&mut self.renderer, output, &ABOVE_WINDOWS, scale);
        elements.extend(decorations.scene(&mut self.renderer, space, scale));
        elements.extend(layer_elements(
            &mut self.renderer,
            output,
            &BELOW_WINDOWS,
            scale,
        ));
        self.render_elements(&elements)
    }

    /// Renders the locked session: only the lock surface, or the bare background before the
    /// locker drew (and after it crashed). Nothing of the desktop.
    pub fn render_locked(
        &mut self,
        lock_surface: Option<&WlSurface>,
        scale: f64,
    ) -> Result<Vec<Rect>, CaptureError> {
        let elements: Vec<OutputElement> = lock_surface
            .map(|surface| {
                render_elements_from_surface_tree(
                    &mut self.renderer,
                    surface,
                    (0, 0),
                    scale,
                    1.0,
                    Kind::Unspecified,
                )
            })
            .unwrap_or_default();
        self.render_elements(&elements)
    }

    fn render_elements(&mut self, elements: &[OutputElement]) -> Result<Vec<Rect>, CaptureError> {
        let mut target = self
            .renderer
            .bind(&mut self.image)
            .map_err(|e| CaptureError::Render(e.to_string()))?;
        let result = self
            .tracker
            .render_output(
                &mut self.renderer,
                &mut target,
                self.age,
                elements,
                CLEAR_COLOR,
            )
            .map_err(|e| CaptureError::Render(format!("{e:?}")))?;
        self.age = 1;
        let (w, h) = (self.width as i32, self.height as i32);
        let damage = result
            .damage
            .map(|rects| {
                rects
                    .iter()
                    .filter_map(|r| {
                        let x0 = r.loc.x.clamp(0, w);
                        let y0 = r.loc.y.clamp(0, h);
                        let x1 = (r.loc.x + r.size.w).clamp(0, w);
                        let y1 = (r.loc.y + r.size.h).clamp(0, h);
                        (x1 > x0 && y1 > y0).then(|| Rect {
                            x: x0 as u32,
                            y: y0 as u32,
                            w: (x1 - x0) as u32,
                            h: (y1 - y0) as u32,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(damage)
    }

    /// Follows the attached appliance's link: video regions get at most this bitrate. Small
    /// changes are ignored so the encoder's rate control settles (a change restarts the stream).
    pub fn set_video_bitrate(&mut self, bps: u64) {
        if self
            .video_bitrate
            .is_none_or(|old| crate::transport::governor::significant_change(old, bps))
        {
            tracing::debug!(bps, "video bitrate limit");
            self.video_bitrate = Some(bps);
            self.encoder
                .set_video_bitrate(u32::try_from(bps).unwrap_or(u32::MAX));
        }
    }

    /// Whether the appliance may show lossy video pixels: keep encoding, with empty damage if
    /// nothing changed, until the region goes quiet and is refreshed losslessly.
    pub fn video_active(&self) -> bool {
        self.encoder.video_active()
    }

    /// Forgets the appliance's reference frame: the next encode is a key frame.
    pub fn reset_encoder(&mut self) {
        self.encoder.reset();
    }

    /// Encodes the current framebuffer's `damage` as frame `seq`, framed for the display stream.
    pub fn encode(&mut self, seq: u64, damage: &[Rect]) -> Result<Vec<u8>, CaptureError> {
        let pixels = image_bytes(&self.image);
        let update =
            self.encoder
                .encode(seq, pixels, damage)
                .map_err(|e| CaptureError::Encode {
                    seq,
                    why: e.to_string(),
                })?;
        let video_active = self.encoder.video_active();
        if self.video_was_active && !video_active {
            tracing::debug!(
                seq,
                exact = self.encoder.reference() == pixels,
                "video region refreshed losslessly"
            );
        }
        self.video_was_active = video_active;
        if let Some(video) = &update.video {
            tracing::debug!(
                seq,
                rect = ?video.rect,
                idr = video.idr,
                bytes = video.data.len(),
                "video picture"
            );
        }
        let mut update = update;
        update.time_us = super::clock::session_us();
        let bytes =
            framing::encode(&DisplayMessage::Frame(update)).map_err(|e| CaptureError::Encode {
                seq,
                why: e.to_string(),
            })?;
        if let Some(log) = self.frame_log.as_mut() {
            writeln!(
                log,
                "{seq} {:016x} {}x{}",
                wayray_protocol::frame_digest(self.encoder.reference()),
                self.width,
                self.height
            )?;
            log.flush()?;
        }
        Ok(bytes)
    }
}

/// The framebuffer as rendered last: XRGB8888 little-endian, stride = width × 4.
fn image_bytes<'a>(image: &'a pixman::Image<'static, 'static>) -> &'a [u8] {
    let len = image.stride() * image.height();
    // SAFETY: pixman owns `len` bytes of pixel data for the image's lifetime; the render target
    // only lives inside `Capture::render`, which needs `&mut`, so nothing writes while we read.
    unsafe { std::slice::from_raw_parts(image.data() as *const u8, len) }
}
