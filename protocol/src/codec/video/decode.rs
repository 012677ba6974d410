//! Appliance side: validates and decodes a frame's [`VideoUpdate`] before anything touches the
//! framebuffer, then applies it (before the tiles).

use super::super::{tiles, DecodeError, FrameUpdate, Rect};
use super::software::OpenH264Decoder;
use super::sps::sps_sizes_in_mbs;
use super::yuv::{i420_to_xrgb, I420};
use super::{video_size_ok, VideoDecoder, VideoError};
use crate::BYTES_PER_PIXEL;

/// The decoder's video state: the running stream and the picture waiting to be applied.
#[derive(Default)]
pub(crate) struct VideoStream {
    /// Created on first use (creation can fail) unless the appliance brought its own.
    decoder: Option<Box<dyn VideoDecoder>>,
    /// Rect of the running stream; `None` until an IDR picture started one.
    active: Option<Rect>,
    picture: I420,
    xrgb: Vec<u8>,
    /// `xrgb` holds the update's decoded picture, to be applied.
    ready: bool,
}

impl VideoStream {
    pub fn set_decoder(&mut self, decoder: Box<dyn VideoDecoder>) {
        self.decoder = Some(decoder);
        self.active = None;
    }

    /// Checks the update's video part and decodes it; the last fallible step of an update, as it
    /// advances the H.264 decoder's state. A failed picture ends the stream: the next must be IDR.
    pub fn prepare(&mut self, update: &FrameUpdate) -> Result<(), DecodeError> {
        self.ready = false;
        let Some(video) = &update.video else {
            return Ok(());
        };
        let (rect, width, height) = (video.rect, update.width, update.height);
        if !video_size_ok(rect.w, rect.h) || !rect.fits_in(width, height) {
            return Err(DecodeError::VideoOutside {
                rect,
                width,
                height,
            });
        }
        // No picture needs more bytes than its raw pixels: bounds the decoder's work per update
        // to about one frame, as the tiles' area check does for theirs.
        let max_len = rect.area() * BYTES_PER_PIXEL as u64 + 65536;
        if video.data.len() as u64 > max_len {
            return Err(DecodeError::Video(VideoError::TooLong {
                len: video.data.len(),
                max: max_len,
            }));
        }
        let continues = !update.key && self.active == Some(rect);
        if !video.idr && !continues {
            return Err(DecodeError::VideoNotIdr { seq: update.seq });
        }
        // The decoder would allocate for whatever size an SPS declares: check it first.
        let sps =
            sps_sizes_in_mbs(&video.data).map_err(|()| DecodeError::Video(VideoError::BadSps))?;
        let mbs = (rect.w.div_ceil(16), rect.h.div_ceil(16));
        if let Some(&(w, h)) = sps.iter().find(|&&size| size != mbs) {
            return Err(DecodeError::Video(VideoError::Size {
                width: rect.w,
                height: rect.h,
                got_width: w.saturating_mul(16),
                got_height: h.saturating_mul(16),
            }));
        }
        self.active = None;
        let decoder = match &mut self.decoder {
            Some(d) => d,
            None => self.decoder.insert(Box::new(
                OpenH264Decoder::new().map_err(DecodeError::Video)?,
            )),
        };
        if video.idr {
            decoder.reset().map_err(DecodeError::Video)?;
        }
        decoder
            .decode(&video.data, &mut self.picture)
            .map_err(DecodeError::Video)?;
        if (self.picture.width, self.picture.height) != (rect.w, rect.h) {
            return Err(DecodeError::Video(VideoError::Size {
                width: rect.w,
                height: rect.h,
                got_width: self.picture.width,
                got_height: self.picture.height,
            }));
        }
        i420_to_xrgb(&self.picture, &mut self.xrgb);
        self.active = Some(rect);
        self.ready = true;
        Ok(())
    }

    /// Writes the prepared picture into `pixels` (a frame `frame_width` wide) and returns its
    /// rect; a key frame without video ends the stream.
    pub fn apply(
        &mut self,
        update: &FrameUpdate,
        pixels: &mut [u8],
        frame_width: u32,
    ) -> Option<Rect> {
        let rect = match (&update.video, self.ready) {
            (Some(video), true) => video.rect,
            _ => {
                if update.key {
                    self.active = None;
                }
                return None;
            }
        };
        self.ready = false;
        let row_len = rect.w as usize * BYTES_PER_PIXEL;
        for (r, src) in tiles::rows(rect, frame_width).zip(self.xrgb.chunks_exact(row_len)) {
            pixels[r].copy_from_slice(src);
        }
        Some(rect)
    }
}
