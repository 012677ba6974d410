//! H.264 in software with the bundled OpenH264: the encoder the server uses, and the decoder both
//! the server (for its reference) and the appliance (until it has a hardware one) use.

use openh264::decoder::Decoder as H264Decoder;
use openh264::encoder::{
    BitRate, Complexity, Encoder as H264Encoder, EncoderConfig as H264Config, FrameRate, FrameType,
    IntraFramePeriod, QpRange, RateControlMode, UsageType,
};
use openh264::formats::YUVSource;
use openh264::OpenH264API;

use super::{VideoDecoder, VideoError, I420};

/// Pictures per second the rate control assumes when it spreads the bitrate over pictures; the
/// encoder is sans-I/O and does not know the real rate, which is at most the compositor's.
const ASSUMED_FPS: f32 = 30.0;

/// Quantizer bounds: the rate control may not go coarser than `MAX_QP`, a quality floor (about
/// 30 dB on hard content) that lets a picture exceed the bitrate rather than smear; the region
/// is lossy only while it plays, so it must at least look like video.
const MIN_QP: u8 = 10;
const MAX_QP: u8 = 36;

fn codec_error(e: openh264::Error) -> VideoError {
    VideoError::Codec(e.to_string())
}

/// OpenH264 decoding to [`I420`].
pub struct OpenH264Decoder {
    inner: H264Decoder,
}

impl OpenH264Decoder {
    pub fn new() -> Result<Self, VideoError> {
        Ok(Self {
            inner: H264Decoder::new().map_err(codec_error)?,
        })
    }
}

impl VideoDecoder for OpenH264Decoder {
    fn reset(&mut self) -> Result<(), VideoError> {
        self.inner = H264Decoder::new().map_err(codec_error)?;
        Ok(())
    }

    fn decode(&mut self, data: &[u8], out: &mut I420) -> Result<(), VideoError> {
        let picture = self
            .inner
            .decode(data)
            .map_err(codec_error)?
            .ok_or(VideoError::NoPicture)?;
        let (w, h) = picture.dimensions();
        let (sy, su, sv) = picture.strides();
        let size_error = || VideoError::Codec(format!("decoder returned a bad {w}x{h} picture"));
        if !w.is_multiple_of(2) || !h.is_multiple_of(2) || sy < w || su < w / 2 || sv < w / 2 {
            return Err(size_error());
        }
        let (width, height) = (
            u32::try_from(w).map_err(|_| size_error())?,
            u32::try_from(h).map_err(|_| size_error())?,
        );
        out.resize(width, height);
        copy_plane(picture.y(), sy, w, h, &mut out.y).ok_or_else(size_error)?;
        copy_plane(picture.u(), su, w / 2, h / 2, &mut out.u).ok_or_else(size_error)?;
        copy_plane(picture.v(), sv, w / 2, h / 2, &mut out.v).ok_or_else(size_error)?;
        Ok(())
    }
}

/// Copies `h` rows of `w` bytes from a plane with `stride` into a tightly packed one; `None` if
/// the source is too short.
fn copy_plane(src: &[u8], stride: usize, w: usize, h: usize, dst: &mut [u8]) -> Option<()> {
    if w == 0 {
        return Some(());
    }
    for (row, d) in dst.chunks_exact_mut(w).take(h).enumerate() {
        let start = row.checked_mul(stride)?;
        d.copy_from_slice(src.get(start..start.checked_add(w)?)?);
    }
    Some(())
}

impl YUVSource for I420 {
    fn dimensions(&self) -> (usize, usize) {
        (self.width as usize, self.height as usize)
    }

    fn strides(&self) -> (usize, usize, usize) {
        let w = self.width as usize;
        (w, w / 2, w / 2)
    }

    fn y(&self) -> &[u8] {
        &self.y
    }

    fn u(&self) -> &[u8] {
        &self.u
    }

    fn v(&self) -> &[u8] {
        &self.v
    }
}

/// OpenH264 encoding of one stream at a fixed bitrate.
pub(super) struct OpenH264Encoder {
    inner: H264Encoder,
    bitrate: u32,
}

impl OpenH264Encoder {
    /// Real-time camera settings, bitrate rate control, no skipped pictures (every picture we
    /// encode must reach the appliance, or the reference would not match), no periodic IDR
    /// (the transport is reliable), one thread (a server runs many sessions).
    pub fn new(bitrate: u32) -> Result<Self, VideoError> {
        let config = H264Config::new()
            .bitrate(BitRate::from_bps(bitrate))
            .max_frame_rate(FrameRate::from_hz(ASSUMED_FPS))
            .rate_control_mode(RateControlMode::Bitrate)
            .skip_frames(false)
            .usage_type(UsageType::CameraVideoRealTime)
            .complexity(Complexity::Low)
            .qp(QpRange::new(MIN_QP, MAX_QP))
            .intra_frame_period(IntraFramePeriod::from_num_frames(0))
            .num_threads(1);
        Ok(Self {
            inner: H264Encoder::with_api_config(OpenH264API::from_source(), config)
                .map_err(codec_error)?,
            bitrate,
        })
    }

    pub fn bitrate(&self) -> u32 {
        self.bitrate
    }

    /// Encodes one picture into `out` (cleared first); returns whether it is an IDR picture.
    pub fn encode(&mut self, picture: &I420, out: &mut Vec<u8>) -> Result<bool, VideoError> {
        out.clear();
        let stream = self.inner.encode(picture).map_err(codec_error)?;
        stream.write_vec(out);
        Ok(stream.frame_type() == FrameType::IDR)
    }
}
