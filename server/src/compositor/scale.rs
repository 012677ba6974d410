//! The session output's scale. An appliance tells its screen's pixels and, when the monitor's
//! EDID has them, its millimetres; from the two the session picks a scale that gives the desktop
//! a familiar density, so a 27" 4K monitor is not a 3840×2160 desktop of unreadable text.
//!
//! How the automatic scale is chosen ([`auto_scale`]):
//!
//! 1. The screen's density is its diagonal in pixels over its diagonal in inches.
//! 2. The target is [`TARGET_DPI`] logical pixels per inch: the density of a 27" 2560×1440
//!    monitor (109 DPI), the densest common monitor people run at scale 1. The scale is the
//!    density over the target, rounded to the nearest quarter (ties down: less scaling keeps more
//!    room), so 24" 1080p and 27" 1440p stay at 1, a 27" 4K gets 1.5, a 24" 4K 1.75, a 27" 5K 2.
//! 3. Never below 1 (a low-density screen is not shrunk) nor above 4, and lowered while the
//!    desktop would be smaller than [`MIN_LOGICAL`] (a small high-density panel keeps room for
//!    windows).
//! 4. A size that cannot be a monitor's means unknown, and unknown means 1: no size (0×0:
//!    headless, most projectors), a diagonal under [`MIN_DIAGONAL_MM`] (EDIDs that store only the
//!    aspect ratio, e.g. 16×9 cm), pixels whose shape differs from the millimetres' by more than
//!    [`MAX_ASPECT_MISMATCH`], or a density over [`MAX_DPI`].
//!
//! Overrides ([`choose_scale`]): a user's own `scale` (session.toml → `wrsrvd session --scale`)
//! wins, then the server's `output_scale`, then the automatic choice.
//!
//! Clients see the scale through fractional-scale-v1 (the exact value) and `wl_output.scale` /
//! `wl_surface.preferred_buffer_scale` (rounded up, for clients without fractional support; the
//! renderer scales their buffers down). Window positions, the usable area, title bars and the
//! pointer are in logical coordinates (output pixels / scale); the framebuffer stays the
//! appliance's pixel size.

use smithay::{
    output::Output,
    reexports::wayland_server::{protocol::wl_output::WlOutput, Resource},
};
use wayray_protocol::{sessions::ScaleChoice, PhysicalSize};

/// Logical pixels per inch the automatic scale aims for (see the module docs).
pub const TARGET_DPI: f64 = 110.0;
/// The smallest desktop the automatic scale leaves, in logical pixels: what common applications
/// and dialogs are laid out for.
pub const MIN_LOGICAL: (f64, f64) = (1024.0, 600.0);
/// Screens with a smaller diagonal (about 8") report a made-up size.
pub const MIN_DIAGONAL_MM: f64 = 200.0;
/// Pixels this much less square than the millimetres say mean the size is made up (or the mode
/// is stretched, which makes the density meaningless too).
pub const MAX_ASPECT_MISMATCH: f64 = 0.15;
/// Denser than this is no desktop monitor: the size is made up.
pub const MAX_DPI: f64 = 600.0;
/// Scales go in quarters: a quarter is 30/120, exact in fractional-scale-v1, and keeps a 24-pixel
/// title bar a whole number of pixels.
const STEPS_PER_UNIT: f64 = 4.0;
const MAX_AUTO_SCALE: f64 = 4.0;

/// The scale for a screen of `pixels` and `physical` size, by the rules in the module docs.
pub fn auto_scale(pixels: (u32, u32), physical: Option<PhysicalSize>) -> f64 {
    let Some(dpi) = density(pixels, physical) else {
        return 1.0;
    };
    let ideal = dpi / TARGET_DPI;
    // Nearest quarter, ties down.
    let mut scale =
        ((ideal * STEPS_PER_UNIT - 0.5).ceil() / STEPS_PER_UNIT).clamp(1.0, MAX_AUTO_SCALE);
    let (w, h) = (f64::from(pixels.0), f64::from(pixels.1));
    while scale > 1.0 && (w / scale < MIN_LOGICAL.0 || h / scale < MIN_LOGICAL.1) {
        scale -= 1.0 / STEPS_PER_UNIT;
    }
    scale
}

/// Pixels per inch along the diagonal; `None` when the size is unknown or cannot be a real
/// monitor's.
pub fn density(pixels: (u32, u32), physical: Option<PhysicalSize>) -> Option<f64> {
    let physical = physical?;
    let (pw, ph) = (f64::from(pixels.0), f64::from(pixels.1));
    let (mw, mh) = (f64::from(physical.width_mm), f64::from(physical.height_mm));
    if pw < 1.0 || ph < 1.0 || mw < 1.0 || mh < 1.0 {
        return None;
    }
    let diagonal_mm = mw.hypot(mh);
    if diagonal_mm < MIN_DIAGONAL_MM {
        return None;
    }
    // Both aspect ratios as the longer over the shorter side would hide a rotated EDID; compare
    // width over height directly.
    let mismatch = (pw / ph) / (mw / mh);
    if (mismatch - 1.0).abs() > MAX_ASPECT_MISMATCH {
        return None;
    }
    let dpi = pw.hypot(ph) / (diagonal_mm / 25.4);
    (dpi <= MAX_DPI).then_some(dpi)
}

/// The scale the session output takes: the user's choice, else the server's, else automatic.
pub fn choose_scale(
    user: Option<ScaleChoice>,
    server: Option<f64>,
    screen: (u32, u32),
    physical: Option<PhysicalSize>,
) -> f64 {
    match user {
        Some(ScaleChoice::Fixed(scale)) => scale,
        Some(ScaleChoice::Auto) => auto_scale(screen, physical),
        None => server
            .and_then(|s| ScaleChoice::fixed(s).ok())
            .and_then(ScaleChoice::fixed_value)
            .unwrap_or_else(|| auto_scale(screen, physical)),
    }
}

/// The output's physical size in millimetres for `wl_output.geometry`: the screen's, in
/// proportion when the output is not the screen's size (`--fixed-size`); 0×0 when unknown.
pub fn output_millimetres(
    output: (u32, u32),
    screen: (u32, u32),
    physical: Option<PhysicalSize>,
) -> (i32, i32) {
    let Some(physical) = physical.filter(|_| screen.0 > 0 && screen.1 > 0) else {
        return (0, 0);
    };
    let side = |mm: u32, out: u32, scr: u32| {
        let v = (u64::from(mm) * u64::from(out) + u64::from(scr) / 2) / u64::from(scr);
        i32::try_from(v).unwrap_or(i32::MAX)
    };
    (
        side(physical.width_mm, output.0, screen.0),
        side(physical.height_mm, output.1, screen.1),
    )
}

/// What the session knows about the screen it is shown on, and who asked for which scale.
#[derive(Debug, Default)]
pub struct ScaleState {
    /// The user's own choice (`wrsrvd session --scale`, from session.toml); `None`: the server's.
    pub user: Option<ScaleChoice>,
    /// The server's `output_scale` as the daemon passed it on attach; `None`: automatic.
    pub server: Option<f64>,
    /// The attached appliance's screen in pixels; `None` before any attached.
    pub screen: Option<(u32, u32)>,
    pub physical: Option<PhysicalSize>,
    /// The physical size `wl_output.geometry` last said, in millimetres.
    advertised_mm: (i32, i32),
    /// Every `wl_output` bound, to tell them the physical size: Smithay fixes an output's physical
    /// properties at creation, before any appliance said its size.
    bound: Vec<WlOutput>,
}

impl ScaleState {
    pub fn new(user: Option<ScaleChoice>) -> Self {
        Self {
            user,
            ..Self::default()
        }
    }

    /// The scale for an output of `output` pixels now.
    pub fn scale(&self, output: (u32, u32)) -> f64 {
        choose_scale(
            self.user,
            self.server,
            self.screen.unwrap_or(output),
            self.physical,
        )
    }

    /// A client bound the output: it gets the known physical size right after Smithay's
    /// geometry event.
    pub fn output_bound(&mut self, output: &Output, wl_output: WlOutput) {
        self.bound.retain(|o| o.is_alive());
        if self.advertised_mm != (0, 0) {
            send_geometry(output, &wl_output, self.advertised_mm);
        }
        self.bound.push(wl_output);
    }

    /// Tells every client the output's physical size for an output of `output` pixels, if it
    /// changed.
    pub fn advertise_physical_size(&mut self, output: &Output, pixels: (u32, u32)) {
        let screen = self.screen.unwrap_or(pixels);
        let mm = output_millimetres(pixels, screen, self.physical);
        if mm == self.advertised_mm {
            return;
        }
        tracing::info!(width_mm = mm.0, height_mm = mm.1, "output physical size");
        self.advertised_mm = mm;
        self.bound.retain(|o| o.is_alive());
        for wl_output in &self.bound {
            send_geometry(output, wl_output, mm);
        }
    }
}

/// `wl_output.geometry` with `mm` as the physical size, then `done`.
fn send_geometry(output: &Output, wl_output: &WlOutput, mm: (i32, i32)) {
    let props = output.physical_properties();
    let location = output.current_location();
    wl_output.geometry(
        location.x,
        location.y,
        mm.0,
        mm.1,
        props.subpixel.into(),
        props.make,
        props.model,
        output.current_transform().into(),
    );
    if wl_output.version() >= 2 {
        wl_output.done();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mm(w: u32, h: u32) -> Option<PhysicalSize> {
        PhysicalSize::known(w, h)
    }

    #[test]
    fn common_monitors_get_a_desktop_density() {
        let cases = [
            // (pixels, millimetres, scale, what)
            ((1920, 1080), (531, 299), 1.0, "24\" 1080p"),
            ((1920, 1080), (476, 268), 1.0, "21.5\" 1080p"),
            ((2560, 1440), (597, 336), 1.0, "27\" 1440p"),
            ((3440, 1440), (800, 335), 1.0, "34\" ultrawide"),
            ((3840, 2160), (597, 336), 1.5, "27\" 4K"),
            ((3840, 2160), (698, 393), 1.25, "32\" 4K"),
            ((3840, 2160), (527, 296), 1.75, "24\" 4K"),
            ((5120, 2880), (597, 336), 2.0, "27\" 5K"),
            ((2560, 1600), (286, 179), 2.0, "13\" 2560x1600 laptop panel"),
            ((1280, 1024), (376, 301), 1.0, "19\" 5:4"),
        ];
        for (pixels, (w, h), scale, what) in cases {
            assert_eq!(auto_scale(pixels, mm(w, h)), scale, "{what}");
        }
    }

    #[test]
    fn unknown_or_made_up_sizes_mean_scale_one() {
        let uhd = (3840, 2160);
        assert_eq!(auto_scale(uhd, None), 1.0);
        // EDIDs that only store the aspect ratio (16x9 cm).
        assert_eq!(auto_scale(uhd, mm(160, 90)), 1.0);
        // Millimetres of another shape than the pixels.
        assert_eq!(auto_scale(uhd, mm(597, 597)), 1.0);
        // A projector or TV claiming a huge screen: low density, scale 1 anyway.
        assert_eq!(auto_scale((1920, 1080), mm(1600, 900)), 1.0);
        // Zero pixels never divide.
        assert_eq!(auto_scale((0, 0), mm(597, 336)), 1.0);
        assert_eq!(density((0, 1080), mm(597, 336)), None);
    }

    #[test]
    fn a_rotated_monitor_has_the_same_density() {
        assert_eq!(auto_scale((2160, 3840), mm(336, 597)), 1.5);
    }

    #[test]
    fn small_dense_panels_keep_room_for_windows() {
        // 10" 1366x768 would want 1.5 by density, leaving 911x512.
        let scale = auto_scale((1366, 768), mm(222, 125));
        assert_eq!(scale, 1.25);
        assert!(1366.0 / scale >= MIN_LOGICAL.0 && 768.0 / scale >= MIN_LOGICAL.1);
        // A 7" 1024x600 panel stays at 1 whatever its density.
        assert_eq!(auto_scale((1024, 600), mm(154, 90)), 1.0);
    }

    #[test]
    fn scales_are_quarters_rounded_to_nearest_with_ties_down() {
        // 27" panel, vary the pixels so the ideal lands around the 1.5/1.75 tie (1.625).
        let at = |ideal: f64| {
            let diag_in = 597f64.hypot(336.0) / 25.4;
            let dpi = ideal * TARGET_DPI;
            let w = (dpi * diag_in * 597.0 / 597f64.hypot(336.0)).round() as u32;
            let h = (f64::from(w) * 336.0 / 597.0).round() as u32;
            auto_scale((w, h), mm(597, 336))
        };
        assert_eq!(at(1.60), 1.5);
        assert_eq!(at(1.66), 1.75);
        assert_eq!(at(1.1), 1.0);
        assert_eq!(at(5.0), 4.0);
        assert_eq!(at(0.5), 1.0);
    }

    #[test]
    fn user_then_server_then_auto() {
        let uhd = (3840, 2160);
        let size = mm(597, 336);
        assert_eq!(choose_scale(None, None, uhd, size), 1.5);
        assert_eq!(choose_scale(None, Some(1.0), uhd, size), 1.0);
        assert_eq!(choose_scale(None, Some(2.0), (1920, 1080), None), 2.0);
        assert_eq!(
            choose_scale(Some(ScaleChoice::Fixed(1.0)), Some(2.0), uhd, size),
            1.0
        );
        // A user asking for automatic overrides a server's fixed scale.
        assert_eq!(
            choose_scale(Some(ScaleChoice::Auto), Some(1.0), uhd, size),
            1.5
        );
        // A nonsensical server value (an older or broken daemon) is ignored.
        assert_eq!(choose_scale(None, Some(f64::NAN), uhd, size), 1.5);
        assert_eq!(choose_scale(None, Some(0.0), uhd, size), 1.5);
    }

    #[test]
    fn the_output_takes_the_screens_millimetres_in_proportion() {
        let size = mm(597, 336);
        assert_eq!(
            output_millimetres((3840, 2160), (3840, 2160), size),
            (597, 336)
        );
        // A fixed 1920x1080 output shown on that screen covers a quarter of it.
        assert_eq!(
            output_millimetres((1920, 1080), (3840, 2160), size),
            (299, 168)
        );
        assert_eq!(output_millimetres((1920, 1080), (3840, 2160), None), (0, 0));
        assert_eq!(output_millimetres((1920, 1080), (0, 0), size), (0, 0));
    }
}
