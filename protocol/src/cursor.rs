//! The pointer's image, server → appliance on the display stream. The appliance draws the cursor
//! itself and moves it on local motion, so pointing never waits for a network round trip.

use serde::{Deserialize, Serialize};

/// Largest cursor side accepted (hardware cursor planes are 64–256 px).
pub const MAX_CURSOR_SIZE: u32 = 256;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CursorUpdate {
    /// A client hid the pointer (wl_pointer.set_cursor with no surface): draw nothing.
    Hidden,
    /// Draw this image with its hotspot at the pointer position.
    Image(CursorImage),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CursorImage {
    pub width: u32,
    pub height: u32,
    pub hotspot_x: u32,
    pub hotspot_y: u32,
    /// ARGB8888 little-endian (B, G, R, A bytes), premultiplied alpha, stride width × 4.
    pub pixels: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error("cursor of {0}x{1} is empty or larger than {MAX_CURSOR_SIZE}x{MAX_CURSOR_SIZE}")]
    Size(u32, u32),
    #[error("cursor hotspot ({0}, {1}) lies outside the image")]
    Hotspot(u32, u32),
    #[error("cursor has {got} pixel bytes, its size needs {expected}")]
    Pixels { expected: usize, got: usize },
}

impl CursorImage {
    /// Checks an image received from the network before anything draws it.
    pub fn validate(&self) -> Result<(), CursorError> {
        if self.width == 0
            || self.height == 0
            || self.width > MAX_CURSOR_SIZE
            || self.height > MAX_CURSOR_SIZE
        {
            return Err(CursorError::Size(self.width, self.height));
        }
        if self.hotspot_x >= self.width || self.hotspot_y >= self.height {
            return Err(CursorError::Hotspot(self.hotspot_x, self.hotspot_y));
        }
        let expected = self.width as usize * self.height as usize * 4;
        if self.pixels.len() != expected {
            return Err(CursorError::Pixels {
                expected,
                got: self.pixels.len(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(w: u32, h: u32, hx: u32, hy: u32, len: usize) -> CursorImage {
        CursorImage {
            width: w,
            height: h,
            hotspot_x: hx,
            hotspot_y: hy,
            pixels: vec![0; len],
        }
    }

    #[test]
    fn validation() {
        assert_eq!(image(24, 24, 3, 3, 24 * 24 * 4).validate(), Ok(()));
        assert!(matches!(
            image(0, 24, 0, 0, 0).validate(),
            Err(CursorError::Size(..))
        ));
        assert!(matches!(
            image(512, 24, 0, 0, 512 * 24 * 4).validate(),
            Err(CursorError::Size(..))
        ));
        assert!(matches!(
            image(24, 24, 24, 0, 24 * 24 * 4).validate(),
            Err(CursorError::Hotspot(..))
        ));
        assert!(matches!(
            image(24, 24, 0, 0, 10).validate(),
            Err(CursorError::Pixels { .. })
        ));
    }
}
