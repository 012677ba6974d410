//! Where a new toplevel goes: centered when that spot is free, otherwise where it overlaps the
//! windows already on screen the least (nearest the center among equals), so windows opened in a
//! row stay visible side by side instead of stacking on one spot.

use super::wm::Area;

/// Candidate positions are tried on this grid, in pixels.
const GRID: i32 = 16;

fn overlap(a: Area, b: Area) -> i64 {
    let w = (a.x + a.w).min(b.x + b.w) - a.x.max(b.x);
    let h = (a.y + a.h).min(b.y + b.h) - a.y.max(b.y);
    if w > 0 && h > 0 {
        w as i64 * h as i64
    } else {
        0
    }
}

/// Top-left corner for a new window of `size` on an output of `output` pixels; `existing`
/// windows are in the same coordinates.
pub fn place_new_window(output: (i32, i32), size: (i32, i32), existing: &[Area]) -> (i32, i32) {
    let center = (
        ((output.0 - size.0) / 2).max(0),
        ((output.1 - size.1) / 2).max(0),
    );
    let cost = |x: i32, y: i32| -> (i64, i64) {
        let me = Area {
            x,
            y,
            w: size.0,
            h: size.1,
        };
        let covered: i64 = existing.iter().map(|&o| overlap(me, o)).sum();
        let (dx, dy) = ((x - center.0) as i64, (y - center.1) as i64);
        (covered, dx * dx + dy * dy)
    };
    let max_x = (output.0 - size.0).max(0);
    let max_y = (output.1 - size.1).max(0);
    let mut best = (center, cost(center.0, center.1));
    if best.1 .0 == 0 {
        return center;
    }
    let xs = (0..=max_x).step_by(GRID as usize).chain([max_x]);
    for x in xs {
        let ys = (0..=max_y).step_by(GRID as usize).chain([max_y]);
        for y in ys {
            let c = cost(x, y);
            if c < best.1 {
                best = ((x, y), c);
            }
        }
    }
    best.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placed(pos: (i32, i32), size: (i32, i32)) -> Area {
        Area {
            x: pos.0,
            y: pos.1,
            w: size.0,
            h: size.1,
        }
    }

    #[test]
    fn first_window_is_centered() {
        assert_eq!(place_new_window((1280, 800), (400, 200), &[]), (440, 300));
    }

    #[test]
    fn oversized_window_starts_at_origin() {
        assert_eq!(place_new_window((1280, 800), (2000, 900), &[]), (0, 0));
    }

    #[test]
    fn second_window_goes_beside_the_first() {
        let size = (400, 300);
        let first = place_new_window((1280, 800), size, &[]);
        let second = place_new_window((1280, 800), size, &[placed(first, size)]);
        assert_eq!(overlap(placed(first, size), placed(second, size)), 0);
    }

    #[test]
    fn crowded_screen_minimises_overlap() {
        // A small window in the middle: a 700×500 one cannot avoid it. Any corner position
        // overlaps it by 185×225, the least possible; centered would cover it whole.
        let small = placed((515, 275), (250, 250));
        let pos = place_new_window((1280, 800), (700, 500), &[small]);
        assert_eq!(
            overlap(small, placed(pos, (700, 500))),
            185 * 225,
            "at {pos:?}"
        );
    }

    #[test]
    fn windows_stay_on_screen() {
        let mut existing = Vec::new();
        for _ in 0..10 {
            let (x, y) = place_new_window((1280, 800), (500, 400), &existing);
            assert!(
                x >= 0 && y >= 0 && x + 500 <= 1280 && y + 400 <= 800,
                "{x},{y}"
            );
            existing.push(placed((x, y), (500, 400)));
        }
    }
}
