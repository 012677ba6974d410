//! Frame codec v1 (placeholder types; the encoder/decoder are being written).

use serde::{Deserialize, Serialize};

/// A rectangle in framebuffer pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TileData {
    Solid(u32),
    Zstd(Vec<u8>),
    ZstdXor(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tile {
    pub rect: Rect,
    pub data: TileData,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameUpdate {
    pub seq: u64,
    pub width: u32,
    pub height: u32,
    pub key: bool,
    pub tiles: Vec<Tile>,
}

pub struct Encoder;
pub struct Decoder;
