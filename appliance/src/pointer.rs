//! The appliance's own pointer position. The appliance moves its cursor itself and only tells
//! the server where it went, so pointing never waits for a network round trip; positions are kept
//! on the session output because the server drops events that fall outside it.

/// A place on the session output, as an input device reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Position {
    /// Output pixels (scripts).
    Pixels { x: f64, y: f64 },
    /// Fractions of the output's width and height, 0.0 to 1.0 (tablets, touch screens, VM
    /// tablets): the device does not know the output's size, so the appliance scales.
    // Only real devices report these.
    #[cfg_attr(not(feature = "libinput"), allow(dead_code))]
    Fraction { x: f64, y: f64 },
}

/// The pointer on an output of `width`×`height` pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pointer {
    x: f64,
    y: f64,
    width: u32,
    height: u32,
}

impl Pointer {
    /// A pointer in the middle of the output, where a person looks first.
    pub fn centred(width: u32, height: u32) -> Self {
        let mut pointer = Self {
            x: 0.0,
            y: 0.0,
            width,
            height,
        };
        (pointer.x, pointer.y) = pointer.clamp(f64::from(width) / 2.0, f64::from(height) / 2.0);
        pointer
    }

    pub fn position(&self) -> (f64, f64) {
        (self.x, self.y)
    }

    /// The output changed size; the pointer stays where it was if that is still on it. Returns
    /// whether it had to move.
    pub fn set_output(&mut self, width: u32, height: u32) -> bool {
        if (width, height) == (self.width, self.height) {
            return false;
        }
        self.width = width;
        self.height = height;
        let before = self.position();
        (self.x, self.y) = self.clamp(self.x, self.y);
        before != self.position()
    }

    /// Relative motion (a mouse): the new position, stopped at the output's edges.
    pub fn move_by(&mut self, dx: f64, dy: f64) -> (f64, f64) {
        let finite = |v: f64| if v.is_finite() { v } else { 0.0 };
        (self.x, self.y) = self.clamp(self.x + finite(dx), self.y + finite(dy));
        self.position()
    }

    /// Absolute motion: the pointer jumps to `at` (kept on the output).
    pub fn move_to(&mut self, at: Position) -> (f64, f64) {
        (self.x, self.y) = self.place(at);
        self.position()
    }

    /// Where `at` lies on the output, kept on it, without moving the pointer (touch points).
    pub fn place(&self, at: Position) -> (f64, f64) {
        match at {
            Position::Pixels { x, y } => self.clamp(x, y),
            Position::Fraction { x, y } => {
                self.clamp(x * f64::from(self.width), y * f64::from(self.height))
            }
        }
    }

    /// Keeps a position on the output's pixels: 0 ..= size − 1, NaN treated as 0.
    fn clamp(&self, x: f64, y: f64) -> (f64, f64) {
        let keep = |v: f64, size: u32| {
            let max = f64::from(size.saturating_sub(1));
            if v.is_nan() {
                0.0
            } else {
                v.clamp(0.0, max)
            }
        };
        (keep(x, self.width), keep(y, self.height))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_centred_and_stops_at_edges() {
        let mut p = Pointer::centred(1280, 800);
        assert_eq!(p.position(), (640.0, 400.0));
        assert_eq!(p.move_by(-10.5, 3.0), (629.5, 403.0));
        assert_eq!(p.move_by(-10_000.0, 10_000.0), (0.0, 799.0));
        assert_eq!(p.move_by(f64::NAN, f64::INFINITY), (0.0, 799.0));
        assert_eq!(
            p.move_to(Position::Pixels { x: 2000.0, y: -5.0 }),
            (1279.0, 0.0)
        );
    }

    #[test]
    fn fractions_scale_to_the_output_and_touch_does_not_move_the_pointer() {
        let mut p = Pointer::centred(1000, 500);
        assert_eq!(
            p.place(Position::Fraction { x: 0.25, y: 1.0 }),
            (250.0, 499.0)
        );
        assert_eq!(p.position(), (500.0, 250.0));
        assert_eq!(
            p.move_to(Position::Fraction { x: 0.5, y: 0.1 }),
            (500.0, 50.0)
        );
    }

    #[test]
    fn a_smaller_output_pulls_the_pointer_in() {
        let mut p = Pointer::centred(1280, 800);
        p.move_by(500.0, 0.0);
        assert!(!p.set_output(1280, 800));
        assert!(p.set_output(640, 480));
        assert_eq!(p.position(), (639.0, 400.0));
        assert!(!p.set_output(1920, 1080), "a larger output leaves it alone");
    }
}
