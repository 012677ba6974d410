//! The tiling layout: one binary space partition (BSP) tree per workspace. Pure: window ids and
//! rectangles in, rectangles out; the rest of the WM turns them into protocol requests.
//!
//! Each split halves its tile along the tile's longer side, so the direction of a split is
//! not stored: it follows from the space the tree is laid out in. A new window splits the
//! focused tile, taking its second half.

/// The WM's own name for a window (the protocol object is looked up by it).
pub type WindowId = u32;

/// A rectangle in the output's logical pixels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rect {
    pub x: i32,
    pub y: i32,
    pub w: i32,
    pub h: i32,
}

impl Rect {
    pub const fn new(x: i32, y: i32, w: i32, h: i32) -> Rect {
        Rect { x, y, w, h }
    }

    /// The rectangle with `by` taken off each side; never smaller than 1×1, so a crowded
    /// screen still gives every window a size a client can take.
    pub fn shrink(self, by: i32) -> Rect {
        Rect {
            x: self.x + by,
            y: self.y + by,
            w: (self.w - 2 * by).max(1),
            h: (self.h - 2 * by).max(1),
        }
    }

    /// A rectangle of size `w`×`h` centred in this one.
    pub fn centred(self, w: i32, h: i32) -> Rect {
        Rect::new(self.x + (self.w - w) / 2, self.y + (self.h - h) / 2, w, h)
    }

    fn right(self) -> i32 {
        self.x + self.w
    }

    fn bottom(self) -> i32 {
        self.y + self.h
    }
}

/// A direction for focus and moves (Super+arrows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Left,
    Right,
    Up,
    Down,
}

#[derive(Clone, Debug)]
enum Node {
    Leaf(WindowId),
    /// The first child takes the left (or top) half.
    Split(Box<Node>, Box<Node>),
}

/// The tiles of one workspace.
#[derive(Clone, Debug, Default)]
pub struct Tree {
    root: Option<Node>,
}

impl Tree {
    pub fn contains(&self, id: WindowId) -> bool {
        self.windows().contains(&id)
    }

    /// The windows, left/top first.
    pub fn windows(&self) -> Vec<WindowId> {
        fn walk(node: &Node, out: &mut Vec<WindowId>) {
            match node {
                Node::Leaf(id) => out.push(*id),
                Node::Split(a, b) => {
                    walk(a, out);
                    walk(b, out);
                }
            }
        }
        let mut out = Vec::new();
        if let Some(root) = &self.root {
            walk(root, &mut out);
        }
        out
    }

    /// Adds `id` by splitting the tile of `at` (the focused window); the last tile when `at`
    /// is not in the tree.
    pub fn insert(&mut self, id: WindowId, at: Option<WindowId>) {
        fn split(node: &mut Node, at: WindowId, id: WindowId) -> bool {
            match node {
                Node::Leaf(leaf) if *leaf == at => {
                    *node = Node::Split(Box::new(Node::Leaf(at)), Box::new(Node::Leaf(id)));
                    true
                }
                Node::Leaf(_) => false,
                Node::Split(a, b) => split(a, at, id) || split(b, at, id),
            }
        }
        let windows = self.windows();
        let at = at
            .filter(|at| windows.contains(at))
            .or(windows.last().copied());
        match (&mut self.root, at) {
            (Some(root), Some(at)) => {
                split(root, at, id);
            }
            _ => self.root = Some(Node::Leaf(id)),
        }
    }

    /// Removes `id`; its sibling takes the whole of their parent's tile.
    pub fn remove(&mut self, id: WindowId) {
        fn without(node: Node, id: WindowId) -> Option<Node> {
            match node {
                Node::Leaf(leaf) if leaf == id => None,
                Node::Leaf(leaf) => Some(Node::Leaf(leaf)),
                Node::Split(a, b) => match (without(*a, id), without(*b, id)) {
                    (Some(a), Some(b)) => Some(Node::Split(Box::new(a), Box::new(b))),
                    (one, other) => one.or(other),
                },
            }
        }
        self.root = self.root.take().and_then(|root| without(root, id));
    }

    /// Exchanges the tiles of `a` and `b`.
    pub fn swap(&mut self, a: WindowId, b: WindowId) {
        fn walk(node: &mut Node, a: WindowId, b: WindowId) {
            match node {
                Node::Leaf(leaf) if *leaf == a => *leaf = b,
                Node::Leaf(leaf) if *leaf == b => *leaf = a,
                Node::Leaf(_) => {}
                Node::Split(x, y) => {
                    walk(x, a, b);
                    walk(y, a, b);
                }
            }
        }
        if let Some(root) = &mut self.root {
            walk(root, a, b);
        }
    }

    /// Each window's content rectangle in `area` (the output's usable area): `gaps` pixels
    /// between tiles and around them, and room for a `border` drawn outside each content.
    pub fn layout(&self, area: Rect, gaps: i32, border: i32) -> Vec<(WindowId, Rect)> {
        fn place(node: &Node, tile: Rect, gaps: i32, border: i32, out: &mut Vec<(WindowId, Rect)>) {
            match node {
                Node::Leaf(id) => out.push((*id, tile.shrink(border))),
                Node::Split(a, b) => {
                    let (first, second) = if tile.w >= tile.h {
                        let w = ((tile.w - gaps) / 2).max(1);
                        (
                            Rect::new(tile.x, tile.y, w, tile.h),
                            Rect::new(
                                tile.x + w + gaps,
                                tile.y,
                                (tile.w - w - gaps).max(1),
                                tile.h,
                            ),
                        )
                    } else {
                        let h = ((tile.h - gaps) / 2).max(1);
                        (
                            Rect::new(tile.x, tile.y, tile.w, h),
                            Rect::new(
                                tile.x,
                                tile.y + h + gaps,
                                tile.w,
                                (tile.h - h - gaps).max(1),
                            ),
                        )
                    };
                    place(a, first, gaps, border, out);
                    place(b, second, gaps, border, out);
                }
            }
        }
        let mut out = Vec::new();
        if let Some(root) = &self.root {
            place(root, area.shrink(gaps), gaps, border, &mut out);
        }
        out
    }
}

/// The window nearest to `from` in direction `dir` among `rects` (what the user sees): one
/// that lies wholly on that side, preferring windows that overlap `from` across the direction,
/// then the nearest, then the one best aligned with it.
pub fn neighbour(rects: &[(WindowId, Rect)], from: WindowId, dir: Direction) -> Option<WindowId> {
    let (_, f) = rects.iter().find(|(id, _)| *id == from)?;
    rects
        .iter()
        .filter(|(id, _)| *id != from)
        .filter_map(|(id, c)| {
            // The distance along `dir`, and the two spans across it.
            let (distance, (a0, a1), (b0, b1)) = match dir {
                Direction::Left => (f.x - c.right(), (f.y, f.bottom()), (c.y, c.bottom())),
                Direction::Right => (c.x - f.right(), (f.y, f.bottom()), (c.y, c.bottom())),
                Direction::Up => (f.y - c.bottom(), (f.x, f.right()), (c.x, c.right())),
                Direction::Down => (c.y - f.bottom(), (f.x, f.right()), (c.x, c.right())),
            };
            if distance < 0 {
                return None;
            }
            let apart = (b0 - a1).max(a0 - b1).max(0);
            let misalignment = ((a0 + a1) - (b0 + b1)).abs();
            Some(((apart, distance, misalignment), *id))
        })
        .min_by_key(|(key, _)| *key)
        .map(|(_, id)| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCREEN: Rect = Rect::new(0, 0, 1280, 720);

    fn tree(ids: &[WindowId]) -> Tree {
        let mut t = Tree::default();
        for &id in ids {
            t.insert(id, ids.iter().copied().filter(|&i| i < id).max());
        }
        t
    }

    fn rect_of(layout: &[(WindowId, Rect)], id: WindowId) -> Rect {
        layout.iter().find(|(i, _)| *i == id).unwrap().1
    }

    #[test]
    fn one_window_fills_the_area_less_gaps_and_border() {
        let l = tree(&[1]).layout(SCREEN, 8, 2);
        assert_eq!(l, vec![(1, Rect::new(10, 10, 1260, 700))]);
    }

    #[test]
    fn a_wide_tile_splits_side_by_side_and_a_tall_one_top_and_bottom() {
        let l = tree(&[1, 2]).layout(SCREEN, 8, 2);
        // Tiles of 1264 - 8 between them = 628 each; content 2 px inside.
        assert_eq!(rect_of(&l, 1), Rect::new(10, 10, 624, 700));
        assert_eq!(rect_of(&l, 2), Rect::new(646, 10, 624, 700));

        // The third window splits the focused (second) tile, which is tall: top and bottom.
        let l = tree(&[1, 2, 3]).layout(SCREEN, 8, 2);
        assert_eq!(rect_of(&l, 1), Rect::new(10, 10, 624, 700));
        assert_eq!(rect_of(&l, 2), Rect::new(646, 10, 624, 344));
        assert_eq!(rect_of(&l, 3), Rect::new(646, 366, 624, 344));
    }

    #[test]
    fn new_windows_split_the_tile_they_are_inserted_at() {
        let mut t = tree(&[1, 2]);
        t.insert(3, Some(1));
        let l = t.layout(SCREEN, 0, 0);
        assert_eq!(rect_of(&l, 1), Rect::new(0, 0, 640, 360));
        assert_eq!(rect_of(&l, 3), Rect::new(0, 360, 640, 360));
        assert_eq!(rect_of(&l, 2), Rect::new(640, 0, 640, 720));
        // An unknown focus splits the last tile.
        t.insert(4, Some(99));
        assert_eq!(t.windows(), vec![1, 3, 2, 4]);
    }

    #[test]
    fn the_layout_stays_inside_the_usable_area_without_overlaps() {
        let area = Rect::new(0, 32, 1024, 736); // a panel took the top 32 px
        for n in 1..=12 {
            let ids: Vec<WindowId> = (1..=n).collect();
            let l = tree(&ids).layout(area, 8, 2);
            assert_eq!(l.len(), n as usize);
            for (i, (_, a)) in l.iter().enumerate() {
                // Content plus its border, plus the outer gap, is within the area.
                assert!(a.x - 2 >= area.x + 8 && a.y - 2 >= area.y + 8, "{n}: {a:?}");
                assert!(a.right() + 2 <= area.right() - 8, "{n}: {a:?}");
                assert!(a.bottom() + 2 <= area.bottom() - 8, "{n}: {a:?}");
                for (_, b) in &l[i + 1..] {
                    // Bordered tiles are at least the gap apart.
                    let apart_x =
                        (b.x - 2) - (a.right() + 2) >= 8 || (a.x - 2) - (b.right() + 2) >= 8;
                    let apart_y =
                        (b.y - 2) - (a.bottom() + 2) >= 8 || (a.y - 2) - (b.bottom() + 2) >= 8;
                    assert!(apart_x || apart_y, "{n}: {a:?} and {b:?} overlap");
                }
            }
        }
    }

    #[test]
    fn a_tiny_area_still_gives_every_window_a_size() {
        let l = tree(&[1, 2, 3, 4]).layout(Rect::new(0, 0, 10, 10), 8, 2);
        assert!(l.iter().all(|(_, r)| r.w >= 1 && r.h >= 1), "{l:?}");
    }

    #[test]
    fn removing_a_window_gives_its_tile_to_its_sibling() {
        let mut t = tree(&[1, 2, 3]);
        t.remove(2);
        let l = t.layout(SCREEN, 0, 0);
        assert_eq!(rect_of(&l, 3), Rect::new(640, 0, 640, 720));
        t.remove(1);
        assert_eq!(t.layout(SCREEN, 0, 0), vec![(3, SCREEN)]);
        t.remove(3);
        assert!(t.windows().is_empty());
        // The emptied tree takes a new window as its root.
        t.insert(4, Some(3));
        assert_eq!(t.layout(SCREEN, 0, 0), vec![(4, SCREEN)]);
    }

    #[test]
    fn swapping_exchanges_tiles() {
        let mut t = tree(&[1, 2, 3]);
        let before = t.layout(SCREEN, 8, 2);
        t.swap(1, 3);
        let after = t.layout(SCREEN, 8, 2);
        assert_eq!(rect_of(&after, 3), rect_of(&before, 1));
        assert_eq!(rect_of(&after, 1), rect_of(&before, 3));
        assert_eq!(rect_of(&after, 2), rect_of(&before, 2));
        assert!(t.contains(1) && t.contains(3));
    }

    #[test]
    fn neighbours_are_found_geometrically() {
        // 1 on the left half; 2 above 3 on the right.
        let l = tree(&[1, 2, 3]).layout(SCREEN, 8, 2);
        assert_eq!(neighbour(&l, 1, Direction::Right), Some(2));
        assert_eq!(neighbour(&l, 3, Direction::Left), Some(1));
        assert_eq!(neighbour(&l, 2, Direction::Down), Some(3));
        assert_eq!(neighbour(&l, 3, Direction::Up), Some(2));
        assert_eq!(neighbour(&l, 1, Direction::Left), None);
        assert_eq!(neighbour(&l, 1, Direction::Up), None);
        assert_eq!(neighbour(&l, 99, Direction::Up), None);
    }

    #[test]
    fn neighbours_prefer_windows_across_from_the_focused_one() {
        // 1 and 3 on the left (top, bottom), 2 and 4 on the right (top, bottom).
        let mut t = tree(&[1, 2]);
        t.insert(3, Some(1));
        t.insert(4, Some(2));
        let l = t.layout(SCREEN, 8, 2);
        assert_eq!(neighbour(&l, 3, Direction::Right), Some(4));
        assert_eq!(neighbour(&l, 2, Direction::Left), Some(1));
        assert_eq!(neighbour(&l, 4, Direction::Up), Some(2));
    }

    #[test]
    fn centring() {
        assert_eq!(SCREEN.centred(400, 300), Rect::new(440, 210, 400, 300));
    }
}
