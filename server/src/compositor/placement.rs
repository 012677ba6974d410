//! Where a new toplevel goes: centered on the output, cascaded when that spot is taken, so
//! several windows opened in a row stay individually visible.

/// Offset between cascaded windows, about a title bar's height.
const CASCADE_STEP: i32 = 32;

/// Top-left corner for a new window of `size` on an output of `output`, given where the windows
/// already on screen have their top-left corners.
pub fn place_new_window(output: (i32, i32), size: (i32, i32), occupied: &[(i32, i32)]) -> (i32, i32) {
    let center = |o: i32, s: i32| ((o - s) / 2).max(0);
    let start = (center(output.0, size.0), center(output.1, size.1));
    let mut pos = start;
    for _ in 0..64 {
        if !occupied.contains(&pos) {
            return pos;
        }
        pos = (pos.0 + CASCADE_STEP, pos.1 + CASCADE_STEP);
        // Wrap back to the top-left once the window would leave the output.
        if pos.0 + size.0 > output.0 || pos.1 + size.1 > output.1 {
            pos = ((pos.0 - start.0) % CASCADE_STEP.max(1) + CASCADE_STEP / 2, CASCADE_STEP / 2);
            if occupied.contains(&pos) {
                pos.0 += CASCADE_STEP / 4;
            }
        }
    }
    start
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_window_is_centered() {
        assert_eq!(place_new_window((1280, 800), (400, 200), &[]), (440, 300));
    }

    #[test]
    fn oversized_window_starts_at_origin() {
        assert_eq!(place_new_window((1280, 800), (2000, 900), &[]), (0, 0));
    }

    #[test]
    fn later_windows_cascade() {
        let first = place_new_window((1280, 800), (400, 200), &[]);
        let second = place_new_window((1280, 800), (400, 200), &[first]);
        assert_eq!(second, (first.0 + 32, first.1 + 32));
        let third = place_new_window((1280, 800), (400, 200), &[first, second]);
        assert_eq!(third, (first.0 + 64, first.1 + 64));
    }

    #[test]
    fn cascade_never_returns_an_occupied_spot_while_free_ones_exist() {
        let mut occupied = Vec::new();
        for _ in 0..20 {
            let p = place_new_window((1280, 800), (600, 500), &occupied);
            assert!(!occupied.contains(&p), "{p:?} placed twice");
            occupied.push(p);
        }
    }
}
