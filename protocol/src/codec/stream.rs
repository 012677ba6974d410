//! The update stream's zstd context: tiles that are not photo-like are blocks of one zstd frame
//! that runs from a key frame to the next, so zstd finds matches in everything sent since (a
//! glyph drawn a second ago, a line that scrolls back, the same words on the next page) instead
//! of only inside the tile. The display stream is ordered and reliable, so the decoder sees the
//! blocks in the order the encoder made them; both sides start over at every key frame (the
//! first frame of a connection, after a reset or a resize).
//!
//! Each stream tile carries its number in the stream, so a decoder that is out of step (it
//! missed a tile, or the encoder started over without a key frame) says so instead of showing
//! wrong pixels.

use std::io;

use zstd::zstd_safe::{self, CCtx, CParameter, DCtx, DParameter, InBuffer, OutBuffer};

/// Bytes of earlier tiles zstd may match against: 2^21 = 2 MiB, two full-screen pages of a
/// 1280×800 terminal as palette indices. The decoder keeps this much of what it decompressed.
/// Measured (`cargo bench --bench codec`, terminal sequences): 2^22 saved a few % more bytes but
/// cost ~1.4× the encode time (matches into a window that no longer fits the caches); 2^20
/// and below lose much of the gain on full-page redraws. Long-distance matching halved the
/// bytes of a redraw again, at 3–4× the encode time: not used.
pub const WINDOW_LOG: u32 = 21;

/// Encoder side: one zstd compression context kept across tiles and frames.
pub(crate) struct StreamCompressor {
    cctx: CCtx<'static>,
    /// Tiles compressed since the last [`reset`](Self::reset).
    next: u32,
}

impl StreamCompressor {
    pub fn new(level: i32) -> io::Result<Self> {
        let mut cctx = CCtx::try_create()
            .ok_or_else(|| io::Error::other("cannot allocate a zstd compression context"))?;
        cctx.set_parameter(CParameter::CompressionLevel(level))
            .map_err(zstd_error)?;
        cctx.set_parameter(CParameter::WindowLog(WINDOW_LOG))
            .map_err(zstd_error)?;
        // Tiles are checked by size; a checksum per frame would only come at the end.
        cctx.set_parameter(CParameter::ChecksumFlag(false))
            .map_err(zstd_error)?;
        Ok(Self { cctx, next: 0 })
    }

    /// Starts a new zstd frame with an empty history (at a key frame, or after an error).
    pub fn reset(&mut self) -> io::Result<()> {
        self.next = 0;
        self.cctx
            .reset(zstd_safe::ResetDirective::SessionOnly)
            .map_err(zstd_error)?;
        Ok(())
    }

    /// Compresses `src` as the next blocks of the stream, flushed so that the decoder can
    /// decode them on their own; returns the tile's number in the stream and its payload.
    pub fn compress(&mut self, src: &[u8], packed: &mut Vec<u8>) -> io::Result<(u32, Vec<u8>)> {
        packed.clear();
        // Flushed blocks never exceed the bound; the frame header comes on top once.
        packed.reserve(zstd_safe::compress_bound(src.len()) + 32);
        let mut input = InBuffer::around(src);
        loop {
            let mut output = OutBuffer::around_pos(packed, packed.len());
            let left = self
                .cctx
                .compress_stream2(
                    &mut output,
                    &mut input,
                    zstd_safe::zstd_sys::ZSTD_EndDirective::ZSTD_e_flush,
                )
                .map_err(zstd_error)?;
            if left == 0 && input.pos() == src.len() {
                break;
            }
            packed.reserve(left.max(64));
        }
        let number = self.next;
        self.next = self.next.wrapping_add(1);
        Ok((number, packed.clone()))
    }
}

/// Decoder side: the matching decompression context.
pub(crate) struct StreamDecompressor {
    dctx: DCtx<'static>,
    next: u32,
    /// A tile failed part-way: the context is lost until the next key frame.
    broken: bool,
}

/// Why a stream tile could not be decoded.
#[derive(Debug)]
pub(crate) enum StreamError {
    /// Tile `got` arrived where the decoder expected tile `expected`.
    OutOfStep {
        expected: u32,
        got: u32,
    },
    /// An earlier tile failed; only a key frame starts the stream again.
    Broken,
    /// The blocks decoded to more or fewer bytes than the tile holds.
    WrongSize {
        expected: usize,
        got: usize,
    },
    Corrupt(String),
}

impl StreamDecompressor {
    pub fn new() -> Result<Self, String> {
        let mut dctx = DCtx::try_create().ok_or("cannot allocate a zstd decompression context")?;
        // The encoder's window, and no more: a hostile stream cannot make the appliance
        // allocate more than that.
        dctx.set_parameter(DParameter::WindowLogMax(WINDOW_LOG))
            .map_err(|c| zstd_safe::get_error_name(c).to_string())?;
        Ok(Self {
            dctx,
            next: 0,
            broken: false,
        })
    }

    /// Forgets the history, as the encoder does at a key frame.
    pub fn reset(&mut self) -> Result<(), String> {
        self.next = 0;
        self.broken = false;
        self.dctx
            .reset(zstd_safe::ResetDirective::SessionOnly)
            .map_err(|c| zstd_safe::get_error_name(c).to_string())?;
        Ok(())
    }

    /// Decompresses tile `number`'s blocks into exactly `dst`.
    pub fn decompress(
        &mut self,
        number: u32,
        src: &[u8],
        dst: &mut [u8],
    ) -> Result<(), StreamError> {
        if self.broken {
            return Err(StreamError::Broken);
        }
        if number != self.next {
            self.broken = true;
            return Err(StreamError::OutOfStep {
                expected: self.next,
                got: number,
            });
        }
        // Broken until it succeeds: any early return leaves the context mid-tile.
        self.broken = true;
        let expected = dst.len();
        let mut input = InBuffer::around(src);
        let mut output = OutBuffer::around(dst);
        while input.pos() < src.len() || output.pos() < expected {
            let before = (input.pos(), output.pos());
            self.dctx
                .decompress_stream(&mut output, &mut input)
                .map_err(|c| StreamError::Corrupt(zstd_safe::get_error_name(c).to_string()))?;
            if (input.pos(), output.pos()) == before {
                // No progress: the input ended before the tile did, or the output is full while
                // input remains (the blocks hold more than the tile).
                return Err(StreamError::WrongSize {
                    expected,
                    got: output.pos(),
                });
            }
        }
        // Blocks that decode to more than the tile leave the rest buffered in the context.
        let mut spare = [0u8; 1];
        let mut extra = OutBuffer::around(&mut spare[..]);
        let mut empty = InBuffer::around(&[]);
        self.dctx
            .decompress_stream(&mut extra, &mut empty)
            .map_err(|c| StreamError::Corrupt(zstd_safe::get_error_name(c).to_string()))?;
        if extra.pos() != 0 {
            return Err(StreamError::WrongSize {
                expected,
                got: expected + 1,
            });
        }
        self.next = self.next.wrapping_add(1);
        self.broken = false;
        Ok(())
    }
}

fn zstd_error(code: usize) -> io::Error {
    io::Error::other(zstd_safe::get_error_name(code))
}
