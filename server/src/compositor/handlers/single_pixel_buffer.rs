//! single-pixel-buffer: a one-colour buffer of any size without shared memory (backgrounds,
//! letterboxing in video players); the Pixman renderer fills it as a solid colour.

use smithay::delegate_single_pixel_buffer;

use crate::compositor::state::WayRay;

delegate_single_pixel_buffer!(WayRay);
